//! The generic store: every resource's create, read, update, patch and delete.
//!
//! One implementation serves every kind; what differs per kind comes from its
//! [`keelson_resources::Strategy`]. The flow of a write mirrors Kubernetes'
//! `genericregistry.Store`: decode → check type and namespace → server-owned metadata →
//! strategy defaults → validation → admission (namespace lifecycle, service allocation)
//! → managed fields → an etcd transaction conditioned on the revision that was read.
//! Updates without a client-supplied resourceVersion retry on conflict
//! ([`Registry::guaranteed_update`]); updates with one answer 409.

pub mod admission;
pub mod allocation;
pub mod certificates;
pub mod endpoints;
pub mod eviction;
pub mod fields;
pub mod list;
pub mod metadata;
pub mod namespaces;
pub mod options;
pub mod patching;
pub mod priority;
pub mod subresources;
pub mod tokens;
pub mod watch;

use crate::storage::{Commit, Kv, Storage, StorageError};
use crate::watch_cache::{decode, WatchCache};
use allocation::ServiceAllocator;
use keelson_apimachinery::{meta, ApiError, Cause};
use keelson_resources::strategy::GcPolicy;
use keelson_resources::{ResourceType, Subresource};
pub use options::{
    parse_bool, DeleteOptions, FieldValidation, ListOptions, UserInfo, WriteOptions,
};
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::Duration;

/// The shared store; cheap to clone.
#[derive(Clone)]
pub struct Registry {
    pub storage: Storage,
    pub cache: Arc<WatchCache>,
    pub services: Arc<ServiceAllocator>,
    namespaces: namespaces::NamespaceCache,
    priorities: priority::PriorityClassCache,
    admission: admission::Admission,
    /// How long objects of expiring kinds (Events) live after their last write.
    event_ttl: Option<Duration>,
    /// Signs service-account tokens (`serviceaccounts/token`).
    pub token_issuer: Option<Arc<crate::serviceaccount::Issuer>>,
    /// The longest a requested token may live (`--service-account-max-token-expiration`).
    pub max_token_expiration: Option<Duration>,
    /// The authorizer chain, for checks on writes: RBAC escalation (may this user
    /// grant these rules?) and NodeRestriction.
    pub authorizer: Option<Arc<crate::authz::Authorizer>>,
}

/// The result of a write: the object, warnings for the client, whether it was
/// created (201) rather than updated (200), and what admission asks the audit log to
/// record of it (Pod Security's `pod-security.kubernetes.io/*` annotations).
#[derive(Debug)]
pub struct Written {
    pub object: Arc<Value>,
    pub created: bool,
    pub warnings: Vec<String>,
    pub audit_annotations: std::collections::BTreeMap<String, String>,
}

/// The etcd key of one object.
pub fn key(rt: &ResourceType, namespace: &str, name: &str) -> String {
    if rt.namespaced {
        format!("{}/{namespace}/{name}", rt.key_prefix())
    } else {
        format!("{}/{name}", rt.key_prefix())
    }
}

/// The etcd prefix of a collection (one namespace, or all when `namespace` is "").
pub fn collection_prefix(rt: &ResourceType, namespace: &str) -> String {
    if rt.namespaced && !namespace.is_empty() {
        format!("{}/{namespace}/", rt.key_prefix())
    } else {
        format!("{}/", rt.key_prefix())
    }
}

pub fn storage_error(e: StorageError, rt: &ResourceType, name: &str) -> ApiError {
    match e {
        StorageError::NotFound => ApiError::not_found(rt.group, rt.plural, name),
        StorageError::AlreadyExists => ApiError::already_exists(rt.group, rt.plural, name),
        StorageError::Conflict(_) => ApiError::stale(rt.group, rt.plural, name),
        StorageError::Compacted { .. } => ApiError::gone("too old resource version"),
        StorageError::ClaimTaken(keys) => ApiError::conflict(
            rt.group,
            rt.plural,
            name,
            &format!("already allocated: {keys:?}"),
        ),
        StorageError::Unavailable(msg) => ApiError::timeout(format!("etcd is unavailable: {msg}")),
        StorageError::LeaseGone => ApiError::timeout("the etcd lease for this write vanished"),
        e @ StorageError::Transform { .. } => {
            ApiError::internal(format!("Internal error occurred: {e}"))
        }
    }
}

pub fn decode_kv(kv: &Kv) -> Result<Value, ApiError> {
    decode(&kv.value, kv.mod_revision)
        .ok_or_else(|| ApiError::internal(format!("stored object at {} is not valid JSON", kv.key)))
}

