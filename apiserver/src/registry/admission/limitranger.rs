//! LimitRanger admission, as Kubernetes' plugin: defaults for new pods' containers from
//! the namespace's LimitRanges (`type: Container`, `default` → limits, `defaultRequest`
//! → requests, noted in the `kubernetes.io/limit-ranger` annotation), then min, max and
//! maxLimitRequestRatio checks per Container, per Pod, and per PersistentVolumeClaim.
//! Messages are Kubernetes' (`minimum cpu usage per Container is 100m, but request is
//! 50m`).

use keelson_resources::podspec::{items, str_at};
use keelson_resources::quantity::Quantity;
use keelson_resources::quota::{list_from_json, pod_resources, ResourceList};
use keelson_resources::ResourceType;
use serde_json::{json, Map, Value};
use std::sync::Arc;

const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The LimitRange items of `type` across `ranges`, in order.
fn limits_of<'a>(ranges: &'a [Arc<Value>], type_: &'a str) -> impl Iterator<Item = &'a Value> {
    ranges
        .iter()
        .flat_map(|r| items(r.get("spec").unwrap_or(&Value::Null), "limits"))
        .filter(move |l| str_at(l, "type") == type_)
}

/// Fill each container's missing requests and limits from the Container defaults.
/// A request the pod will default from its limit counts as set, as Kubernetes applies
/// that default before admission.
pub fn default_pod(ranges: &[Arc<Value>], pod: &mut Value) {
    let mut requests = Map::new();
    let mut limits = Map::new();
    for l in limits_of(ranges, "Container") {
        for (list, key) in [(&mut requests, "defaultRequest"), (&mut limits, "default")] {
            for (k, v) in l.get(key).and_then(Value::as_object).into_iter().flatten() {
                list.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return;
    }
    let mut notes: Vec<String> = Vec::new();
    let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, what) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = spec.get_mut(field).and_then(Value::as_array_mut) else {
            continue;
        };
        for c in containers.iter_mut().filter_map(Value::as_object_mut) {
            let name = c
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let resources = c.entry("resources").or_insert_with(|| json!({}));
            if !resources.is_object() {
                *resources = json!({});
            }
            let res = resources.as_object_mut().expect("object");
            let has_limit = |res: &Map<String, Value>, k: &str| {
                res.get("limits").and_then(|l| l.get(k)).is_some()
            };
            let mut set_limits: Vec<&str> = Vec::new();
            let mut set_requests: Vec<&str> = Vec::new();
            for (k, v) in &limits {
                if !has_limit(res, k) {
                    entry_map(res, "limits").insert(k.clone(), v.clone());
                    set_limits.push(k);
                }
            }
            for (k, v) in &requests {
                let has = res.get("requests").and_then(|r| r.get(k)).is_some();
                // A limit the user set becomes the request by defaulting.
                let user_limit = has_limit(res, k) && !set_limits.contains(&k.as_str());
                if !has && !user_limit {
                    entry_map(res, "requests").insert(k.clone(), v.clone());
                    set_requests.push(k);
                }
            }
            set_requests.sort();
            set_limits.sort();
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {what} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!("{} limit for {what} {name}", set_limits.join(", ")));
            }
        }
    }
    if notes.is_empty() {
        return;
    }
    let meta = keelson_apimachinery::meta::metadata_mut(pod);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations.as_object_mut().expect("object").insert(
        ANNOTATION.into(),
        json!(format!("LimitRanger plugin set: {}", notes.join("; "))),
    );
}

fn entry_map<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let v = m.entry(key).or_insert_with(|| json!({}));
    if !v.is_object() {
        *v = json!({});
    }
    v.as_object_mut().expect("object")
}

/// Check a pod or a PersistentVolumeClaim against every LimitRange. `Err` is the
/// message after `... is forbidden: ` (one error as is, several as `[a, b]`).
pub fn validate(rt: &ResourceType, ranges: &[Arc<Value>], obj: &Value) -> Result<(), String> {
    let mut errs: Vec<String> = Vec::new();
    if rt.plural == "pods" {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        for l in limits_of(ranges, "Container") {
            for c in items(spec, "containers")
                .iter()
                .chain(items(spec, "initContainers"))
            {
                let res = c.get("resources");
                let requests = list_from_json(res.and_then(|r| r.get("requests")));
                let limits = list_from_json(res.and_then(|r| r.get("limits")));
                check_item(l, "Container", &requests, &limits, &mut errs);
            }
        }
        for l in limits_of(ranges, "Pod") {
            let requests = pod_resources(spec, "requests");
            let limits = pod_resources(spec, "limits");
            check_item(l, "Pod", &requests, &limits, &mut errs);
        }
    } else if rt.plural == "persistentvolumeclaims" {
        let requests = list_from_json(obj.pointer("/spec/resources/requests"));
        for l in limits_of(ranges, "PersistentVolumeClaim") {
            for (k, min) in list_from_json(l.get("min")) {
                if let Some(e) = min_constraint(
                    "PersistentVolumeClaim",
                    &k,
                    &min,
                    &requests,
                    &ResourceList::new(),
                ) {
                    errs.push(e);
                }
            }
            for (k, max) in list_from_json(l.get("max")) {
                let kind = "PersistentVolumeClaim";
                match requests.get(&k) {
                    None => errs.push(format!(
                        "maximum {k} usage per {kind} is {max}.  No request is specified"
                    )),
                    Some(req) if req.milli_value() > max.milli_value() => errs.push(format!(
                        "maximum {k} usage per {kind} is {max}, but request is {req}"
                    )),
                    _ => {}
                }
            }
        }
    }
    let mut seen = std::collections::HashSet::new();
    errs.retain(|e| seen.insert(e.clone()));
    match errs.len() {
        0 => Ok(()),
        1 => Err(errs.remove(0)),
        _ => Err(format!("[{}]", errs.join(", "))),
    }
}

