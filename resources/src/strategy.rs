//! The per-kind behaviour the generic store calls into.
//!
//! The store does everything common to all kinds: metadata (names, uid, timestamps,
//! resourceVersion, generation), label and annotation validation, status-subresource
//! rules (a main-resource update keeps the stored status; a status update keeps
//! everything but status), preconditions and storage. A strategy adds only what is
//! particular to its kind. Every method has a default, so a kind with no special rules
//! (say, `configmaps` without data validation) is a handful of lines.

use crate::table::{age_cell, name_cell, Column, TableRow};
use keelson_apimachinery::validation;
use keelson_apimachinery::Cause;
use serde_json::Value;

pub trait Strategy: Send + Sync {
    /// Problems with `metadata.name`, worded as Kubernetes words them. Most kinds use
    /// DNS-1123 subdomains; namespaces and services use labels.
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::dns1123_subdomain(name)
    }

    /// Whether `metadata.generation` is set to 1 on create and bumped whenever anything
    /// outside `metadata` and `status` changes (workload kinds, services, ...).
    fn tracks_generation(&self) -> bool {
        false
    }

    /// Whether a PUT to a missing object creates it (leases, endpoints, events do this on
    /// Kubernetes; most kinds answer 404).
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Reset fields a client may not set on create (e.g. `status` for kinds with a status
    /// subresource; a pod's status starts as `{phase: Pending}`).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Carry into an update what the client may leave out or may not change this way
    /// (a Service's allocated IPs and ports; a namespace's `spec.finalizers`, which only
    /// `/finalize` changes). Runs before defaults and validation.
    fn prepare_for_update(&self, _new: &mut Value, _old: &Value) {}

    /// Undo what a `/status` update may not change besides spec (which the store keeps
    /// already): Deployments keep their labels, Pods their ownerReferences, as
    /// Kubernetes' status strategies do. Metadata otherwise comes from the request.
    fn prepare_for_status_update(&self, _new: &mut Value, _old: &Value) {}

    /// Fill in defaults, the way `kubectl get -o yaml` shows them on Kubernetes. Runs on
    /// create and on every update, so it must be idempotent.
    fn default(&self, _obj: &mut Value) {}

    /// Kind-specific validation of a whole object (create and update). Field paths are
    /// relative to the object root (`spec.containers[0].image`).
    fn validate(&self, _obj: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Checks only a create must pass (events.k8s.io Events created through that API
    /// need their reporting fields; older Events updated through it do not).
    fn validate_create(&self, _obj: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Extra checks for an update: immutable fields and the like.
    fn validate_update(&self, _new: &Value, _old: &Value) -> Vec<Cause> {
        Vec::new()
    }

    /// Fields besides `metadata.name` and `metadata.namespace` that field selectors may
    /// name, with their values for `obj` (pods: `spec.nodeName`, `status.phase`, ...).
    /// Selecting on a field not listed is a 400, as on Kubernetes.
    fn selectable_fields(&self, _obj: &Value) -> Vec<(&'static str, String)> {
        Vec::new()
    }

    /// Names of the fields [`Strategy::selectable_fields`] returns, to reject unknown
    /// field selectors before any object is read.
    fn selectable_field_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// The grace period a delete without `gracePeriodSeconds` gets, when the kind is
    /// deleted gracefully (pods bound to a node). `None` deletes at once.
    fn default_grace_period(&self, _obj: &Value) -> Option<i64> {
        None
    }

    /// Whether something besides `metadata.finalizers` keeps a deleted object until a
    /// controller is done with it (a namespace's `spec.finalizers`).
    fn deletion_blocked(&self, _obj: &Value) -> bool {
        false
    }

    /// Changes to make when deletion starts and the object stays for a while (a
    /// namespace's `status.phase` becomes `Terminating`).
    fn mark_deleting(&self, _obj: &mut Value) {}

    /// Kubernetes' `DefaultGarbageCollectionPolicy`: what a delete without
    /// `propagationPolicy` (and without a garbage-collector finalizer already on the
    /// object) does with its dependents. `Background` leaves them to the garbage
    /// collector; `Orphan` adds the `orphan` finalizer (core/v1 ReplicationControllers
    /// and batch/v1 Jobs, for backwards compatibility); `Unsupported` never adds a
    /// garbage-collector finalizer, whatever the request says (events).
    fn default_garbage_collection_policy(&self) -> GcPolicy {
        GcPolicy::Background
    }

    /// Whether objects of this kind expire: stored with the apiserver's `--event-ttl`
    /// and deleted by etcd that long after their last write, as Kubernetes stores
    /// Events.
    fn expires(&self) -> bool {
        false
    }

    /// Whether this kind is a question, not an object: a POST answers it and nothing is
    /// stored (TokenReview, SelfSubjectReview); no other verb exists.
    fn create_only(&self) -> bool {
        false
    }

    /// Whether `DELETE` on the collection (`deletecollection`) is served. Kubernetes
    /// serves it for every stored kind but Namespaces (one request would delete them
    /// all, `kube-system` and `default` included).
    fn delete_collection(&self) -> bool {
        true
    }

    /// When this kind is another resource's objects in another shape (events.k8s.io/v1
    /// Events are core/v1 Events), where they live and how to convert them. Kubernetes
    /// calls such resources cohabiting: one etcd key per object, one storage version.
    fn shared_storage(&self) -> Option<&'static SharedStorage> {
        None
    }

    /// For kinds whose fields a schema names (custom resources): drop every field it
    /// does not name and return their paths, for `fieldValidation`. `None` for kinds
    /// checked against their typed model instead.
    fn prune(&self, _obj: &mut Value) -> Option<Vec<String>> {
        None
    }

    /// Whether objects may be stored in another version than the one served (a custom
    /// resource with several versions): reads go through [`Strategy::read_stored`],
    /// writes through [`Strategy::write_stored`].
    fn converts(&self) -> bool {
        false
    }

    /// A stored object as this version shows it (conversion `None`: its apiVersion).
    fn read_stored(&self, obj: Value) -> Value {
        obj
    }

    /// An object in the version it is stored in; `None` when that is this one.
    fn write_stored(&self, _obj: &Value) -> Option<Value> {
        None
    }

    /// Where `/scale` finds replicas and the selector, when not at `spec.replicas`,
    /// `status.replicas` and `spec.selector` (custom resources name their own paths).
    fn scale_paths(&self) -> Option<ScalePaths> {
        None
    }

    /// Why creates are refused for now (a custom resource whose CRD is being
    /// deleted), answered as a 405 like Kubernetes does.
    fn create_refused(&self) -> Option<String> {
        None
    }

    /// Warnings every request on this resource carries (a deprecated version's).
    fn warnings(&self) -> Vec<String> {
        Vec::new()
    }

    /// What a CustomResourceDefinition says about this (custom) resource version now:
    /// its schema (merge semantics, OpenAPI), list kind. `None` for built-in kinds.
    fn custom_spec(&self) -> Option<std::sync::Arc<crate::custom::VersionSpec>> {
        None
    }

    /// Server-side table columns for `kubectl get`. The default is Kubernetes' default
    /// table: name and creation time.
    fn columns(&self) -> Vec<Column> {
        vec![
            Column::name(),
            Column::new(
                "Created At",
                "date",
                "CreationTimestamp is a timestamp representing the server time when this object was created.",
            ),
        ]
    }

    /// One row of cells matching [`Strategy::columns`].
    fn row(&self, obj: &Value) -> TableRow {
        vec![
            name_cell(obj),
            Value::String(
                keelson_apimachinery::meta::str_field(obj, "creationTimestamp").to_string(),
            ),
        ]
    }
}

/// Set `metadata.<field>` of `new` to what `old` has (removed when `old` has none).
pub fn keep_metadata_field(new: &mut Value, old: &Value, field: &str) {
    let kept = old.get("metadata").and_then(|m| m.get(field)).cloned();
    let m = keelson_apimachinery::meta::metadata_mut(new);
    match kept {
        Some(v) => m.insert(field.into(), v),
        None => m.remove(field),
    };
}

/// See [`Strategy::shared_storage`].
pub struct SharedStorage {
    /// The resource whose etcd keys hold the objects, in its own shape.
    pub resource: &'static crate::ResourceType,
    /// This kind's shape to the stored one.
    pub to_stored: fn(&Value) -> Value,
    /// The stored shape to this kind's.
    pub from_stored: fn(&Value) -> Value,
}

/// See [`Strategy::scale_paths`]: JSONPaths as a CRD's `subresources.scale` names them.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScalePaths {
    pub spec_replicas: String,
    pub status_replicas: String,
    /// Empty when the kind publishes no selector.
    pub label_selector: String,
}

/// See [`Strategy::default_garbage_collection_policy`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GcPolicy {
    Background,
    Orphan,
    Unsupported,
}

/// A table that is just NAME and AGE plus the given middle columns; most printers are.
pub fn name_age_columns(middle: Vec<Column>) -> Vec<Column> {
    let mut cols = vec![Column::name()];
    cols.extend(middle);
    cols.push(Column::age());
    cols
}

/// A row matching [`name_age_columns`].
pub fn name_age_row(obj: &Value, middle: Vec<Value>) -> TableRow {
    let mut row = vec![name_cell(obj)];
    row.extend(middle);
    row.push(age_cell(obj));
    row
}

/// The strategy of review kinds: see [`Strategy::create_only`].
pub struct Review;
impl Strategy for Review {
    fn create_only(&self) -> bool {
        true
    }

    fn validate_name(&self, _name: &str) -> Vec<String> {
        Vec::new()
    }
}

/// The plain strategy for kinds with no particular rules.
pub struct Plain;
impl Strategy for Plain {}
