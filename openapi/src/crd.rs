//! Definitions for custom resources, from a CustomResourceDefinition version's
//! `openAPIV3Schema`, as apiextensions-apiserver's OpenAPI builder writes them.
//!
//! The kind's definition is the CRD's schema with Kubernetes' envelope filled in:
//! `metadata` a reference to ObjectMeta, `apiVersion` and `kind` as TypeMeta describes
//! them, and `x-kubernetes-group-version-kind`. Embedded resources
//! (`x-kubernetes-embedded-resource`) get the same envelope. The OpenAPI v3 form keeps
//! the schema (with `x-kubernetes-int-or-string` unfolded into its `anyOf`); the v2 form
//! is what kubectl's Swagger parser copes with: no `allOf`/`anyOf`/`oneOf`/`not`, no
//! defaults, a nullable field untyped (and no longer required), a field that preserves
//! unknown fields without `properties`/`items` and untyped when an object, and a kind
//! whose root preserves unknown fields just `type: object`.

use serde_json::{json, Map, Value};

use crate::schema::{
    Gvk, API_VERSION_DESCRIPTION, KIND_DESCRIPTION, LIST_META, OBJECT_META, V2_REF_PREFIX,
};

const OBJECT_META_DESCRIPTION: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_META_DESCRIPTION: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";

/// The kind's definition in v2 and v3 form (references in the v2 form, `#/definitions/`;
/// the documents rewrite them for v3).
pub(crate) fn kind_definitions(schema: Option<&Value>, gvk: &Gvk) -> (Value, Value) {
    let gvks = json!([gvk.to_json()]);
    let bare = || json!({ "type": "object", "x-kubernetes-group-version-kind": gvks });
    let Some(schema @ Value::Object(_)) = schema else {
        return (bare(), bare());
    };
    let mut v3 = unfold(schema);
    add_envelope(&mut v3, false);
    v3["x-kubernetes-group-version-kind"] = gvks.clone();
    let v2 = if preserves_unknown(schema) {
        // kubectl's v2 validation would refuse every field it was not told about.
        bare()
    } else {
        let mut v2 = to_v2(schema);
        add_envelope(&mut v2, false);
        v2["x-kubernetes-group-version-kind"] = gvks;
        v2
    };
    (v2, v3)
}

/// The `<ListKind>` definition (the same in both forms).
pub(crate) fn list_definition(item_def: &str, list: &Gvk, kind: &str, plural: &str) -> Value {
    json!({
        "description": format!("{} is a list of {kind}", list.kind),
        "properties": {
            "apiVersion": type_meta(API_VERSION_DESCRIPTION),
            "items": {
                "description": format!("List of {plural}. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md"),
                "items": { "$ref": format!("{V2_REF_PREFIX}{item_def}") },
                "type": "array",
            },
            "kind": type_meta(KIND_DESCRIPTION),
            "metadata": {
                "$ref": format!("{V2_REF_PREFIX}{LIST_META}"),
                "description": LIST_META_DESCRIPTION,
            },
        },
        "required": ["items"],
        "type": "object",
        "x-kubernetes-group-version-kind": [list.to_json()],
    })
}

fn type_meta(description: &str) -> Value {
    json!({ "description": description, "type": "string" })
}

fn flag(m: &Map<String, Value>, k: &str) -> bool {
    m.get(k).and_then(Value::as_bool) == Some(true)
}

fn preserves_unknown(schema: &Value) -> bool {
    schema
        .as_object()
        .is_some_and(|m| flag(m, "x-kubernetes-preserve-unknown-fields"))
}

/// `apiVersion`, `kind` and `metadata` of a resource (the root, or an embedded one,
/// which must also carry `apiVersion` and `kind`).
fn add_envelope(schema: &mut Value, embedded: bool) {
    let Value::Object(m) = schema else { return };
    let props = m
        .entry("properties")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Value::Object(props) = props {
        props.insert("apiVersion".into(), type_meta(API_VERSION_DESCRIPTION));
        props.insert("kind".into(), type_meta(KIND_DESCRIPTION));
        props.insert(
            "metadata".into(),
            json!({ "$ref": format!("{V2_REF_PREFIX}{OBJECT_META}"), "description": OBJECT_META_DESCRIPTION }),
        );
    }
    if embedded {
        let required = m.entry("required").or_insert_with(|| json!([]));
        if let Value::Array(required) = required {
            for k in ["kind", "apiVersion"] {
                if !required.iter().any(|r| r == k) {
                    required.push(json!(k));
                }
            }
        }
    }
}

