//! Kubernetes' mandatory and suggested FlowSchemas and PriorityLevelConfigurations
//! (`flowcontrol/bootstrap/default.go`), created and kept at every apiserver start.
//!
//! The `apf.kubernetes.io/autoupdate-spec` annotation says whether the apiserver keeps
//! an object's spec at the default: the mandatory objects (`exempt`, `catch-all`) always;
//! a suggested object when the annotation is `true`, or when it is missing and the
//! object was never changed (generation 1). The annotation is then written to say what
//! was decided, so an operator's edit (generation > 1) is kept from then on. Deleted
//! objects are created again.

use crate::registry::{Registry, UserInfo, WriteOptions};
use keelson_resources::kinds::{flowschemas, prioritylevelconfigurations};
use keelson_resources::ResourceType;
use serde_json::{json, Value};

pub const AUTOUPDATE: &str = "apf.kubernetes.io/autoupdate-spec";

const NODES: &str = "system:nodes";
const MASTERS: &str = "system:masters";
const KCM: &str = "system:kube-controller-manager";
const SCHEDULER: &str = "system:kube-scheduler";
const AUTHENTICATED: &str = "system:authenticated";
const UNAUTHENTICATED: &str = "system:unauthenticated";
const SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

fn limited(shares: i64, lendable: i64, queuing: Option<(i64, i64, i64)>) -> Value {
    let response = match queuing {
        Some((queues, hand, length)) => json!({
            "type": "Queue",
            "queuing": {"queues": queues, "handSize": hand, "queueLengthLimit": length},
        }),
        None => json!({"type": "Reject"}),
    };
    json!({
        "type": "Limited",
        "limited": {
            "nominalConcurrencyShares": shares,
            "lendablePercent": lendable,
            "limitResponse": response,
        },
    })
}

fn level(name: &str, spec: Value) -> Value {
    json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "PriorityLevelConfiguration",
        "metadata": {"name": name},
        "spec": spec,
    })
}

/// The mandatory levels: always kept at these specs.
pub fn mandatory_levels() -> Vec<Value> {
    vec![
        level(
            "exempt",
            json!({"type": "Exempt", "exempt": {"nominalConcurrencyShares": 0, "lendablePercent": 0}}),
        ),
        level("catch-all", limited(5, 0, None)),
    ]
}

pub fn suggested_levels() -> Vec<Value> {
    vec![
        level("system", limited(30, 33, Some((64, 6, 50)))),
        level("node-high", limited(40, 25, Some((64, 6, 50)))),
        level("leader-election", limited(10, 0, Some((16, 4, 50)))),
        level("workload-high", limited(40, 50, Some((128, 6, 50)))),
        level("workload-low", limited(100, 90, Some((128, 6, 50)))),
        level("global-default", limited(20, 50, Some((128, 6, 50)))),
    ]
}

fn users(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"kind": "User", "user": {"name": n}}))
        .collect()
}

fn groups(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"kind": "Group", "group": {"name": n}}))
        .collect()
}

fn kube_system_accounts(names: &[&str]) -> Vec<Value> {
    names
        .iter()
        .map(|n| json!({"kind": "ServiceAccount", "serviceAccount": {"name": n, "namespace": "kube-system"}}))
        .collect()
}

fn resource_rule(
    verbs: &[&str],
    groups: &[&str],
    resources: &[&str],
    namespaces: &[&str],
    cluster: bool,
) -> Value {
    let mut r = json!({"verbs": verbs, "apiGroups": groups, "resources": resources, "clusterScope": cluster});
    if !namespaces.is_empty() {
        r["namespaces"] = json!(namespaces);
    }
    r
}

/// Every verb on every resource and non-resource URL.
fn everything(subjects: Vec<Value>) -> Value {
    json!({
        "subjects": subjects,
        "resourceRules": [resource_rule(&["*"], &["*"], &["*"], &["*"], true)],
        "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
    })
}

fn schema(
    name: &str,
    level: &str,
    precedence: i64,
    distinguisher: Option<&str>,
    rules: Vec<Value>,
) -> Value {
    let mut spec = json!({
        "priorityLevelConfiguration": {"name": level},
        "matchingPrecedence": precedence,
        "rules": rules,
    });
    if let Some(d) = distinguisher {
        spec["distinguisherMethod"] = json!({"type": d});
    }
    json!({
        "apiVersion": "flowcontrol.apiserver.k8s.io/v1",
        "kind": "FlowSchema",
        "metadata": {"name": name},
        "spec": spec,
    })
}

pub fn mandatory_schemas() -> Vec<Value> {
    vec![
        schema(
            "exempt",
            "exempt",
            1,
            None,
            vec![everything(groups(&[MASTERS]))],
        ),
        schema(
            "catch-all",
            "catch-all",
            10000,
            Some("ByUser"),
            vec![everything(groups(&[UNAUTHENTICATED, AUTHENTICATED]))],
        ),
    ]
}

