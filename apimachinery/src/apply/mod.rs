//! Server-side apply and `managedFields` tracking, as pure functions on JSON.
//!
//! Every write records who owns which fields in `metadata.managedFields`: one entry
//! per manager, operation (`Apply` or `Update`) and subresource, holding a field set
//! in the `fieldsV1` form (see [`fieldset`]). Server-side apply merges a manager's
//! applied configuration into the live object, removes the fields the manager applied
//! before but no longer declares (unless someone else owns them), and refuses to
//! change fields other managers own unless forced. The behaviour follows
//! `sigs.k8s.io/structured-merge-diff` and the apiserver's field manager, over
//! untyped objects: lists and maps follow the kind's [`Merge`]: for built-in kinds
//! [`crate::patch::schema::list_meta`] from their `merge` root (anything it does not
//! list is atomic, every map granular); for custom resources their structural
//! schema's `x-kubernetes-list-type`, `-list-map-keys` and `-map-type` (lists without
//! a type atomic, as Kubernetes builds them).
//!
//! # Public API
//!
//! ```text
//! apply(live: Option<&Value>, applied: &Value, manager: &str, force: bool,
//!       group: &str, kind: &str, merge: impl Into<Merge>, ignore_status: bool, now_rfc3339: &str)
//!     -> Result<Value, ApiError>
//! apply_to_subresource(live: &Value, applied: &Value, manager: &str, subresource: &str,
//!       force: bool, group: &str, kind: &str, merge: impl Into<Merge>, now_rfc3339: &str)
//!     -> Result<Value, ApiError>
//! track_update(old: Option<&Value>, new: &Value, manager: &str, subresource: &str,
//!       merge: impl Into<Merge>, api_version: &str, ignore_status: bool, now_rfc3339: &str)
//!     -> Value
//! track_update_in_place(old: Option<&Value>, new: &mut Value, ...same as track_update)
//! default_manager(user_agent: &str) -> String
//! validate_managed_fields(obj: &Value, group: &str, kind: &str) -> Result<(), ApiError>
//! decode_managed_fields(obj: &Value) -> Result<Vec<ManagedFieldsEntry>, String>
//! encode_managed_fields(entries: &[ManagedFieldsEntry]) -> Value
//! set_managed_fields(obj: &mut Value, entries: &[ManagedFieldsEntry])
//! ManagedFieldsEntry { manager, operation: Operation, api_version, time, subresource, fields }
//! fieldset::{FieldSet, PathElement, Path, path_string}   // fieldsV1 <-> sets
//! MAX_UPDATE_MANAGERS (10), ANCIENT_CHANGES ("ancient-changes")
//! ```
//!
//! - [`apply`]: PATCH with `application/apply-patch+yaml` (body already decoded to
//!   JSON). `live` is `None` to create. Returns the object to store, with
//!   `managedFields` updated. Errors: 422 when `manager` is empty, 400 when the
//!   configuration lacks apiVersion/kind/metadata.name, names another group or kind,
//!   carries `metadata.managedFields`, or repeats an item of a keyed list; 409
//!   Conflict (reason `Conflict`, one `FieldManagerConflict` cause per field) when it
//!   would change fields other managers own and `force` is false.
//! - [`track_update`]: for create, update and non-apply patch. Gives the fields that
//!   changed between `old` and `new` to the manager's Update entry, takes them from
//!   everyone else, and returns `new` with `managedFields` set. Clients may rewrite
//!   `managedFields` in the main resource (an empty list resets them); if what they
//!   send cannot be decoded, the stored entries are kept. [`track_update_in_place`]
//!   does the same to `new` itself, saving a copy of the object.
//! - [`validate_managed_fields`]: check client-sent `managedFields` on create/update:
//!   400 when not decodable, 422 for a bad `operation` or `fieldsType`.
//! - [`default_manager`]: the manager name Kubernetes derives from the User-Agent
//!   when a non-apply request names none (`kubectl-edit/v1.30 (linux)` ->
//!   `kubectl-edit`).
//!
//! Never owned: `apiVersion`, `kind`, and `metadata` `name`, `namespace`, `uid`,
//! `resourceVersion`, `generation`, `creationTimestamp`, `selfLink`,
//! `managedFields`, `clusterName`; with `ignore_status`, anything under `status`
//! (the main resource of a kind that has a status subresource). Applied `null`s are
//! owned and unset the field (nulls for the never-owned metadata fields are ignored).
//!
//! # Differences from Kubernetes
//!
//! - Update entries are keyed by manager and subresource only: a manager's updates at
//!   two API versions share one entry (the newest version is recorded).
//! - Built-in kinds have no OpenAPI schema here: every map is granular (Kubernetes
//!   treats a few structs, such as label selectors, as atomic). Key fields have no
//!   defaults (a port item without `protocol` is keyed by `containerPort` alone).
//! - Items of a granular list keep the applied order, and items only the live list
//!   has keep their place among the live items: walking the live list, each item the
//!   configuration also lists pulls in the configuration's items up to it.
//! - Not done here: the `kubectl.kubernetes.io/last-applied-configuration`
//!   hand-over from client-side apply, conversion of entries between API versions,
//!   checking the configuration's version against the request's (the group and kind
//!   are checked).

