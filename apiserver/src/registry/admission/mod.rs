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
//! - [`defaultstorageclass`]: a new PersistentVolumeClaim without a class gets the
//!   default StorageClass (mutating).
//! - [`runtimeclass`]: a new pod naming a RuntimeClass gets its overhead and scheduling
//!   (mutating); a missing class or a contradicting overhead refuses it (403).
//! - [`podsecurity`]: Pod Security admission from namespace labels (validating: 403 for
//!   pods under enforce, warnings and audit annotations for pods and workloads).
//!
//! - [`webhook`]: MutatingAdmissionWebhook and ValidatingAdmissionWebhook, in
//!   kube-apiserver's plugin order: mutating webhooks after the built-in mutating
//!   plugins, validating webhooks after the built-in validating ones but before
//!   ResourceQuota (so a refused write is never charged).
//!
//! LimitRanger and ResourceQuota read the namespace's LimitRanges and ResourceQuotas
//! from a [`NamespacedCache`] fed by the watch cache, as Kubernetes reads them from
//! informers.

pub mod cache;
pub mod defaultstorageclass;
pub mod limitranger;
pub mod noderestriction;
pub mod podsecurity;
pub mod quota;
pub mod runtimeclass;
pub mod serviceaccount;
pub mod webhook;

use crate::registry::{DeleteOptions, WriteOptions};
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
    pod_security: podsecurity::PodSecurity,
    webhooks: webhook::Webhooks,
}

/// A write that validating admission let through: the quota charge to keep once it is
/// written, and Pod Security's warnings and audit annotations.
pub struct Admitted {
    pub reservation: Reservation,
    pub warnings: Vec<String>,
    pub audit_annotations: std::collections::BTreeMap<String, String>,
}

/// `pods "x" is forbidden: <msg>` (`pods is forbidden: <msg>` for a create without a
/// name yet), as `admission.NewForbidden` words it.
pub fn forbidden(rt: &ResourceType, name: &str, msg: &str) -> ApiError {
    let resource = rt.group_resource();
    let message = if name.is_empty() {
        format!("{resource} is forbidden: {msg}")
    } else {
        format!("{resource} \"{name}\" is forbidden: {msg}")
    };
    ApiError::forbidden(message).with_details(rt.group, rt.plural, name)
}

fn is_core(rt: &ResourceType, plural: &str) -> bool {
    rt.group.is_empty() && rt.plural == plural
}

impl Admission {
    pub fn new(storage: Storage, cache: Arc<WatchCache>) -> Self {
        let limit_ranges = Arc::new(NamespacedCache::new("/registry/limitranges/"));
        let quotas = Arc::new(NamespacedCache::new("/registry/resourcequotas/"));
        limit_ranges.follow(cache.clone(), storage.clone());
        quotas.follow(cache.clone(), storage.clone());
        let pod_security = podsecurity::PodSecurity::new(storage.clone(), cache.clone());
        let webhooks = webhook::Webhooks::new(storage.clone(), cache);
        Admission {
            storage,
            limit_ranges,
            quotas,
            pod_security,
            webhooks,
        }
    }

    /// Pod Security admission's cluster defaults and exemptions.
    pub fn configure_pod_security(&mut self, config: podsecurity::config::Config) {
        self.pod_security.configure(config);
    }

    /// Mutating admission of a new object: LimitRanger, ServiceAccount and RuntimeClass
    /// for pods, DefaultStorageClass for claims.
    pub async fn mutate_create(&self, rt: &ResourceType, obj: &mut Value) -> Result<(), ApiError> {
        if is_core(rt, "persistentvolumeclaims") {
            return defaultstorageclass::admit(&self.storage, rt, obj).await;
        }
        if !is_core(rt, "pods") {
            return Ok(());
        }
        let ranges = self
            .limit_ranges
            .get(&self.storage, meta::namespace(obj))
            .await?;
        limitranger::default_pod(&ranges, obj);
        serviceaccount::admit(&self.storage, obj).await;
        if let Some(class) = runtimeclass::class_of(&self.storage, rt, obj).await? {
            runtimeclass::admit(rt, &class, obj)?;
        }
        Ok(())
    }

