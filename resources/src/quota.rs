//! ResourceQuota accounting, shared by the apiserver's ResourceQuota admission and the
//! controller-manager's quota controller so that both count the same way (Kubernetes'
//! quota evaluators):
//!
//! - [`counted_kind`]: which kind of object a quota resource name counts (`pods`,
//!   `requests.cpu` and `requests.example.com/gpu` count pods, `services.nodeports`
//!   services, `count/replicasets.apps` ReplicaSets, ...);
//! - [`usage`]: what one object uses of every resource name it counts toward;
//! - [`matches_scopes`]: whether a quota's scopes (Terminating, BestEffort,
//!   PriorityClass, ...) select an object; only pods can match a scoped quota;
//! - [`pod_constraints`]: a quota on cpu or memory requires every container to state it;
//! - resource-list arithmetic on [`Quantity`] and Kubernetes' `k=v,...` rendering.

use crate::podspec::{items, qos_class, str_at};
use crate::quantity::{Format, Quantity};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// A resource list (`hard`, `used`), ordered by name.
pub type ResourceList = BTreeMap<String, Quantity>;

const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";
/// Resources of this prefix are counted under their own name and `requests.`/`limits.`.
const HUGEPAGES: &str = "hugepages-";

/// `helper.IsExtendedResourceName`: a qualified name outside `kubernetes.io` that is
/// not itself a `requests.` name.
pub fn is_extended_resource(name: &str) -> bool {
    let native = !name.contains('/') || name.contains("kubernetes.io/");
    !native
        && !name.starts_with("requests.")
        && keelson_apimachinery::validation::qualified_name(&format!("requests.{name}")).is_empty()
}

/// The kind whose objects the quota resource `name` counts, as (group, plural).
pub fn counted_kind(name: &str) -> Option<(String, String)> {
    let core = |plural: &str| Some((String::new(), plural.to_string()));
    if let Some(counted) = name.strip_prefix("count/") {
        return match counted.split_once('.') {
            Some((plural, group)) => Some((group.to_string(), plural.to_string())),
            None => core(counted),
        };
    }
    if name.contains(STORAGE_CLASS_SUFFIX) {
        return core("persistentvolumeclaims");
    }
    match name {
        "pods"
        | "cpu"
        | "memory"
        | "ephemeral-storage"
        | "requests.cpu"
        | "requests.memory"
        | "requests.ephemeral-storage"
        | "limits.cpu"
        | "limits.memory"
        | "limits.ephemeral-storage" => core("pods"),
        "services" | "services.nodeports" | "services.loadbalancers" => core("services"),
        "persistentvolumeclaims" | "requests.storage" => core("persistentvolumeclaims"),
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => core(name),
        _ => {
            let unprefixed = name
                .strip_prefix("requests.")
                .or_else(|| name.strip_prefix("limits."))
                .unwrap_or(name);
            let extended = name
                .strip_prefix("requests.")
                .is_some_and(is_extended_resource);
            (unprefixed.starts_with(HUGEPAGES) || extended).then(|| core("pods"))?
        }
    }
}

/// The `count/` name of a kind: `count/pods`, `count/replicasets.apps`.
pub fn count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// What `obj`, of kind (group, plural), uses of each quota resource it counts toward.
/// `now_unix` decides whether a pod past its deletion grace period still counts.
pub fn usage(group: &str, plural: &str, obj: &Value, now_unix: i64) -> ResourceList {
    let mut used = ResourceList::new();
    let one = || Quantity::parse("1").expect("valid");
    used.insert(count_name(group, plural), one());
    if !group.is_empty() {
        return used;
    }
    match plural {
        "pods" if pod_counts(obj, now_unix) => {
            used.insert("pods".into(), one());
            pod_compute_usage(obj, &mut used);
        }
        "services" => {
            used.insert("services".into(), one());
            let spec = obj.get("spec").unwrap_or(&Value::Null);
            let ports = items(spec, "ports");
            let node_ports = |all: bool| {
                let n = ports
                    .iter()
                    .filter(|p| all || p.get("nodePort").and_then(Value::as_i64).unwrap_or(0) > 0)
                    .count();
                Quantity::parse(&n.to_string()).expect("valid")
            };
            match str_at(spec, "type") {
                "NodePort" => {
                    used.insert("services.nodeports".into(), node_ports(true));
                }
                "LoadBalancer" => {
                    let allocate = spec
                        .get("allocateLoadBalancerNodePorts")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    used.insert("services.nodeports".into(), node_ports(allocate));
                    used.insert("services.loadbalancers".into(), one());
                }
                _ => {}
            }
        }
        "persistentvolumeclaims" => {
            used.insert("persistentvolumeclaims".into(), one());
            let class = pvc_class(obj);
            if !class.is_empty() {
                used.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    one(),
                );
            }
            let requested = obj
                .pointer("/spec/resources/requests/storage")
                .and_then(|v| Quantity::from_json(v).ok());
            let allocated = obj
                .pointer("/status/allocatedResources/storage")
                .and_then(|v| Quantity::from_json(v).ok());
            if let Some(storage) = requested.into_iter().chain(allocated).max() {
                if !class.is_empty() {
                    used.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                        storage,
                    );
                }
                used.insert("requests.storage".into(), storage);
            }
        }
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => {
            used.insert(plural.into(), one());
        }
        _ => {}
    }
    used
}

