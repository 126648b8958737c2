//! core/v1 Pod.
//!
//! Besides the pod spec defaults every template gets ([`crate::podspec`]), a pod gets
//! what Kubernetes adds only to real pods: `SetDefaults_Pod` (requests from limits,
//! `enableServiceLinks`, host ports), and what the default admission plugins add on
//! create: the `default` service account, the not-ready/unreachable tolerations
//! (`DefaultTolerationSeconds`) and the priority of the built-in priority classes.

use crate::podspec::{
    self, default_field, ensure_object, invalid_shown, items, qos_class, str_at, SpecOptions,
};
use crate::strategy::Strategy;
use crate::table::{age_cell, age_of, name_cell, Column, TableRow};
use crate::{ResourceType, Root, Subresource, Typed};
use chrono::{DateTime, FixedOffset};
use keelson_apimachinery::Cause;
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    namespaced: true,
    short_names: &["po"],
    categories: &["all"],
    subresources: &[
        Subresource::Status,
        Subresource::Binding,
        Subresource::Log,
        Subresource::Exec,
        Subresource::Eviction,
        Subresource::Proxy,
    ],
    strategy: &Pods,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::Pod>()),
    merge: Some(Root::Pod),
};

struct Pods;

/// What `pod updates may not change fields other than ...` lists (Kubernetes 1.33:
/// resources change through the `resize` subresource, so they are not listed).
const UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

const NOT_READY_TAINT: &str = "node.kubernetes.io/not-ready";
const UNREACHABLE_TAINT: &str = "node.kubernetes.io/unreachable";
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Priorities of the built-in priority classes (`""` is no class).
fn builtin_priority(class: &str) -> Option<i64> {
    match class {
        "" => Some(0),
        "system-cluster-critical" => Some(2_000_000_000),
        "system-node-critical" => Some(2_000_001_000),
        _ => None,
    }
}

