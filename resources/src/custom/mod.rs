//! Custom resources: the kinds CustomResourceDefinitions add while the apiserver runs.
//!
//! The generic store and discovery take `&'static ResourceType`s, so each served
//! (group, version, plural) gets one, interned: allocated once per distinct shape
//! (names, scope, subresources) and reused for the life of the process. What a CRD
//! update may change without changing the shape (schema, printer columns, scale paths,
//! the storage version) sits behind a swappable pointer inside its [`CustomStrategy`],
//! so updating a CRD allocates no new `ResourceType`. A shape that stops being served
//! stays interned but is no longer found; a CRD re-created with the same shape gets it
//! back.

pub mod jsonpath;
pub mod rules;
pub mod schema;

use crate::strategy::{ScalePaths, Strategy};
use crate::table::{age_of, name_cell, Column, TableRow};
use crate::{ResourceType, Subresource};
use keelson_apimachinery::Cause;
use schema::Schema;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

/// One printer column (`additionalPrinterColumns`).
#[derive(Debug, Clone, PartialEq)]
pub struct PrinterColumn {
    pub column: Column,
    pub json_path: String,
}

/// What a CRD says about one served version besides its names.
#[derive(Debug, Clone, Default)]
pub struct VersionSpec {
    /// This version's `apiVersion` (`<group>/<version>`).
    pub api_version: String,
    /// `apiVersion` objects are stored with (the CRD's storage version).
    pub storage_api_version: String,
    pub schema: Option<Schema>,
    pub columns: Vec<PrinterColumn>,
    pub scale: Option<ScalePaths>,
    /// Whether the status subresource is on: then creates drop `status`.
    pub status: bool,
    /// The CRD is being deleted: no new objects.
    pub terminating: bool,
    /// `deprecationWarning`, or Kubernetes' default for a deprecated version.
    pub deprecation: Option<String>,
    /// `spec.names.listKind` as accepted (OpenAPI's list definition).
    pub list_kind: String,
    /// `schema.openAPIV3Schema` as the CRD writes it (descriptions included), for the
    /// OpenAPI documents.
    pub openapi_schema: Option<Value>,
}

/// Apply follows the version's structural schema (`None`: every list atomic).
impl keelson_apimachinery::patch::schema::MergeSchema for VersionSpec {
    fn list_type(&self, path: &[&str]) -> keelson_apimachinery::patch::schema::ListType {
        match &self.schema {
            Some(s) => s.list_type(path),
            None => keelson_apimachinery::patch::schema::ListType::Atomic,
        }
    }

    fn atomic_map(&self, path: &[&str]) -> bool {
        self.schema.as_ref().is_some_and(|s| s.atomic_map(path))
    }

    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        self.schema.as_ref()?.key_default(path, key)
    }
}

/// One (group, version, plural) a CRD serves.
#[derive(Debug, Clone)]
pub struct Definition {
    pub group: String,
    pub version: String,
    pub kind: String,
    pub plural: String,
    pub singular: String,
    pub namespaced: bool,
    pub short_names: Vec<String>,
    pub categories: Vec<String>,
    pub status: bool,
    pub scale: bool,
    pub spec: VersionSpec,
}

/// The shape of an interned type: everything in `ResourceType` but the strategy.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Shape {
    group: String,
    version: String,
    kind: String,
    plural: String,
    singular: String,
    namespaced: bool,
    short_names: Vec<String>,
    categories: Vec<String>,
    status: bool,
    scale: bool,
}

type Interned = (&'static ResourceType, &'static CustomStrategy);

#[derive(Default)]
struct State {
    interned: HashMap<Shape, Interned>,
    /// What each CRD (by name) serves now, in its versions' order.
    served: BTreeMap<String, Vec<Interned>>,
    strings: HashSet<&'static str>,
    key_lists: HashSet<&'static [&'static str]>,
}

static STATE: RwLock<Option<State>> = RwLock::new(None);

fn with_state<T>(f: impl FnOnce(&mut State) -> T) -> T {
    let mut guard = STATE.write().unwrap_or_else(|e| e.into_inner());
    f(guard.get_or_insert_with(State::default))
}

fn read_state<T>(f: impl FnOnce(&State) -> T) -> T {
    let guard = STATE.read().unwrap_or_else(|e| e.into_inner());
    match guard.as_ref() {
        Some(s) => f(s),
        None => f(&State::default()),
    }
}

impl State {
    /// A string that lives as long as the process; each distinct one is leaked once.
    fn intern(&mut self, s: &str) -> &'static str {
        if let Some(x) = self.strings.get(s) {
            return x;
        }
        let leaked: &'static str = Box::leak(s.to_string().into_boxed_str());
        self.strings.insert(leaked);
        leaked
    }

    fn intern_list(&mut self, list: &[String]) -> &'static [&'static str] {
        let v: Vec<&'static str> = list.iter().map(|s| self.intern(s)).collect();
        Box::leak(v.into_boxed_slice())
    }
}