/// An object of `rt` from its key-value, converted when `rt` keeps its objects in
/// another resource's shape (events.k8s.io Events).
pub fn decode_as(rt: &ResourceType, kv: &Kv) -> Result<Value, ApiError> {
    decode_kv(kv).map(|obj| rt.from_stored(obj))
}

/// The stored form: no resourceVersion (it is the key's revision) and no selfLink.
fn encode(obj: &Value) -> Vec<u8> {
    let meta = obj.get("metadata").and_then(Value::as_object);
    let strip =
        meta.is_some_and(|m| m.contains_key("resourceVersion") || m.contains_key("selfLink"));
    if !strip {
        // The common case (create): nothing to strip, so no copy.
        return serde_json::to_vec(obj).expect("JSON values always serialize");
    }
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("selfLink");
    }
    serde_json::to_vec(&o).expect("JSON values always serialize")
}

impl Registry {
    /// Tell the watch cache what was just written, so it need not decode it again.
    fn wrote(
        &self,
        rt: &ResourceType,
        rev: i64,
        key: &str,
        object: &Arc<Value>,
        prev: Option<Arc<Value>>,
    ) {
        // The stored bytes have no selfLink (see `encode`); keep the two forms equal.
        // A kind stored in another's shape lets the cache decode the stored bytes.
        if object.pointer("/metadata/selfLink").is_none() && !rt.is_shared() {
            self.cache.wrote(rev, key, object.clone(), prev);
        }
    }
}

fn with_rv(mut obj: Value, rev: i64) -> Value {
    meta::metadata_mut(&mut obj).insert("resourceVersion".into(), json!(rev.to_string()));
    obj
}

fn is_services(rt: &ResourceType) -> bool {
    rt.group.is_empty() && rt.plural == "services"
}

fn deletion_pending(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null())
}

fn finalizers(obj: &Value) -> Vec<String> {
    meta::path_strings(obj, "metadata.finalizers")
}

impl Registry {
    pub async fn new(storage: Storage, services: ServiceAllocator) -> anyhow::Result<Self> {
        let cache = WatchCache::start(storage.clone()).await?;
        let namespaces = namespaces::NamespaceCache::default();
        namespaces.follow(cache.clone(), cache.latest());
        let priorities = priority::PriorityClassCache::default();
        priorities.follow(cache.clone(), storage.clone());
        let admission = admission::Admission::new(storage.clone(), cache.clone());
        Ok(Registry {
            storage,
            cache,
            services: Arc::new(services),
            namespaces,
            priorities,
            admission,
            event_ttl: None,
            token_issuer: None,
            max_token_expiration: None,
            authorizer: None,
        })
    }

    /// Store objects whose strategy `expires()` (Events) with this time to live
    /// (kube-apiserver's `--event-ttl`); without it they stay until deleted.
    pub fn with_event_ttl(mut self, ttl: Duration) -> Self {
        self.event_ttl = Some(ttl).filter(|t| !t.is_zero());
        self
    }

    /// Pod Security admission's cluster defaults and exemptions
    /// (`--admission-control-config-file`).
    pub fn with_pod_security(mut self, config: admission::podsecurity::config::Config) -> Self {
        self.admission.configure_pod_security(config);
        self
    }

    /// The etcd lease a write of `rt` is attached to, if its objects expire.
    async fn lease(&self, rt: &ResourceType, name: &str) -> Result<Option<i64>, ApiError> {
        match self.event_ttl {
            Some(ttl) if rt.strategy.expires() => self
                .storage
                .lease_for(ttl)
                .await
                .map(Some)
                .map_err(|e| storage_error(e, rt, name)),
            _ => Ok(None),
        }
    }

    pub async fn get(&self, rt: &ResourceType, ns: &str, name: &str) -> Result<Value, ApiError> {
        match self.storage.get(&key(rt, ns, name)).await {
            Ok(Some(kv)) => decode_as(rt, &kv),
            Ok(None) => Err(ApiError::not_found(rt.group, rt.plural, name)),
            Err(e) => Err(storage_error(e, rt, name)),
        }
    }

    /// The checks that depend on who writes: NodeRestriction admission (a node changes
    /// only its own Node, Lease and pods) and RBAC's escalation prevention (roles and
    /// bindings grant only what their writer holds).
    async fn admit_user(
        &self,
        rt: &ResourceType,
        obj: &Value,
        old: Option<&Value>,
        opts: &WriteOptions,
    ) -> Result<(), ApiError> {
        admission::noderestriction::admit(rt, obj, old, &opts.user)?;
        certificates::admit(self.authorizer.as_deref(), rt, obj, old, &opts.user).await?;
        if let Some(authorizer) = &self.authorizer {
            if crate::authz::rbac::escalation::applies(rt) {
                crate::authz::rbac::escalation::check(authorizer, rt, obj, old, &opts.user).await?;
            }
        }
        Ok(())
    }