fn leader_election_rules(subjects: Vec<Value>, core_namespace: &str) -> Value {
    let rw = ["get", "create", "update"];
    json!({
        "subjects": subjects,
        "resourceRules": [
            resource_rule(&rw, &[""], &["endpoints", "configmaps"], &[core_namespace], false),
            resource_rule(&rw, &["coordination.k8s.io"], &["leases"], &["*"], false),
        ],
    })
}

pub fn suggested_schemas() -> Vec<Value> {
    let mut leader_subjects = users(&[KCM, SCHEDULER]);
    leader_subjects.extend(kube_system_accounts(&["*"]));
    let mut endpoint_subjects = users(&[KCM]);
    endpoint_subjects.extend(kube_system_accounts(&[
        "endpoint-controller",
        "endpointslicemirroring-controller",
    ]));
    vec![
        schema(
            "system-nodes",
            "system",
            500,
            Some("ByUser"),
            vec![everything(groups(&[NODES]))],
        ),
        schema(
            "system-node-high",
            "node-high",
            400,
            Some("ByUser"),
            vec![json!({
                "subjects": groups(&[NODES]),
                "resourceRules": [
                    resource_rule(&["*"], &[""], &["nodes", "nodes/status"], &["*"], true),
                    resource_rule(&["*"], &["coordination.k8s.io"], &["leases"], &["*"], false),
                ],
            })],
        ),
        schema(
            "probes",
            "exempt",
            2,
            None,
            vec![json!({
                "subjects": groups(&[UNAUTHENTICATED, AUTHENTICATED]),
                "nonResourceRules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz", "/readyz", "/livez"]}],
            })],
        ),
        schema(
            "system-leader-election",
            "leader-election",
            100,
            Some("ByUser"),
            vec![leader_election_rules(leader_subjects, "kube-system")],
        ),
        schema(
            "endpoint-controller",
            "workload-high",
            150,
            Some("ByUser"),
            vec![json!({
                "subjects": endpoint_subjects,
                "resourceRules": [resource_rule(&["get", "create", "update"], &[""], &["endpoints"], &["*"], false)],
            })],
        ),
        schema(
            "workload-leader-election",
            "leader-election",
            200,
            Some("ByUser"),
            vec![leader_election_rules(kube_system_accounts(&["*"]), "*")],
        ),
        schema(
            "kube-controller-manager",
            "workload-high",
            800,
            Some("ByNamespace"),
            vec![everything(users(&[KCM]))],
        ),
        schema(
            "kube-scheduler",
            "workload-high",
            800,
            Some("ByNamespace"),
            vec![everything(users(&[SCHEDULER]))],
        ),
        schema(
            "kube-system-service-accounts",
            "workload-high",
            900,
            Some("ByNamespace"),
            vec![everything(kube_system_accounts(&["*"]))],
        ),
        schema(
            "service-accounts",
            "workload-low",
            9000,
            Some("ByUser"),
            vec![everything(groups(&[SERVICE_ACCOUNTS]))],
        ),
        schema(
            "global-default",
            "global-default",
            9900,
            Some("ByUser"),
            vec![everything(groups(&[UNAUTHENTICATED, AUTHENTICATED]))],
        ),
    ]
}

/// Every default object with whether it is mandatory.
pub fn all() -> Vec<(&'static ResourceType, Value, bool)> {
    let pl = &prioritylevelconfigurations::RESOURCE;
    let fs = &flowschemas::RESOURCE;
    let mut out = Vec::new();
    out.extend(mandatory_levels().into_iter().map(|o| (pl, o, true)));
    out.extend(suggested_levels().into_iter().map(|o| (pl, o, false)));
    out.extend(mandatory_schemas().into_iter().map(|o| (fs, o, true)));
    out.extend(suggested_schemas().into_iter().map(|o| (fs, o, false)));
    out
}

fn annotation(obj: &Value) -> Option<bool> {
    obj.pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE))
        .and_then(Value::as_str)
        .and_then(|v| match v.to_ascii_lowercase().as_str() {
            "true" | "1" | "t" => Some(true),
            "false" | "0" | "f" => Some(false),
            _ => None,
        })
}