/// Leak-once string interning for cells of `'static` tables built at run time.
pub fn intern(s: &str) -> &'static str {
    with_state(|st| st.intern(s))
}

/// Leak-once interning of a list of strings (`x-kubernetes-list-map-keys`, which
/// apply's `ListType::Map` holds as `'static`).
pub fn intern_keys(keys: &[String]) -> &'static [&'static str] {
    with_state(|st| {
        let list: Vec<&'static str> = keys.iter().map(|k| st.intern(k)).collect();
        if let Some(found) = st.key_lists.get(list.as_slice()) {
            return *found;
        }
        let leaked: &'static [&'static str] = Box::leak(list.into_boxed_slice());
        st.key_lists.insert(leaked);
        leaked
    })
}

/// Serve exactly `defs` for the CRD `crd` (replacing what it served before); an
/// empty list stops serving it.
pub fn install(crd: &str, defs: Vec<Definition>) {
    with_state(|st| {
        let mut now = Vec::new();
        for d in defs {
            let shape = Shape {
                group: d.group.clone(),
                version: d.version.clone(),
                kind: d.kind.clone(),
                plural: d.plural.clone(),
                singular: d.singular.clone(),
                namespaced: d.namespaced,
                short_names: d.short_names.clone(),
                categories: d.categories.clone(),
                status: d.status,
                scale: d.scale,
            };
            let interned = match st.interned.get(&shape) {
                Some(i) => *i,
                None => {
                    let strategy: &'static CustomStrategy = Box::leak(Box::new(CustomStrategy {
                        spec: RwLock::new(Arc::new(VersionSpec::default())),
                    }));
                    let mut subs = Vec::new();
                    if d.status {
                        subs.push(Subresource::Status);
                    }
                    if d.scale {
                        subs.push(Subresource::Scale);
                    }
                    let rt: &'static ResourceType = Box::leak(Box::new(ResourceType {
                        group: st.intern(&d.group),
                        version: st.intern(&d.version),
                        kind: st.intern(&d.kind),
                        plural: st.intern(&d.plural),
                        singular: st.intern(&d.singular),
                        namespaced: d.namespaced,
                        short_names: st.intern_list(&d.short_names),
                        categories: st.intern_list(&d.categories),
                        subresources: Box::leak(subs.into_boxed_slice()),
                        strategy,
                        // No typed model (the schema prunes and checks) and no
                        // strategic merge (415, as Kubernetes answers for custom resources).
                        typed: None,
                        merge: None,
                    }));
                    st.interned.insert(shape, (rt, strategy));
                    (rt, strategy)
                }
            };
            *interned.1.spec.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(d.spec);
            now.push(interned);
        }
        if now.is_empty() {
            st.served.remove(crd);
        } else {
            st.served.insert(crd.to_string(), now);
        }
    })
}

/// Every custom resource type served now, by CRD name then version order.
pub fn served() -> Vec<&'static ResourceType> {
    read_state(|st| st.served.values().flatten().map(|(rt, _)| *rt).collect())
}

/// The served type of `group`/`version`/`plural`.
pub fn find_version(group: &str, version: &str, plural: &str) -> Option<&'static ResourceType> {
    read_state(|st| {
        st.served
            .values()
            .flatten()
            .map(|(rt, _)| *rt)
            .find(|rt| rt.group == group && rt.version == version && rt.plural == plural)
    })
}

/// The served type of `group`/`plural` in its storage version (else the first served).
pub fn find(group: &str, plural: &str) -> Option<&'static ResourceType> {
    read_state(|st| {
        let versions: Vec<Interned> = st
            .served
            .values()
            .flatten()
            .filter(|(rt, _)| rt.group == group && rt.plural == plural)
            .copied()
            .collect();
        versions
            .iter()
            .find(|(rt, s)| s.spec().storage_api_version == rt.api_version())
            .or(versions.first())
            .map(|(rt, _)| *rt)
    })
}

/// The served type of `apiVersion`/`kind`.
pub fn find_kind(api_version: &str, kind: &str) -> Option<&'static ResourceType> {
    read_state(|st| {
        st.served
            .values()
            .flatten()
            .map(|(rt, _)| *rt)
            .find(|rt| rt.kind == kind && rt.api_version() == api_version)
    })
}

/// The strategy of every custom resource version: its schema, columns and scale
/// paths, swapped in place when its CRD changes.
pub struct CustomStrategy {
    spec: RwLock<Arc<VersionSpec>>,
}