/// min, max and maxLimitRequestRatio of one LimitRange item.
fn check_item(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errs: &mut Vec<String>,
) {
    for (k, min) in list_from_json(item.get("min")) {
        errs.extend(min_constraint(kind, &k, &min, requests, limits));
    }
    for (k, max) in list_from_json(item.get("max")) {
        errs.extend(max_constraint(kind, &k, &max, requests, limits));
    }
    for (k, ratio) in list_from_json(item.get("maxLimitRequestRatio")) {
        errs.extend(ratio_constraint(kind, &k, &ratio, requests, limits));
    }
}

fn min_constraint(
    kind: &str,
    k: &str,
    min: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(req) = requests.get(k) else {
        return Some(format!(
            "minimum {k} usage per {kind} is {min}.  No request is specified"
        ));
    };
    if req.milli_value() < min.milli_value() {
        return Some(format!(
            "minimum {k} usage per {kind} is {min}, but request is {req}"
        ));
    }
    match limits.get(k) {
        Some(lim) if lim.milli_value() < min.milli_value() => Some(format!(
            "minimum {k} usage per {kind} is {min}, but limit is {lim}"
        )),
        _ => None,
    }
}

fn max_constraint(
    kind: &str,
    k: &str,
    max: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(lim) = limits.get(k) else {
        return Some(format!(
            "maximum {k} usage per {kind} is {max}.  No limit is specified"
        ));
    };
    if lim.milli_value() > max.milli_value() {
        return Some(format!(
            "maximum {k} usage per {kind} is {max}, but limit is {lim}"
        ));
    }
    match requests.get(k) {
        Some(req) if req.milli_value() > max.milli_value() => Some(format!(
            "maximum {k} usage per {kind} is {max}, but request is {req}"
        )),
        _ => None,
    }
}

fn ratio_constraint(
    kind: &str,
    k: &str,
    ratio: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let req = requests.get(k).map(Quantity::milli_value).unwrap_or(0);
    if req == 0 {
        return Some(format!("{k} max limit to request ratio per {kind} is {ratio}, but no request is specified or request is 0"));
    }
    let lim = limits.get(k).map(Quantity::milli_value).unwrap_or(0);
    if lim == 0 {
        return Some(format!("{k} max limit to request ratio per {kind} is {ratio}, but no limit is specified or limit is 0"));
    }
    let observed = lim as f64 / req as f64;
    (observed * 1000.0 > ratio.milli_value() as f64).then(|| {
        format!("{k} max limit to request ratio per {kind} is {ratio}, but provided ratio is {observed:.6}")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pods() -> &'static ResourceType {
        keelson_resources::find("", "pods").unwrap()
    }

    fn ranges(limits: Value) -> Vec<Arc<Value>> {
        vec![Arc::new(json!({"spec": {"limits": limits}}))]
    }

    #[test]
    fn defaults_fill_only_what_is_missing() {
        let r = ranges(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "500Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "200Mi"}}]));
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a"},
            {"name": "b", "resources": {"limits": {"cpu": "300m"}}}]}});
        default_pod(&r, &mut pod);
        let a = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(a["requests"], json!({"cpu": "100m", "memory": "200Mi"}));
        assert_eq!(a["limits"], json!({"cpu": "500m", "memory": "500Mi"}));
        let b = &pod["spec"]["containers"][1]["resources"];
        assert_eq!(b["limits"], json!({"cpu": "300m", "memory": "500Mi"}));
        // cpu's request will default from the limit the user set.
        assert_eq!(b["requests"], json!({"memory": "200Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu, memory request for container a; cpu, memory limit for container a; memory request for container b; memory limit for container b"
        );
    }

    #[test]
    fn min_max_and_ratio_use_kubernetes_messages() {
        let r = ranges(json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"}}]));
        let pod = |req: &str, lim: &str| {
            json!({"spec": {"containers": [{"name": "a", "resources": {
                "requests": {"cpu": req}, "limits": {"cpu": lim}}}]}})
        };
        assert_eq!(
            validate(pods(), &r, &pod("50m", "500m")).unwrap_err(),
            "minimum cpu usage per Container is 100m, but request is 50m"
        );
        assert_eq!(
            validate(pods(), &r, &pod("500m", "2")).unwrap_err(),
            "maximum cpu usage per Container is 1, but limit is 2"
        );
        assert!(validate(pods(), &r, &pod("100m", "1")).is_ok());
        let no_limit = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "50m"}}}]}});
        assert_eq!(
            validate(pods(), &r, &no_limit).unwrap_err(),
            "[minimum cpu usage per Container is 100m, but request is 50m, maximum cpu usage per Container is 1.  No limit is specified]"
        );
        let ratio = ranges(json!([{"type": "Container", "maxLimitRequestRatio": {"cpu": "2"}}]));
        assert_eq!(
            validate(pods(), &ratio, &pod("100m", "300m")).unwrap_err(),
            "cpu max limit to request ratio per Container is 2, but provided ratio is 3.000000"
        );
        let pvcs = keelson_resources::find("", "persistentvolumeclaims").unwrap();
        let storage = ranges(json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}}]));
        let pvc = json!({"spec": {"resources": {"requests": {"storage": "500Mi"}}}});
        assert_eq!(
            validate(pvcs, &storage, &pvc).unwrap_err(),
            "minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"
        );
    }
}