/// What an existing object must become to follow the defaults, if anything
/// (`ensurer.ShouldUpdate`). `wanted` is the default, already defaulted.
pub fn reconcile(existing: &Value, wanted: &Value, mandatory: bool) -> Option<Value> {
    let auto = mandatory
        || annotation(existing).unwrap_or_else(|| {
            existing
                .pointer("/metadata/generation")
                .and_then(Value::as_i64)
                == Some(1)
        });
    let current = existing
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(AUTOUPDATE))
        .and_then(Value::as_str);
    let annotate = current != Some(if auto { "true" } else { "false" });
    let respec = auto && existing.get("spec") != wanted.get("spec");
    if !annotate && !respec {
        return None;
    }
    let mut out = existing.clone();
    if respec {
        out["spec"] = wanted["spec"].clone();
    }
    if annotate {
        if !out["metadata"]["annotations"].is_object() {
            out["metadata"]["annotations"] = json!({});
        }
        out["metadata"]["annotations"][AUTOUPDATE] = json!(if auto { "true" } else { "false" });
    }
    Some(out)
}

fn opts() -> WriteOptions {
    WriteOptions {
        field_manager: "api-priority-and-fairness-config-producer-v1".into(),
        user: UserInfo::apiserver(),
        ..Default::default()
    }
}

async fn ensure_one(
    registry: &Registry,
    rt: &'static ResourceType,
    mut wanted: Value,
    mandatory: bool,
) -> anyhow::Result<()> {
    let name = wanted["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    wanted["metadata"]["annotations"] = json!({AUTOUPDATE: "true"});
    rt.strategy.default(&mut wanted);
    match registry.get(rt, "", &name).await {
        Ok(existing) => {
            if let Some(new) = reconcile(&existing, &wanted, mandatory) {
                tracing::info!(kind = rt.kind, %name, "keeping the default flow-control configuration");
                match registry.update(rt, "", &name, "", new, &opts()).await {
                    Ok(_) => {}
                    // Another apiserver got there first; the next start looks again.
                    Err(e) if e.code == 409 => {}
                    Err(e) => anyhow::bail!("updating {} {name}: {e}", rt.kind),
                }
            }
            Ok(())
        }
        Err(e) if e.code == 404 => match registry.create(rt, "", wanted, &opts()).await {
            Ok(_) => Ok(()),
            Err(e) if e.code == 409 => Ok(()),
            Err(e) => anyhow::bail!("creating {} {name}: {e}", rt.kind),
        },
        Err(e) => anyhow::bail!("reading {} {name}: {e}", rt.kind),
    }
}

/// Create or keep every default object (levels first, so no schema dangles).
pub async fn ensure(registry: &Registry) -> anyhow::Result<()> {
    for (rt, obj, mandatory) in all() {
        ensure_one(registry, rt, obj, mandatory).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_unchanged_by_defaulting() {
        let all = all();
        assert_eq!(all.len(), 8 + 13);
        for (rt, obj, _) in all {
            let mut defaulted = obj.clone();
            rt.strategy.default(&mut defaulted);
            assert_eq!(defaulted, obj, "{}", obj["metadata"]["name"]);
            let causes = rt.strategy.validate(&obj);
            assert!(causes.is_empty(), "{}: {causes:?}", obj["metadata"]["name"]);
        }
    }

    #[test]
    fn autoupdate_follows_the_annotation_and_generation() {
        let wanted = {
            let mut w = suggested_levels().remove(0);
            w["metadata"]["annotations"] = json!({AUTOUPDATE: "true"});
            w
        };
        // An operator changed a suggested level (generation 2, no annotation): kept, and
        // marked as not to be updated.
        let mut edited = wanted.clone();
        edited["metadata"]["annotations"] = json!({});
        edited["metadata"]["generation"] = json!(2);
        edited["spec"]["limited"]["nominalConcurrencyShares"] = json!(7);
        let out = reconcile(&edited, &wanted, false).expect("annotated");
        assert_eq!(out["spec"]["limited"]["nominalConcurrencyShares"], 7);
        assert_eq!(out["metadata"]["annotations"][AUTOUPDATE], "false");
        assert!(reconcile(&out, &wanted, false).is_none());
        // autoupdate-spec=true: the default comes back.
        let mut auto = out.clone();
        auto["metadata"]["annotations"][AUTOUPDATE] = json!("true");
        let back = reconcile(&auto, &wanted, false).expect("respecced");
        assert_eq!(back["spec"], wanted["spec"]);
        // Mandatory objects are always put back, whatever the annotation says.
        let mut catch_all = mandatory_levels().remove(1);
        catch_all["metadata"]["annotations"] = json!({AUTOUPDATE: "false"});
        let mut wanted_ca = catch_all.clone();
        wanted_ca["metadata"]["annotations"] = json!({AUTOUPDATE: "true"});
        catch_all["spec"]["limited"]["nominalConcurrencyShares"] = json!(1);
        let fixed = reconcile(&catch_all, &wanted_ca, true).expect("mandatory");
        assert_eq!(fixed["spec"]["limited"]["nominalConcurrencyShares"], 5);
        assert_eq!(fixed["metadata"]["annotations"][AUTOUPDATE], "true");
    }
}
