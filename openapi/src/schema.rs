//! From k8s-openapi's JSON Schemas to the schema objects Kubernetes publishes.
//!
//! k8s-openapi's `schemars` impls describe each type in JSON Schema with
//! `$ref: "#/definitions/<name>"` links, names already Kubernetes' own
//! (`io.k8s.api.core.v1.Pod`). This module turns them into Swagger 2.0 schema
//! objects (the form kube-openapi's `proto` package and gnostic accept), adds the
//! Kubernetes extensions (`x-kubernetes-group-version-kind`, list and patch
//! metadata), and derives the OpenAPI 3.0 form from the Swagger form.

use std::collections::{BTreeMap, BTreeSet};

use keelson_apimachinery::patch::schema::{list_meta, ListMeta, ListType, Root};
use serde_json::{json, Map, Value};

pub(crate) const V2_REF_PREFIX: &str = "#/definitions/";
pub(crate) const V3_REF_PREFIX: &str = "#/components/schemas/";

pub(crate) const INT_OR_STRING: &str = "io.k8s.apimachinery.pkg.util.intstr.IntOrString";
pub(crate) const QUANTITY: &str = "io.k8s.apimachinery.pkg.api.resource.Quantity";
pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

/// Definitions in Swagger 2.0 form, by name, sorted as Kubernetes sorts them.
pub(crate) type Definitions = BTreeMap<String, Value>;

/// A group, version and kind, serialized as Kubernetes does (`group`, `kind`, `version`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Gvk {
        Gvk {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({ "group": self.group, "kind": self.kind, "version": self.version })
    }
}

/// Converts one JSON Schema (as k8s-openapi writes it) to a Swagger 2.0 schema object.
///
/// Kept: the keywords Swagger 2.0 shares with JSON Schema, and every `x-` extension.
/// Dropped: `oneOf`/`anyOf`/`not` (Swagger 2.0 has none; Kubernetes publishes the
/// three `JSONSchemaPropsOr*` types as bare descriptions too). `x-kubernetes-int-or-string`
/// without a `type` becomes Kubernetes' `type: string, format: int-or-string`.
/// A `$ref` keeps only its description and extensions beside it: kube-openapi rejects
/// a reference that also has a type or properties.
pub(crate) fn to_v2(schema: &Value) -> Value {
    let Value::Object(m) = schema else {
        // `true` (anything) becomes the empty schema; nothing else occurs.
        return Value::Object(Map::new());
    };
    let mut out = Map::new();
    if let Some(reference) = m.get("$ref") {
        out.insert("$ref".into(), reference.clone());
        for (k, v) in m {
            if k == "description" || k == "default" || k.starts_with("x-") {
                out.insert(k.clone(), v.clone());
            }
        }
        return Value::Object(out);
    }
    for (k, v) in m {
        match k.as_str() {
            "type" => {
                let ty = match v {
                    Value::Array(types) => {
                        types.iter().find(|t| t.as_str() != Some("null")).cloned()
                    }
                    other => Some(other.clone()),
                };
                if let Some(ty) = ty {
                    out.insert(k.clone(), ty);
                }
            }
            "properties" => {
                if let Value::Object(props) = v {
                    let converted = props
                        .iter()
                        .map(|(name, s)| (name.clone(), to_v2(s)))
                        .collect();
                    out.insert(k.clone(), Value::Object(converted));
                }
            }
            "items" => {
                let item = match v {
                    Value::Array(items) => items.first().map(to_v2),
                    other => Some(to_v2(other)),
                };
                if let Some(item) = item {
                    out.insert(k.clone(), item);
                }
            }
            "additionalProperties" => {
                let converted = match v {
                    Value::Bool(b) => Value::Bool(*b),
                    other => to_v2(other),
                };
                out.insert(k.clone(), converted);
            }
            "allOf" => {
                if let Value::Array(all) = v {
                    out.insert(k.clone(), Value::Array(all.iter().map(to_v2).collect()));
                }
            }
            "x-kubernetes-int-or-string" => {}
            "description" | "format" | "title" | "required" | "enum" | "default" | "readOnly"
            | "minimum" | "maximum" | "exclusiveMinimum" | "exclusiveMaximum" | "multipleOf"
            | "minLength" | "maxLength" | "pattern" | "minItems" | "maxItems" | "uniqueItems"
            | "minProperties" | "maxProperties" | "example" => {
                out.insert(k.clone(), v.clone());
            }
            other if other.starts_with("x-") => {
                out.insert(k.clone(), v.clone());
            }
            _ => {}
        }
    }
    if m.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) && !out.contains_key("type")
    {
        out.insert("type".into(), json!("string"));
        out.insert("format".into(), json!("int-or-string"));
    }
    Value::Object(out)
}

