//! Pure helpers of the Deployment controller (Kubernetes' `deployment/util`): the
//! pod-template hash, which ReplicaSet is the new one, surge and unavailability limits,
//! replica counts and proportions.

use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::common::intstr::scaled_value;

/// Label added to a ReplicaSet's selector, template and labels, so that the
/// ReplicaSets of one Deployment never select each other's pods.
pub const HASH_LABEL: &str = "pod-template-hash";
pub const REVISION: &str = "deployment.kubernetes.io/revision";
pub const REVISION_HISTORY: &str = "deployment.kubernetes.io/revision-history";
pub const DESIRED_REPLICAS: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS: &str = "deployment.kubernetes.io/max-replicas";

/// Kubernetes' `ComputeHash`: FNV-32a over the template (here its JSON) and the
/// collision count, the decimal digits spelled with `rand.SafeEncodeString`'s alphabet.
pub fn pod_template_hash(template: &PodTemplateSpec, collision_count: Option<i32>) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    if let Some(c) = collision_count {
        // As Kubernetes: the count as a little-endian u32 in an 8-byte buffer.
        bytes.extend((c as u32).to_le_bytes());
        bytes.extend([0; 4]);
    }
    let mut h: u32 = 0x811c_9dc5;
    for b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

/// Whether two templates are the same apart from the pod-template-hash label.
pub fn equal_ignore_hash(a: &PodTemplateSpec, b: &PodTemplateSpec) -> bool {
    fn strip(t: &PodTemplateSpec) -> PodTemplateSpec {
        let mut t = t.clone();
        if let Some(meta) = t.metadata.as_mut() {
            if let Some(labels) = meta.labels.as_mut() {
                labels.remove(HASH_LABEL);
                if labels.is_empty() {
                    meta.labels = None;
                }
            }
        }
        t
    }
    strip(a) == strip(b)
}

pub fn replicas(d: &Deployment) -> i32 {
    d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn template(d: &Deployment) -> PodTemplateSpec {
    d.spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default()
}

pub fn min_ready_seconds(d: &Deployment) -> i32 {
    d.spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0)
}

pub fn is_paused(d: &Deployment) -> bool {
    d.spec.as_ref().and_then(|s| s.paused).unwrap_or(false)
}

pub fn is_recreate(d: &Deployment) -> bool {
    strategy_type(d) == "Recreate"
}

fn strategy_type(d: &Deployment) -> &str {
    d.spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.type_.as_deref())
        .unwrap_or("RollingUpdate")
}

/// `progressDeadlineSeconds`, unless unset or "never" (MaxInt32).
pub fn progress_deadline(d: &Deployment) -> Option<i32> {
    d.spec
        .as_ref()
        .and_then(|s| s.progress_deadline_seconds)
        .filter(|s| *s != i32::MAX)
}

pub fn revision_history_limit(d: &Deployment) -> Option<i32> {
    d.spec.as_ref().and_then(|s| s.revision_history_limit)
}

/// `(maxSurge, maxUnavailable)` in pods: surge rounds up, unavailability down, and
/// both zero (possible with percentages of few replicas) means one unavailable.
pub fn fenceposts(d: &Deployment) -> (i32, i32) {
    if strategy_type(d) != "RollingUpdate" {
        return (0, 0);
    }
    let ru = d
        .spec
        .as_ref()
        .and_then(|s| s.strategy.as_ref())
        .and_then(|s| s.rolling_update.as_ref());
    let pct = IntOrString::String("25%".into());
    let surge_v = ru.and_then(|r| r.max_surge.as_ref()).unwrap_or(&pct);
    let unavail_v = ru.and_then(|r| r.max_unavailable.as_ref()).unwrap_or(&pct);
    let desired = replicas(d);
    let surge = scaled_value(surge_v, desired, true).unwrap_or(0);
    let unavailable = scaled_value(unavail_v, desired, false).unwrap_or(0);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

pub fn max_surge(d: &Deployment) -> i32 {
    fenceposts(d).0
}

/// Kubernetes' `MaxUnavailable`: never more than the replicas, 0 for Recreate.
pub fn max_unavailable(d: &Deployment) -> i32 {
    let desired = replicas(d);
    if strategy_type(d) != "RollingUpdate" || desired == 0 {
        return 0;
    }
    fenceposts(d).1.min(desired)
}

pub fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

pub fn rs_status_replicas(rs: &ReplicaSet) -> i32 {
    rs.status.as_ref().map_or(0, |s| s.replicas)
}

pub fn rs_ready(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.ready_replicas)
        .unwrap_or(0)
}

