//! Owner references: who controls an object, and adopting or releasing objects by
//! label selector (client-go's ControllerRefManager).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{self as metav1, ObjectMeta, OwnerReference};
use k8s_openapi::{Metadata, Resource};
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::Store;
use keelson_client::{Api, KubeObject, ObjectKey, Patch, PatchParams};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::json;

/// The owner reference with `controller: true`, if any.
pub fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|r| r.controller == Some(true))
}

/// A workload's `spec.selector`, parsed; `None` when it is invalid (selects nothing).
pub fn parse_selector(selector: &metav1::LabelSelector) -> Option<LabelSelector> {
    LabelSelector::from_object(&serde_json::to_value(selector).ok()?).ok()
}

/// The owners of kind `K` that a change to an object concerns: its controller when
/// that is a `K` still in `owners` with the same uid, else (an orphan) every `K` in its
/// namespace whose selector matches it, so that one of them can adopt it.
pub fn owners_of<K>(
    owners: &Store<K>,
    meta: &ObjectMeta,
    selector: impl Fn(&K) -> Option<LabelSelector>,
) -> Vec<ObjectKey>
where
    K: KubeObject + Resource,
{
    let ns = meta.namespace.as_deref();
    if let Some(r) = controller_of(meta) {
        return match owners.get_by_name(ns, &r.name) {
            Some(o) if r.kind == K::KIND && o.uid() == Some(r.uid.as_str()) => vec![o.key()],
            _ => Vec::new(),
        };
    }
    owners
        .list_namespace(ns.unwrap_or_default())
        .into_iter()
        .filter(|o| {
            selector(o).is_some_and(|s| {
                s.matches_with(|k| meta.labels.as_ref()?.get(k).map(String::as_str))
            })
        })
        .map(|o| o.key())
        .collect()
}

/// A controller reference to `owner` (controller and blockOwnerDeletion set).
pub fn controller_ref<K>(owner: &K) -> OwnerReference
where
    K: Resource + Metadata<Ty = ObjectMeta>,
{
    let meta = owner.metadata();
    OwnerReference {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// What claiming did to one candidate object.
#[derive(Debug, PartialEq, Eq)]
pub enum ClaimResult {
    /// Ours (already, or adopted now).
    Owned,
    /// Not ours (another controller's, released now, or not selected).
    NotOwned,
}

/// Decide whether `obj` belongs to `owner`, adopting a matching orphan and releasing
/// an owned object whose labels no longer match. Writes are merge patches conditioned
/// on the object's resourceVersion, so a concurrent change makes them fail (and the
/// caller's sync is retried) rather than clobber the ownerReferences list.
pub async fn claim<O, K>(
    owner: &O,
    selector: &LabelSelector,
    obj: &K,
    api: &Api<K>,
) -> keelson_client::Result<ClaimResult>
where
    O: Resource + Metadata<Ty = ObjectMeta>,
    K: Resource + Metadata<Ty = ObjectMeta> + Clone + Serialize + DeserializeOwned,
    K: keelson_client::KubeObject,
{
    let meta = obj.metadata();
    let owner_meta = owner.metadata();
    let owner_uid = owner_meta.uid.as_deref().unwrap_or_default();
    let matches = selector.matches_with(|k| meta.labels.as_ref()?.get(k).map(String::as_str));
    let owner_deleting = owner_meta.deletion_timestamp.is_some();
    match controller_of(meta) {
        Some(r) if r.uid != owner_uid => Ok(ClaimResult::NotOwned),
        Some(_) if matches || owner_deleting => Ok(ClaimResult::Owned),
        Some(_) => {
            // Release: drop our reference, keep any others.
            let refs: Vec<&OwnerReference> = meta
                .owner_references
                .iter()
                .flatten()
                .filter(|r| r.uid != owner_uid)
                .collect();
            patch_owner_refs(api, meta, json!(refs)).await?;
            Ok(ClaimResult::NotOwned)
        }
        None if !matches || owner_deleting || meta.deletion_timestamp.is_some() => {
            Ok(ClaimResult::NotOwned)
        }
        None => {
            let mut refs: Vec<OwnerReference> = meta.owner_references.clone().unwrap_or_default();
            refs.push(controller_ref(owner));
            patch_owner_refs(api, meta, json!(refs)).await?;
            Ok(ClaimResult::Owned)
        }
    }
}

async fn patch_owner_refs<K>(
    api: &Api<K>,
    meta: &ObjectMeta,
    refs: serde_json::Value,
) -> keelson_client::Result<()>
where
    K: Resource + Clone + Serialize + DeserializeOwned + keelson_client::KubeObject,
{
    let patch = json!({"metadata": {
        "ownerReferences": refs,
        "uid": meta.uid,
        "resourceVersion": meta.resource_version,
    }});
    let name = meta.name.as_deref().unwrap_or_default();
    match api
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
    {
        Ok(_) => Ok(()),
        // Gone meanwhile: nothing to claim.
        Err(e) if e.is_not_found() => Ok(()),
        Err(e) => Err(e),
    }
}
