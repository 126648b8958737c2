//! A StatefulSet pod's identity: its name `<set>-<ordinal>`, hostname and subdomain,
//! the pod-name and pod-index labels, and its PersistentVolumeClaims
//! `<claim>-<set>-<ordinal>` with the owner references the retention policy asks for.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimVolumeSource, Pod, PodTemplateSpec, Volume,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::Resource;

use crate::common::revisions::HASH_LABEL;
use crate::common::{controller_ref, pods};

pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// The parent's name and the ordinal of a pod named `<parent>-<ordinal>`.
pub fn parent_and_ordinal(name: &str) -> Option<(&str, i32)> {
    let (parent, ordinal) = name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

/// The ordinal of one of `set`'s pods (`None` for pods named otherwise).
pub fn ordinal_in(set: &StatefulSet, pod: &Pod) -> Option<i32> {
    let (parent, ordinal) = parent_and_ordinal(pod.metadata.name.as_deref()?)?;
    (Some(parent) == set.metadata.name.as_deref()).then_some(ordinal)
}

pub fn start_ordinal(set: &StatefulSet) -> i32 {
    let spec = set.spec.as_ref();
    spec.and_then(|s| s.ordinals.as_ref())
        .and_then(|o| o.start)
        .unwrap_or(0)
}

pub fn replicas(set: &StatefulSet) -> i32 {
    set.spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1)
        .max(0)
}

pub fn in_range(set: &StatefulSet, ordinal: i32) -> bool {
    let start = start_ordinal(set);
    ordinal >= start && ordinal < start + replicas(set)
}

pub fn pod_name(set: &StatefulSet, ordinal: i32) -> String {
    format!(
        "{}-{ordinal}",
        set.metadata.name.as_deref().unwrap_or_default()
    )
}

fn claim_templates(set: &StatefulSet) -> &[PersistentVolumeClaim] {
    set.spec
        .as_ref()
        .and_then(|s| s.volume_claim_templates.as_deref())
        .unwrap_or_default()
}

/// The claims of the pod with `ordinal`, keyed by their template's name (which is also
/// the pod volume's name). Labels: the template's plus the set's matchLabels.
pub fn claims(set: &StatefulSet, ordinal: i32) -> Vec<(String, PersistentVolumeClaim)> {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let match_labels = set
        .spec
        .as_ref()
        .and_then(|s| s.selector.match_labels.clone())
        .unwrap_or_default();
    claim_templates(set)
        .iter()
        .map(|t| {
            let template_name = t.metadata.name.clone().unwrap_or_default();
            let mut labels = t.metadata.labels.clone().unwrap_or_default();
            labels.extend(match_labels.clone());
            let claim = PersistentVolumeClaim {
                metadata: ObjectMeta {
                    name: Some(format!("{template_name}-{set_name}-{ordinal}")),
                    namespace: set.metadata.namespace.clone(),
                    labels: Some(labels),
                    annotations: t.metadata.annotations.clone(),
                    ..Default::default()
                },
                spec: t.spec.clone(),
                status: None,
            };
            (template_name, claim)
        })
        .collect()
}

/// A new pod for `ordinal` from `template` (the template of `revision`).
pub fn new_pod(set: &StatefulSet, template: &PodTemplateSpec, ordinal: i32, revision: &str) -> Pod {
    let name = pod_name(set, ordinal);
    let ns = set.metadata.namespace.as_deref().unwrap_or_default();
    let mut pod = pods::from_template(template, ns, controller_ref(set), "", Some(name.clone()));
    pod.metadata.generate_name = None;
    let labels = pod.metadata.labels.get_or_insert_with(BTreeMap::new);
    labels.insert(POD_NAME_LABEL.into(), name.clone());
    labels.insert(POD_INDEX_LABEL.into(), ordinal.to_string());
    labels.insert(HASH_LABEL.into(), revision.to_string());
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.hostname = Some(name);
    spec.subdomain = set
        .spec
        .as_ref()
        .and_then(|s| s.service_name.clone())
        .filter(|s| !s.is_empty());
    // The claims' volumes replace template volumes of the same name.
    let claims = claims(set, ordinal);
    let mut volumes: Vec<Volume> = claims
        .iter()
        .map(|(volume, claim)| Volume {
            name: volume.clone(),
            persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                claim_name: claim.metadata.name.clone().unwrap_or_default(),
                read_only: None,
            }),
            ..Default::default()
        })
        .collect();
    for v in spec.volumes.take().unwrap_or_default() {
        if !claims.iter().any(|(name, _)| *name == v.name) {
            volumes.push(v);
        }
    }
    spec.volumes = (!volumes.is_empty()).then_some(volumes);
    pod
}