// `ApiError` is the crate's error type; boxing it here would only differ from the rest.
#![allow(clippy::result_large_err)]

pub mod fieldset;
mod managed;
mod object;

use serde_json::{json, Map, Value};

pub use fieldset::{path_string, FieldSet, Path, PathElement};
pub use managed::{
    decode_managed_fields, encode_managed_fields, set_managed_fields, ManagedFieldsEntry, Operation,
};

use std::borrow::Cow;
use std::sync::OnceLock;

use crate::patch::schema::Merge;
use crate::status::{ApiError, Cause};
use managed::{EntryError, Tracked};
use object::{Comparison, Lists};

/// At most this many Update entries are kept; older ones merge into [`ANCIENT_CHANGES`].
pub const MAX_UPDATE_MANAGERS: usize = 10;
/// The manager name old Update entries are merged under.
pub const ANCIENT_CHANGES: &str = "ancient-changes";
/// Longest manager name Kubernetes accepts.
pub const FIELD_MANAGER_MAX_LENGTH: usize = 128;

/// `metadata` fields that are never owned (besides `apiVersion`, `kind`, `metadata`).
const UNOWNED_METADATA: &[&str] = &[
    "name",
    "namespace",
    "creationTimestamp",
    "selfLink",
    "uid",
    "clusterName",
    "generation",
    "managedFields",
    "resourceVersion",
];

/// Which part of the object an operation may own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    All,
    /// Main resource of a kind with a status subresource: `status` is not owned.
    IgnoreStatus,
    /// The status subresource: only `status` is owned.
    OnlyStatus,
}

impl Scope {
    /// Whether the scope covers the paths under the root key `k` (it covers whole
    /// root keys).
    fn covers(self, k: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::IgnoreStatus => k != "status",
            Scope::OnlyStatus => k == "status",
        }
    }

    /// Keep only the paths the scope covers.
    fn filter(self, set: &mut FieldSet) {
        let is_status = |pe: &PathElement| matches!(pe, PathElement::Field(k) if k == "status");
        match self {
            Scope::All => {}
            Scope::IgnoreStatus => set.retain_top(|pe| !is_status(pe)),
            Scope::OnlyStatus => set.retain_top(is_status),
        }
    }

    /// The part of an applied configuration this scope merges. Nulls for fields that
    /// are never owned (`creationTimestamp: null`, as generated manifests carry it)
    /// are ignored rather than unsetting the live value.
    fn config(self, applied: &Value) -> Cow<'_, Value> {
        let Value::Object(root) = applied else {
            return Cow::Borrowed(applied);
        };
        let ignored_null =
            |(k, v): (&String, &Value)| v.is_null() && UNOWNED_METADATA.contains(&k.as_str());
        let trimmed_metadata = |k: &str, v: &Value| {
            k == "metadata" && v.as_object().is_some_and(|md| md.iter().any(ignored_null))
        };
        if root
            .iter()
            .all(|(k, v)| self.covers(k) && !trimmed_metadata(k, v))
        {
            return Cow::Borrowed(applied);
        }
        let copy = |(k, v): (&String, &Value)| {
            let v = match v {
                Value::Object(md) if k == "metadata" => Value::Object(
                    md.iter()
                        .filter(|&kv| !ignored_null(kv))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                v => v.clone(),
            };
            (k.clone(), v)
        };
        Cow::Owned(Value::Object(
            root.iter()
                .filter(|(k, _)| self.covers(k))
                .map(copy)
                .collect(),
        ))
    }

    /// Whether pruning must leave the field at `spath` alone.
    fn keeps(self, spath: &[&str]) -> bool {
        match spath {
            [k] => {
                *k == "apiVersion"
                    || *k == "kind"
                    || *k == "metadata"
                    || (*k == "status" && self == Scope::IgnoreStatus)
            }
            [m, k] => *m == "metadata" && UNOWNED_METADATA.contains(k),
            _ => false,
        }
    }
}

