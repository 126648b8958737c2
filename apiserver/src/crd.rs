//! CustomResourceDefinitions at work: every apiserver follows the CRDs from its watch
//! cache and serves what the established ones define (`keelson_resources::custom`),
//! within the time a watch event takes to arrive. One worker per apiserver does what
//! apiextensions-apiserver's controllers do:
//!
//! - naming: grant each CRD its names unless another CRD of the group holds them
//!   (`status.acceptedNames`, condition `NamesAccepted`: `NoConflicts`, or
//!   `PluralConflict`, `KindConflict`, ... with `"x" is already in use`);
//! - establishing: `Established` once the names are accepted;
//! - finalizing: a deleted CRD's objects are deleted (their own finalizers respected)
//!   before the `customresourcecleanup.apiextensions.k8s.io` finalizer is removed.
//!
//! Every apiserver computes the same status from the same objects, and a condition is
//! only rewritten when it changes, so several apiservers agree instead of fighting.

use crate::authz::follow::{self, Sink};
use crate::openapi::Published;
use crate::registry::{DeleteOptions, ListOptions, Registry, UserInfo, WriteOptions};
use keelson_apimachinery::meta;
use keelson_resources::kinds::customresourcedefinitions::{
    self as crds, condition_true, set_condition, CLEANUP_FINALIZER,
};
use keelson_resources::{custom, ResourceType};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const PREFIX: &str = "/registry/apiextensions.k8s.io/customresourcedefinitions/";

/// The CRDs as the watch cache last showed them, by name.
struct Crds {
    objects: Mutex<BTreeMap<String, Arc<Value>>>,
    changed: Notify,
    /// Told whenever what is served may have changed.
    openapi: Arc<Published>,
}

fn name_of(key: &str) -> &str {
    key.strip_prefix(PREFIX).unwrap_or(key)
}

/// Serve what `crd` defines now: its served versions once established, nothing
/// before (or after it is gone).
fn serve(name: &str, crd: Option<&Value>) {
    let defs = match crd {
        Some(c) if condition_true(c, "Established") => crds::definitions(c),
        _ => Vec::new(),
    };
    custom::install(name, defs);
}

impl Sink for Crds {
    fn prefixes(&self) -> &'static [&'static str] {
        &[PREFIX]
    }

    fn reset(&self, objects: Vec<(String, Arc<Value>)>) {
        let mut held = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        let fresh: BTreeMap<String, Arc<Value>> = objects
            .into_iter()
            .map(|(k, v)| (name_of(&k).to_string(), v))
            .collect();
        for gone in held.keys().filter(|k| !fresh.contains_key(*k)) {
            serve(gone, None);
        }
        for (name, crd) in &fresh {
            serve(name, Some(crd));
        }
        *held = fresh;
        self.changed.notify_one();
        self.openapi.changed();
    }

    fn apply(&self, key: &str, object: Option<&Arc<Value>>) {
        let name = name_of(key).to_string();
        serve(&name, object.map(|o| o.as_ref()));
        let mut held = self.objects.lock().unwrap_or_else(|e| e.into_inner());
        match object {
            Some(o) => held.insert(name, o.clone()),
            None => held.remove(&name),
        };
        self.changed.notify_one();
        self.openapi.changed();
    }
}

/// Start following CRDs; returns once the first load is served. `openapi` hears of
/// every change.
pub async fn start(registry: Registry, openapi: Arc<Published>) {
    let crds = Arc::new(Crds {
        objects: Mutex::default(),
        changed: Notify::new(),
        openapi,
    });
    let loaded = follow::follow(
        crds.clone(),
        registry.cache.clone(),
        registry.storage.clone(),
    );
    loaded.wait().await;
    tokio::spawn(work(crds, registry));
}

fn opts() -> WriteOptions {
    WriteOptions {
        field_manager: "keelson-apiserver".into(),
        user_agent: "keelson-apiserver".into(),
        user: UserInfo::apiserver(),
        ..Default::default()
    }
}

