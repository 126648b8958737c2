//! The LimitRanger, ServiceAccount and ResourceQuota admission plugins.
//!
//! - [`limitranger`]: a new pod's containers get the `default`/`defaultRequest` of the
//!   namespace's LimitRanges (mutating), then pods and PersistentVolumeClaims are
//!   checked against their min, max and limit/request ratios (validating, 403).
//! - [`serviceaccount`]: a new pod runs as a ServiceAccount (`default` unless named) and
//!   gets the `kube-api-access-*` token volume mounted in its containers (mutating).
//! - [`quota`]: a write that adds usage in a namespace with ResourceQuotas is refused
//!   (403) when it would exceed a quota, and otherwise charged to each quota's
//!   `status.used` with a compare-and-swap in etcd before the object is written, so
//!   concurrent creates cannot overshoot. A write that then fails gives the charge back.
//!
//! Both read the namespace's LimitRanges and ResourceQuotas from a [`NamespacedCache`]
//! fed by the watch cache, as Kubernetes reads them from informers.

pub mod cache;
pub mod limitranger;
pub mod noderestriction;
pub mod quota;
pub mod serviceaccount;

use crate::storage::Storage;
use crate::watch_cache::WatchCache;
use cache::NamespacedCache;
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::ResourceType;
use serde_json::Value;
use std::sync::Arc;

pub use quota::Reservation;

/// The admission plugins' shared state; cheap to clone.
#[derive(Clone)]
pub struct Admission {
    storage: Storage,
    limit_ranges: Arc<NamespacedCache>,
    quotas: Arc<NamespacedCache>,
}

/// `pods "x" is forbidden: <msg>`, as `admission.NewForbidden` words it.
pub fn forbidden(rt: &ResourceType, name: &str, msg: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{} \"{name}\" is forbidden: {msg}",
        rt.group_resource()
    ))
    .with_details(rt.group, rt.plural, name)
}

fn is_core(rt: &ResourceType, plural: &str) -> bool {
    rt.group.is_empty() && rt.plural == plural
}

impl Admission {
    pub fn new(storage: Storage, cache: Arc<WatchCache>) -> Self {
        let limit_ranges = Arc::new(NamespacedCache::new("/registry/limitranges/"));
        let quotas = Arc::new(NamespacedCache::new("/registry/resourcequotas/"));
        limit_ranges.follow(cache.clone(), storage.clone());
        quotas.follow(cache, storage.clone());
        Admission {
            storage,
            limit_ranges,
            quotas,
        }
    }

    /// Mutating admission of a new object: LimitRanger defaults for pods.
    pub async fn mutate_create(&self, rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
        if !is_core(rt, "pods") {
            return Ok(());
        }
        let ranges = self
            .limit_ranges
            .get(&self.storage, meta::namespace(obj))
            .await?;
        limitranger::default_pod(&ranges, obj);
        serviceaccount::admit(&self.storage, obj).await;
        Ok(())
    }

    /// Validating admission of a new object (named by now): LimitRanger limits, then
    /// ResourceQuota, whose charge the caller keeps once the object is written.
    pub async fn validate_create(
        &self,
        rt: &ResourceType,
        obj: &Value,
        dry_run: bool,
    ) -> Result<Reservation, ApiError> {
        self.validate(rt, obj, None, dry_run).await
    }

    /// Validating admission of an update of the main resource. Only Services and
    /// PersistentVolumeClaims can use more by being updated (type NodePort or
    /// LoadBalancer, a larger claim); pods' resources cannot change.
    pub async fn validate_update(
        &self,
        rt: &ResourceType,
        old: &Value,
        new: &Value,
        dry_run: bool,
    ) -> Result<Reservation, ApiError> {
        if !(is_core(rt, "services") || is_core(rt, "persistentvolumeclaims")) {
            return Ok(Reservation::none());
        }
        self.validate(rt, new, Some(old), dry_run).await
    }

    async fn validate(
        &self,
        rt: &ResourceType,
        obj: &Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Reservation, ApiError> {
        if !rt.namespaced {
            return Ok(Reservation::none());
        }
        let ns = meta::namespace(obj);
        let name = meta::name(obj);
        let limited =
            (is_core(rt, "pods") && old.is_none()) || is_core(rt, "persistentvolumeclaims");
        if limited {
            let ranges = self.limit_ranges.get(&self.storage, ns).await?;
            limitranger::validate(rt, &ranges, obj).map_err(|msg| forbidden(rt, name, &msg))?;
        }
        let quotas = self.quotas.get(&self.storage, ns).await?;
        if quotas.is_empty() {
            return Ok(Reservation::none());
        }
        quota::admit(&self.storage, rt, &quotas, obj, old, dry_run).await
    }
}