impl CustomStrategy {
    pub fn spec(&self) -> Arc<VersionSpec> {
        self.spec.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The `x-kubernetes-validations` rules' causes. As Kubernetes, they are not
    /// evaluated on an object whose types are already wrong (a rule would only fail
    /// on them again, or misleadingly).
    fn validate_rules(&self, obj: &Value, old: Option<&Value>) -> Vec<Cause> {
        let spec = self.spec();
        let Some(s) = spec.schema.as_ref().filter(|s| s.has_rules) else {
            return Vec::new();
        };
        let mut schema_causes = Vec::new();
        schema::validate(s, obj, "", &mut schema_causes);
        let blocking = schema_causes
            .iter()
            .any(|c| c.reason == "FieldValueTypeInvalid" || c.reason == "FieldValueNotSupported");
        if blocking {
            return vec![Cause::invalid(
                "",
                &Value::Null,
                "some validation rules were not checked because the object was invalid; correct the existing errors to complete validation",
            )];
        }
        let mut out = Vec::new();
        rules::validate(s, obj, old, &mut out);
        out
    }
}

/// The NAME column as Kubernetes' table convertor for custom resources prints it.
fn default_columns() -> Vec<PrinterColumn> {
    vec![PrinterColumn {
        column: Column::new(
            "Age",
            "date",
            "CreationTimestamp is a timestamp representing the server time when this object was created.",
        ),
        json_path: ".metadata.creationTimestamp".into(),
    }]
}

/// A cell as Kubernetes' custom-resource table convertor renders it: dates as ages,
/// the first value the path reaches otherwise, null when it reaches none.
fn cell(obj: &Value, col: &PrinterColumn) -> Value {
    let found = jsonpath::find(obj, &col.json_path);
    let Some(first) = found.first() else {
        return Value::Null;
    };
    match (col.column.type_, first) {
        ("date", Value::String(s)) => Value::String(age_of(s)),
        ("string", Value::String(_)) => (*first).clone(),
        ("string", other) => Value::String(match other {
            Value::Object(_) | Value::Array(_) => other.to_string(),
            v => v.to_string(),
        }),
        _ => (*first).clone(),
    }
}

impl Strategy for CustomStrategy {
    /// A custom resource's `/status` changes status only: metadata stays as stored
    /// (apiextensions-apiserver's status strategy, unlike the built-in kinds').
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        for field in ["labels", "annotations", "finalizers", "ownerReferences"] {
            crate::strategy::keep_metadata_field(new, old, field);
        }
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        // With a status subresource, status is written only through /status.
        if self.spec().status {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
    }

    fn default(&self, obj: &mut Value) {
        if let Some(s) = &self.spec().schema {
            schema::apply_defaults(s, obj);
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        if let Some(s) = &self.spec().schema {
            schema::validate(s, obj, "", &mut out);
        }
        out.sort_by(|a, b| a.field.cmp(&b.field));
        out
    }

    /// CEL rules run here and in `validate_update`, which know whether there is an
    /// old object (`validate` runs for both).
    fn validate_create(&self, obj: &Value) -> Vec<Cause> {
        self.validate_rules(obj, None)
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        self.validate_rules(new, Some(old))
    }

    fn prune(&self, obj: &mut Value) -> Option<Vec<String>> {
        let spec = self.spec();
        let s = spec.schema.as_ref()?;
        let mut unknown = Vec::new();
        schema::prune(s, obj, "", true, &mut unknown);
        Some(unknown)
    }

    /// Reads show this version (conversion `None` rewrites only `apiVersion`) with
    /// the schema's defaults applied, as Kubernetes defaults on read.
    fn read_stored(&self, mut obj: Value) -> Value {
        let spec = self.spec();
        if let Some(o) = obj.as_object_mut() {
            if o.get("apiVersion").and_then(Value::as_str) != Some(spec.api_version.as_str()) {
                o.insert("apiVersion".into(), json!(spec.api_version));
            }
        }
        if let Some(s) = &spec.schema {
            schema::apply_defaults(s, &mut obj);
        }
        obj
    }

    fn write_stored(&self, obj: &Value) -> Option<Value> {
        let spec = self.spec();
        if obj.get("apiVersion").and_then(Value::as_str) == Some(spec.storage_api_version.as_str())
        {
            return None;
        }
        let mut o = obj.clone();
        o["apiVersion"] = json!(spec.storage_api_version);
        Some(o)
    }

    /// Always: objects may be stored in another version, and reads apply defaults.
    fn converts(&self) -> bool {
        true
    }

    fn scale_paths(&self) -> Option<ScalePaths> {
        self.spec().scale.clone()
    }

    fn create_refused(&self) -> Option<String> {
        self.spec()
            .terminating
            .then(|| "create not allowed while custom resource definition is terminating".into())
    }

    fn warnings(&self) -> Vec<String> {
        self.spec().deprecation.iter().cloned().collect()
    }

    fn custom_spec(&self) -> Option<Arc<VersionSpec>> {
        Some(self.spec())
    }

    fn columns(&self) -> Vec<Column> {
        let spec = self.spec();
        let cols = if spec.columns.is_empty() {
            default_columns()
        } else {
            spec.columns.clone()
        };
        let mut out = vec![Column::name()];
        out.extend(cols.into_iter().map(|c| c.column));
        out
    }

    fn row(&self, obj: &Value) -> TableRow {
        let spec = self.spec();
        let cols = if spec.columns.is_empty() {
            default_columns()
        } else {
            spec.columns.clone()
        };
        let mut row = vec![name_cell(obj)];
        row.extend(cols.iter().map(|c| cell(obj, c)));
        row
    }
}