/// The paths no manager is given, removed member by member from the operating
/// manager's set.
fn unowned() -> &'static FieldSet {
    static UNOWNED: OnceLock<FieldSet> = OnceLock::new();
    UNOWNED.get_or_init(|| {
        let mut s = FieldSet::new();
        for top in ["apiVersion", "kind", "metadata"] {
            s.insert(&[PathElement::field(top)]);
        }
        for f in UNOWNED_METADATA {
            s.insert(&[PathElement::field("metadata"), PathElement::field(*f)]);
        }
        s
    })
}

/// A copy of `obj` without `metadata.managedFields`.
fn without_managed_fields(obj: &Value) -> Value {
    let Value::Object(root) = obj else {
        return obj.clone();
    };
    let copy = |(k, v): (&String, &Value)| {
        let v = match v {
            Value::Object(md) if k == "metadata" => Value::Object(
                md.iter()
                    .filter(|(k, _)| *k != "managedFields")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
            ),
            v => v.clone(),
        };
        (k.clone(), v)
    };
    Value::Object(root.iter().map(copy).collect())
}

/// What changed between `old` and `new`, both without `metadata.managedFields`, in
/// the paths `scope` covers.
fn compare_scoped(
    lists: &Lists,
    old: Option<&Value>,
    new: Option<&Value>,
    scope: Scope,
) -> Comparison {
    if let Some(c) = lists.compare_roots(old, new, &|k| scope.covers(k)) {
        return c;
    }
    let (old, new) = (
        old.map(without_managed_fields),
        new.map(without_managed_fields),
    );
    let mut c = lists.compare(old.as_ref(), new.as_ref());
    for set in [&mut c.added, &mut c.modified, &mut c.removed] {
        scope.filter(set);
    }
    c
}

/// Server-side apply of `applied` by `manager` to `live` (`None`: the object does not
/// exist and is created). `ignore_status` for the main resource of a kind with a
/// status subresource. Returns the object to store, `managedFields` included.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    force: bool,
    group: &str,
    kind: &str,
    merge: impl Into<Merge>,
    ignore_status: bool,
    now_rfc3339: &str,
) -> Result<Value, ApiError> {
    let scope = if ignore_status {
        Scope::IgnoreStatus
    } else {
        Scope::All
    };
    let merge: Merge = merge.into();
    let lists = Lists { schema: &merge };
    apply_scoped(
        &lists,
        live,
        applied,
        manager,
        "",
        force,
        group,
        kind,
        scope,
        now_rfc3339,
    )
}