fn pvc_class(pvc: &Value) -> String {
    let class = pvc
        .pointer("/spec/storageClassName")
        .and_then(Value::as_str)
        .or_else(|| {
            pvc.pointer("/metadata/annotations/volume.beta.kubernetes.io~1storage-class")
                .and_then(Value::as_str)
        });
    class.unwrap_or("").to_string()
}

/// `QuotaV1Pod`: finished pods, and pods past their deletion grace period (say on a lost
/// node), no longer count.
fn pod_counts(pod: &Value, now_unix: i64) -> bool {
    let phase = pod.pointer("/status/phase").and_then(Value::as_str);
    if matches!(phase, Some("Succeeded" | "Failed")) {
        return false;
    }
    let deleted = pod
        .pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let grace = pod
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    match (deleted, grace) {
        (Some(at), Some(grace)) => now_unix <= at.timestamp() + grace,
        _ => true,
    }
}

/// The sum of two quantities, in the format of the first.
pub fn add(a: &Quantity, b: &Quantity) -> Quantity {
    from_milli(a.milli_value() + b.milli_value(), a.format)
}

/// `a - b`, in the format of `a`.
pub fn sub(a: &Quantity, b: &Quantity) -> Quantity {
    from_milli(a.milli_value() - b.milli_value(), a.format)
}

fn from_milli(milli: i128, format: Format) -> Quantity {
    let mut q = Quantity::parse(&format!("{milli}m")).unwrap_or_else(|_| Quantity::zero());
    q.format = format;
    q
}

/// `a += b`, resource by resource.
pub fn add_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        let sum = match a.get(k) {
            Some(have) => add(have, v),
            None => *v,
        };
        a.insert(k.clone(), sum);
    }
}

fn max_into(a: &mut ResourceList, b: &ResourceList) {
    for (k, v) in b {
        if a.get(k).is_none_or(|have| v > have) {
            a.insert(k.clone(), *v);
        }
    }
}

/// A resource list from JSON (`spec.hard`, `status.used`); unparsable entries are skipped.
pub fn list_from_json(v: Option<&Value>) -> ResourceList {
    v.and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::from_json(v).ok()?)))
        .collect()
}

pub fn list_to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.canonical())))
            .collect::<Map<String, Value>>(),
    )
}

/// Kubernetes' `prettyPrint`: `cpu=1,pods=2`, sorted by name.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={}", v.canonical()))
        .collect::<Vec<_>>()
        .join(",")
}

