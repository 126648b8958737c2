//! `spec.podFailurePolicy`: the first rule that matches a failed pod decides whether
//! the pod fails the whole Job, is ignored, or counts towards `backoffLimit`.

use k8s_openapi::api::batch::v1::{PodFailurePolicy, PodFailurePolicyOnExitCodesRequirement};
use k8s_openapi::api::core::v1::{ContainerStatus, Pod};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Fail the Job at once; the message goes into its condition.
    FailJob(String),
    /// Not counted as a failure at all.
    Ignore,
    /// Counted, as without a policy (also `FailIndex`, which needs per-index backoff).
    Count,
}

/// What the policy says about a failed pod (no policy or no matching rule: `Count`).
pub fn evaluate(policy: Option<&PodFailurePolicy>, pod: &Pod) -> Action {
    let Some(policy) = policy else {
        return Action::Count;
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    for (index, rule) in policy.rules.iter().enumerate() {
        let what = if let Some(req) = &rule.on_exit_codes {
            matching_container(pod, req).map(|(c, code)| {
                format!("Container {c} for pod {ns}/{name} failed with exit code {code}")
            })
        } else {
            rule.on_pod_conditions.iter().flatten().find_map(|pattern| {
                let conditions = pod.status.as_ref()?.conditions.as_ref()?;
                conditions
                    .iter()
                    .any(|c| c.type_ == pattern.type_ && c.status == pattern.status)
                    .then(|| format!("Pod {ns}/{name} has condition {}", pattern.type_))
            })
        };
        let Some(what) = what else { continue };
        return match rule.action.as_str() {
            "FailJob" => Action::FailJob(format!("{what} matching FailJob rule at index {index}")),
            "Ignore" => Action::Ignore,
            _ => Action::Count,
        };
    }
    Action::Count
}

/// The first terminated container (regular, then init) with a non-zero exit code the
/// requirement matches.
fn matching_container(
    pod: &Pod,
    req: &PodFailurePolicyOnExitCodesRequirement,
) -> Option<(String, i32)> {
    let status = pod.status.as_ref()?;
    let lists: [&Option<Vec<ContainerStatus>>; 2] =
        [&status.container_statuses, &status.init_container_statuses];
    lists.into_iter().flatten().flatten().find_map(|cs| {
        let code = cs.state.as_ref()?.terminated.as_ref()?.exit_code;
        let name_ok = req.container_name.as_ref().is_none_or(|n| *n == cs.name);
        let listed = req.values.contains(&code);
        let op_ok = match req.operator.as_str() {
            "In" => listed,
            "NotIn" => !listed,
            _ => false,
        };
        (code != 0 && name_ok && op_ok).then(|| (cs.name.clone(), code))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn failed_pod(exit_code: i32, conditions: serde_json::Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "p", "namespace": "ns"},
            "status": {"phase": "Failed", "conditions": conditions, "containerStatuses": [
                {"name": "main", "image": "x", "imageID": "", "ready": false, "restartCount": 0,
                 "state": {"terminated": {"exitCode": exit_code}}}]}
        }))
        .unwrap()
    }

    fn policy(v: serde_json::Value) -> PodFailurePolicy {
        serde_json::from_value(json!({ "rules": v })).unwrap()
    }

    #[test]
    fn first_matching_rule_wins() {
        let p = policy(json!([
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [1]}},
        ]));
        assert_eq!(
            evaluate(Some(&p), &failed_pod(42, json!([]))),
            Action::FailJob(
                "Container main for pod ns/p failed with exit code 42 matching FailJob rule at index 1"
                    .into()
            )
        );
        let disrupted = failed_pod(42, json!([{"type": "DisruptionTarget", "status": "True"}]));
        assert_eq!(evaluate(Some(&p), &disrupted), Action::Ignore);
        assert_eq!(evaluate(Some(&p), &failed_pod(1, json!([]))), Action::Count);
        assert_eq!(evaluate(None, &failed_pod(42, json!([]))), Action::Count);
    }
}