/// Server-side apply to a subresource of an existing object. For `status`, only the
/// configuration's `status` is merged and owned; other subresources behave like the
/// main resource. The entry records `subresource`.
#[allow(clippy::too_many_arguments)]
pub fn apply_to_subresource(
    live: &Value,
    applied: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
    group: &str,
    kind: &str,
    merge: impl Into<Merge>,
    now_rfc3339: &str,
) -> Result<Value, ApiError> {
    let scope = if subresource == "status" {
        Scope::OnlyStatus
    } else {
        Scope::All
    };
    let merge: Merge = merge.into();
    let lists = Lists { schema: &merge };
    apply_scoped(
        &lists,
        Some(live),
        applied,
        manager,
        subresource,
        force,
        group,
        kind,
        scope,
        now_rfc3339,
    )
}

#[allow(clippy::too_many_arguments)]
fn apply_scoped(
    lists: &Lists,
    live: Option<&Value>,
    applied: &Value,
    manager: &str,
    subresource: &str,
    force: bool,
    group: &str,
    kind: &str,
    scope: Scope,
    now: &str,
) -> Result<Value, ApiError> {
    if manager.is_empty() {
        return Err(ApiError::invalid(
            "meta.k8s.io",
            "PatchOptions",
            "",
            vec![Cause::new(
                "FieldValueRequired",
                "fieldManager",
                "Required value: is required for apply patch",
            )],
        ));
    }
    let api_version = validate_applied(live, applied, group, kind)?;
    let mut cfg_set = lists.field_set(applied).map_err(|e| {
        ApiError::bad_request(format!(
            "failed to create typed patch object ({}): {e}",
            describe(applied)
        ))
    })?;
    scope.filter(&mut cfg_set);
    let cfg = scope.config(applied);

    let mut managers = live.map(managed::decode_lenient).unwrap_or_default();
    let mut merged = lists.merge_stripped(live, &cfg);

    let last = managers
        .iter()
        .position(|t| t.entry.same_owner(manager, Operation::Apply, subresource))
        .map(|i| managers.remove(i));
    let last_origin = last.as_ref().and_then(|l| l.origin);
    let last = last.map(|l| l.entry);
    if let Some(last) = last.as_ref().filter(|l| !l.fields.is_empty()) {
        let owned: Vec<&FieldSet> = std::iter::once(&cfg_set)
            .chain(managers.iter().map(|t| &t.entry.fields))
            .collect();
        lists.prune(&mut merged, &last.fields, &owned, &|spath| {
            scope.keeps(spath)
        });
    }

    // What the others lose (with no others, nothing to compare).
    let Comparison {
        added: mut changed,
        modified,
        removed,
    } = if managers.is_empty() {
        Comparison::default()
    } else {
        compare_scoped(lists, live, Some(&merged), scope)
    };
    changed.union_with_owned(modified);
    let conflicts: Vec<(&ManagedFieldsEntry, FieldSet)> = managers
        .iter()
        .map(|t| (&t.entry, t.entry.fields.intersection(&changed)))
        .filter(|(_, c)| !c.is_empty())
        .collect();
    if !force && !conflicts.is_empty() {
        return Err(conflict_error(conflicts));
    }
    for m in &mut managers {
        m.subtract(&changed);
        m.subtract(&removed);
    }

    lists.drop_config_nulls(&mut merged, &cfg);
    let object_changed = !live.is_some_and(|l| object::eq_without_managed_fields(l, &merged));
    let time = match &last {
        Some(l) if !object_changed && l.time.is_some() => l.time.clone(),
        _ => Some(now.to_string()),
    };
    cfg_set.subtract(unowned());
    let entry = ManagedFieldsEntry {
        manager: manager.to_string(),
        operation: Operation::Apply,
        api_version,
        time,
        subresource: subresource.to_string(),
        fields: cfg_set,
    };
    managers.push(Tracked::replacing(entry, last_origin));
    managers.retain(|t| !t.entry.fields.is_empty());
    managed::set_tracked(&mut merged, &managers);
    Ok(merged)
}

/// `ns/name; group/version, Kind=Kind`, as the apiserver names an object in errors.
fn describe(obj: &Value) -> String {
    let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let (g, v) = split_api_version(av);
    format!(
        "{}/{}; {g}/{v}, Kind={}",
        crate::meta::namespace(obj),
        crate::meta::name(obj),
        obj.get("kind").and_then(Value::as_str).unwrap_or("")
    )
}

