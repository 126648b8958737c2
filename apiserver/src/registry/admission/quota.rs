//! ResourceQuota admission, as Kubernetes' plugin.
//!
//! For each quota in the namespace that limits something this object counts toward
//! (by `status.hard`, which the quota controller copies from `spec.hard`) and whose
//! scopes select it: pods must state what the quota limits (`failed quota: q: must
//! specify limits.cpu for: app`), the quota's usage must be known (`status unknown for
//! quota`), and `used + requested` must stay within `hard` (`exceeded quota: q,
//! requested: pods=1, used: pods=2, limited: pods=2`).
//!
//! The request is then charged: each quota's `status.used` is rewritten in etcd
//! conditioned on the revision it was checked against, and checked again on a
//! conflict, so concurrent writers cannot exceed a quota together. The returned
//! [`Reservation`] gives the charge back if the object's own write does not happen.

use super::forbidden;
use crate::registry::{decode_kv, key};
use crate::storage::{Storage, StorageError};
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::quota::{
    add_into, counted_kind, list_from_json, list_to_json, matches_scopes, pod_constraints, pretty,
    sub, usage, ResourceList,
};
use keelson_resources::ResourceType;
use serde_json::Value;
use std::sync::Arc;

/// Charges made to quotas for one write. Dropped without [`Reservation::keep`], it
/// gives them back (on a task of its own).
pub struct Reservation {
    storage: Option<Storage>,
    /// Quota etcd key → what was added to its `status.used`.
    charged: Vec<(String, ResourceList)>,
}

impl Reservation {
    pub fn none() -> Self {
        Reservation {
            storage: None,
            charged: Vec::new(),
        }
    }

    /// The write happened: the charges stay.
    pub fn keep(mut self) {
        self.charged.clear();
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let (Some(storage), charged) = (self.storage.take(), std::mem::take(&mut self.charged))
        else {
            return;
        };
        if charged.is_empty() {
            return;
        }
        tokio::spawn(async move {
            for (k, amount) in charged {
                release(&storage, &k, &amount).await;
            }
        });
    }
}

fn resourcequotas() -> &'static ResourceType {
    keelson_resources::find("", "resourcequotas").expect("resourcequotas are served")
}

/// The stored form of a quota: its JSON without resourceVersion.
fn encode(quota: &Value) -> Vec<u8> {
    let mut q = quota.clone();
    if let Some(m) = q.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
    }
    serde_json::to_vec(&q).expect("JSON values always serialize")
}

/// What `quota` would charge for `delta` (the object's added usage): the part of it the
/// quota limits, or `None` when the quota does not concern this object. Errors are the
/// 403 messages.
fn charge(
    quota: &Value,
    rt: &ResourceType,
    obj: &Value,
    delta: &ResourceList,
) -> Result<Option<ResourceList>, String> {
    let name = meta::name(quota);
    let hard = list_from_json(quota.pointer("/status/hard"));
    let kind = (rt.group.to_string(), rt.plural.to_string());
    let restricted: Vec<&str> = hard
        .keys()
        .filter(|r| counted_kind(r).as_ref() == Some(&kind))
        .map(String::as_str)
        .collect();
    if restricted.is_empty() || !matches_scopes(quota, rt.group, rt.plural, obj) {
        return Ok(None);
    }
    if rt.group.is_empty() && rt.plural == "pods" {
        pod_constraints(&restricted, obj).map_err(|e| format!("failed quota: {name}: {e}"))?;
    }
    let used = list_from_json(quota.pointer("/status/used"));
    let unknown: Vec<&str> = restricted
        .iter()
        .copied()
        .filter(|r| !used.contains_key(*r))
        .collect();
    if !unknown.is_empty() {
        return Err(format!(
            "status unknown for quota: {name}, resources: {}",
            unknown.join(",")
        ));
    }
    let requested: ResourceList = delta
        .iter()
        .filter(|(r, _)| hard.contains_key(*r))
        .map(|(r, q)| (r.clone(), *q))
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    let exceeded: Vec<&String> = requested
        .iter()
        .filter(|(r, q)| {
            let total = match used.get(*r) {
                Some(u) => keelson_resources::quota::add(u, q),
                None => **q,
            };
            total > hard[*r]
        })
        .map(|(r, _)| r)
        .collect();
    if !exceeded.is_empty() {
        let mask = |l: &ResourceList| -> ResourceList {
            l.iter()
                .filter(|(r, _)| exceeded.contains(r))
                .map(|(r, q)| (r.clone(), *q))
                .collect()
        };
        return Err(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&mask(&requested)),
            pretty(&mask(&used)),
            pretty(&mask(&hard)),
        ));
    }
    Ok(Some(requested))
}

