//! How many seats a request occupies (Kubernetes' work estimator, `request/width.go`
//! and `list_work_estimator.go`): one for most requests; for a list, one per 100
//! objects it will read, from 1 to 10. Without this, every list of a thousand pods
//! counted as one seat, so a level's 49 seats let 49 such lists decode and encode at
//! once, and the CPU they took delayed every other level's requests (Lease renewals
//! waited seconds in `keelson-bench fairness`).
//!
//! How many objects a list reads is estimated from the number stored for its
//! resource, which [`ObjectCounts`] polls from etcd once a minute, as kube-apiserver's
//! object-count tracker does (and exports as `apiserver_storage_objects`).

use crate::authz::Attributes;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};
use std::time::Duration;

/// Objects one seat stands for.
const OBJECTS_PER_SEAT: i64 = 100;
/// The widest a request gets.
pub const MAX_SEATS: usize = 10;
/// How often stored objects are counted.
const COUNT_PERIOD: Duration = Duration::from_secs(60);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `pods`, `deployments.apps`.
    pub resource: String,
}

/// `apiserver_storage_objects`: objects stored per resource at the last count.
pub static STORED_OBJECTS: LazyLock<Family<ResourceLabels, Gauge>> = LazyLock::new(Family::default);

/// Objects stored per resource (`deployments.apps`, `pods`), as last counted.
#[derive(Default)]
pub struct ObjectCounts {
    counts: RwLock<HashMap<String, i64>>,
}

impl ObjectCounts {
    /// Count every served resource now and then once per [`COUNT_PERIOD`].
    pub fn start(storage: crate::storage::Storage) -> Arc<ObjectCounts> {
        let counts = Arc::new(ObjectCounts::default());
        let weak = Arc::downgrade(&counts);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(COUNT_PERIOD);
            loop {
                tick.tick().await;
                let Some(counts) = weak.upgrade() else { return };
                for rt in keelson_resources::kinds::ALL {
                    if rt.is_shared() || rt.strategy.create_only() {
                        continue;
                    }
                    // Trailing slash: `pods` must not count `podtemplates`.
                    let prefix = format!("{}/", rt.key_prefix());
                    match storage.count(&prefix).await {
                        Ok(n) => counts.set(&rt.group_resource(), n),
                        Err(e) => tracing::debug!(error = %e, "counting {prefix}"),
                    }
                }
            }
        });
        counts
    }

    pub fn set(&self, group_resource: &str, n: i64) {
        self.counts
            .write()
            .expect("object counts")
            .insert(group_resource.to_string(), n);
        STORED_OBJECTS
            .get_or_create(&ResourceLabels {
                resource: group_resource.to_string(),
            })
            .set(n);
    }

    fn get(&self, group_resource: &str) -> Option<i64> {
        self.counts
            .read()
            .expect("object counts")
            .get(group_resource)
            .copied()
    }

    /// The seats `a` occupies; `limit` is a list's `limit` parameter when known.
    pub fn width(&self, a: &Attributes, limit: Option<i64>) -> usize {
        if a.verb != "list" || !a.resource_request {
            return 1;
        }
        let group_resource = if a.api_group.is_empty() {
            a.resource.clone()
        } else {
            format!("{}.{}", a.resource, a.api_group)
        };
        // Not counted yet: nothing stored, as far as anyone knows (Kubernetes answers
        // the minimum for a resource its tracker has not seen).
        let stored = self.get(&group_resource).unwrap_or(0);
        list_width(stored, limit)
    }
}

/// Seats for a list that reads `stored` objects, or at most `limit` of them.
pub fn list_width(stored: i64, limit: Option<i64>) -> usize {
    let objects = match limit {
        Some(l) if l > 0 => stored.min(l),
        _ => stored,
    };
    let seats = (objects.max(0) + OBJECTS_PER_SEAT - 1) / OBJECTS_PER_SEAT;
    (seats as usize).clamp(1, MAX_SEATS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::UserInfo;

    #[test]
    fn lists_take_a_seat_per_hundred_objects_up_to_ten() {
        assert_eq!(list_width(0, None), 1);
        assert_eq!(list_width(100, None), 1);
        assert_eq!(list_width(101, None), 2);
        assert_eq!(list_width(1000, None), 10);
        assert_eq!(list_width(150_000, None), MAX_SEATS);
        assert_eq!(
            list_width(1000, Some(250)),
            3,
            "a limit bounds what is read"
        );
        assert_eq!(list_width(1000, Some(0)), 10, "limit=0 is no limit");
    }

    #[test]
    fn only_lists_are_wide() {
        let counts = ObjectCounts::default();
        counts.set("pods", 1000);
        counts.set("deployments.apps", 250);
        let u = UserInfo {
            name: "jane".into(),
            uid: String::new(),
            groups: vec![],
        };
        let list = |group, resource| Attributes::resource(&u, "list", group, resource, "", "");
        assert_eq!(counts.width(&list("", "pods"), None), 10);
        assert_eq!(counts.width(&list("apps", "deployments"), None), 3);
        assert_eq!(
            counts.width(&list("", "secrets"), None),
            1,
            "not counted yet"
        );
        let get = Attributes::resource(&u, "get", "", "pods", "default", "p");
        assert_eq!(counts.width(&get, None), 1);
    }
}