    /// NamespaceLifecycle admission: the namespace must exist and not be terminating.
    async fn admit_namespace(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        if !rt.namespaced {
            return Ok(());
        }
        let state = match self.namespaces.get(ns) {
            Some(state) => state,
            None => {
                let ns_rt =
                    keelson_resources::find("", "namespaces").expect("namespaces are served");
                let nso = self.get(ns_rt, "", ns).await.map_err(|e| {
                    if e.code == 404 {
                        ApiError::not_found("", "namespaces", ns)
                    } else {
                        e
                    }
                })?;
                self.namespaces.observe(ns, &nso);
                self.namespaces.get(ns).expect("just observed")
            }
        };
        if state == namespaces::NamespaceState::Terminating {
            return Err(ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                rt.group_resource(),
            ))
            .with_details(rt.group, rt.plural, name)
            );
        }
        Ok(())
    }

    /// For writes that create when the object is missing (update of create-on-update
    /// kinds, server-side apply): a new object needs a live namespace, checked before
    /// anything is written.
    async fn admit_namespace_if_new(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
    ) -> Result<(), ApiError> {
        match self.get(rt, ns, name).await {
            Err(e) if e.code == 404 => self.admit_namespace(rt, ns, name).await,
            _ => Ok(()),
        }
    }

    /// Defaults, validation and the strategy's update checks for a candidate object.
    fn admit(
        &self,
        rt: &ResourceType,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        rt.strategy.default(obj);
        let mut causes = metadata::validate(rt, obj);
        causes.extend(rt.strategy.validate(obj));
        if old.is_none() {
            causes.extend(rt.strategy.validate_create(obj));
        }
        if let Some(old) = old {
            causes.extend(metadata::validate_update(obj, old));
            causes.extend(rt.strategy.validate_update(obj, old));
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(ApiError::invalid(
                rt.group,
                rt.kind,
                meta::name(obj),
                causes,
            ))
        }
    }

    pub async fn create(
        &self,
        rt: &ResourceType,
        ns: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        options::validate_field_manager("CreateOptions", &opts.field_manager)?;
        if let Some(why) = rt.strategy.create_refused() {
            return Err(ApiError::method_not_allowed(why).with_details(rt.group, rt.plural, ""));
        }
        metadata::check_type(rt, &mut obj)?;
        metadata::check_namespace(rt, &mut obj, ns)?;
        let mut warnings = fields::check_unknown(rt, &mut obj, opts.field_validation)?;
        // Priority admission sees the object as sent (no generated name yet).
        self.priorities.prepare(&self.storage, rt, &obj).await;
        let sent_name = meta::name(&obj).to_string();
        self.priorities.admit_create(rt, &mut obj, &sent_name)?;
        self.admission.mutate_create(rt, &mut obj).await?;
        let (hook_warnings, _) = self
            .admission
            .mutate_webhooks(
                admission::webhook::Operation::Create,
                rt,
                "",
                &mut obj,
                None,
                opts,
            )
            .await?;
        warnings.extend(hook_warnings);
        metadata::prepare_create(rt, &mut obj)?;
        rt.strategy.prepare_for_create(&mut obj);
        certificates::set_requester(rt, &mut obj, &opts.user);
        self.admit(rt, &mut obj, None)?;
        self.admit_namespace(rt, meta::namespace(&obj), meta::name(&obj))
            .await?;
        self.admit_user(rt, &obj, None, opts).await?;
        // Quota charges are given back unless the object is written.
        let admitted = self.admission.validate_create(rt, &obj, opts, true).await?;
        let (reservation, audit_annotations) = (admitted.reservation, admitted.audit_annotations);
        warnings.extend(admitted.warnings);
        patching::track_fields(rt, None, &mut obj, opts, "");
        let name = meta::name(&obj).to_string();
        let k = key(rt, meta::namespace(&obj), &name);
        // Only Services may need another attempt (a random address or port was taken),
        // so only they keep a copy of the object to retry from.
        let original = if is_services(rt) {
            Some(obj.clone())
        } else {
            None
        };
        let mut next = Some(obj);
        for _attempt in 0..10 {
            let mut candidate = match next.take() {
                Some(o) => o,
                None => original.clone().expect("only services retry"),
            };
            let alloc = if is_services(rt) {
                self.services.allocate(&mut candidate, None)?
            } else {
                allocation::Allocation::default()
            };
            if opts.dry_run {
                return Ok(Written {
                    object: Arc::new(candidate),
                    created: true,
                    warnings,
                    audit_annotations,
                });
            }
            let commit = Commit {
                key: k.clone(),
                value: Some(encode(&rt.to_stored(&candidate))),
                expected: None,
                claims: alloc.claims,
                releases: alloc.releases,
                lease: self.lease(rt, &name).await?,
            };
            match self.storage.commit(commit).await {
                Ok(rev) => {
                    reservation.keep();
                    let object = Arc::new(with_rv(candidate, rev));
                    self.wrote(rt, rev, &k, &object, None);
                    return Ok(Written {
                        object,
                        created: true,
                        warnings,
                        audit_annotations,
                    });
                }
                Err(StorageError::ClaimTaken(taken)) => {
                    let original = original.as_ref().expect("only services claim keys");
                    let requested = self.services.requested_keys(original);
                    if let Some(k) = taken.iter().find(|k| requested.contains(k)) {
                        return Err(self.services.taken_error(original, k));
                    }
                    // A randomly picked address or port was taken: pick again.
                }
                // The shared lease was revoked: write again on a new one.
                Err(StorageError::LeaseGone) => next = Some(candidate),
                Err(e) => return Err(storage_error(e, rt, &name)),
            }
        }
        Err(ApiError::internal(
            "could not allocate a free ClusterIP or NodePort after 10 attempts",
        ))
    }

    /// Read-modify-write with retries on conflict: `mutate` gets the current object (None
    /// when missing) and returns the new one. When `precondition_rv` is given, a
    /// different stored revision is a 409 instead of a retry. For the apiserver's own
    /// writes (status of CRDs, scale, evictions): admission webhooks do not see them.
    pub async fn guaranteed_update<F>(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &WriteOptions,
        mutate: F,
    ) -> Result<Written, ApiError>
    where
        F: FnMut(Option<&Value>) -> Result<Value, ApiError>,
    {
        self.admitted_update(rt, ns, name, opts, None, mutate).await
    }

    /// [`Registry::guaranteed_update`] of a client's update or patch of `subresource`
    /// (`webhooks`): each attempt goes through mutating admission (the built-in plugins
    /// too when it creates, as server-side apply can) and the admission webhooks.
    pub async fn admitted_update<F>(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &WriteOptions,
        webhooks: Option<&str>,
        mut mutate: F,
    ) -> Result<Written, ApiError>
    where
        F: FnMut(Option<&Value>) -> Result<Value, ApiError>,
    {
        let dry_run = opts.dry_run;
        let k = key(rt, ns, name);
        let mut current = self
            .storage
            .get(&k)
            .await
            .map_err(|e| storage_error(e, rt, name))?;
        for _attempt in 0..16 {
            let old = match &current {
                Some(kv) => Some(decode_as(rt, kv)?),
                None => None,
            };
            let mut new = mutate(old.as_ref())?;
            let created = old.is_none();
            let mut hook_warnings = Vec::new();
            if let Some(sub) = webhooks {
                use admission::webhook::Operation;
                let op = if created {
                    // What a create's built-in mutating plugins do (service account,
                    // limit defaults), also when an update or an apply creates.
                    self.admission.mutate_create(rt, &mut new).await?;
                    Operation::Create
                } else {
                    Operation::Update
                };
                let (w, changed) = self
                    .admission
                    .mutate_webhooks(op, rt, sub, &mut new, old.as_ref(), opts)
                    .await?;
                hook_warnings = w;
                if changed || created {
                    // Mutated after validation: validate again.
                    self.admit(rt, &mut new, old.as_ref())?;
                }
            }
            // Client-visible no-op: nothing changed, nothing written (no new revision),
            // unless the stored bytes are stale (an old encryption key): then the same
            // object is written again, as Kubernetes does, which migrates it.
            if let Some(o) = &old {
                if same_object(o, &new) && !current.as_ref().is_some_and(|kv| kv.stale) {
                    return Ok(Written {
                        object: Arc::new(o.clone()),
                        created: false,
                        warnings: vec![],
                        audit_annotations: Default::default(),
                    });
                }
            }
            self.admit_user(rt, &new, old.as_ref(), opts).await?;
            let mut admitted = match &old {
                Some(o) => {
                    self.admission
                        .validate_update(rt, o, &new, opts, webhooks)
                        .await?
                }
                None => {
                    self.admission
                        .validate_create(rt, &new, opts, webhooks.is_some())
                        .await?
                }
            };
            admitted.warnings.splice(0..0, hook_warnings);
            let reservation = admitted.reservation;
            let alloc = if is_services(rt) {
                self.services.allocate(&mut new, old.as_ref())?
            } else {
                allocation::Allocation::default()
            };
            if dry_run {
                return Ok(Written {
                    object: Arc::new(new),
                    created,
                    warnings: admitted.warnings,
                    audit_annotations: admitted.audit_annotations,
                });
            }
            // Removing the last finalizer of an object being deleted completes deletion,
            // unless a grace period is still running (a pod being stopped by its kubelet,
            // which ends it with a delete of grace 0), as Kubernetes'
            // shouldDeleteDuringUpdate.
            let grace_over = new
                .pointer("/metadata/deletionGracePeriodSeconds")
                .and_then(Value::as_i64)
                .is_none_or(|g| g == 0);
            let finished = deletion_pending(&new)
                && finalizers(&new).is_empty()
                && grace_over
                && !created
                && !rt.strategy.deletion_blocked(&new);
            let mut commit = Commit {
                key: k.clone(),
                value: Some(encode(&rt.to_stored(&new))),
                expected: current.as_ref().map(|kv| kv.mod_revision),
                claims: alloc.claims,
                releases: alloc.releases,
                lease: if finished {
                    None
                } else {
                    self.lease(rt, name).await?
                },
            };
            if finished {
                commit.value = None;
                if is_services(rt) {
                    commit.releases = self.services.release(&new);
                    commit.claims.clear();
                }
            }
            match self.storage.commit(commit).await {
                Ok(rev) => {
                    reservation.keep();
                    let object = Arc::new(with_rv(new, rev));
                    if !finished {
                        self.wrote(rt, rev, &k, &object, old.map(Arc::new));
                    }
                    return Ok(Written {
                        object,
                        created,
                        warnings: admitted.warnings,
                        audit_annotations: admitted.audit_annotations,
                    });
                }
                Err(StorageError::Conflict(now)) => current = now,
                Err(StorageError::AlreadyExists) => {
                    current = self
                        .storage
                        .get(&k)
                        .await
                        .map_err(|e| storage_error(e, rt, name))?
                }
                Err(StorageError::ClaimTaken(taken)) => {
                    let requested = self.services.requested_keys(&new);
                    if let Some(key) = taken.iter().find(|k| requested.contains(k)) {
                        return Err(self.services.taken_error(&new, key));
                    }
                }
                Err(StorageError::LeaseGone) => {}
                Err(e) => return Err(storage_error(e, rt, name)),
            }
        }
        Err(ApiError::conflict(
            rt.group,
            rt.plural,
            name,
            "too many concurrent updates; try again",
        ))
    }

    /// PUT: replace the object (or its status), honouring a resourceVersion
    /// precondition when the body carries one.
    pub async fn update(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        name: &str,
        subresource: &str,
        mut body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        options::validate_field_manager("UpdateOptions", &opts.field_manager)?;
        metadata::check_type(rt, &mut body)?;
        metadata::check_namespace(rt, &mut body, ns)?;
        let body_name = meta::name(&body).to_string();
        if body_name.is_empty() {
            meta::metadata_mut(&mut body).insert("name".into(), json!(name));
        } else if body_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({name})"
            )));
        }
        let warnings = fields::check_unknown(rt, &mut body, opts.field_validation)?;
        let precondition = meta::resource_version(&body).to_string();
        if rt.strategy.allow_create_on_update() && subresource.is_empty() {
            self.admit_namespace_if_new(rt, ns, name).await?;
        }
        let mut w = self
            .admitted_update(rt, ns, name, opts, Some(subresource), |old| {
                self.apply_update(rt, old, body.clone(), &precondition, subresource, opts)
            })
            .await?;
        // Field validation's warnings, then admission's.
        w.warnings.splice(0..0, warnings);
        Ok(w)
    }

    /// The pure part of an update: given the stored object and the client's new version,
    /// compute what to store.
    pub fn apply_update(
        &self,
        rt: &ResourceType,
        old: Option<&Value>,
        mut new: Value,
        precondition: &str,
        subresource: &str,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let name = meta::name(&new).to_string();
        let Some(old) = old else {
            if !rt.strategy.allow_create_on_update() || !subresource.is_empty() {
                return Err(ApiError::not_found(rt.group, rt.plural, &name));
            }
            metadata::prepare_create(rt, &mut new)?;
            rt.strategy.prepare_for_create(&mut new);
            self.admit(rt, &mut new, None)?;
            patching::track_fields(rt, None, &mut new, opts, "");
            return Ok(new);
        };
        if !precondition.is_empty() && precondition != meta::resource_version(old) {
            return Err(ApiError::stale(rt.group, rt.plural, &name));
        }
        let mut new = if subresource == "status" || subresource == "approval" {
            // Status (and CSR approval) updates change status and, as on Kubernetes for
            // the built-in kinds, metadata; everything else (spec, data) stays as stored.
            let mut merged = old.clone();
            merged["status"] = new.get("status").cloned().unwrap_or(Value::Null);
            if let Some(m) = new.get_mut("metadata") {
                merged["metadata"] = m.take();
            }
            rt.strategy.prepare_for_status_update(&mut merged, old);
            merged
        } else {
            if rt.has(Subresource::Status) {
                match old.get("status") {
                    Some(s) => new["status"] = s.clone(),
                    None => {
                        new.as_object_mut().map(|o| o.remove("status"));
                    }
                }
            }
            new
        };
        // managedFields are the server's to keep unless the client sends a new set.
        if new.pointer("/metadata/managedFields").is_none() {
            if let Some(mf) = old.pointer("/metadata/managedFields") {
                meta::metadata_mut(&mut new).insert("managedFields".into(), mf.clone());
            }
        }
        metadata::prepare_update(&mut new, old);
        if subresource.is_empty() {
            rt.strategy.prepare_for_update(&mut new, old);
        }
        certificates::prepare_update(rt, subresource, &mut new, old);
        // An object being deleted may only lose finalizers, not gain new ones.
        if deletion_pending(old) {
            let old_f = finalizers(old);
            let added: Vec<String> = finalizers(&new)
                .into_iter()
                .filter(|f| !old_f.contains(f))
                .collect();
            if !added.is_empty() {
                return Err(ApiError::invalid(
                    rt.group,
                    rt.kind,
                    &name,
                    vec![Cause::forbidden("metadata.finalizers", format!("no new finalizers can be added if the object is being deleted, found new finalizers {added:?}"))],
                ));
            }
        }
        self.priorities.admit_update(rt, &mut new, old)?;
        self.admit(rt, &mut new, Some(old))?;
        metadata::bump_generation(rt, &mut new, old);
        patching::track_fields(rt, Some(old), &mut new, opts, subresource);
        Ok(new)
    }

    /// DELETE one object. Returns the object as deleted, or as it now stands when
    /// finalizers or a grace period keep it.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value, ApiError> {
        self.delete_warned(rt, ns, name, opts)
            .await
            .map(|(obj, _)| obj)
    }

    /// [`Registry::delete`], with the warnings of admission webhooks for the client.
    pub async fn delete_warned(
        &self,
        rt: &ResourceType,
        ns: &str,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<(Value, Vec<String>), ApiError> {
        opts.validate()?;
        priority::admit_delete(rt, name)?;
        let k = key(rt, ns, name);
        for _attempt in 0..16 {
            let kv = self
                .storage
                .get(&k)
                .await
                .map_err(|e| storage_error(e, rt, name))?
                .ok_or_else(|| ApiError::not_found(rt.group, rt.plural, name))?;
            let obj = decode_as(rt, &kv)?;
            if let Some(uid) = &opts.precondition_uid {
                if uid != meta::uid(&obj) {
                    return Err(ApiError::conflict(
                        rt.group,
                        rt.plural,
                        name,
                        &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta::uid(&obj)
                    ),
                    ));
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                if rv != meta::resource_version(&obj) {
                    return Err(ApiError::conflict(rt.group, rt.plural, name, &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        meta::resource_version(&obj)
                    )));
                }
            }
            let warnings = self.admission.admit_delete(rt, &obj, opts).await?;
            let (next, remove) = deletion_step(rt, &obj, opts);
            if opts.dry_run {
                return Ok((next.unwrap_or(obj), warnings));
            }
            let commit = match (&next, remove) {
                (_, true) => Commit {
                    key: k.clone(),
                    value: None,
                    expected: Some(kv.mod_revision),
                    releases: if is_services(rt) {
                        self.services.release(&obj)
                    } else {
                        vec![]
                    },
                    ..Default::default()
                },
                (Some(updated), false) => Commit {
                    key: k.clone(),
                    value: Some(encode(&rt.to_stored(updated))),
                    expected: Some(kv.mod_revision),
                    lease: self.lease(rt, name).await?,
                    ..Default::default()
                },
                // Already being deleted and nothing to change.
                (None, false) => return Ok((obj, warnings)),
            };
            match self.storage.commit(commit).await {
                Ok(rev) => {
                    let obj = match next {
                        Some(updated) if !remove => with_rv(updated, rev),
                        _ => obj,
                    };
                    return Ok((obj, warnings));
                }
                Err(StorageError::Conflict(_) | StorageError::LeaseGone) => continue,
                Err(e) => return Err(storage_error(e, rt, name)),
            }
        }
        Err(ApiError::conflict(
            rt.group,
            rt.plural,
            name,
            "too many concurrent updates; try again",
        ))
    }
}