/// The usage the write adds: all of the new object's for a create, the increase for an
/// update (nothing is charged for what goes down; the controller recounts).
fn delta(rt: &ResourceType, obj: &Value, old: Option<&Value>) -> ResourceList {
    let now = chrono::Utc::now().timestamp();
    let new = usage(rt.group, rt.plural, obj, now);
    let Some(old) = old else {
        return new;
    };
    let before = usage(rt.group, rt.plural, old, now);
    new.into_iter()
        .filter_map(|(r, q)| {
            let grown = match before.get(&r) {
                Some(b) => sub(&q, b),
                None => q,
            };
            (grown > keelson_resources::quantity::Quantity::zero()).then_some((r, grown))
        })
        .collect()
}

/// Check `obj` against every quota, then charge the quotas that concern it.
pub async fn admit(
    storage: &Storage,
    rt: &ResourceType,
    quotas: &[Arc<Value>],
    obj: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<Reservation, ApiError> {
    let name = meta::name(obj);
    let delta = delta(rt, obj, old);
    // Every quota first, so that a refusal writes nothing.
    let mut pending = Vec::new();
    for q in quotas {
        if let Some(amount) = charge(q, rt, obj, &delta).map_err(|m| forbidden(rt, name, &m))? {
            pending.push((q.clone(), amount));
        }
    }
    let mut reservation = Reservation {
        storage: Some(storage.clone()),
        charged: Vec::new(),
    };
    if dry_run {
        return Ok(reservation);
    }
    for (quota, amount) in pending {
        let k = key(
            resourcequotas(),
            meta::namespace(&quota),
            meta::name(&quota),
        );
        let mut current: Value = (*quota).clone();
        for attempt in 0.. {
            if attempt == 10 {
                return Err(ApiError::conflict(
                    "",
                    "resourcequotas",
                    meta::name(&quota),
                    "too many concurrent quota updates; try again",
                ));
            }
            // Checked again against the version being replaced.
            let Some(amount) =
                charge(&current, rt, obj, &amount).map_err(|m| forbidden(rt, name, &m))?
            else {
                break;
            };
            let mut used = list_from_json(current.pointer("/status/used"));
            add_into(&mut used, &amount);
            let mut updated = current.clone();
            updated["status"]["used"] = list_to_json(&used);
            let rev: i64 = meta::resource_version(&current).parse().unwrap_or(0);
            match storage.update(&k, encode(&updated), rev).await {
                Ok(_) => {
                    reservation.charged.push((k.clone(), amount));
                    break;
                }
                Err(StorageError::Conflict(Some(kv))) => current = decode_kv(&kv)?,
                // Deleted meanwhile: nothing to charge.
                Err(StorageError::Conflict(None)) => break,
                Err(e) => {
                    return Err(ApiError::internal(format!(
                        "updating quota {}: {e}",
                        meta::name(&quota)
                    )))
                }
            }
        }
    }
    Ok(reservation)
}

/// Give back a charge: subtract it from the quota's `status.used` (never below zero).
async fn release(storage: &Storage, k: &str, amount: &ResourceList) {
    for _ in 0..10 {
        let Ok(Some(kv)) = storage.get(k).await else {
            return;
        };
        let Ok(mut quota) = decode_kv(&kv) else {
            return;
        };
        let mut used = list_from_json(quota.pointer("/status/used"));
        for (r, q) in amount {
            if let Some(u) = used.get_mut(r) {
                let left = sub(u, q);
                *u = left.max(keelson_resources::quantity::Quantity::zero());
            }
        }
        quota["status"]["used"] = list_to_json(&used);
        match storage.update(k, encode(&quota), kv.mod_revision).await {
            Err(StorageError::Conflict(_)) => continue,
            Err(e) => {
                tracing::warn!(quota = k, error = %e, "giving back a quota charge");
                return;
            }
            Ok(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pods() -> &'static ResourceType {
        keelson_resources::find("", "pods").unwrap()
    }

    fn quota(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "q1", "namespace": "ns"}, "spec": {"hard": hard},
            "status": {"hard": hard, "used": used}})
    }

    fn pod(resources: Value) -> Value {
        json!({"metadata": {"name": "x"}, "spec": {"containers": [{"name": "app", "resources": resources}]}})
    }

    #[test]
    fn exceeding_a_quota_uses_kubernetes_message() {
        let q = quota(json!({"pods": "2"}), json!({"pods": "2"}));
        let p = pod(json!({}));
        let d = delta(pods(), &p, None);
        assert_eq!(
            charge(&q, pods(), &p, &d).unwrap_err(),
            "exceeded quota: q1, requested: pods=1, used: pods=2, limited: pods=2"
        );
        let q = quota(
            json!({"pods": "3", "requests.cpu": "1"}),
            json!({"pods": "2", "requests.cpu": "500m"}),
        );
        let p = pod(json!({"requests": {"cpu": "600m"}}));
        let d = delta(pods(), &p, None);
        assert_eq!(
            charge(&q, pods(), &p, &d).unwrap_err(),
            "exceeded quota: q1, requested: requests.cpu=600m, used: requests.cpu=500m, limited: requests.cpu=1"
        );
        let p = pod(json!({"requests": {"cpu": "500m"}}));
        let d = delta(pods(), &p, None);
        let c = charge(&q, pods(), &p, &d).unwrap().unwrap();
        assert_eq!(pretty(&c), "pods=1,requests.cpu=500m");
    }

    #[test]
    fn limits_must_be_stated_and_usage_known() {
        let q = quota(json!({"limits.cpu": "2"}), json!({"limits.cpu": "0"}));
        let p = pod(json!({"requests": {"cpu": "1"}}));
        let d = delta(pods(), &p, None);
        assert_eq!(
            charge(&q, pods(), &p, &d).unwrap_err(),
            "failed quota: q1: must specify limits.cpu for: app"
        );
        let q = quota(
            json!({"pods": "2", "services": "1"}),
            json!({"services": "0"}),
        );
        let d = delta(pods(), &p, None);
        assert_eq!(
            charge(&q, pods(), &p, &d).unwrap_err(),
            "status unknown for quota: q1, resources: pods"
        );
        // Not computed yet (no status.hard): no limit.
        let fresh = json!({"metadata": {"name": "q1"}, "spec": {"hard": {"pods": "0"}}});
        assert_eq!(charge(&fresh, pods(), &p, &d), Ok(None));
    }

    #[test]
    fn updates_charge_only_growth() {
        let services = keelson_resources::find("", "services").unwrap();
        let old = json!({"spec": {"type": "ClusterIP", "ports": [{"port": 80}]}});
        let new = json!({"spec": {"type": "NodePort", "ports": [{"port": 80}]}});
        let d = delta(services, &new, Some(&old));
        assert_eq!(pretty(&d), "services.nodeports=1");
        assert!(delta(services, &old, Some(&new)).is_empty());
    }
}