/// Converts schemars' definitions and fixes up the few types Kubernetes publishes
/// differently from what a plain conversion gives.
pub(crate) fn convert_definitions(raw: Map<String, Value>) -> Definitions {
    let mut defs: Definitions = raw
        .iter()
        .map(|(name, s)| (name.clone(), to_v2(s)))
        .collect();
    if let Some(Value::Object(q)) = defs.get_mut(QUANTITY) {
        // A quantity is a string on the wire in Kubernetes' Swagger document.
        q.remove("format");
        q.insert("type".into(), json!("string"));
    }
    defs
}

/// Sets `x-kubernetes-group-version-kind` on a definition, keeping entries already there.
pub(crate) fn add_gvks(defs: &mut Definitions, name: &str, gvks: &[Gvk]) {
    let Some(Value::Object(def)) = defs.get_mut(name) else {
        return;
    };
    let entry = def
        .entry("x-kubernetes-group-version-kind")
        .or_insert_with(|| Value::Array(Vec::new()));
    let Value::Array(list) = entry else {
        return;
    };
    for gvk in gvks {
        let value = gvk.to_json();
        if !list.contains(&value) {
            list.push(value);
        }
    }
}

/// The `<Kind>List` definition Kubernetes publishes beside every listable kind.
pub(crate) fn list_definition(item_def: &str, gvk: &Gvk) -> Value {
    json!({
        "description": format!("{}List is a list of {} objects.", gvk.kind, gvk.kind),
        "properties": {
            "apiVersion": { "description": API_VERSION_DESCRIPTION, "type": "string" },
            "items": {
                "description": format!("List of {} objects.", gvk.kind),
                "items": { "$ref": format!("{V2_REF_PREFIX}{item_def}") },
                "type": "array",
            },
            "kind": { "description": KIND_DESCRIPTION, "type": "string" },
            "metadata": {
                "$ref": format!("{V2_REF_PREFIX}{LIST_META}"),
                "description": "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds",
            },
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [
            Gvk::new(&gvk.group, &gvk.version, &format!("{}List", gvk.kind)).to_json()
        ],
    })
}

/// The definition for a served kind k8s-openapi has no type for: its envelope is known,
/// its body is not, so every other field is accepted as it comes.
pub(crate) fn generic_kind(gvk: &Gvk) -> Value {
    json!({
        "description": format!("{} is served by this apiserver; its fields are not described.", gvk.kind),
        "properties": {
            "apiVersion": { "description": API_VERSION_DESCRIPTION, "type": "string" },
            "kind": { "description": KIND_DESCRIPTION, "type": "string" },
            "metadata": {
                "$ref": format!("{V2_REF_PREFIX}{OBJECT_META}"),
                "description": "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
            },
        },
        "type": "object",
        "x-kubernetes-preserve-unknown-fields": true,
        "x-kubernetes-group-version-kind": [gvk.to_json()],
    })
}

/// The definition name of a kind k8s-openapi has no type for: the group reversed, then
/// version and kind, as Kubernetes names custom resources (`com.example.v1.Widget`).
pub(crate) fn generic_name(gvk: &Gvk) -> String {
    let group = if gvk.group.is_empty() {
        "io.k8s.api.core".to_string()
    } else {
        gvk.group.split('.').rev().collect::<Vec<_>>().join(".")
    };
    format!("{group}.{}.{}", gvk.version, gvk.kind)
}

pub(crate) const API_VERSION_DESCRIPTION: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
pub(crate) const KIND_DESCRIPTION: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The definition a `$ref` points at, if it is one of ours.
fn ref_target(schema: &Value) -> Option<&str> {
    schema.get("$ref")?.as_str()?.strip_prefix(V2_REF_PREFIX)
}

/// Deepest field path walked from a kind's root; Kubernetes' deepest list is far above.
const MAX_DEPTH: usize = 24;

/// Annotates every list reachable from `root` (the definition of a kind whose merge
/// semantics start at `merge`) with
/// the merge semantics `keelson_apimachinery::patch::schema::list_meta` gives for its
/// path: the same table the apiserver's strategic merge patch and apply use, so what
/// kubectl computes from these documents is what the server will do with it.
///
/// The extensions go on the list property of the definition that declares it, where
/// Kubernetes puts its struct tags; a definition shared by several kinds (Container in
/// Pod and in Deployment) is annotated from the first kind that reaches it.
pub(crate) fn annotate_lists(defs: &mut Definitions, root: &str, merge: Option<Root>) {
    let mut found = Vec::new();
    let mut path = Vec::new();
    let mut stack = Vec::new();
    walk(defs, root, merge, &mut path, &mut stack, &mut found);
    for (def, prop, meta) in found {
        let Some(Value::Object(property)) = defs
            .get_mut(&def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(&prop))
        else {
            continue;
        };
        if property.contains_key("x-kubernetes-list-type")
            || property.contains_key("x-kubernetes-patch-strategy")
        {
            continue;
        }
        for (k, v) in list_extensions(meta) {
            property.insert(k.to_string(), v);
        }
    }
}

/// Patch strategies Kubernetes sets on fields that are not merged lists (Go
/// `patchStrategy` tags): `retainKeys` makes kubectl send `$retainKeys`, so switching a
/// volume's source or a Deployment's strategy type clears the old one's fields;
/// `replace` makes it replace the selector whole. The apiserver's strategic merge
/// patch honours both directives whatever its table says, so these only need to be
/// published. (definition, property, strategy)
const FIELD_STRATEGIES: &[(&str, &str, &str)] = &[
    ("io.k8s.api.core.v1.PodSpec", "volumes", "retainKeys"),
    (
        "io.k8s.api.apps.v1.DeploymentSpec",
        "strategy",
        "retainKeys",
    ),
    (
        "io.k8s.api.policy.v1.PodDisruptionBudgetSpec",
        "selector",
        "replace",
    ),
];

/// Adds [`FIELD_STRATEGIES`] to the definitions present. A list gets `retainKeys` only
/// beside `merge` (Kubernetes' `merge,retainKeys`); a list the merge table left atomic
/// is replaced whole anyway.
pub(crate) fn add_field_strategies(defs: &mut Definitions) {
    for (def, prop, strategy) in FIELD_STRATEGIES {
        let Some(Value::Object(property)) = defs
            .get_mut(*def)
            .and_then(|d| d.get_mut("properties"))
            .and_then(|p| p.get_mut(*prop))
        else {
            continue;
        };
        let is_list = property.get("type").and_then(Value::as_str) == Some("array");
        let value = match property
            .get("x-kubernetes-patch-strategy")
            .and_then(Value::as_str)
        {
            Some(existing) if existing.split(',').any(|s| s == *strategy) => continue,
            Some(existing) => format!("{existing},{strategy}"),
            None if is_list => continue,
            None => strategy.to_string(),
        };
        property.insert("x-kubernetes-patch-strategy".into(), Value::String(value));
    }
}

/// The extensions Kubernetes writes for a list with these semantics.
pub(crate) fn list_extensions(meta: ListMeta) -> Vec<(&'static str, Value)> {
    let mut out = Vec::new();
    match meta.apply {
        ListType::Atomic => out.push(("x-kubernetes-list-type", json!("atomic"))),
        ListType::Set => out.push(("x-kubernetes-list-type", json!("set"))),
        ListType::Map(keys) => {
            out.push(("x-kubernetes-list-map-keys", json!(keys)));
            out.push(("x-kubernetes-list-type", json!("map")));
        }
    }
    if let Some(key) = meta.smp_merge_key {
        if !key.is_empty() {
            out.push(("x-kubernetes-patch-merge-key", json!(key)));
        }
        out.push(("x-kubernetes-patch-strategy", json!("merge")));
    }
    out
}

enum Step {
    List(Option<String>),
    Object(String),
}

fn walk(
    defs: &Definitions,
    def: &str,
    merge: Option<Root>,
    path: &mut Vec<String>,
    stack: &mut Vec<String>,
    found: &mut Vec<(String, String, ListMeta)>,
) {
    if path.len() > MAX_DEPTH || stack.iter().any(|d| d == def) {
        return;
    }
    let Some(Value::Object(props)) = defs.get(def).and_then(|d| d.get("properties")) else {
        return;
    };
    let steps: Vec<(String, Step)> = props
        .iter()
        .filter_map(|(name, schema)| {
            let step = if schema.get("type").and_then(Value::as_str) == Some("array") {
                Step::List(schema.get("items").and_then(ref_target).map(str::to_string))
            } else {
                Step::Object(ref_target(schema)?.to_string())
            };
            Some((name.clone(), step))
        })
        .collect();
    stack.push(def.to_string());
    for (name, step) in steps {
        path.push(name.clone());
        match step {
            Step::List(item) => {
                let segments: Vec<&str> = path.iter().map(String::as_str).collect();
                let meta = list_meta(merge, &segments);
                if meta != ListMeta::ATOMIC && !found.iter().any(|(d, p, _)| d == def && *p == name)
                {
                    found.push((def.to_string(), name.clone(), meta));
                }
                if let Some(item) = item {
                    walk(defs, &item, merge, path, stack, found);
                }
            }
            Step::Object(target) => walk(defs, &target, merge, path, stack, found),
        }
        path.pop();
    }
    stack.pop();
}

/// Every definition name `value` refers to, directly.
pub(crate) fn collect_refs(value: &Value, out: &mut BTreeSet<String>) {
    match value {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                if let Some(name) = r.strip_prefix(V2_REF_PREFIX) {
                    out.insert(name.to_string());
                }
            }
            for v in m.values() {
                collect_refs(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The names `roots` refer to, and everything those refer to, transitively.
pub(crate) fn closure<'d>(
    defs: &dyn Fn(&str) -> Option<&'d Value>,
    roots: BTreeSet<String>,
) -> BTreeSet<String> {
    let mut done = BTreeSet::new();
    let mut todo: Vec<String> = roots.into_iter().collect();
    while let Some(name) = todo.pop() {
        if !done.insert(name.clone()) {
            continue;
        }
        if let Some(def) = defs(&name) {
            let mut refs = BTreeSet::new();
            collect_refs(def, &mut refs);
            todo.extend(refs.into_iter().filter(|r| !done.contains(r)));
        }
    }
    done
}

/// The OpenAPI 3.0 form of a Swagger 2.0 schema: references point into
/// `components/schemas`. Everything else Kubernetes publishes the same way in both.
pub(crate) fn to_v3(schema: &Value) -> Value {
    match schema {
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("$ref", Value::String(r)) => match r.strip_prefix(V2_REF_PREFIX) {
                            Some(name) => Value::String(format!("{V3_REF_PREFIX}{name}")),
                            None => v.clone(),
                        },
                        _ => to_v3(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(to_v3).collect()),
        other => other.clone(),
    }
}

/// A definition in OpenAPI 3.0 form. IntOrString and Quantity are published as
/// Kubernetes' v3 documents publish them: a `oneOf` of the two wire forms.
pub(crate) fn definition_v3(name: &str, def: &Value) -> Value {
    let mut v3 = to_v3(def);
    if let Value::Object(m) = &mut v3 {
        match name {
            INT_OR_STRING => {
                m.remove("type");
                m.insert("format".into(), json!("int-or-string"));
                m.insert(
                    "oneOf".into(),
                    json!([{ "type": "integer" }, { "type": "string" }]),
                );
            }
            QUANTITY => {
                m.remove("type");
                m.remove("format");
                m.insert(
                    "oneOf".into(),
                    json!([{ "type": "string" }, { "type": "number" }]),
                );
            }
            _ => {}
        }
    }
    v3
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ref_keeps_description_only() {
        let v = to_v2(&json!({
            "$ref": "#/definitions/io.k8s.api.core.v1.PodSpec",
            "description": "spec",
            "type": "object",
        }));
        assert_eq!(
            v,
            json!({ "$ref": "#/definitions/io.k8s.api.core.v1.PodSpec", "description": "spec" })
        );
    }

    #[test]
    fn one_of_dropped_int_or_string_typed() {
        let v = to_v2(&json!({ "description": "d", "oneOf": [{ "type": "string" }] }));
        assert_eq!(v, json!({ "description": "d" }));
        let v = to_v2(&json!({ "description": "d", "x-kubernetes-int-or-string": true }));
        assert_eq!(
            v,
            json!({ "description": "d", "type": "string", "format": "int-or-string" })
        );
    }

    #[test]
    fn nullable_type_array_and_tuple_items() {
        let v = to_v2(&json!({ "type": ["null", "array"], "items": [{ "type": "string" }] }));
        assert_eq!(v, json!({ "type": "array", "items": { "type": "string" } }));
    }

    #[test]
    fn v3_rewrites_refs() {
        let v = to_v3(&json!({ "items": { "$ref": "#/definitions/a.B" } }));
        assert_eq!(
            v,
            json!({ "items": { "$ref": "#/components/schemas/a.B" } })
        );
    }

    #[test]
    fn generic_names() {
        assert_eq!(
            generic_name(&Gvk::new("example.com", "v1", "Widget")),
            "com.example.v1.Widget"
        );
        assert_eq!(
            generic_name(&Gvk::new("", "v1", "Thing")),
            "io.k8s.api.core.v1.Thing"
        );
    }

    #[test]
    fn list_extension_forms() {
        let ext = list_extensions(ListMeta {
            smp_merge_key: Some("name"),
            apply: ListType::Map(&["name"]),
        });
        let m: Map<String, Value> = ext.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert_eq!(m["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(m["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(m["x-kubernetes-list-type"], "map");
        assert_eq!(m["x-kubernetes-list-map-keys"], json!(["name"]));
        let ext = list_extensions(ListMeta {
            smp_merge_key: Some(""),
            apply: ListType::Set,
        });
        let m: Map<String, Value> = ext.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        assert!(!m.contains_key("x-kubernetes-patch-merge-key"));
        assert_eq!(m["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(m["x-kubernetes-list-type"], "set");
    }
}