/// What deleting `obj` does: `(Some(updated), false)` marks it (deletionTimestamp,
/// policy finalizers, grace period) and keeps it; `(_, true)` removes it now;
/// `(None, false)` leaves it as it is.
fn deletion_step(rt: &ResourceType, obj: &Value, opts: &DeleteOptions) -> (Option<Value>, bool) {
    let old_fins = finalizers(obj);
    let pending = deletion_pending(obj);
    // Propagation policies become finalizers the garbage collector acts on.
    let wanted = gc_finalizer(rt, &old_fins, opts.propagation_policy.as_deref());
    let mut fins: Vec<String> = old_fins
        .iter()
        .filter(|f| *f != ORPHAN_FINALIZER && *f != FOREGROUND_FINALIZER)
        .cloned()
        .collect();
    fins.extend(wanted.map(String::from));
    let changed = {
        let set = |v: &[String]| v.iter().cloned().collect::<std::collections::BTreeSet<_>>();
        set(&old_fins) != set(&fins)
    };
    // Graceful deletion: the kind asks for a grace period (a pod on a node).
    let grace = match rt.strategy.default_grace_period(obj) {
        Some(default) => opts.grace_period_seconds.unwrap_or(default),
        None => 0,
    };
    let current_grace = obj
        .pointer("/metadata/deletionGracePeriodSeconds")
        .and_then(Value::as_i64);
    let blocked = rt.strategy.deletion_blocked(obj);
    if fins.is_empty() && grace == 0 && !blocked {
        return (None, true);
    }
    if pending && !changed && current_grace.is_some_and(|g| g <= grace) {
        return (None, false);
    }
    let mut updated = obj.clone();
    let m = meta::metadata_mut(&mut updated);
    // A grace period past what a timestamp can hold ends at the last one RFC 3339 can
    // write, instead of overflowing.
    let deadline = chrono::Duration::try_seconds(grace)
        .and_then(|d| chrono::Utc::now().checked_add_signed(d))
        .filter(|t| chrono::Datelike::year(t) <= 9999)
        .unwrap_or_else(|| {
            chrono::DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
                .expect("a valid timestamp")
                .to_utc()
        });
    let shorten = current_grace.is_none_or(|g| grace < g);
    if !pending || shorten {
        m.insert(
            "deletionTimestamp".into(),
            json!(deadline.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
        );
        m.insert("deletionGracePeriodSeconds".into(), json!(grace));
    }
    if fins.is_empty() {
        m.remove("finalizers");
    } else {
        m.insert("finalizers".into(), json!(fins));
    }
    rt.strategy.mark_deleting(&mut updated);
    (Some(updated), false)
}

const ORPHAN_FINALIZER: &str = "orphan";
const FOREGROUND_FINALIZER: &str = "foregroundDeletion";

/// The garbage-collector finalizer a delete leaves on the object (Kubernetes'
/// `deletionFinalizersForGarbageCollection`): an explicit policy wins, then a
/// finalizer already there, then the kind's default policy.
fn gc_finalizer(rt: &ResourceType, fins: &[String], policy: Option<&str>) -> Option<&'static str> {
    let default = rt.strategy.default_garbage_collection_policy();
    if default == GcPolicy::Unsupported {
        return None;
    }
    let has = |f: &str| fins.iter().any(|x| x == f);
    match policy {
        Some("Orphan") => Some(ORPHAN_FINALIZER),
        Some("Foreground") => Some(FOREGROUND_FINALIZER),
        Some(_) => None,
        None if has(ORPHAN_FINALIZER) => Some(ORPHAN_FINALIZER),
        None if has(FOREGROUND_FINALIZER) => Some(FOREGROUND_FINALIZER),
        None if default == GcPolicy::Orphan => Some(ORPHAN_FINALIZER),
        None => None,
    }
}