/// The labels a pod of `set` must carry that it lacks (pod-name, pod-index).
pub fn missing_identity_labels(pod: &Pod, ordinal: i32) -> Option<BTreeMap<String, String>> {
    let name = pod.metadata.name.clone().unwrap_or_default();
    let want = [
        (POD_NAME_LABEL, name),
        (POD_INDEX_LABEL, ordinal.to_string()),
    ];
    let have = pod.metadata.labels.as_ref();
    let missing: BTreeMap<String, String> = want
        .into_iter()
        .filter(|(k, v)| have.and_then(|l| l.get(*k)) != Some(v))
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    (!missing.is_empty()).then_some(missing)
}

/// What `persistentVolumeClaimRetentionPolicy` says: (delete when the set is deleted,
/// delete when scaled down). Absent means Retain.
fn policy(set: &StatefulSet) -> (bool, bool) {
    let p = set
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_claim_retention_policy.as_ref());
    let delete = |v: Option<&String>| v.map(String::as_str) == Some("Delete");
    (
        delete(p.and_then(|p| p.when_deleted.as_ref())),
        delete(p.and_then(|p| p.when_scaled.as_ref())),
    )
}

fn is_ref_to<K: Resource>(r: &OwnerReference, name: &str) -> bool {
    r.api_version == K::API_VERSION && r.kind == K::KIND && r.name == name
}