fn split_api_version(av: &str) -> (&str, &str) {
    av.split_once('/').unwrap_or(("", av))
}

/// Check an applied configuration; its apiVersion on success.
fn validate_applied(
    live: Option<&Value>,
    applied: &Value,
    group: &str,
    kind: &str,
) -> Result<String, ApiError> {
    let Value::Object(m) = applied else {
        return Err(ApiError::bad_request(
            "error decoding patch: the applied configuration must be an object",
        ));
    };
    let managed = m.get("metadata").and_then(|md| md.get("managedFields"));
    if managed.is_some_and(|v| !v.is_null()) {
        return Err(ApiError::bad_request("metadata.managedFields must be nil"));
    }
    let av = m.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    let k = m.get("kind").and_then(Value::as_str).unwrap_or("");
    let (g, v) = split_api_version(av);
    if av.is_empty() || k.is_empty() || g != group || (!kind.is_empty() && k != kind) {
        return Err(ApiError::bad_request(format!(
            "invalid object type: {g}/{v}, Kind={k}"
        )));
    }
    let name = crate::meta::name(applied);
    if name.is_empty() {
        return Err(ApiError::bad_request(
            "metadata.name: Required value: name is required",
        ));
    }
    if let Some(live) = live {
        let live_name = crate::meta::name(live);
        if !live_name.is_empty() && live_name != name {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({name}) does not match the name on the URL ({live_name})"
            )));
        }
        let (ns, live_ns) = (
            crate::meta::namespace(applied),
            crate::meta::namespace(live),
        );
        if !ns.is_empty() && !live_ns.is_empty() && ns != live_ns {
            return Err(ApiError::bad_request(format!(
                "the namespace of the object ({ns}) does not match the namespace on the request ({live_ns})"
            )));
        }
    }
    Ok(av.to_string())
}

/// 409 Conflict worded as the apiserver words it.
fn conflict_error(mut conflicts: Vec<(&ManagedFieldsEntry, FieldSet)>) -> ApiError {
    conflicts.sort_by_key(|(m, _)| m.identifier());
    let groups: Vec<(String, Vec<String>)> = conflicts
        .iter()
        .map(|(m, set)| {
            let paths = set.paths().iter().map(|p| path_string(p)).collect();
            (m.printed(), paths)
        })
        .collect();
    let total: usize = groups.iter().map(|(_, p)| p.len()).sum();
    let message = if total == 1 {
        format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            groups[0].0, groups[0].1[0]
        )
    } else {
        let mut lines = Vec::new();
        for (who, paths) in &groups {
            lines.push(format!("conflicts with {who}:"));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        format!("Apply failed with {total} conflicts: {}", lines.join("\n"))
    };
    let mut e = ApiError::new(409, "Conflict", message);
    e.causes = groups
        .iter()
        .flat_map(|(who, paths)| {
            paths.iter().map(move |p| {
                Cause::new(
                    "FieldManagerConflict",
                    p.clone(),
                    format!("conflict with {who}"),
                )
            })
        })
        .collect();
    e
}

/// Record a non-apply write (create: `old` is `None`; update; patch) by `manager`:
/// the fields that differ between `old` and `new` become the manager's (Update entry
/// for `subresource`, "" for the main resource), and no one else's. Returns `new` with
/// `metadata.managedFields` set.
#[allow(clippy::too_many_arguments)]
pub fn track_update(
    old: Option<&Value>,
    new: &Value,
    manager: &str,
    subresource: &str,
    merge: impl Into<Merge>,
    api_version: &str,
    ignore_status: bool,
    now_rfc3339: &str,
) -> Value {
    let merge: Merge = merge.into();
    let lists = Lists { schema: &merge };
    let sent = new.get("metadata").and_then(|m| m.get("managedFields"));
    let entries = tracked_entries(
        &lists,
        old,
        new,
        sent,
        manager,
        subresource,
        api_version,
        ignore_status,
        now_rfc3339,
    );
    let mut out = without_managed_fields(new);
    managed::store(&mut out, entries);
    out
}