/// Equal apart from resourceVersion and managedFields timestamps: such an update
/// changes nothing a client can see, so it is not written. Compares in place; this runs
/// on every update.
fn same_object(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let empty = serde_json::Map::new();
    same_map(a, b, &["metadata"]) && {
        let ma = a
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        let mb = b
            .get("metadata")
            .and_then(Value::as_object)
            .unwrap_or(&empty);
        same_map(ma, mb, &["resourceVersion", "managedFields"])
            && same_managed_fields(ma.get("managedFields"), mb.get("managedFields"))
    }
}

/// Maps equal apart from the `skip` keys.
fn same_map(
    a: &serde_json::Map<String, Value>,
    b: &serde_json::Map<String, Value>,
    skip: &[&str],
) -> bool {
    let counted = |m: &serde_json::Map<String, Value>| {
        m.keys().filter(|k| !skip.contains(&k.as_str())).count()
    };
    counted(a) == counted(b)
        && a.iter()
            .filter(|(k, _)| !skip.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

/// managedFields equal apart from each entry's `time`.
fn same_managed_fields(a: Option<&Value>, b: Option<&Value>) -> bool {
    match (a.and_then(Value::as_array), b.and_then(Value::as_array)) {
        (Some(x), Some(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|(e, f)| match (e.as_object(), f.as_object()) {
                        (Some(e), Some(f)) => same_map(e, f, &["time"]),
                        _ => e == f,
                    })
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delete_with(plural: &str, obj: &Value, policy: Option<&str>) -> (Option<Value>, bool) {
        let group = if plural == "jobs" { "batch" } else { "" };
        let rt = keelson_resources::find(group, plural).unwrap();
        let opts = DeleteOptions {
            propagation_policy: policy.map(String::from),
            ..Default::default()
        };
        deletion_step(rt, obj, &opts)
    }

    #[test]
    fn propagation_policies_become_garbage_collector_finalizers() {
        let plain = json!({"metadata": {"name": "x", "uid": "u"}});
        let fins = |r: (Option<Value>, bool)| {
            assert!(!r.1, "kept");
            let o = r.0.expect("marked");
            assert!(deletion_pending(&o));
            finalizers(&o)
        };
        // Background (the default of most kinds) deletes at once.
        assert!(delete_with("configmaps", &plain, None).1);
        assert!(delete_with("configmaps", &plain, Some("Background")).1);
        assert_eq!(
            fins(delete_with("configmaps", &plain, Some("Foreground"))),
            ["foregroundDeletion"]
        );
        assert_eq!(
            fins(delete_with("configmaps", &plain, Some("Orphan"))),
            ["orphan"]
        );
        // core/v1 ReplicationControllers and batch/v1 Jobs orphan by default.
        assert_eq!(
            fins(delete_with("replicationcontrollers", &plain, None)),
            ["orphan"]
        );
        assert_eq!(fins(delete_with("jobs", &plain, None)), ["orphan"]);
        assert!(delete_with("jobs", &plain, Some("Background")).1);
        // Events never get garbage-collector finalizers.
        assert!(delete_with("events", &plain, Some("Foreground")).1);
        // A finalizer already there wins over the default; an explicit policy replaces it.
        let fg = json!({"metadata": {"name": "x", "finalizers": ["a.io/x", "foregroundDeletion"]}});
        assert_eq!(
            fins(delete_with("replicationcontrollers", &fg, None)),
            ["a.io/x", "foregroundDeletion"]
        );
        assert_eq!(
            fins(delete_with("configmaps", &fg, Some("Orphan"))),
            ["a.io/x", "orphan"]
        );
        assert_eq!(
            fins(delete_with("configmaps", &fg, Some("Background"))),
            ["a.io/x"]
        );
    }

    #[test]
    fn same_object_ignores_only_resource_version_and_managed_times() {
        let a = json!({"metadata": {"name": "x", "resourceVersion": "5",
            "managedFields": [{"manager": "m", "time": "2026-01-01T00:00:00Z", "fieldsV1": {"f:data": {}}}]},
            "data": {"k": "v"}});
        let mut b = a.clone();
        b["metadata"]["resourceVersion"] = json!("9");
        b["metadata"]["managedFields"][0]["time"] = json!("2026-02-02T00:00:00Z");
        assert!(same_object(&a, &b));
        let mut c = b.clone();
        c["data"]["k"] = json!("w");
        assert!(!same_object(&a, &c));
        let mut d = b.clone();
        d["metadata"]["labels"] = json!({"l": "1"});
        assert!(!same_object(&a, &d));
        let mut e = b.clone();
        e["metadata"]["managedFields"][0]["manager"] = json!("other");
        assert!(!same_object(&a, &e));
    }
}