pub fn rs_available(rs: &ReplicaSet) -> i32 {
    rs.status
        .as_ref()
        .and_then(|s| s.available_replicas)
        .unwrap_or(0)
}

/// Available pods the ReplicaSet will still have once it reaches its size: after a
/// scale-down its status still counts the pods about to go.
pub fn rs_available_after_scaling(rs: &ReplicaSet) -> i32 {
    rs_available(rs).min(rs_replicas(rs))
}

/// The `deployment.kubernetes.io/revision` annotation, 0 when absent or not a number.
pub fn revision(rs: &ReplicaSet) -> i64 {
    annotation(rs, REVISION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

pub fn annotation<'a>(rs: &'a ReplicaSet, key: &str) -> Option<&'a str> {
    rs.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

fn int_annotation(rs: &ReplicaSet, key: &str) -> Option<i32> {
    annotation(rs, key)?.parse().ok()
}

pub fn desired_replicas_annotation(rs: &ReplicaSet) -> Option<i32> {
    int_annotation(rs, DESIRED_REPLICAS)
}

/// Set the desired- and max-replicas annotations; whether anything changed.
pub fn set_replicas_annotations(rs: &mut ReplicaSet, desired: i32, max: i32) -> bool {
    let annotations = rs.metadata.annotations.get_or_insert_with(Default::default);
    let mut changed = false;
    for (k, v) in [(DESIRED_REPLICAS, desired), (MAX_REPLICAS, max)] {
        let v = v.to_string();
        if annotations.get(k) != Some(&v) {
            annotations.insert(k.to_string(), v);
            changed = true;
        }
    }
    changed
}

pub fn replicas_annotations_need_update(rs: &ReplicaSet, desired: i32, max: i32) -> bool {
    int_annotation(rs, DESIRED_REPLICAS) != Some(desired)
        || int_annotation(rs, MAX_REPLICAS) != Some(max)
}

/// Oldest first, ties broken by name (Kubernetes' `ReplicaSetsByCreationTimestamp`).
pub fn by_creation(a: &ReplicaSet, b: &ReplicaSet) -> std::cmp::Ordering {
    let t = |rs: &ReplicaSet| rs.metadata.creation_timestamp.as_ref().map(|t| t.0);
    t(a).cmp(&t(b))
        .then_with(|| a.metadata.name.cmp(&b.metadata.name))
}

/// Lowest revision first, then oldest (`ReplicaSetsByRevision`).
pub fn by_revision(a: &ReplicaSet, b: &ReplicaSet) -> std::cmp::Ordering {
    revision(a)
        .cmp(&revision(b))
        .then_with(|| by_creation(a, b))
}

/// Pods allowed for the new ReplicaSet now (`NewRSNewReplicas`). Rolling: up to the
/// surge limit; the old ReplicaSets count with the pods they still report, so that
/// new pods are created only after surplus old ones are really gone. Recreate: all.
pub fn new_rs_new_replicas<'a>(
    d: &Deployment,
    all: impl Iterator<Item = &'a ReplicaSet>,
    new_rs: &ReplicaSet,
) -> i32 {
    let desired = replicas(d);
    if is_recreate(d) {
        return desired;
    }
    let current: i32 = all
        .map(|rs| rs_replicas(rs).max(rs_status_replicas(rs)))
        .sum();
    let max_total = desired + max_surge(d);
    let new_replicas = rs_replicas(new_rs);
    if current >= max_total {
        return new_replicas;
    }
    let up = (max_total - current).min(desired - new_replicas);
    new_replicas + up.max(0)
}