/// What the `ServiceAccount`, `DefaultTolerationSeconds` and `Priority` admission
/// plugins add to a pod.
fn admission_defaults(obj: &mut Value) {
    let mirror = obj
        .get("metadata")
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some();
    let spec = ensure_object(
        obj.as_object_mut()
            .expect("object")
            .entry("spec")
            .or_insert(Value::Null),
    );
    if !mirror
        && spec
            .get("serviceAccountName")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
    {
        spec.insert("serviceAccountName".into(), json!("default"));
        spec.insert("serviceAccount".into(), json!("default"));
    }

    let tolerations = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |taint: &str| {
        tolerations.iter().any(|t| {
            let key = str_at(t, "key");
            let effect = str_at(t, "effect");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut added = Vec::new();
    for taint in [NOT_READY_TAINT, UNREACHABLE_TAINT] {
        if !tolerates(taint) {
            added.push(json!({"key": taint, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
    if !added.is_empty() {
        let list = spec.entry("tolerations").or_insert(json!([]));
        if !list.is_array() {
            *list = json!([]);
        }
        list.as_array_mut().expect("array").extend(added);
    }

    let class = spec
        .get("priorityClassName")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if let Some(p) = builtin_priority(&class) {
        default_field(spec, "priority", json!(p));
        default_field(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
    }
}

impl Strategy for Pods {
    // Kubernetes' pod status strategy: old kubelets corrupted owner references
    // through /status, so it may not change them.
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        crate::strategy::keep_metadata_field(new, old, "ownerReferences");
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let spec = obj.get("spec").cloned().unwrap_or(Value::Null);
        let mut status = json!({"phase": "Pending", "qosClass": qos_class(&spec)});
        if !items(&spec, "schedulingGates").is_empty() {
            status["conditions"] = json!([{
                "type": "PodScheduled",
                "status": "False",
                "lastProbeTime": null,
                "lastTransitionTime": null,
                "reason": "SchedulingGated",
                "message": "Scheduling is blocked due to non-empty scheduling gates",
            }]);
        }
        if let Some(o) = obj.as_object_mut() {
            o.insert("status".into(), status);
        }
    }

    fn default(&self, obj: &mut Value) {
        let o = ensure_object(obj);
        let spec = o.entry("spec").or_insert(Value::Null);
        podspec::default_pod_spec(spec);
        podspec::default_pod_only(spec);
        admission_defaults(obj);
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let mut causes = Vec::new();
        if let Some(mirror) = obj
            .get("metadata")
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(MIRROR_ANNOTATION))
        {
            if str_at(spec, "nodeName").is_empty() {
                causes.push(Cause::invalid(
                    format!("metadata.annotations[{MIRROR_ANNOTATION}]"),
                    mirror,
                    "must set spec.nodeName if mirror pod annotation is set",
                ));
            }
        }
        causes.extend(podspec::validate_pod_spec(
            spec,
            "spec",
            &SpecOptions {
                is_pod: true,
                ..Default::default()
            },
        ));
        if str_at(spec, "serviceAccountName").is_empty() {
            for (vi, v) in items(spec, "volumes").iter().enumerate() {
                let sources = v.get("projected").map_or(&[][..], |p| items(p, "sources"));
                for (si, s) in sources.iter().enumerate() {
                    if s.get("serviceAccountToken").is_some_and(|t| !t.is_null()) {
                        causes.push(Cause::forbidden(
                            format!(
                                "spec.volumes[{vi}].projected.sources[{si}].serviceAccountToken"
                            ),
                            "must not be specified when serviceAccountName is not set",
                        ));
                    }
                }
            }
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        validate_pod_update(new, old)
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        let spec = obj.get("spec").unwrap_or(&Value::Null);
        let status = obj.get("status").unwrap_or(&Value::Null);
        let pod_ip = items(status, "podIPs")
            .first()
            .map(|ip| str_at(ip, "ip").to_string())
            .unwrap_or_default();
        vec![
            ("spec.nodeName", str_at(spec, "nodeName").to_string()),
            (
                "spec.restartPolicy",
                str_at(spec, "restartPolicy").to_string(),
            ),
            (
                "spec.schedulerName",
                str_at(spec, "schedulerName").to_string(),
            ),
            (
                "spec.serviceAccountName",
                str_at(spec, "serviceAccountName").to_string(),
            ),
            (
                "spec.hostNetwork",
                spec.get("hostNetwork")
                    .and_then(Value::as_bool)
                    .unwrap_or(false)
                    .to_string(),
            ),
            ("status.phase", str_at(status, "phase").to_string()),
            ("status.podIP", pod_ip),
            (
                "status.nominatedNodeName",
                str_at(status, "nominatedNodeName").to_string(),
            ),
        ]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ]
    }

    /// Pods on a node terminate gracefully; unscheduled or finished pods go at once.
    fn default_grace_period(&self, obj: &Value) -> Option<i64> {
        let spec = obj.get("spec")?;
        if str_at(spec, "nodeName").is_empty() {
            return None;
        }
        let phase = obj.get("status").map_or("", |s| str_at(s, "phase"));
        if phase == "Succeeded" || phase == "Failed" {
            return None;
        }
        let period = spec
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64)
            .unwrap_or(30);
        Some(if period < 0 { 1 } else { period })
    }

    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new("Ready", "string", "The aggregate readiness state of this pod for accepting traffic."),
            Column::new("Status", "string", "The aggregate status of the containers in this pod."),
            Column::new(
                "Restarts",
                "string",
                "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
            ),
            Column::age(),
            Column::new("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.").wide(),
            Column::new("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod.").wide(),
            Column::new("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods.").wide(),
            Column::new("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\"").wide(),
        ]
    }

    fn row(&self, obj: &Value) -> TableRow {
        pod_row(obj)
    }
}

// ------------------------------------------------------------------ update rules

fn validate_pod_update(new: &Value, old: &Value) -> Vec<Cause> {
    let mut causes = Vec::new();
    let null = Value::Null;
    let ns = new.get("spec").unwrap_or(&null);
    let os = old.get("spec").unwrap_or(&null);

    for list in ["containers", "initContainers"] {
        let (n, o) = (items(ns, list), items(os, list));
        if n.len() != o.len() {
            causes.push(Cause::forbidden(
                format!("spec.{list}"),
                "pod updates may not add or remove containers",
            ));
            return causes;
        }
        for (i, c) in n.iter().enumerate() {
            let image = str_at(c, "image");
            if image.is_empty() {
                causes.push(Cause::required(format!("spec.{list}[{i}].image")));
            }
        }
    }

    // activeDeadlineSeconds: set from nil, or lowered.
    match (
        ns.get("activeDeadlineSeconds").and_then(Value::as_i64),
        os.get("activeDeadlineSeconds").and_then(Value::as_i64),
    ) {
        (Some(n), old_ads) => {
            if !(0..=i32::MAX as i64).contains(&n) {
                causes.push(Cause::invalid(
                    "spec.activeDeadlineSeconds",
                    &json!(n),
                    "must be between 0 and 2147483647, inclusive",
                ));
                return causes;
            }
            if old_ads.is_some_and(|o| o < n) {
                causes.push(Cause::invalid(
                    "spec.activeDeadlineSeconds",
                    &json!(n),
                    "must be less than or equal to previous value",
                ));
                return causes;
            }
        }
        (None, Some(_)) => causes.push(invalid_shown(
            "spec.activeDeadlineSeconds",
            "null",
            "must not update from a positive integer to nil value",
        )),
        (None, None) => {}
    }

    // Tolerations: only additions (an existing one may change its tolerationSeconds).
    let new_tols = items(ns, "tolerations");
    let strip = |t: &Value| {
        let mut t = t.clone();
        if let Some(o) = t.as_object_mut() {
            o.remove("tolerationSeconds");
        }
        t
    };
    let all_kept = items(os, "tolerations")
        .iter()
        .all(|old_t| new_tols.iter().any(|new_t| strip(new_t) == strip(old_t)));
    if !all_kept {
        causes.push(Cause::forbidden(
            "spec.tolerations",
            "existing toleration can not be modified except its tolerationSeconds",
        ));
    } else {
        podspec::validate_tolerations(new_tols, "spec.tolerations", &mut causes);
    }

    // Scheduling gates: only removals.
    let old_gates: Vec<&str> = items(os, "schedulingGates")
        .iter()
        .map(|g| str_at(g, "name"))
        .collect();
    for (i, g) in items(ns, "schedulingGates").iter().enumerate() {
        let name = str_at(g, "name");
        if !old_gates.contains(&name) {
            causes.push(Cause::forbidden(
                format!("spec.schedulingGates[{i}].name"),
                format!("only deletion is allowed, but found new scheduling gate '{name}'"),
            ));
        }
    }

    if ns == os {
        return causes;
    }

    let old_qos = old
        .get("status")
        .and_then(|s| s.get("qosClass"))
        .and_then(Value::as_str)
        .unwrap_or_else(|| qos_class(os));
    let new_qos = qos_class(ns);
    if old_qos != new_qos {
        let shown = new
            .get("status")
            .and_then(|s| s.get("qosClass"))
            .cloned()
            .unwrap_or(json!(""));
        causes.push(Cause::invalid("metadata", &shown, "Pod QoS is immutable"));
    }

    // Munge the updatable fields to their old values and compare the rest.
    let mut munged = ns.clone();
    if let Some(m) = munged.as_object_mut() {
        for list in ["containers", "initContainers"] {
            if let Some(cs) = m.get_mut(list).and_then(Value::as_array_mut) {
                for (i, c) in cs.iter_mut().enumerate() {
                    if let (Some(c), Some(old_image)) =
                        (c.as_object_mut(), items(os, list)[i].get("image"))
                    {
                        c.insert("image".into(), old_image.clone());
                    }
                }
            }
        }
        for field in ["activeDeadlineSeconds", "schedulingGates", "tolerations"] {
            match os.get(field) {
                Some(v) => m.insert(field.into(), v.clone()),
                None => m.remove(field),
            };
        }
        let old_grace = os
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        let new_grace = m
            .get("terminationGracePeriodSeconds")
            .and_then(Value::as_i64);
        if old_grace.is_some_and(|g| g < 0) && new_grace == Some(1) {
            m.insert("terminationGracePeriodSeconds".into(), json!(old_grace));
        }
        // A gated pod may gain node selector entries (never lose or change one).
        if !items(os, "schedulingGates").is_empty() {
            let old_sel = os.get("nodeSelector").and_then(Value::as_object);
            let new_sel = m.get("nodeSelector").and_then(Value::as_object);
            let only_added = old_sel.is_none_or(|o| {
                o.iter()
                    .all(|(k, v)| new_sel.and_then(|n| n.get(k)) == Some(v))
            });
            if only_added {
                match os.get("nodeSelector") {
                    Some(v) => m.insert("nodeSelector".into(), v.clone()),
                    None => m.remove("nodeSelector"),
                };
            }
        }
    }
    if &munged != os {
        causes.push(Cause::forbidden(
            "spec",
            format!(
                "pod updates may not change fields other than {UPDATABLE_FIELDS}\n{}",
                spec_diff(os, &munged)
            ),
        ));
    }
    causes
}

/// A short diff of the top-level spec fields that differ, in the spirit of the
/// `cmp.Diff` Kubernetes appends.
fn spec_diff(old: &Value, new: &Value) -> String {
    let empty = serde_json::Map::new();
    let o = old.as_object().unwrap_or(&empty);
    let n = new.as_object().unwrap_or(&empty);
    let mut keys: Vec<&String> = o.keys().chain(n.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut lines = vec!["  core.PodSpec{".to_string()];
    for k in keys {
        let (a, b) = (o.get(k), n.get(k));
        if a == b {
            continue;
        }
        if let Some(a) = a {
            lines.push(format!("-\t{k}: {a},"));
        }
        if let Some(b) = b {
            lines.push(format!("+\t{k}: {b},"));
        }
    }
    lines.push("  }".to_string());
    lines.join("\n")
}

// ------------------------------------------------------------------ table

fn timestamp(v: &Value) -> Option<DateTime<FixedOffset>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
}

/// The finish time of a container's last termination, if any.
fn last_termination(status: &Value) -> Option<DateTime<FixedOffset>> {
    status
        .get("lastState")
        .and_then(|s| s.get("terminated"))
        .and_then(|t| t.get("finishedAt"))
        .and_then(timestamp)
}

fn later(
    a: Option<DateTime<FixedOffset>>,
    b: Option<DateTime<FixedOffset>>,
) -> Option<DateTime<FixedOffset>> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.max(y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn condition_true(status: &Value, kind: &str) -> bool {
    items(status, "conditions")
        .iter()
        .any(|c| str_at(c, "type") == kind && str_at(c, "status") == "True")
}

/// A terminated container's reason, or `Signal:N` / `ExitCode:N` without one.
fn terminated_reason(t: &Value, prefix: &str) -> String {
    let reason = str_at(t, "reason");
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = t.get("signal").and_then(Value::as_i64).unwrap_or(0);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!(
            "{prefix}ExitCode:{}",
            t.get("exitCode").and_then(Value::as_i64).unwrap_or(0)
        )
    }
}

/// kubectl's `printPod`: READY, STATUS and RESTARTS as kubectl computes them.
fn pod_row(obj: &Value) -> TableRow {
    let null = Value::Null;
    let spec = obj.get("spec").unwrap_or(&null);
    let status = obj.get("status").unwrap_or(&null);
    let init_specs = items(spec, "initContainers");
    let restartable = |name: &str| {
        init_specs
            .iter()
            .any(|c| str_at(c, "name") == name && str_at(c, "restartPolicy") == "Always")
    };
    let total = items(spec, "containers").len()
        + init_specs
            .iter()
            .filter(|c| str_at(c, "restartPolicy") == "Always")
            .count();
    let mut ready = 0;
    let mut restarts: i64 = 0;
    let mut sidecar_restarts: i64 = 0;
    let mut last_restart = None;
    let mut last_sidecar_restart = None;

    let phase = str_at(status, "phase");
    let mut reason = if str_at(status, "reason").is_empty() {
        phase.to_string()
    } else {
        str_at(status, "reason").to_string()
    };
    if items(status, "conditions")
        .iter()
        .any(|c| str_at(c, "type") == "PodScheduled" && str_at(c, "reason") == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let mut initializing = false;
    let init_statuses = items(status, "initContainerStatuses");
    for (i, cs) in init_statuses.iter().enumerate() {
        let count = cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
        restarts += count;
        last_restart = later(last_restart, last_termination(cs));
        let is_sidecar = restartable(str_at(cs, "name"));
        if is_sidecar {
            sidecar_restarts += count;
            last_sidecar_restart = later(last_sidecar_restart, last_termination(cs));
        }
        let state = cs.get("state").unwrap_or(&null);
        let terminated = state.get("terminated").filter(|t| !t.is_null());
        let waiting = state.get("waiting").filter(|w| !w.is_null());
        if terminated.is_some_and(|t| t.get("exitCode").and_then(Value::as_i64).unwrap_or(0) == 0) {
            continue;
        }
        if is_sidecar && cs.get("started").and_then(Value::as_bool).unwrap_or(false) {
            if cs.get("ready").and_then(Value::as_bool).unwrap_or(false) {
                ready += 1;
            }
            continue;
        }
        if let Some(t) = terminated {
            reason = terminated_reason(t, "Init:");
        } else if let Some(w) = waiting
            .filter(|w| !str_at(w, "reason").is_empty() && str_at(w, "reason") != "PodInitializing")
        {
            reason = format!("Init:{}", str_at(w, "reason"));
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || condition_true(status, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in items(status, "containerStatuses").iter().rev() {
            restarts += cs.get("restartCount").and_then(Value::as_i64).unwrap_or(0);
            last_restart = later(last_restart, last_termination(cs));
            let state = cs.get("state").unwrap_or(&null);
            let waiting = state.get("waiting").filter(|w| !w.is_null());
            let terminated = state.get("terminated").filter(|t| !t.is_null());
            let running = state.get("running").is_some_and(|r| !r.is_null());
            if let Some(w) = waiting.filter(|w| !str_at(w, "reason").is_empty()) {
                reason = str_at(w, "reason").to_string();
            } else if let Some(t) = terminated {
                reason = terminated_reason(t, "");
            } else if cs.get("ready").and_then(Value::as_bool).unwrap_or(false) && running {
                has_running = true;
                ready += 1;
            }
        }
        if reason == "Completed" && has_running {
            reason = if condition_true(status, "Ready") {
                "Running"
            } else {
                "NotReady"
            }
            .to_string();
        }
    }

    let deleting = obj
        .get("metadata")
        .and_then(|m| m.get("deletionTimestamp"))
        .is_some_and(|d| !d.is_null());
    if deleting && str_at(status, "reason") == "NodeLost" {
        reason = "Unknown".to_string();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".to_string();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", age_of(&t.to_rfc3339())),
        _ => restarts.to_string(),
    };

    let or_none = |s: &str| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s.to_string()
        }
    };
    let pod_ip = items(status, "podIPs")
        .first()
        .map_or("", |ip| str_at(ip, "ip"));
    let gates = items(spec, "readinessGates");
    let gates_cell = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let ok = gates
            .iter()
            .filter(|g| {
                let kind = str_at(g, "conditionType");
                items(status, "conditions")
                    .iter()
                    .find(|c| str_at(c, "type") == kind)
                    .is_some_and(|c| str_at(c, "status") == "True")
            })
            .count();
        format!("{ok}/{}", gates.len())
    };
    vec![
        name_cell(obj),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        age_cell(obj),
        json!(or_none(pod_ip)),
        json!(or_none(str_at(spec, "nodeName"))),
        json!(or_none(str_at(status, "nominatedNodeName"))),
        json!(gates_cell),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "u1",
                            "creationTimestamp": "2020-01-01T00:00:00Z"},
               "spec": {"containers": [{"name": "web", "image": "nginx:1.27",
                                        "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}})
    }

    fn created() -> Value {
        let mut p = pod();
        RESOURCE.strategy.prepare_for_create(&mut p);
        RESOURCE.strategy.default(&mut p);
        p
    }

    #[test]
    fn defaults_and_admission() {
        let p = created();
        let s = &p["spec"];
        assert_eq!(s["restartPolicy"], "Always");
        assert_eq!(s["dnsPolicy"], "ClusterFirst");
        assert_eq!(s["enableServiceLinks"], true);
        assert_eq!(s["serviceAccountName"], "default");
        assert_eq!(s["serviceAccount"], "default");
        assert_eq!(s["priority"], 0);
        assert_eq!(s["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(s["containers"][0]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(
            s["containers"][0]["resources"]["requests"],
            json!({"cpu": "1", "memory": "1Gi"})
        );
        assert_eq!(s["tolerations"].as_array().unwrap().len(), 2);
        assert_eq!(
            s["tolerations"][0],
            json!({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300})
        );
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "Guaranteed"})
        );
        let mut again = p.clone();
        RESOURCE.strategy.default(&mut again);
        assert_eq!(again, p, "defaulting is idempotent");
        assert!(
            RESOURCE.strategy.validate(&p).is_empty(),
            "{:?}",
            RESOURCE.strategy.validate(&p)
        );
    }

    #[test]
    fn existing_toleration_suppresses_default() {
        let mut p = pod();
        p["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        RESOURCE.strategy.default(&mut p);
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn invalid_pod_is_rejected_with_paths() {
        let mut p = pod();
        p["spec"]["restartPolicy"] = json!("Sometimes");
        p["spec"]["containers"][0]["image"] = json!("");
        RESOURCE.strategy.default(&mut p);
        let shown: Vec<String> = RESOURCE
            .strategy
            .validate(&p)
            .iter()
            .map(Cause::display)
            .collect();
        assert!(
            shown.contains(&"spec.containers[0].image: Required value".to_string()),
            "{shown:?}"
        );
        assert!(shown.contains(
            &"spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\"".to_string()
        ));
    }

    #[test]
    fn updates_may_change_only_some_fields() {
        let old = created();
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("nginx:1.28");
        new["spec"]["activeDeadlineSeconds"] = json!(60);
        assert!(RESOURCE.strategy.validate_update(&new, &old).is_empty());

        let mut bad = old.clone();
        bad["spec"]["restartPolicy"] = json!("Never");
        let causes = RESOURCE.strategy.validate_update(&bad, &old);
        assert_eq!(causes.len(), 1);
        assert_eq!(causes[0].field, "spec");
        assert!(causes[0].message.starts_with(
            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`"
        ));

        let mut removed = old.clone();
        removed["spec"]["tolerations"] = json!([]);
        let causes = RESOURCE.strategy.validate_update(&removed, &old);
        assert_eq!(causes[0].field, "spec.tolerations");
    }

    #[test]
    fn grace_period_and_fields() {
        let mut p = created();
        assert_eq!(RESOURCE.strategy.default_grace_period(&p), None);
        p["spec"]["nodeName"] = json!("node-1");
        assert_eq!(RESOURCE.strategy.default_grace_period(&p), Some(30));
        let fields = RESOURCE.strategy.selectable_fields(&p);
        assert!(fields.contains(&("spec.nodeName", "node-1".to_string())));
        assert!(fields.contains(&("spec.hostNetwork", "false".to_string())));
        assert!(fields.contains(&("status.phase", "Pending".to_string())));
        assert_eq!(
            fields.len(),
            RESOURCE.strategy.selectable_field_names().len()
        );
    }

    #[test]
    fn table_rows_follow_kubectl() {
        let mut p = created();
        let row = RESOURCE.strategy.row(&p);
        assert_eq!(row.len(), RESOURCE.strategy.columns().len());
        assert_eq!(row[1], "0/1");
        assert_eq!(row[2], "Pending");
        assert_eq!(row[3], "0");
        assert_eq!(row[5], "<none>");

        p["status"]["containerStatuses"] = json!([{"name": "web", "ready": false, "restartCount": 0,
            "state": {"waiting": {"reason": "ContainerCreating"}}}]);
        assert_eq!(RESOURCE.strategy.row(&p)[2], "ContainerCreating");

        let finished = (chrono::Utc::now() - chrono::Duration::minutes(5)).to_rfc3339();
        p["status"]["phase"] = json!("Running");
        p["status"]["podIPs"] = json!([{"ip": "10.0.0.5"}]);
        p["status"]["containerStatuses"] = json!([{"name": "web", "ready": true, "restartCount": 3,
            "state": {"running": {}}, "lastState": {"terminated": {"exitCode": 1, "finishedAt": finished}}}]);
        let row = RESOURCE.strategy.row(&p);
        assert_eq!(row[1], "1/1");
        assert_eq!(row[2], "Running");
        assert_eq!(row[3], "3 (5m ago)");
        assert_eq!(row[5], "10.0.0.5");

        p["status"]["containerStatuses"][0]["state"] =
            json!({"waiting": {"reason": "CrashLoopBackOff"}});
        assert_eq!(RESOURCE.strategy.row(&p)[2], "CrashLoopBackOff");

        p["status"]["phase"] = json!("Succeeded");
        p["status"]["containerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 0, "reason": "Completed"}});
        assert_eq!(RESOURCE.strategy.row(&p)[2], "Completed");

        p["status"]["phase"] = json!("Running");
        p["metadata"]["deletionTimestamp"] = json!("2020-01-01T00:00:00Z");
        assert_eq!(RESOURCE.strategy.row(&p)[2], "Terminating");
    }
}
