//! ControllerRevisions: the template history of StatefulSets and DaemonSets
//! (Kubernetes' `pkg/controller/history`).
//!
//! A revision stores what the owner's pods are built from as the patch Kubernetes
//! stores, `{"spec":{"template":{...,"$patch":"replace"}}}`, and a `revision` number
//! that grows with every change (a rollback renumbers the old revision rather than
//! creating a copy). Its name is `<owner>-<hash>`, the hash taken over the data and the
//! owner's `collisionCount`, which grows when a name is taken by different data.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::ControllerRevision;
use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::{Metadata, Resource};
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::Store;
use keelson_client::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};

use super::owner::{claim, controller_of, controller_ref, ClaimResult};

/// On revisions (both kinds) and on pods: DaemonSet pods carry the hash, StatefulSet
/// pods the revision's name.
pub const HASH_LABEL: &str = "controller-revision-hash";

/// The data of a revision of `template`.
pub fn template_patch(template: &PodTemplateSpec) -> Value {
    let mut t = serde_json::to_value(template).unwrap_or_else(|_| json!({}));
    if let Some(o) = t.as_object_mut() {
        o.insert("$patch".into(), json!("replace"));
    }
    json!({"spec": {"template": t}})
}

/// The pod template a revision stores (applying the patch replaces the template).
pub fn template_of(rev: &ControllerRevision) -> Option<PodTemplateSpec> {
    let mut t = rev.data.as_ref()?.0.pointer("/spec/template")?.clone();
    t.as_object_mut()?.remove("$patch");
    serde_json::from_value(t).ok()
}

/// Kubernetes' `HashControllerRevision`: FNV-32 of the data and the collision count,
/// its decimal digits spelled with the alphabet of `rand.SafeEncodeString`.
pub fn hash(data: &Value, collision_count: i32) -> String {
    let mut h: u32 = 0x811c_9dc5;
    let bytes = serde_json::to_vec(data).unwrap_or_default();
    for b in bytes.iter().chain(collision_count.to_string().as_bytes()) {
        h = h.wrapping_mul(0x0100_0193);
        h ^= u32::from(*b);
    }
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    h.to_string()
        .bytes()
        .map(|d| ALPHABET[usize::from(d) % ALPHABET.len()] as char)
        .collect()
}

/// `<owner>-<hash>`, the owner's name cut so that the name stays a valid one.
pub fn name(owner: &str, hash: &str) -> String {
    let prefix: String = owner.chars().take(223).collect();
    format!("{prefix}-{hash}")
}