/// `IsSaturated`: the new ReplicaSet runs every desired pod, all available.
pub fn is_saturated(d: &Deployment, rs: &ReplicaSet) -> bool {
    let desired = replicas(d);
    rs_replicas(rs) == desired
        && desired_replicas_annotation(rs) == Some(desired)
        && rs_available(rs) == desired
}

/// How many replicas `rs` gains (or loses) when the deployment's total changes by
/// `to_add` and `added` were already handed out (`GetProportion`).
pub fn proportion(rs: &ReplicaSet, d: &Deployment, to_add: i32, added: i32) -> i32 {
    if rs_replicas(rs) == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

/// The change in `rs`'s size that keeps its share of the deployment's maximum size,
/// measured against the maximum it was last scaled for (the max-replicas annotation).
fn replica_set_fraction(rs: &ReplicaSet, d: &Deployment) -> i32 {
    if replicas(d) == 0 {
        return -rs_replicas(rs);
    }
    let max_now = replicas(d) + max_surge(d);
    let before = match int_annotation(rs, MAX_REPLICAS) {
        Some(m) if m != 0 => m,
        _ => {
            let status_replicas = d.status.as_ref().and_then(|s| s.replicas).unwrap_or(0);
            if status_replicas == 0 {
                return 0;
            }
            status_replicas
        }
    };
    let size = rs_replicas(rs) as f64;
    (size * max_now as f64 / before as f64).round() as i32 - rs_replicas(rs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(
        replicas: i32,
        surge: serde_json::Value,
        unavail: serde_json::Value,
    ) -> Deployment {
        serde_json::from_value(json!({
            "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "strategy": {"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavail}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
        }))
        .unwrap()
    }

    fn rs(replicas: i32, max_annotation: Option<i32>) -> ReplicaSet {
        let mut rs: ReplicaSet = serde_json::from_value(json!({
            "metadata": {"name": "web-x"},
            "spec": {"replicas": replicas, "selector": {}}
        }))
        .unwrap();
        if let Some(m) = max_annotation {
            set_replicas_annotations(&mut rs, m, m);
        }
        rs
    }

    #[test]
    fn hash_is_stable_and_safe() {
        let t = template(&deployment(1, json!(1), json!(0)));
        let h = pod_template_hash(&t, None);
        assert_eq!(h, pod_template_hash(&t, None));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert!((1..=10).contains(&h.len()));
        assert_ne!(h, pod_template_hash(&t, Some(1)));
        let mut labelled = t.clone();
        labelled
            .metadata
            .as_mut()
            .unwrap()
            .labels
            .as_mut()
            .unwrap()
            .insert(HASH_LABEL.into(), h);
        assert!(equal_ignore_hash(&t, &labelled));
    }

    #[test]
    fn fenceposts_round_surge_up_and_unavailable_down() {
        assert_eq!(
            fenceposts(&deployment(3, json!("25%"), json!("25%"))),
            (1, 0)
        );
        assert_eq!(
            fenceposts(&deployment(10, json!("25%"), json!("25%"))),
            (3, 2)
        );
        assert_eq!(
            fenceposts(&deployment(1, json!("0%"), json!("10%"))),
            (0, 1)
        );
        assert_eq!(max_unavailable(&deployment(2, json!(0), json!(5))), 2);
    }

    #[test]
    fn new_replicas_respect_surge() {
        let d = deployment(4, json!(1), json!(1));
        let old = rs(4, None);
        let new = rs(0, None);
        assert_eq!(new_rs_new_replicas(&d, [&old, &new].into_iter(), &new), 1);
        let old = rs(3, None);
        assert_eq!(new_rs_new_replicas(&d, [&old, &new].into_iter(), &new), 2);
    }

    #[test]
    fn proportions_follow_the_max_replicas_annotation() {
        // 10 -> 20 replicas with surge 0: a ReplicaSet of 6 (of max 10) grows by 6.
        let d = deployment(20, json!(0), json!(1));
        assert_eq!(proportion(&rs(6, Some(10)), &d, 10, 0), 6);
        assert_eq!(proportion(&rs(6, Some(10)), &d, 10, 8), 2);
        let d = deployment(5, json!(0), json!(1));
        assert_eq!(proportion(&rs(6, Some(10)), &d, -5, 0), -3);
    }
}