/// [`track_update`] that sets `metadata.managedFields` in `new` itself rather than
/// in a copy (`*new = track_update(old, new, ...)` without copying the object).
#[allow(clippy::too_many_arguments)]
pub fn track_update_in_place(
    old: Option<&Value>,
    new: &mut Value,
    manager: &str,
    subresource: &str,
    merge: impl Into<Merge>,
    api_version: &str,
    ignore_status: bool,
    now_rfc3339: &str,
) {
    let merge: Merge = merge.into();
    let lists = Lists { schema: &merge };
    // As `without_managed_fields` leaves the object.
    let sent = new
        .get_mut("metadata")
        .and_then(Value::as_object_mut)
        .and_then(|m| m.shift_remove("managedFields"));
    let entries = tracked_entries(
        &lists,
        old,
        new,
        sent.as_ref(),
        manager,
        subresource,
        api_version,
        ignore_status,
        now_rfc3339,
    );
    drop(sent);
    managed::store(new, entries);
}

/// The `managedFields` list [`track_update`] stores: `sent` is what the client sent
/// in `new`'s `metadata.managedFields`.
#[allow(clippy::too_many_arguments)]
fn tracked_entries(
    lists: &Lists,
    old: Option<&Value>,
    new: &Value,
    sent: Option<&Value>,
    manager: &str,
    subresource: &str,
    api_version: &str,
    ignore_status: bool,
    now_rfc3339: &str,
) -> Value {
    let scope = if ignore_status {
        Scope::IgnoreStatus
    } else {
        Scope::All
    };
    let mut managers = base_managers(old, sent, subresource);
    if old.is_none() && managers.is_empty() {
        if let Value::Object(root) = new {
            return created_entries(
                lists,
                root,
                manager,
                subresource,
                api_version,
                scope,
                now_rfc3339,
            );
        }
    }
    let Comparison {
        added: mut changed,
        modified,
        removed,
    } = compare_scoped(lists, old, Some(new), scope);
    changed.union_with_owned(modified);
    for m in &mut managers {
        m.subtract(&changed);
        m.subtract(&removed);
    }
    let mut own = changed;
    own.subtract(unowned());
    if !own.is_empty() {
        let i = match managers
            .iter()
            .position(|t| t.entry.same_owner(manager, Operation::Update, subresource))
        {
            Some(i) => i,
            None => {
                managers.push(Tracked::new(ManagedFieldsEntry {
                    manager: manager.to_string(),
                    operation: Operation::Update,
                    api_version: String::new(),
                    time: None,
                    subresource: subresource.to_string(),
                    fields: FieldSet::new(),
                }));
                managers.len() - 1
            }
        };
        let e = managers[i].entry_mut();
        e.fields.union_with_owned(own);
        e.api_version = api_version.to_string();
        e.time = Some(now_rfc3339.to_string());
    }
    managers.retain(|t| !t.entry.fields.is_empty());
    managed::cap_tracked(&mut managers, MAX_UPDATE_MANAGERS);
    managed::encode_tracked(&managers)
}

