//! The RuntimeClass admission plugin: a new pod that names a class in
//! `spec.runtimeClassName` gets the class's `overhead.podFixed` as `spec.overhead` and
//! its `scheduling` (node selector merged, tolerations added), as kube-apiserver's
//! plugin does; a class that does not exist, an overhead that disagrees with the
//! class's, or a node selector that contradicts it refuses the pod (403).
//!
//! Only pod creates that name a class pay for a lookup, so the class is read from etcd
//! then (Kubernetes reads its informer and falls back to a live get on a miss).

use super::forbidden;
use crate::registry::decode_kv;
use crate::storage::Storage;
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::kinds::runtimeclasses;
use keelson_resources::podspec::parse_quantity;
use keelson_resources::ResourceType;
use serde_json::{Map, Value};

/// The class a pod names, read from etcd: `Ok(None)` when it names none.
pub async fn class_of(
    storage: &Storage,
    rt: &ResourceType,
    pod: &Value,
) -> Result<Option<Value>, ApiError> {
    let Some(name) = pod
        .pointer("/spec/runtimeClassName")
        .and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let key = format!("{}/{name}", runtimeclasses::RESOURCE.key_prefix());
    let kv = storage
        .get(&key)
        .await
        .map_err(|e| forbidden(rt, meta::name(pod), &e.to_string()))?;
    match kv.map(|kv| decode_kv(&kv)) {
        Some(Ok(class)) => Ok(Some(class)),
        Some(Err(e)) => Err(e),
        None => Err(forbidden(
            rt,
            meta::name(pod),
            &format!("pod rejected: RuntimeClass {name:?} not found"),
        )),
    }
}

/// Mutating: the class's overhead and scheduling onto the pod.
pub fn admit(rt: &ResourceType, class: &Value, pod: &mut Value) -> Result<(), ApiError> {
    let name = meta::name(pod).to_string();
    let refuse = |msg: String| forbidden(rt, &name, &msg);
    if let Some(fixed) = class.pointer("/overhead/podFixed") {
        match pod.pointer("/spec/overhead") {
            Some(set) if !set.is_null() && !same_resources(set, fixed) => {
                return Err(refuse(OVERHEAD_MISMATCH.into()));
            }
            _ => {}
        }
        if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
            spec.insert("overhead".into(), fixed.clone());
        }
    }
    let Some(scheduling) = class.get("scheduling") else {
        return Ok(());
    };
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    if let Some(wanted) = scheduling.get("nodeSelector").and_then(Value::as_object) {
        let selector = spec
            .entry("nodeSelector")
            .or_insert_with(|| Value::Object(Map::new()));
        if !selector.is_object() {
            *selector = Value::Object(Map::new());
        }
        let selector = selector.as_object_mut().expect("made an object above");
        for (key, value) in wanted {
            match selector.get(key) {
                Some(have) if have != value => {
                    return Err(refuse(format!(
                        "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {}; pod.spec.nodeSelector[{key}] = {}",
                        value.as_str().unwrap_or_default(),
                        have.as_str().unwrap_or_default()
                    )));
                }
                _ => {
                    selector.insert(key.clone(), value.clone());
                }
            }
        }
    }
    if let Some(extra) = scheduling.get("tolerations").and_then(Value::as_array) {
        let list = spec
            .entry("tolerations")
            .or_insert_with(|| Value::Array(Vec::new()));
        if !list.is_array() {
            *list = Value::Array(Vec::new());
        }
        let list = list.as_array_mut().expect("made an array above");
        for t in extra {
            if !list.iter().any(|have| covers(have, t)) {
                list.push(t.clone());
            }
        }
    }
    Ok(())
}

const OVERHEAD_MISMATCH: &str =
    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead";

/// Validating: the pod's overhead is exactly its class's (or absent with no class
/// overhead), whatever mutating admission after this plugin did.
pub fn validate(rt: &ResourceType, class: Option<&Value>, pod: &Value) -> Result<(), ApiError> {
    let set = pod.pointer("/spec/overhead").filter(|o| !o.is_null());
    let fixed = class.and_then(|c| c.pointer("/overhead/podFixed"));
    let msg = match (fixed, set) {
        (Some(fixed), Some(set)) if same_resources(fixed, set) => return Ok(()),
        (Some(_), _) => OVERHEAD_MISMATCH,
        (None, Some(_)) => {
            "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
        }
        (None, None) => return Ok(()),
    };
    Err(forbidden(rt, meta::name(pod), msg))
}

