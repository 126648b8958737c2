//! Pod helpers shared by the workload controllers: which pods count, readiness and
//! availability, building a pod from a template, and which pods to delete first.

use std::cmp::Ordering;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use keelson_apimachinery::selector::LabelSelector;

/// Pods that are neither finished nor being deleted (client-go's `IsPodActive`).
pub fn is_active(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, Some("Succeeded" | "Failed")) && pod.metadata.deletion_timestamp.is_none()
}

pub fn is_terminal(pod: &Pod) -> bool {
    matches!(
        pod.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}

/// When the pod's Ready condition last became True, if it is True.
pub fn ready_since(pod: &Pod) -> Option<jiff::Timestamp> {
    let cond = pod
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    (cond.status == "True").then(|| {
        cond.last_transition_time
            .as_ref()
            .map(|t| t.0)
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
    })
}

pub fn is_ready(pod: &Pod) -> bool {
    ready_since(pod).is_some()
}

/// Ready for at least `min_ready_seconds` (Kubernetes' `IsPodAvailable`).
pub fn is_available(pod: &Pod, min_ready_seconds: i32, now: jiff::Timestamp) -> bool {
    match ready_since(pod) {
        None => false,
        Some(_) if min_ready_seconds <= 0 => true,
        Some(since) => since + Duration::from_secs(min_ready_seconds as u64) <= now,
    }
}

/// How long until `pod` becomes available, if it is ready but not yet available.
pub fn until_available(
    pod: &Pod,
    min_ready_seconds: i32,
    now: jiff::Timestamp,
) -> Option<Duration> {
    let since = ready_since(pod)?;
    let at = since + Duration::from_secs(min_ready_seconds.max(0) as u64);
    (at > now).then(|| Duration::try_from(at - now).unwrap_or_default())
}

/// Whether the pod's labels are a superset of the template's (fullyLabeledReplicas).
pub fn fully_labeled(pod: &Pod, template: Option<&PodTemplateSpec>) -> bool {
    let want = template
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.as_ref());
    let have = pod.metadata.labels.as_ref();
    want.is_none_or(|w| {
        w.iter()
            .all(|(k, v)| have.and_then(|h| h.get(k)) == Some(v))
    })
}

pub fn selects(selector: &LabelSelector, meta: &ObjectMeta) -> bool {
    selector.matches_with(|k| meta.labels.as_ref()?.get(k).map(String::as_str))
}

/// A new pod from `template`, owned by `owner`, named `<prefix>` + a random suffix
/// (generateName), or exactly `name` when given.
pub fn from_template(
    template: &PodTemplateSpec,
    namespace: &str,
    owner: OwnerReference,
    generate_name: &str,
    name: Option<String>,
) -> Pod {
    let tmeta = template.metadata.clone().unwrap_or_default();
    Pod {
        metadata: ObjectMeta {
            name,
            generate_name: Some(generate_name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: tmeta.labels,
            annotations: tmeta.annotations,
            finalizers: tmeta.finalizers,
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        spec: template.spec.clone(),
        status: None,
    }
}

/// Kubernetes' generateName prefix for a controller's pods: the owner's name and a
/// dash, cut so that the random suffix still fits in 63 characters.
pub fn generate_name_prefix(owner_name: &str) -> String {
    let mut prefix = format!("{owner_name}-");
    if prefix.len() > 58 {
        prefix.truncate(58);
    }
    prefix
}

/// Orders pods so that the ones to delete first come first (client-go's
/// `ActivePods` ranking): unscheduled before scheduled, pending before unknown before
/// running, not ready before ready, lower `controller.kubernetes.io/pod-deletion-cost`
/// first, ready more recently before ready longer, more restarts first, newer first.
pub fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    fn scheduled(p: &Pod) -> bool {
        p.spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .is_some_and(|n| !n.is_empty())
    }
    fn phase_rank(p: &Pod) -> u8 {
        match p.status.as_ref().and_then(|s| s.phase.as_deref()) {
            Some("Pending") | None => 0,
            Some("Running") => 2,
            _ => 1,
        }
    }
    fn cost(p: &Pod) -> i64 {
        p.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("controller.kubernetes.io/pod-deletion-cost"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }
    fn restarts(p: &Pod) -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| {
                cs.iter().map(|c| c.restart_count).max().unwrap_or(0)
            })
    }
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    scheduled(a)
        .cmp(&scheduled(b))
        .then(phase_rank(a).cmp(&phase_rank(b)))
        .then(is_ready(a).cmp(&is_ready(b)))
        .then(cost(a).cmp(&cost(b)))
        .then_with(|| ready_since(b).cmp(&ready_since(a)))
        .then(restarts(b).cmp(&restarts(a)))
        .then_with(|| created(b).cmp(&created(a)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn deletes_unscheduled_then_not_ready_first() {
        let unscheduled = pod(json!({"metadata": {"name": "a"}, "spec": {"containers": []}}));
        let running_ready = pod(
            json!({"metadata": {"name": "b"}, "spec": {"nodeName": "n", "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}),
        );
        let running_not_ready = pod(
            json!({"metadata": {"name": "c"}, "spec": {"nodeName": "n", "containers": []},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}]}}),
        );
        let mut pods = [
            running_ready.clone(),
            running_not_ready.clone(),
            unscheduled.clone(),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<_> = pods
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        assert_eq!(names, ["a", "c", "b"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod(json!({"metadata": {"name": "a"}, "status": {"conditions": [
            {"type": "Ready", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]}}));
        let t0: jiff::Timestamp = "2024-01-01T00:00:05Z".parse().unwrap();
        assert!(is_available(&p, 0, t0));
        assert!(is_available(&p, 5, t0));
        assert!(!is_available(&p, 10, t0));
        assert_eq!(until_available(&p, 10, t0), Some(Duration::from_secs(5)));
        assert!(!is_active(&pod(
            json!({"metadata": {"name": "x"}, "status": {"phase": "Failed"}})
        )));
    }
}