/// Applies `f` to every subschema (properties, items, additionalProperties, and the
/// junctors when `junctors`).
fn map_children(m: &mut Map<String, Value>, junctors: bool, f: &dyn Fn(&Value) -> Value) {
    if let Some(Value::Object(props)) = m.get_mut("properties") {
        for v in props.values_mut() {
            *v = f(v);
        }
    }
    for k in ["items", "additionalProperties", "not"] {
        if k == "not" && !junctors {
            continue;
        }
        if let Some(v @ Value::Object(_)) = m.get_mut(k) {
            *v = f(v);
        }
    }
    if junctors {
        for k in ["allOf", "anyOf", "oneOf"] {
            if let Some(Value::Array(list)) = m.get_mut(k) {
                for v in list.iter_mut() {
                    *v = f(v);
                }
            }
        }
    }
}

/// The v3 form: the schema as written, int-or-string unfolded, embedded resources
/// enveloped.
fn unfold(schema: &Value) -> Value {
    let Value::Object(src) = schema else {
        return schema.clone();
    };
    let mut m = src.clone();
    map_children(&mut m, true, &unfold);
    if flag(&m, "x-kubernetes-int-or-string")
        && !m.contains_key("anyOf")
        && !m.contains_key("allOf")
    {
        m.insert(
            "anyOf".into(),
            json!([{ "type": "integer" }, { "type": "string" }]),
        );
    }
    let mut out = Value::Object(m);
    if src
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true)
    {
        add_envelope(&mut out, true);
    }
    out
}