/// Two resource lists with the same names and quantities (`1` equals `1000m`).
fn same_resources(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return false;
    };
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k).is_some_and(|w| {
                parse_quantity(v).is_some() && parse_quantity(v) == parse_quantity(w)
            })
        })
}

/// Whether toleration `have` already tolerates everything `t` does (Kubernetes'
/// `isSuperset`), so merging `t` would add nothing.
fn covers(have: &Value, t: &Value) -> bool {
    let s = |v: &Value, f: &str| v.get(f).and_then(Value::as_str).unwrap_or("").to_string();
    let op = |v: &Value| match s(v, "operator").as_str() {
        "" => "Equal".to_string(),
        o => o.to_string(),
    };
    let key_ok =
        s(have, "key") == s(t, "key") || (s(have, "key").is_empty() && op(have) == "Exists");
    let effect_ok = s(have, "effect").is_empty() || s(have, "effect") == s(t, "effect");
    let value_ok = op(have) == "Exists" || (op(t) == "Equal" && s(have, "value") == s(t, "value"));
    let secs = |v: &Value| v.get("tolerationSeconds").and_then(Value::as_i64);
    let seconds_ok = match (secs(have), secs(t)) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(h), Some(n)) => h >= n,
    };
    key_ok && effect_ok && value_ok && seconds_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceType {
        keelson_resources::find("", "pods").unwrap()
    }

    #[test]
    fn overhead_and_scheduling_are_added() {
        let class = json!({
            "handler": "runc",
            "overhead": {"podFixed": {"cpu": "250m"}},
            "scheduling": {
                "nodeSelector": {"sandbox": "yes"},
                "tolerations": [{"key": "sandbox", "operator": "Exists", "effect": "NoSchedule"}]
            }
        });
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {
            "nodeSelector": {"zone": "a"},
            "tolerations": [{"key": "other", "operator": "Exists"}]
        }});
        admit(pods(), &class, &mut pod).unwrap();
        assert_eq!(pod["spec"]["overhead"], json!({"cpu": "250m"}));
        assert_eq!(
            pod["spec"]["nodeSelector"],
            json!({"zone": "a", "sandbox": "yes"})
        );
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
        // A second admission adds nothing: the toleration is already covered.
        admit(pods(), &class, &mut pod).unwrap();
        assert_eq!(pod["spec"]["tolerations"].as_array().unwrap().len(), 2);
        validate(pods(), Some(&class), &pod).unwrap();
    }

    #[test]
    fn conflicts_and_mismatches_are_refused() {
        let class = json!({"overhead": {"podFixed": {"cpu": "1"}},
            "scheduling": {"nodeSelector": {"zone": "b"}}});
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"overhead": {"cpu": "1000m"}}});
        // 1000m is 1: the same overhead is no mismatch.
        admit(
            pods(),
            &json!({"overhead": {"podFixed": {"cpu": "1"}}}),
            &mut pod,
        )
        .unwrap();
        let mut other = json!({"metadata": {"name": "p"}, "spec": {"overhead": {"cpu": "2"}}});
        let e = admit(pods(), &class, &mut other).unwrap_err();
        assert_eq!(e.code, 403);
        assert!(
            e.message.contains("Overhead doesn't match"),
            "{}",
            e.message
        );
        let mut conflicting =
            json!({"metadata": {"name": "p"}, "spec": {"nodeSelector": {"zone": "a"}}});
        let e = admit(pods(), &class, &mut conflicting).unwrap_err();
        assert!(
            e.message.contains(
                "conflict: runtimeClass.scheduling.nodeSelector[zone] = b; pod.spec.nodeSelector[zone] = a"
            ),
            "{}",
            e.message
        );
        let e = validate(
            pods(),
            None,
            &json!({"metadata": {"name": "p"}, "spec": {"overhead": {"cpu": "1"}}}),
        )
        .unwrap_err();
        assert!(
            e.message.contains("without corresponding RuntimeClass"),
            "{}",
            e.message
        );
    }

    #[test]
    fn tolerations_cover_as_kubernetes_decides() {
        let exists_all = json!({"operator": "Exists"});
        let t = json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"});
        assert!(covers(&exists_all, &t));
        assert!(covers(&t, &t));
        assert!(!covers(&json!({"key": "k", "value": "w"}), &t));
        assert!(!covers(
            &json!({"key": "k", "operator": "Exists", "effect": "NoExecute"}),
            &t
        ));
        let timed = |s: i64| json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s});
        assert!(covers(&timed(60), &timed(30)));
        assert!(!covers(&timed(30), &timed(60)));
    }
}