/// The ownerReferences a claim of the pod with `ordinal` should have, when they differ
/// from `current` (Kubernetes' `updateClaimOwnerRefForSetAndPod`): the set as
/// controller for WhenDeleted=Delete, the pod as controller once it is scaled down
/// under WhenScaled=Delete (then the garbage collector removes the claim with the pod).
/// `pod` is `None` before the pod exists. Claims with a stale reference (same name,
/// other uid) are left alone; with another controller, only our references go.
pub fn claim_owner_refs(
    current: &[OwnerReference],
    set: &StatefulSet,
    pod: Option<&Pod>,
    ordinal: i32,
) -> Option<Vec<OwnerReference>> {
    let set_name = set.metadata.name.as_deref().unwrap_or_default();
    let set_uid = set.metadata.uid.as_deref().unwrap_or_default();
    let pod_name = pod_name(set, ordinal);
    let pod_uid = pod.and_then(|p| p.metadata.uid.as_deref());
    let (when_deleted, when_scaled) = policy(set);
    let ours = |r: &OwnerReference| {
        is_ref_to::<StatefulSet>(r, set_name) || is_ref_to::<Pod>(r, &pod_name)
    };
    let stale = current.iter().any(|r| {
        (is_ref_to::<StatefulSet>(r, set_name) && r.uid != set_uid)
            || (is_ref_to::<Pod>(r, &pod_name) && pod_uid != Some(r.uid.as_str()))
    });
    if stale {
        return None;
    }
    let other_controller = current
        .iter()
        .any(|r| !ours(r) && r.controller == Some(true));
    let mut want: Vec<OwnerReference> = current.iter().filter(|r| !ours(r)).cloned().collect();
    if !other_controller {
        let scaled_down = !in_range(set, ordinal);
        let want_pod = when_scaled && scaled_down;
        if want_pod {
            if let Some(p) = pod {
                want.push(controller_ref(p));
            }
        } else if when_deleted {
            want.push(controller_ref(set));
        }
    }
    let key = |r: &OwnerReference| (r.uid.clone(), r.controller);
    let mut a: Vec<_> = current.iter().map(key).collect();
    let mut b: Vec<_> = want.iter().map(key).collect();
    a.sort();
    b.sort();
    (a != b).then_some(want)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn set(policy: serde_json::Value, replicas: i32) -> StatefulSet {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {
                "replicas": replicas, "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "persistentVolumeClaimRetentionPolicy": policy,
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "nginx"}],
                        "volumes": [{"name": "data", "emptyDir": {}}, {"name": "cfg", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn names_and_ordinals() {
        assert_eq!(parent_and_ordinal("web-12"), Some(("web", 12)));
        assert_eq!(parent_and_ordinal("my-web-0"), Some(("my-web", 0)));
        assert_eq!(parent_and_ordinal("web-x"), None);
        assert_eq!(parent_and_ordinal("web"), None);
    }

    #[test]
    fn new_pod_has_identity_and_claim_volumes() {
        let s = set(json!({}), 3);
        let t = s.spec.as_ref().unwrap().template.clone();
        let pod = new_pod(&s, &t, 2, "web-abc");
        let v = serde_json::to_value(&pod).unwrap();
        assert_eq!(v["metadata"]["name"], "web-2");
        assert!(v["metadata"].get("generateName").is_none());
        assert_eq!(v["metadata"]["labels"][POD_NAME_LABEL], "web-2");
        assert_eq!(v["metadata"]["labels"][POD_INDEX_LABEL], "2");
        assert_eq!(v["metadata"]["labels"][HASH_LABEL], "web-abc");
        assert_eq!(v["spec"]["hostname"], "web-2");
        assert_eq!(v["spec"]["subdomain"], "nginx");
        assert_eq!(
            v["spec"]["volumes"],
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-2"}},
                   {"name": "cfg", "emptyDir": {}}])
        );
        let (_, claim) = &claims(&s, 2)[0];
        assert_eq!(claim.metadata.name.as_deref(), Some("data-web-2"));
        assert_eq!(claim.metadata.labels.as_ref().unwrap()["app"], "web");
    }

    #[test]
    fn retention_policy_owner_refs() {
        let pod: Pod = serde_json::from_value(
            json!({"metadata": {"name": "web-2", "namespace": "ns", "uid": "pod-uid"}}),
        )
        .unwrap();
        let uids = |refs: Option<Vec<OwnerReference>>| -> Option<Vec<String>> {
            refs.map(|r| r.into_iter().map(|r| r.uid).collect())
        };
        // Retain/Retain: nothing to do.
        assert_eq!(
            claim_owner_refs(&[], &set(json!({}), 3), Some(&pod), 2),
            None
        );
        // WhenDeleted=Delete: the set.
        let s = set(json!({"whenDeleted": "Delete", "whenScaled": "Retain"}), 3);
        let with_set = claim_owner_refs(&[], &s, None, 2).unwrap();
        assert_eq!(uids(Some(with_set.clone())), Some(vec!["set-uid".into()]));
        assert_eq!(claim_owner_refs(&with_set, &s, Some(&pod), 2), None);
        // Both Delete, scaled down: the pod instead of the set.
        let s = set(json!({"whenDeleted": "Delete", "whenScaled": "Delete"}), 2);
        assert_eq!(
            uids(claim_owner_refs(&with_set, &s, Some(&pod), 2)),
            Some(vec!["pod-uid".into()])
        );
        // Back to Retain: our references go.
        assert_eq!(
            uids(claim_owner_refs(
                &with_set,
                &set(json!({}), 3),
                Some(&pod),
                2
            )),
            Some(vec![])
        );
    }
}