/// [`tracked_entries`] of a create where no one owns anything yet: the manager owns
/// every path of the new object but the unowned ones, written to `fieldsV1` straight
/// from the object.
fn created_entries(
    lists: &Lists,
    root: &Map<String, Value>,
    manager: &str,
    subresource: &str,
    api_version: &str,
    scope: Scope,
    now: &str,
) -> Value {
    // As `unowned()` takes them out: `apiVersion`, `kind`, `metadata` and the
    // unowned metadata fields are no members, what is below them stays.
    let mut keys: Vec<(&String, &Value)> = root.iter().filter(|(k, _)| scope.covers(k)).collect();
    keys.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut fields = Map::with_capacity(keys.len());
    for (k, v) in keys {
        let member = !matches!(k.as_str(), "apiVersion" | "kind" | "metadata");
        let body = match v {
            Value::Object(md) if k == "metadata" => {
                let mut mkeys: Vec<(&String, &Value)> =
                    md.iter().filter(|(k, _)| *k != "managedFields").collect();
                mkeys.sort_unstable_by(|a, b| a.0.cmp(b.0));
                let mut body = Map::with_capacity(mkeys.len());
                for (mk, mv) in mkeys {
                    let member = !UNOWNED_METADATA.contains(&mk.as_str());
                    let mut spath = vec![k.as_str(), mk.as_str()];
                    let below = lists.all_paths_fields_v1(mv, &mut spath, member);
                    if member || !below.is_empty() {
                        body.insert(fieldset::field_key(mk), Value::Object(below));
                    }
                }
                body
            }
            _ => lists.all_paths_fields_v1(v, &mut vec![k.as_str()], member),
        };
        if member || !body.is_empty() {
            fields.insert(fieldset::field_key(k), Value::Object(body));
        }
    }
    if fields.is_empty() {
        return Value::Array(Vec::new());
    }
    let entry = ManagedFieldsEntry {
        manager: manager.to_string(),
        operation: Operation::Update,
        api_version: api_version.to_string(),
        time: Some(now.to_string()),
        subresource: subresource.to_string(),
        fields: FieldSet::new(),
    };
    Value::Array(vec![entry.to_json_with(Value::Object(fields))])
}

/// The entries an update starts from: the client's own `managedFields` when it sent
/// decodable ones to the main resource (`[]` or `[{}]` resets them), else the stored
/// ones.
fn base_managers<'a>(
    old: Option<&'a Value>,
    sent: Option<&'a Value>,
    subresource: &str,
) -> Vec<Tracked<'a>> {
    let stored = || old.map(managed::decode_lenient).unwrap_or_default();
    if !subresource.is_empty() {
        return stored();
    }
    match sent {
        None | Some(Value::Null) => stored(),
        Some(Value::Array(items))
            if items.is_empty() || (items.len() == 1 && items[0] == json!({})) =>
        {
            Vec::new()
        }
        Some(v) => match managed::decode_tracked_list(v) {
            (entries, errs) if errs.is_empty() && !entries.is_empty() => entries,
            _ => stored(),
        },
    }
}

/// Validate the `managedFields` a client sent with an object (create or update):
/// 400 BadRequest when they cannot be decoded, 422 Invalid (with a cause per problem)
/// for an unknown `operation` or `fieldsType`.
pub fn validate_managed_fields(obj: &Value, group: &str, kind: &str) -> Result<(), ApiError> {
    let Some(v) = obj.get("metadata").and_then(|m| m.get("managedFields")) else {
        return Ok(());
    };
    let (_, errs) = managed::decode_list(v);
    if let Some(EntryError::Malformed(m)) =
        errs.iter().find(|e| matches!(e, EntryError::Malformed(_)))
    {
        return Err(ApiError::bad_request(m.clone()));
    }
    let causes: Vec<Cause> = errs
        .into_iter()
        .filter_map(|e| match e {
            EntryError::Invalid(c) => Some(c),
            EntryError::Malformed(_) => None,
        })
        .collect();
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(
            group,
            kind,
            crate::meta::name(obj),
            causes,
        ))
    }
}

/// The manager Kubernetes records for a non-apply request without `fieldManager`:
/// the User-Agent up to its first `/`, without unprintable characters, cut to
/// [`FIELD_MANAGER_MAX_LENGTH`] bytes.
pub fn default_manager(user_agent: &str) -> String {
    let head = user_agent.split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in head.chars() {
        let printable = c == ' ' || !(c.is_control() || c.is_whitespace() || is_format_char(c));
        if !printable {
            continue;
        }
        if out.len() + c.len_utf8() > FIELD_MANAGER_MAX_LENGTH {
            break;
        }
        out.push(c);
    }
    out
}

/// Common invisible format characters Go's `unicode.IsPrint` rejects.
fn is_format_char(c: char) -> bool {
    matches!(c, '\u{ad}' | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{feff}')
}

#[cfg(test)]
mod golden;
#[cfg(test)]
mod tests;