    /// Mutating admission webhooks on a create or an update of `obj` (`old` for
    /// updates) of `subresource`: their warnings, and whether they changed `obj`.
    #[allow(clippy::too_many_arguments)]
    pub async fn mutate_webhooks(
        &self,
        operation: webhook::Operation,
        rt: &ResourceType,
        subresource: &str,
        obj: &mut Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> Result<(Vec<String>, bool), ApiError> {
        if !self.webhooks.configured() {
            return Ok((Vec::new(), false));
        }
        let attrs = webhook::Attributes::write(operation, rt, subresource, obj, old, opts);
        let mut warnings = Vec::new();
        let changed = self
            .webhooks
            .mutate(&attrs, Some(obj), &mut warnings)
            .await?;
        Ok((warnings, changed))
    }

    /// Admission of a delete of `obj`: mutating webhooks (which see no object, as on
    /// Kubernetes), then validating webhooks with `obj` as the old object. Their
    /// warnings.
    pub async fn admit_delete(
        &self,
        rt: &ResourceType,
        obj: &Value,
        opts: &DeleteOptions,
    ) -> Result<Vec<String>, ApiError> {
        if !self.webhooks.configured() {
            return Ok(Vec::new());
        }
        let attrs = webhook::Attributes::delete(rt, obj, opts);
        let mut warnings = Vec::new();
        self.webhooks.mutate(&attrs, None, &mut warnings).await?;
        self.webhooks.validate(&attrs, None, &mut warnings).await?;
        Ok(warnings)
    }

    /// Validating admission of a new object (named by now): LimitRanger limits, Pod
    /// Security, validating webhooks (unless `webhooks` is false: the apiserver's own
    /// writes through [`crate::registry::Registry::guaranteed_update`]), then
    /// ResourceQuota, whose charge the caller keeps once the object is written.
    pub async fn validate_create(
        &self,
        rt: &ResourceType,
        obj: &Value,
        opts: &WriteOptions,
        webhooks: bool,
    ) -> Result<Admitted, ApiError> {
        self.limit(rt, obj, None).await?;
        if is_core(rt, "pods") {
            let class = runtimeclass::class_of(&self.storage, rt, obj).await?;
            runtimeclass::validate(rt, class.as_ref(), obj)?;
        }
        let mut ps = self
            .pod_security
            .validate(rt, obj, None, &opts.user)
            .await?;
        if webhooks && self.webhooks.configured() {
            let attrs =
                webhook::Attributes::write(webhook::Operation::Create, rt, "", obj, None, opts);
            self.webhooks
                .validate(&attrs, Some(obj), &mut ps.warnings)
                .await?;
        }
        let reservation = self.charge(rt, obj, None, opts.dry_run).await?;
        Ok(Admitted {
            reservation,
            warnings: ps.warnings,
            audit_annotations: ps.audit_annotations,
        })
    }

    /// Validating admission of an update: Pod Security, validating webhooks (for the
    /// `webhooks` subresource, when given), then quota. Only Services and
    /// PersistentVolumeClaims can use more by being updated (type NodePort or
    /// LoadBalancer, a larger claim); pods' resources cannot change.
    pub async fn validate_update(
        &self,
        rt: &ResourceType,
        old: &Value,
        new: &Value,
        opts: &WriteOptions,
        webhooks: Option<&str>,
    ) -> Result<Admitted, ApiError> {
        let charged = is_core(rt, "services") || is_core(rt, "persistentvolumeclaims");
        if charged {
            self.limit(rt, new, Some(old)).await?;
        }
        let mut ps = self
            .pod_security
            .validate(rt, new, Some(old), &opts.user)
            .await?;
        if let Some(sub) = webhooks.filter(|_| self.webhooks.configured()) {
            let attrs = webhook::Attributes::write(
                webhook::Operation::Update,
                rt,
                sub,
                new,
                Some(old),
                opts,
            );
            self.webhooks
                .validate(&attrs, Some(new), &mut ps.warnings)
                .await?;
        }
        let reservation = if charged {
            self.charge(rt, new, Some(old), opts.dry_run).await?
        } else {
            Reservation::none()
        };
        Ok(Admitted {
            reservation,
            warnings: ps.warnings,
            audit_annotations: ps.audit_annotations,
        })
    }

    /// LimitRanger's limits of new pods and of claims.
    async fn limit(
        &self,
        rt: &ResourceType,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let limited = rt.namespaced
            && ((is_core(rt, "pods") && old.is_none()) || is_core(rt, "persistentvolumeclaims"));
        if limited {
            let ranges = self
                .limit_ranges
                .get(&self.storage, meta::namespace(obj))
                .await?;
            limitranger::validate(rt, &ranges, obj)
                .map_err(|msg| forbidden(rt, meta::name(obj), &msg))?;
        }
        Ok(())
    }

    /// ResourceQuota's charge.
    async fn charge(
        &self,
        rt: &ResourceType,
        obj: &Value,
        old: Option<&Value>,
        dry_run: bool,
    ) -> Result<Reservation, ApiError> {
        if !rt.namespaced {
            return Ok(Reservation::none());
        }
        let quotas = self.quotas.get(&self.storage, meta::namespace(obj)).await?;
        if quotas.is_empty() {
            return Ok(Reservation::none());
        }
        quota::admit(&self.storage, rt, &quotas, obj, old, dry_run).await
    }
}