fn crd_type() -> &'static ResourceType {
    &crds::RESOURCE
}

async fn work(crds: Arc<Crds>, registry: Registry) {
    loop {
        let snapshot: Vec<Arc<Value>> = crds
            .objects
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        let mut terminating = false;
        let statuses = names_and_conditions(&snapshot);
        for (crd, status) in snapshot.iter().zip(statuses) {
            let name = meta::name(crd).to_string();
            if crd
                .pointer("/metadata/deletionTimestamp")
                .is_some_and(|v| !v.is_null())
            {
                terminating = true;
                if let Err(e) = finalize(&registry, crd).await {
                    tracing::warn!(crd = %name, error = %e, "deleting custom resources");
                }
                continue;
            }
            if let Some(status) = status {
                if let Err(e) = write_status(&registry, &name, status).await {
                    tracing::debug!(crd = %name, error = %e, "writing CRD status");
                }
            }
        }
        // A terminating CRD is looked at again until its objects are gone (their
        // finalizers may take a while); otherwise wait for a change.
        if terminating {
            let _ = tokio::time::timeout(Duration::from_millis(500), crds.changed.notified()).await;
        } else {
            crds.changed.notified().await;
        }
    }
}

/// The names and conditions each CRD should have (None when its status is right),
/// deciding in creation order so that of two CRDs asking for the same names the older
/// gets them, as Kubernetes' naming controller does when it sees them one by one.
fn names_and_conditions(all: &[Arc<Value>]) -> Vec<Option<Value>> {
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|i| {
        (
            meta::str_field(&all[*i], "creationTimestamp").to_string(),
            meta::name(&all[*i]).to_string(),
        )
    });
    // Accepted names as decided so far (a CRD's own decision replaces its old ones).
    let mut accepted: Vec<Value> = all
        .iter()
        .map(|c| {
            c.pointer("/status/acceptedNames")
                .cloned()
                .unwrap_or(json!({}))
        })
        .collect();
    let mut out = vec![None; all.len()];
    for i in order {
        let crd = &all[i];
        let group = crd
            .pointer("/spec/group")
            .and_then(Value::as_str)
            .unwrap_or("");
        let mut resources = BTreeSet::new();
        let mut kinds = BTreeSet::new();
        for (j, other) in all.iter().enumerate() {
            if j == i || other.pointer("/spec/group").and_then(Value::as_str) != Some(group) {
                continue;
            }
            let a = &accepted[j];
            for k in ["plural", "singular"] {
                if let Some(s) = a.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    resources.insert(s.to_string());
                }
            }
            for s in a
                .get("shortNames")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                resources.extend(s.as_str().map(String::from));
            }
            for k in ["kind", "listKind"] {
                if let Some(s) = a.get(k).and_then(Value::as_str).filter(|s| !s.is_empty()) {
                    kinds.insert(s.to_string());
                }
            }
        }
        let (names, cond) = decide_names(crd, &accepted[i], &resources, &kinds);
        let mut wanted = (**crd).clone();
        wanted["status"]["acceptedNames"] = names.clone();
        let accepted_ok = cond.0 == "True";
        set_condition(&mut wanted, "NamesAccepted", cond.0, &cond.1, &cond.2);
        if accepted_ok {
            set_condition(
                &mut wanted,
                "Established",
                "True",
                "InitialNamesAccepted",
                "the initial names have been accepted",
            );
        } else if !condition_true(crd, "Established") {
            set_condition(
                &mut wanted,
                "Established",
                "False",
                "NotAccepted",
                "not all names are accepted",
            );
        }
        accepted[i] = names;
        if wanted.get("status") != crd.get("status") {
            out[i] = wanted.get("status").cloned();
        }
    }
    out
}