/// The pod's effective requests or limits (`resourcehelper.PodRequests`): the sum of
/// its containers, at least the largest init container (restartable "sidecar" init
/// containers run alongside, so they add up), plus the pod overhead.
pub fn pod_resources(spec: &Value, which: &str) -> ResourceList {
    let of = |c: &Value| list_from_json(c.get("resources").and_then(|r| r.get(which)));
    let mut total = ResourceList::new();
    for c in items(spec, "containers") {
        add_into(&mut total, &of(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in items(spec, "initContainers") {
        let mut need = of(c);
        if str_at(c, "restartPolicy") == "Always" {
            add_into(&mut total, &need);
            add_into(&mut sidecars, &need);
            need = sidecars.clone();
        } else {
            add_into(&mut need, &sidecars);
        }
        max_into(&mut init_max, &need);
    }
    max_into(&mut total, &init_max);
    if !total.is_empty() || spec.get("overhead").is_some() {
        add_into(&mut total, &list_from_json(spec.get("overhead")));
    }
    total
}

/// `podComputeUsageHelper`: requests count as `<r>` and `requests.<r>`, limits as
/// `limits.<r>`, extended resources only as `requests.<r>`.
fn pod_compute_usage(pod: &Value, used: &mut ResourceList) {
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let requests = pod_resources(spec, "requests");
    let limits = pod_resources(spec, "limits");
    compute_usage(&requests, &limits, used);
}

fn compute_usage(requests: &ResourceList, limits: &ResourceList, used: &mut ResourceList) {
    for r in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(q) = requests.get(r) {
            used.insert(r.into(), *q);
            used.insert(format!("requests.{r}"), *q);
        }
        if let Some(q) = limits.get(r) {
            used.insert(format!("limits.{r}"), *q);
        }
    }
    for (r, q) in requests {
        if r.starts_with(HUGEPAGES) {
            used.insert(r.clone(), *q);
            used.insert(format!("requests.{r}"), *q);
        }
        if is_extended_resource(r) {
            used.insert(format!("requests.{r}"), *q);
        }
    }
    for (r, q) in limits {
        if r.starts_with(HUGEPAGES) {
            used.insert(format!("limits.{r}"), *q);
        }
    }
}

/// The quota's scope requirements: `spec.scopes` (as Exists) and
/// `spec.scopeSelector.matchExpressions`, as (scope, operator, values).
fn scope_requirements(quota: &Value) -> Vec<(String, String, Vec<String>)> {
    let spec = quota.get("spec").unwrap_or(&Value::Null);
    let mut out: Vec<(String, String, Vec<String>)> = items(spec, "scopes")
        .iter()
        .filter_map(Value::as_str)
        .map(|s| (s.to_string(), "Exists".to_string(), Vec::new()))
        .collect();
    let expressions = spec
        .get("scopeSelector")
        .map(|s| items(s, "matchExpressions"))
        .unwrap_or(&[]);
    for e in expressions {
        let values = items(e, "values")
            .iter()
            .filter_map(Value::as_str)
            .map(String::from)
            .collect();
        out.push((
            str_at(e, "scopeName").to_string(),
            str_at(e, "operator").to_string(),
            values,
        ));
    }
    out
}

/// Whether the quota's scopes select `obj` (every object, when it has none).
pub fn matches_scopes(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let requirements = scope_requirements(quota);
    if requirements.is_empty() {
        return true;
    }
    if !(group.is_empty() && plural == "pods") {
        return false;
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    requirements.iter().all(|(scope, op, values)| {
        let has = |key: &str| spec.get(key).is_some_and(|v| !v.is_null());
        match scope.as_str() {
            "Terminating" => spec
                .get("activeDeadlineSeconds")
                .and_then(Value::as_i64)
                .is_some_and(|s| s >= 0),
            "NotTerminating" => !has("activeDeadlineSeconds"),
            "BestEffort" => qos_class(spec) == "BestEffort",
            "NotBestEffort" => qos_class(spec) != "BestEffort",
            "PriorityClass" => {
                let class = str_at(spec, "priorityClassName");
                match op.as_str() {
                    "Exists" => !class.is_empty(),
                    "In" => values.iter().any(|v| v == class),
                    "NotIn" => !values.iter().any(|v| v == class),
                    // The class is always "set" (possibly to ""), as Kubernetes sees it.
                    _ => false,
                }
            }
            "CrossNamespacePodAffinity" => cross_namespace_affinity(spec),
            _ => false,
        }
    })
}

fn cross_namespace_affinity(spec: &Value) -> bool {
    let Some(affinity) = spec.get("affinity") else {
        return false;
    };
    let crosses = |term: &Value| {
        !items(term, "namespaces").is_empty() || term.get("namespaceSelector").is_some()
    };
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        let Some(a) = affinity.get(*kind) else {
            return false;
        };
        items(a, "requiredDuringSchedulingIgnoredDuringExecution")
            .iter()
            .any(crosses)
            || items(a, "preferredDuringSchedulingIgnoredDuringExecution")
                .iter()
                .filter_map(|w| w.get("podAffinityTerm"))
                .any(crosses)
    })
}

/// The pod evaluator's `Constraints`: when a quota limits cpu or memory (requests or
/// limits), every container must set it. `Err` carries Kubernetes' message
/// (`must specify limits.cpu for: app; memory for: app,sidecar`).
pub fn pod_constraints(limited: &[&str], pod: &Value) -> Result<(), String> {
    const VALIDATED: [&str; 6] = [
        "cpu",
        "memory",
        "requests.cpu",
        "requests.memory",
        "limits.cpu",
        "limits.memory",
    ];
    let required: Vec<&str> = VALIDATED
        .into_iter()
        .filter(|r| limited.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let spec = pod.get("spec").unwrap_or(&Value::Null);
    let mut missing: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for c in items(spec, "containers")
        .iter()
        .chain(items(spec, "initContainers"))
    {
        let resources = c.get("resources");
        let mut set = ResourceList::new();
        compute_usage(
            &list_from_json(resources.and_then(|r| r.get("requests"))),
            &list_from_json(resources.and_then(|r| r.get("limits"))),
            &mut set,
        );
        for r in &required {
            if !set.contains_key(*r) {
                missing
                    .entry(r)
                    .or_default()
                    .push(str_at(c, "name").to_string());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .into_iter()
        .map(|(r, mut names)| {
            names.sort();
            names.dedup();
            format!("{r} for: {}", names.join(","))
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).unwrap()
    }

    #[test]
    fn resource_names_map_to_kinds() {
        let kind = |n: &str| counted_kind(n).map(|(g, p)| format!("{g}/{p}"));
        assert_eq!(kind("pods").as_deref(), Some("/pods"));
        assert_eq!(kind("requests.cpu").as_deref(), Some("/pods"));
        assert_eq!(
            kind("requests.example.com/dongle").as_deref(),
            Some("/pods")
        );
        assert_eq!(kind("hugepages-2Mi").as_deref(), Some("/pods"));
        assert_eq!(kind("services.nodeports").as_deref(), Some("/services"));
        assert_eq!(
            kind("requests.storage").as_deref(),
            Some("/persistentvolumeclaims")
        );
        assert_eq!(
            kind("gold.storageclass.storage.k8s.io/requests.storage").as_deref(),
            Some("/persistentvolumeclaims")
        );
        assert_eq!(
            kind("count/replicasets.apps").as_deref(),
            Some("apps/replicasets")
        );
        assert_eq!(kind("count/configmaps").as_deref(), Some("/configmaps"));
        assert_eq!(kind("secrets").as_deref(), Some("/secrets"));
        assert_eq!(kind("example.com/dongle"), None);
    }

    #[test]
    fn pod_usage_sums_containers_and_init_containers() {
        let pod = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "250m", "memory": "1Gi", "example.com/dongle": "2"},
                                            "limits": {"cpu": "500m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}]}});
        let u = usage("", "pods", &pod, 0);
        assert_eq!(u["pods"], q("1"));
        assert_eq!(u["count/pods"], q("1"));
        assert_eq!(u["requests.cpu"], q("2"));
        assert_eq!(u["cpu"], q("2"));
        assert_eq!(u["requests.memory"].canonical(), "1536Mi");
        assert_eq!(u["limits.cpu"], q("500m"));
        assert_eq!(u["requests.example.com/dongle"], q("2"));
        assert!(!u.contains_key("limits.memory"));

        let done = json!({"spec": {}, "status": {"phase": "Succeeded"}});
        let u = usage("", "pods", &done, 0);
        assert!(!u.contains_key("pods"));
        assert_eq!(u["count/pods"], q("1"));
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let np = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 81}]}});
        let u = usage("", "services", &np, 0);
        assert_eq!((u["services"], u["services.nodeports"]), (q("1"), q("2")));
        let lb = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
        let u = usage("", "services", &lb, 0);
        assert_eq!(u["services.loadbalancers"], q("1"));
        assert_eq!(u["services.nodeports"], q("1"));
        let rs = usage("apps", "replicasets", &json!({}), 0);
        assert_eq!(rs.keys().collect::<Vec<_>>(), ["count/replicasets.apps"]);
    }

    #[test]
    fn scopes_select_pods() {
        let quota = json!({"spec": {"scopes": ["BestEffort"]}});
        let best_effort = json!({"spec": {"containers": [{"name": "a"}]}});
        let burstable = json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}});
        assert!(matches_scopes(&quota, "", "pods", &best_effort));
        assert!(!matches_scopes(&quota, "", "pods", &burstable));
        assert!(!matches_scopes(&quota, "", "services", &json!({})));
        let by_class = json!({"spec": {"scopeSelector": {"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["gold"]}]}}});
        let gold = json!({"spec": {"priorityClassName": "gold"}});
        assert!(matches_scopes(&by_class, "", "pods", &gold));
        assert!(!matches_scopes(&by_class, "", "pods", &best_effort));
        assert!(matches_scopes(
            &json!({"spec": {}}),
            "",
            "services",
            &json!({})
        ));
    }

    #[test]
    fn constraints_name_containers_missing_a_limited_resource() {
        let pod = json!({"spec": {"containers": [
            {"name": "app", "resources": {"requests": {"cpu": "1"}}},
            {"name": "side", "resources": {"requests": {"cpu": "1"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}});
        assert_eq!(
            pod_constraints(&["limits.cpu", "pods"], &pod),
            Err("must specify limits.cpu for: app".to_string())
        );
        assert_eq!(
            pod_constraints(&["memory", "limits.cpu"], &pod),
            Err("must specify limits.cpu for: app; memory for: app,side".to_string())
        );
        assert!(pod_constraints(&["pods", "requests.cpu"], &pod).is_ok());
    }

    #[test]
    fn arithmetic_keeps_the_first_format() {
        assert_eq!(add(&q("1Gi"), &q("512Mi")).canonical(), "1536Mi");
        assert_eq!(add(&q("500m"), &q("500m")).canonical(), "1");
        assert_eq!(sub(&q("2"), &q("1")).canonical(), "1");
        let mut l = list_from_json(Some(&json!({"pods": "2", "cpu": "1"})));
        add_into(&mut l, &list_from_json(Some(&json!({"pods": 1}))));
        assert_eq!(pretty(&l), "cpu=1,pods=3");
    }
}