/// The v2 form, as apiextensions-apiserver's `ToStructuralOpenAPIV2` and the
/// published document's default pruning leave it.
fn to_v2(schema: &Value) -> Value {
    let Value::Object(src) = schema else {
        return schema.clone();
    };
    let mut m = src.clone();
    for k in ["allOf", "anyOf", "oneOf", "not", "default"] {
        m.remove(k);
    }
    if flag(src, "nullable") {
        m.remove("nullable");
        m.remove("type");
        m.remove("items");
        m.remove("properties");
    }
    let preserve = flag(src, "x-kubernetes-preserve-unknown-fields");
    if preserve {
        m.remove("items");
        m.remove("properties");
    }
    let ty = m.get("type").and_then(Value::as_str).map(str::to_string);
    if (ty.as_deref() == Some("array") && !m.contains_key("items"))
        || (preserve && ty.as_deref() == Some("object"))
    {
        m.remove("type");
    }
    // A nullable field may be null, so kubectl must not insist on it.
    let nullable = |s: &Value| s.get("nullable").and_then(Value::as_bool) == Some(true);
    let nullable_props: Vec<String> = src
        .get("properties")
        .and_then(Value::as_object)
        .map(|p| {
            p.iter()
                .filter(|(_, s)| nullable(s))
                .map(|(k, _)| k.clone())
                .collect()
        })
        .unwrap_or_default();
    if src.get("additionalProperties").is_some_and(nullable) {
        m.remove("required");
    } else if let Some(Value::Array(required)) = m.get_mut("required") {
        required.retain(|r| {
            !r.as_str()
                .is_some_and(|r| nullable_props.iter().any(|n| n == r))
        });
        if required.is_empty() {
            m.remove("required");
        }
    }
    map_children(&mut m, false, &to_v2);
    let mut out = Value::Object(m);
    if flag(src, "x-kubernetes-embedded-resource") && !preserve {
        add_envelope(&mut out, true);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn widget() -> Value {
        json!({
            "type": "object",
            "description": "A widget.",
            "properties": {
                "metadata": { "type": "object" },
                "spec": {
                    "type": "object",
                    "required": ["image", "note"],
                    "properties": {
                        "image": { "type": "string", "description": "The image." },
                        "replicas": { "type": "integer", "default": 1 },
                        "note": { "type": "string", "nullable": true },
                        "size": { "x-kubernetes-int-or-string": true },
                        "free": { "type": "object", "x-kubernetes-preserve-unknown-fields": true,
                                  "properties": { "a": { "type": "string" } } },
                        "either": { "type": "string", "oneOf": [{ "pattern": "^a" }, { "pattern": "^b" }] },
                        "ports": { "type": "array", "x-kubernetes-list-type": "map",
                                   "x-kubernetes-list-map-keys": ["name"],
                                   "items": { "type": "object", "required": ["name"],
                                              "properties": { "name": { "type": "string" } } } },
                        "template": { "type": "object", "x-kubernetes-embedded-resource": true,
                                      "properties": { "spec": { "type": "object" } } }
                    }
                }
            }
        })
    }

    #[test]
    fn v3_keeps_the_schema_and_adds_the_envelope() {
        let gvk = Gvk::new("example.com", "v1", "Widget");
        let (_, v3) = kind_definitions(Some(&widget()), &gvk);
        assert_eq!(v3["description"], "A widget.");
        assert_eq!(
            v3["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_eq!(v3["properties"]["apiVersion"]["type"], "string");
        assert_eq!(
            v3["x-kubernetes-group-version-kind"],
            json!([{ "group": "example.com", "kind": "Widget", "version": "v1" }])
        );
        let spec = &v3["properties"]["spec"]["properties"];
        assert_eq!(spec["replicas"]["default"], 1);
        assert_eq!(spec["note"]["nullable"], true);
        assert_eq!(
            spec["size"]["anyOf"],
            json!([{ "type": "integer" }, { "type": "string" }])
        );
        assert_eq!(spec["either"]["oneOf"][0]["pattern"], "^a");
        assert_eq!(spec["ports"]["x-kubernetes-list-map-keys"], json!(["name"]));
        assert_eq!(spec["template"]["required"], json!(["kind", "apiVersion"]));
        assert!(spec["template"]["properties"]["metadata"]["$ref"].is_string());
    }

    #[test]
    fn v2_drops_what_kubectl_cannot_read() {
        let gvk = Gvk::new("example.com", "v1", "Widget");
        let (v2, _) = kind_definitions(Some(&widget()), &gvk);
        let spec = &v2["properties"]["spec"];
        assert_eq!(spec["required"], json!(["image"]));
        let p = &spec["properties"];
        assert_eq!(p["image"]["description"], "The image.");
        assert!(p["replicas"].get("default").is_none());
        assert_eq!(p["note"], json!({}));
        assert_eq!(p["size"], json!({ "x-kubernetes-int-or-string": true }));
        assert_eq!(
            p["free"],
            json!({ "x-kubernetes-preserve-unknown-fields": true })
        );
        assert_eq!(p["either"], json!({ "type": "string" }));
        assert_eq!(p["ports"]["x-kubernetes-list-type"], "map");
        assert!(p["template"]["properties"]["kind"].is_object());
        assert_eq!(v2["x-kubernetes-group-version-kind"][0]["kind"], "Widget");
    }

    #[test]
    fn a_root_that_preserves_unknown_fields_is_an_object_in_v2() {
        let gvk = Gvk::new("example.com", "v1beta1", "Widget");
        let schema = json!({ "type": "object", "x-kubernetes-preserve-unknown-fields": true });
        let (v2, v3) = kind_definitions(Some(&schema), &gvk);
        assert_eq!(
            v2,
            json!({ "type": "object", "x-kubernetes-group-version-kind": [gvk.to_json()] })
        );
        assert_eq!(v3["x-kubernetes-preserve-unknown-fields"], true);
        assert!(v3["properties"]["metadata"].is_object());
    }

    #[test]
    fn list_definitions_name_their_items() {
        let list = Gvk::new("example.com", "v1", "WidgetList");
        let l = list_definition("com.example.v1.Widget", &list, "Widget", "widgets");
        assert_eq!(l["description"], "WidgetList is a list of Widget");
        assert_eq!(
            l["properties"]["items"]["items"]["$ref"],
            "#/definitions/com.example.v1.Widget"
        );
        assert_eq!(
            l["x-kubernetes-group-version-kind"][0]["kind"],
            "WidgetList"
        );
    }
}