/// Oldest first: by revision number, then creation time, then name.
pub fn sort(revs: &mut [Arc<ControllerRevision>]) {
    revs.sort_by(|a, b| {
        a.revision
            .cmp(&b.revision)
            .then_with(|| {
                let t =
                    |r: &ControllerRevision| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
                t(a).cmp(&t(b))
            })
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// One more than the highest revision number (revisions sorted), 1 for none.
pub fn next_number(sorted: &[Arc<ControllerRevision>]) -> i64 {
    sorted.last().map_or(1, |r| r.revision + 1)
}

pub fn same_data(rev: &ControllerRevision, data: &Value) -> bool {
    rev.data.as_ref().is_some_and(|d| &d.0 == data)
}

/// The owner's revisions, oldest first: the ones it controls that match its selector,
/// after adopting matching orphans and releasing controlled ones that stopped matching.
pub async fn claim_all<O>(
    store: &Store<ControllerRevision>,
    api: &Api<ControllerRevision>,
    owner: &O,
    selector: &LabelSelector,
) -> keelson_client::Result<Vec<Arc<ControllerRevision>>>
where
    O: Resource + Metadata<Ty = ObjectMeta>,
{
    let ns = owner.metadata().namespace.as_deref().unwrap_or_default();
    let mut owned = Vec::new();
    for rev in store.list_namespace(ns) {
        if controller_of(&rev.metadata).is_none() && !selects(selector, &rev.metadata) {
            continue;
        }
        if claim(owner, selector, rev.as_ref(), api).await? == ClaimResult::Owned {
            owned.push(rev);
        }
    }
    sort(&mut owned);
    Ok(owned)
}

fn selects(selector: &LabelSelector, meta: &ObjectMeta) -> bool {
    selector.matches_with(|k| meta.labels.as_ref()?.get(k).map(String::as_str))
}

/// Create the revision of `data` numbered `number`, labelled with `labels` and the
/// hash. A name taken by the same data of the same owner is that revision (our cache
/// had not seen it yet); taken by anything else, `collision_count` grows and the name
/// changes (the caller records the count in the owner's status).
pub async fn create<O>(
    api: &Api<ControllerRevision>,
    owner: &O,
    labels: Option<&BTreeMap<String, String>>,
    data: Value,
    number: i64,
    collision_count: &mut i32,
) -> keelson_client::Result<ControllerRevision>
where
    O: Resource + Metadata<Ty = ObjectMeta>,
{
    let meta = owner.metadata();
    let owner_name = meta.name.as_deref().unwrap_or_default();
    loop {
        let hash = hash(&data, *collision_count);
        let mut labels = labels.cloned().unwrap_or_default();
        labels.insert(HASH_LABEL.into(), hash.clone());
        let rev = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name(owner_name, &hash)),
                namespace: meta.namespace.clone(),
                labels: Some(labels),
                owner_references: Some(vec![controller_ref(owner)]),
                ..Default::default()
            },
            data: Some(RawExtension(data.clone())),
            revision: number,
        };
        match api.create(&PostParams::default(), &rev).await {
            Err(e) if e.is_already_exists() => {
                let taken = api
                    .get(rev.metadata.name.as_deref().unwrap_or_default())
                    .await?;
                let ours =
                    controller_of(&taken.metadata).map(|r| r.uid.as_str()) == meta.uid.as_deref();
                if ours && same_data(&taken, &data) {
                    return Ok(taken);
                }
                *collision_count += 1;
            }
            other => return other,
        }
    }
}

/// Give an existing revision a new number (a rollback to it, or a newer duplicate).
pub async fn renumber(
    api: &Api<ControllerRevision>,
    rev: &ControllerRevision,
    number: i64,
) -> keelson_client::Result<ControllerRevision> {
    let name = rev.metadata.name.as_deref().unwrap_or_default();
    api.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"revision": number})),
    )
    .await
}

/// Delete the oldest revisions not in `live` until at most `limit` of them remain
/// (`sorted` oldest first; a negative limit keeps everything).
pub async fn truncate(
    api: &Api<ControllerRevision>,
    sorted: &[Arc<ControllerRevision>],
    live: &HashSet<&str>,
    limit: i32,
) -> keelson_client::Result<()> {
    let history: Vec<&Arc<ControllerRevision>> = sorted
        .iter()
        .filter(|r| !live.contains(r.metadata.name.as_deref().unwrap_or_default()))
        .collect();
    if limit < 0 || history.len() <= limit as usize {
        return Ok(());
    }
    for rev in &history[..history.len() - limit as usize] {
        let name = rev.metadata.name.as_deref().unwrap_or_default();
        match api.delete(name, &DeleteParams::default()).await {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_matches_kubernetes_spelling() {
        // Only the alphabet of SafeEncodeString: no vowels, no 0, 1, 3.
        let h = hash(&json!({"spec": {}}), 0);
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_ne!(h, hash(&json!({"spec": {}}), 1));
        assert_eq!(h, hash(&json!({"spec": {}}), 0));
        assert_eq!(name("web", "abc"), "web-abc");
    }

    #[test]
    fn patch_round_trips_the_template() {
        let t: PodTemplateSpec = serde_json::from_value(json!({
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}
        }))
        .unwrap();
        let data = template_patch(&t);
        assert_eq!(data["spec"]["template"]["$patch"], "replace");
        let rev = ControllerRevision {
            data: Some(RawExtension(data.clone())),
            ..Default::default()
        };
        assert_eq!(template_of(&rev), Some(t));
        assert!(same_data(&rev, &data));
    }
}