/// One CRD's accepted names and its NamesAccepted (status, reason, message), given
/// the names other CRDs of its group hold.
fn decide_names(
    crd: &Value,
    accepted: &Value,
    resources: &BTreeSet<String>,
    kinds: &BTreeSet<String>,
) -> (Value, (&'static str, String, String)) {
    let requested = crd.pointer("/spec/names").cloned().unwrap_or(json!({}));
    let req = |k: &str| {
        requested
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let acc = |k: &str| {
        accepted
            .get(k)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let mut names = accepted.clone();
    if !names.is_object() {
        names = json!({});
    }
    let mut problem: Option<(&str, String)> = None;
    // Kubernetes' equalToAcceptedOrFresh.
    let fresh = |want: &str, have: &str, used: &BTreeSet<String>| -> Result<(), String> {
        if want == have || !used.contains(want) {
            Ok(())
        } else {
            Err(format!("\"{want}\" is already in use"))
        }
    };
    for (k, reason, used) in [
        ("plural", "PluralConflict", resources),
        ("singular", "SingularConflict", resources),
    ] {
        match fresh(&req(k), &acc(k), used) {
            Ok(()) => names[k] = json!(req(k)),
            Err(e) => problem = Some((reason, e)),
        }
    }
    let want_short = keelson_apimachinery::meta::path_strings(&requested, "shortNames");
    let have_short = keelson_apimachinery::meta::path_strings(accepted, "shortNames");
    if want_short != have_short {
        let errs: Vec<String> = want_short
            .iter()
            .filter(|s| !have_short.contains(s))
            .filter_map(|s| fresh(s, "", resources).err())
            .collect();
        if errs.is_empty() {
            if want_short.is_empty() {
                names.as_object_mut().map(|m| m.remove("shortNames"));
            } else {
                names["shortNames"] = json!(want_short);
            }
        } else {
            let msg = if errs.len() == 1 {
                errs[0].clone()
            } else {
                format!("[{}]", errs.join(", "))
            };
            problem = Some(("ShortNamesConflict", msg));
        }
    }
    for (k, reason) in [("kind", "KindConflict"), ("listKind", "ListKindConflict")] {
        match fresh(&req(k), &acc(k), kinds) {
            Ok(()) => names[k] = json!(req(k)),
            Err(e) => problem = Some((reason, e)),
        }
    }
    match requested.get("categories") {
        Some(c) => names["categories"] = c.clone(),
        None => {
            names.as_object_mut().map(|m| m.remove("categories"));
        }
    }
    let cond = match problem {
        None => (
            "True",
            "NoConflicts".to_string(),
            "no conflicts found".to_string(),
        ),
        Some((reason, msg)) => ("False", reason.to_string(), msg),
    };
    (names, cond)
}

/// Replace a CRD's status by what the controller decided (only the parts it owns:
/// accepted names and conditions; stored versions stay).
async fn write_status(
    registry: &Registry,
    name: &str,
    status: Value,
) -> Result<(), keelson_apimachinery::ApiError> {
    let o = opts();
    registry
        .guaranteed_update(crd_type(), "", name, &o, |old| {
            let old = old.ok_or_else(|| {
                keelson_apimachinery::ApiError::not_found(
                    crds::RESOURCE.group,
                    crds::RESOURCE.plural,
                    name,
                )
            })?;
            let mut new = old.clone();
            if !new.get("status").is_some_and(Value::is_object) {
                new["status"] = json!({});
            }
            for k in ["acceptedNames", "conditions"] {
                if let Some(v) = status.get(k) {
                    new["status"][k] = v.clone();
                }
            }
            registry.apply_update(crd_type(), Some(old), new, "", "status", &o)
        })
        .await
        .map(|_| ())
}

/// Delete a terminating CRD's objects, then let it go. Objects with finalizers of
/// their own are marked and waited for.
async fn finalize(registry: &Registry, crd: &Value) -> Result<(), keelson_apimachinery::ApiError> {
    let name = meta::name(crd).to_string();
    let has_finalizer = crd
        .pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .is_some_and(|f| f.iter().any(|x| x == CLEANUP_FINALIZER));
    if !has_finalizer {
        return Ok(());
    }
    let group = crd
        .pointer("/spec/group")
        .and_then(Value::as_str)
        .unwrap_or("");
    let plural = crd
        .pointer("/status/acceptedNames/plural")
        .and_then(Value::as_str)
        .unwrap_or("");
    let remaining = match keelson_resources::custom::find(group, plural) {
        Some(rt) if !plural.is_empty() => {
            let items = registry.list(rt, "", &ListOptions::default()).await?.items;
            for item in &items {
                if item
                    .pointer("/metadata/deletionTimestamp")
                    .is_some_and(|v| !v.is_null())
                {
                    continue;
                }
                match registry
                    .delete(
                        rt,
                        meta::namespace(item),
                        meta::name(item),
                        &DeleteOptions::default(),
                    )
                    .await
                {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            registry
                .list(rt, "", &ListOptions::default())
                .await?
                .items
                .len()
        }
        // Never served (names not accepted): nothing can have been stored.
        _ => 0,
    };
    let (reason, message) = if remaining == 0 {
        (
            "InstanceDeletionCompleted",
            "removed all instances".to_string(),
        )
    } else {
        (
            "InstanceDeletionInProgress",
            format!("CustomResource deletion is in progress ({remaining} remaining)"),
        )
    };
    let o = opts();
    registry
        .guaranteed_update(crd_type(), "", &name, &o, |old| {
            let old = old.ok_or_else(|| {
                keelson_apimachinery::ApiError::not_found(
                    crds::RESOURCE.group,
                    crds::RESOURCE.plural,
                    &name,
                )
            })?;
            let mut new = old.clone();
            set_condition(&mut new, "Terminating", "True", reason, &message);
            if remaining == 0 {
                if let Some(f) = new
                    .pointer_mut("/metadata/finalizers")
                    .and_then(Value::as_array_mut)
                {
                    f.retain(|x| x != CLEANUP_FINALIZER);
                }
            }
            registry.apply_update(crd_type(), Some(old), new, "", "", &o)
        })
        .await
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd(name: &str, plural: &str, kind: &str, created: &str) -> Arc<Value> {
        Arc::new(json!({
            "metadata": {"name": format!("{plural}.example.com"), "creationTimestamp": created, "uid": name},
            "spec": {"group": "example.com", "names": {"plural": plural, "singular": plural.trim_end_matches('s'), "kind": kind, "listKind": format!("{kind}List"), "shortNames": ["w"]}},
            "status": {"storedVersions": ["v1"]},
        }))
    }

    #[test]
    fn the_older_crd_keeps_its_names() {
        let a = crd("a", "widgets", "Widget", "2026-01-01T00:00:00Z");
        let b = crd("b", "widgets", "Gadget", "2026-01-02T00:00:00Z");
        let out = names_and_conditions(&[b.clone(), a.clone()]);
        let (sb, sa) = (out[0].clone().unwrap(), out[1].clone().unwrap());
        assert_eq!(sa["acceptedNames"]["plural"], "widgets");
        let cond = |s: &Value, t: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .cloned()
                .unwrap()
        };
        assert_eq!(cond(&sa, "NamesAccepted")["reason"], "NoConflicts");
        assert_eq!(cond(&sa, "Established")["status"], "True");
        let nb = cond(&sb, "NamesAccepted");
        assert_eq!(nb["status"], "False");
        // The short name is taken too; the last conflict found is reported.
        assert_eq!(nb["reason"], "ShortNamesConflict");
        assert_eq!(nb["message"], "\"w\" is already in use");
        assert_eq!(cond(&sb, "Established")["reason"], "NotAccepted");
        assert!(sb["acceptedNames"].get("plural").is_none() || sb["acceptedNames"]["plural"] == "");
        assert_eq!(sb["acceptedNames"]["kind"], "Gadget");
        // Once written, nothing changes again.
        let mut a2 = (*a).clone();
        a2["status"] = sa;
        assert!(names_and_conditions(&[Arc::new(a2)])[0].is_none());
    }
}
