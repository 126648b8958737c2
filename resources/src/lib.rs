//! The catalog of resources the apiserver serves.
//!
//! The apiserver has one generic store (`keelson-apiserver::registry`) that does all the
//! etcd work. What differs between kinds lives here, one small file per kind in
//! [`kinds`]: a [`ResourceType`] (names, scope, subresources) and a [`Strategy`]
//! (defaults, validation, what an update may change, table columns, selectable fields).
//! This mirrors the Kubernetes apiserver's registry strategies.
//!
//! Adding a resource: write `kinds/<plural>.rs` with a `pub static RESOURCE`, and add it
//! to [`kinds::ALL`]. The `ResourceType` is the kind's one registration: besides names
//! and strategy it names the kind's k8s-openapi type ([`Typed`]: type checks, unknown
//! fields, OpenAPI) and where its merge semantics start
//! ([`keelson_apimachinery::patch::schema::Root`]: strategic merge patch, server-side
//! apply, OpenAPI's patch extensions); a test over [`kinds::ALL`] names any built-in
//! kind that lacks either.

pub mod custom;
pub mod kinds;
pub mod podspec;
/// Quantities live in apimachinery (components use them too); kept here for the catalog's
/// existing paths.
pub use keelson_apimachinery::quantity;
pub mod quota;
pub mod strategy;
pub mod table;
pub mod typed;

pub use keelson_apimachinery::patch::schema::Root;
use serde_json::Value;
pub use strategy::Strategy;
pub use table::{Column, TableRow};
pub use typed::Typed;

/// A subresource a kind serves besides the main resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subresource {
    /// `/status`: updates that touch only `.status`; main-resource updates keep it.
    Status,
    /// `/scale`: `autoscaling/v1 Scale` view of `spec.replicas` and the selector.
    Scale,
    /// `pods/binding`: assign a pod to a node.
    Binding,
    /// `pods/log`, served by the node agent through the apiserver.
    Log,
    /// `pods/exec`, `pods/attach`, `pods/portforward`.
    Exec,
    /// `pods/eviction`.
    Eviction,
    /// `serviceaccounts/token`.
    Token,
    /// `namespaces/finalize`.
    Finalize,
    /// `services/proxy`, `pods/proxy`, `nodes/proxy`.
    Proxy,
    /// `certificatesigningrequests/approval`: the Approved and Denied conditions.
    Approval,
}

impl Subresource {
    pub fn path(self) -> &'static str {
        match self {
            Subresource::Status => "status",
            Subresource::Scale => "scale",
            Subresource::Binding => "binding",
            Subresource::Log => "log",
            Subresource::Exec => "exec",
            Subresource::Eviction => "eviction",
            Subresource::Token => "token",
            Subresource::Finalize => "finalize",
            Subresource::Proxy => "proxy",
            Subresource::Approval => "approval",
        }
    }

    /// Every URL segment this subresource answers: `Exec` also stands for `attach` and
    /// `portforward`, which Kubernetes lists as subresources of their own.
    pub fn paths(self) -> &'static [&'static str] {
        match self {
            Subresource::Exec => &["attach", "exec", "portforward"],
            Subresource::Status => &["status"],
            Subresource::Scale => &["scale"],
            Subresource::Binding => &["binding"],
            Subresource::Log => &["log"],
            Subresource::Eviction => &["eviction"],
            Subresource::Token => &["token"],
            Subresource::Finalize => &["finalize"],
            Subresource::Proxy => &["proxy"],
            Subresource::Approval => &["approval"],
        }
    }
}

