//! NodeRestriction admission, as Kubernetes': a node agent (`system:node:<name>` in
//! `system:nodes`) may create and change only its own Node and its own Lease, create
//! only mirror pods bound to itself, and change only pods bound to itself (their
//! status). Labels under `node-restriction.kubernetes.io/` are the cluster admin's:
//! a node may not set or change them on its Node. Other users pass untouched.

use super::forbidden;
use crate::authz::node::{node_name, NODE_LEASE_NAMESPACE};
use crate::registry::UserInfo;
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::ResourceType;
use serde_json::Value;

const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
const RESTRICTED_LABEL_PREFIX: &str = "node-restriction.kubernetes.io/";

fn is(rt: &ResourceType, group: &str, plural: &str) -> bool {
    rt.group == group && rt.plural == plural
}

fn pod_node(pod: &Value) -> &str {
    pod.pointer("/spec/nodeName")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn restricted_labels(obj: &Value) -> Vec<(&str, &str)> {
    meta::labels(obj)
        .into_iter()
        .filter(|(k, _)| k.starts_with(RESTRICTED_LABEL_PREFIX))
        .collect()
}

/// Check a create (`old` None) or update of `obj` by `user`.
pub fn admit(
    rt: &ResourceType,
    obj: &Value,
    old: Option<&Value>,
    user: &UserInfo,
) -> Result<(), ApiError> {
    let Some(node) = node_name(user) else {
        return Ok(());
    };
    let name = meta::name(obj);
    if is(rt, "", "nodes") {
        if name != node {
            return Err(forbidden(
                rt,
                name,
                &format!("node {node:?} is not allowed to modify node {name:?}"),
            ));
        }
        let now = restricted_labels(obj);
        let before = old.map(restricted_labels).unwrap_or_default();
        if now != before {
            let mut keys: Vec<&str> = now
                .iter()
                .chain(before.iter())
                .filter(|l| !(now.contains(l) && before.contains(l)))
                .map(|(k, _)| *k)
                .collect();
            keys.sort();
            keys.dedup();
            return Err(forbidden(
                rt,
                name,
                &format!("is not allowed to modify labels: {}", keys.join(", ")),
            ));
        }
        return Ok(());
    }
    if is(rt, "coordination.k8s.io", "leases") && meta::namespace(obj) == NODE_LEASE_NAMESPACE {
        if name != node {
            return Err(forbidden(
                rt,
                name,
                "can only access node lease with the same name as the requesting node",
            ));
        }
        return Ok(());
    }
    if is(rt, "", "pods") {
        match old {
            None => {
                let mirror = obj
                    .pointer("/metadata/annotations")
                    .and_then(|a| a.get(MIRROR_ANNOTATION))
                    .is_some();
                if !mirror {
                    return Err(forbidden(
                        rt,
                        name,
                        &format!("pod does not have {MIRROR_ANNOTATION:?} annotation, node {node:?} can only create mirror pods"),
                    ));
                }
                if pod_node(obj) != node {
                    return Err(forbidden(
                        rt,
                        name,
                        &format!(
                            "node {node:?} can only create pods with spec.nodeName set to itself"
                        ),
                    ));
                }
            }
            Some(old) => {
                if pod_node(old) != node {
                    return Err(forbidden(
                        rt,
                        name,
                        &format!("node {node:?} can only update pod status for pods with spec.nodeName set to itself"),
                    ));
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use keelson_resources::find;
    use serde_json::json;

    fn node(name: &str) -> UserInfo {
        UserInfo {
            name: format!("system:node:{name}"),
            uid: String::new(),
            groups: vec!["system:nodes".into()],
        }
    }

    #[test]
    fn nodes_touch_only_their_own() {
        let nodes = find("", "nodes").unwrap();
        let mine = json!({"metadata": {"name": "n1"}});
        assert!(admit(nodes, &mine, None, &node("n1")).is_ok());
        let e = admit(nodes, &mine, None, &node("n2")).unwrap_err();
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            r#"nodes "n1" is forbidden: node "n2" is not allowed to modify node "n1""#
        );
        let labelled = json!({"metadata": {"name": "n1", "labels": {"node-restriction.kubernetes.io/pool": "a"}}});
        assert_eq!(
            admit(nodes, &labelled, Some(&mine), &node("n1"))
                .unwrap_err()
                .code,
            403
        );
        let pods = find("", "pods").unwrap();
        let theirs = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n2"}});
        assert_eq!(
            admit(pods, &theirs, Some(&theirs), &node("n1"))
                .unwrap_err()
                .code,
            403
        );
        assert!(admit(pods, &theirs, Some(&theirs), &node("n2")).is_ok());
        // Only mirror pods are created by nodes.
        assert_eq!(
            admit(pods, &theirs, None, &node("n2")).unwrap_err().code,
            403
        );
        let leases = find("coordination.k8s.io", "leases").unwrap();
        let lease = json!({"metadata": {"name": "n2", "namespace": "kube-node-lease"}});
        assert!(admit(leases, &lease, None, &node("n1")).is_err());
        // Anyone else: not this plugin's business.
        let jane = UserInfo {
            name: "jane".into(),
            ..Default::default()
        };
        assert!(admit(nodes, &mine, None, &jane).is_ok());
    }
}