/// Everything the generic store and discovery need to know about one resource.
pub struct ResourceType {
    /// API group; "" for the core (legacy) group served under `/api/v1`.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    /// URL path segment and etcd key segment, e.g. `deployments`.
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    /// `all` puts a kind into `kubectl get all`.
    pub categories: &'static [&'static str],
    pub subresources: &'static [Subresource],
    pub strategy: &'static dyn Strategy,
    /// The kind's k8s-openapi type: what a body must decode as, which fields are
    /// unknown, and its OpenAPI schema. Every built-in kind has one; a kind made at run
    /// time from a schema of its own (a custom resource) has none.
    pub typed: Option<Typed>,
    /// Where the kind's list merge semantics start (strategic merge patch keys and
    /// server-side apply list types). Every stored built-in kind has one; without one
    /// strategic merge patch is refused (415) and every list is atomic, as for custom
    /// resources.
    pub merge: Option<Root>,
}

impl ResourceType {
    /// `apps/v1`, or `v1` for the core group.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has(&self, sub: Subresource) -> bool {
        self.subresources.contains(&sub)
    }

    /// The list and map semantics of server-side apply and managedFields: a custom
    /// resource's structural schema, else the built-in table from [`Self::merge`].
    pub fn merge_schema(&self) -> keelson_apimachinery::patch::schema::Merge {
        use keelson_apimachinery::patch::schema::Merge;
        match self.strategy.custom_spec() {
            Some(spec) if spec.schema.is_some() => Merge::Structural(spec),
            _ => Merge::Table(self.merge),
        }
    }

    /// Kubernetes' etcd key prefix: `/registry/<resource>` for the core group and for
    /// the groups Kubernetes stores without a prefix, `/registry/<group>/<resource>`
    /// otherwise. Keelson uses the group-qualified form for every non-core group so that
    /// no two resources can collide.
    pub fn key_prefix(&self) -> String {
        if let Some(shared) = self.strategy.shared_storage() {
            return shared.resource.key_prefix();
        }
        if self.group.is_empty() {
            format!("/registry/{}", self.plural)
        } else {
            format!("/registry/{}/{}", self.group, self.plural)
        }
    }

    /// An object as this kind shows it, from its stored form.
    pub fn from_stored(&self, stored: Value) -> Value {
        match self.strategy.shared_storage() {
            Some(shared) => (shared.from_stored)(&stored),
            None => self.strategy.read_stored(stored),
        }
    }

    /// An object of this kind in its stored form (borrowed when that is the same).
    pub fn to_stored<'a>(&self, obj: &'a Value) -> std::borrow::Cow<'a, Value> {
        match self.strategy.shared_storage() {
            Some(shared) => std::borrow::Cow::Owned((shared.to_stored)(obj)),
            None => match self.strategy.write_stored(obj) {
                Some(stored) => std::borrow::Cow::Owned(stored),
                None => std::borrow::Cow::Borrowed(obj),
            },
        }
    }

    /// Whether this kind's objects are stored in another shape or version than it
    /// shows (under another resource's keys, or a custom resource's storage version).
    pub fn is_shared(&self) -> bool {
        self.strategy.shared_storage().is_some() || self.strategy.converts()
    }

    /// `deployments.apps`, or `pods`.
    pub fn group_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

impl std::fmt::Debug for ResourceType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{} {}", self.api_version(), self.plural, self.kind)
    }
}

/// Look a resource up by group and plural: a built-in kind, or a served custom
/// resource (in its storage version).
pub fn find(group: &str, plural: &str) -> Option<&'static ResourceType> {
    kinds::ALL
        .iter()
        .copied()
        .find(|r| r.group == group && r.plural == plural)
        .or_else(|| custom::find(group, plural))
}

/// Look a resource up by group, version and plural (a URL's).
pub fn find_version(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    kinds::ALL
        .iter()
        .copied()
        .find(|r| r.group == group && r.plural == plural && r.version == version)
        .or_else(|| custom::find_version(group, version, plural))
}

/// Look a resource up by apiVersion and kind.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    kinds::ALL
        .iter()
        .copied()
        .find(|r| r.api_version() == api_version && r.kind == kind)
        .or_else(|| custom::find_kind(api_version, kind))
}

/// Every served resource: the built-in kinds, then the custom resources served now.
pub fn all() -> Vec<&'static ResourceType> {
    let mut out = kinds::ALL.to_vec();
    out.extend(custom::served());
    out
}
