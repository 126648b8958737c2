//! Structural schemas (the OpenAPI v3 subset a CustomResourceDefinition may use):
//! validating objects with kube-openapi's messages and field paths, pruning fields the
//! schema does not name, and applying `default`s.
//!
//! A schema is parsed once per CRD version into [`Schema`]; what makes a schema
//! acceptable in a CRD at all is checked by [`check`], worded as
//! apiextensions-apiserver words it.

use keelson_apimachinery::patch::schema::{ListType, MergeSchema};
use keelson_apimachinery::Cause;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// One node of a structural schema.
#[derive(Debug, Clone, Default)]
pub struct Schema {
    /// `object`, `array`, `string`, `integer`, `number`, `boolean`, or "" (any).
    pub type_: String,
    pub format: String,
    pub properties: BTreeMap<String, Schema>,
    pub required: Vec<String>,
    pub items: Option<Box<Schema>>,
    /// A schema for every value of a map (`additionalProperties: {...}`); `Some(None)`
    /// is `additionalProperties: true` (any value).
    pub additional: Option<Option<Box<Schema>>>,
    pub enum_: Option<Vec<Value>>,
    pub minimum: Option<f64>,
    pub maximum: Option<f64>,
    pub exclusive_minimum: bool,
    pub exclusive_maximum: bool,
    pub multiple_of: Option<f64>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub pattern: Option<(String, regex::Regex)>,
    pub min_items: Option<u64>,
    pub max_items: Option<u64>,
    pub unique_items: bool,
    pub min_properties: Option<u64>,
    pub max_properties: Option<u64>,
    pub nullable: bool,
    pub default: Option<Value>,
    pub preserve_unknown: bool,
    pub int_or_string: bool,
    pub embedded_resource: bool,
    pub all_of: Vec<Schema>,
    pub any_of: Vec<Schema>,
    pub one_of: Vec<Schema>,
    pub not: Option<Box<Schema>>,
    /// `x-kubernetes-validations`, compiled.
    pub rules: Vec<super::rules::Rule>,
    /// Whether this node or one below it has rules (what the CEL walk visits).
    pub has_rules: bool,
    /// `x-kubernetes-list-type`: `atomic`, `set`, `map`, or "" (atomic).
    pub list_type: String,
    /// `x-kubernetes-list-map-keys`, interned for [`ListType::Map`].
    pub list_map_keys: &'static [&'static str],
    /// `x-kubernetes-map-type`: `atomic`, `granular`, or "" (granular).
    pub map_type: String,
}

fn u64_at(v: &Value, k: &str) -> Option<u64> {
    v.get(k).and_then(Value::as_u64)
}

fn schemas_at(v: &Value, k: &str) -> Vec<Schema> {
    v.get(k)
        .and_then(Value::as_array)
        .map(|a| a.iter().map(Schema::parse).collect())
        .unwrap_or_default()
}

impl Schema {
    /// Parse a JSONSchemaProps. Lenient: whatever [`check`] refuses is ignored here (a
    /// pattern that does not compile matches nothing is never reached, since such a CRD
    /// is not stored).
    pub fn parse(v: &Value) -> Schema {
        let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let b = |k: &str| v.get(k).and_then(Value::as_bool).unwrap_or(false);
        let f = |k: &str| v.get(k).and_then(Value::as_f64);
        let mut parsed = Schema {
            type_: s("type"),
            format: s("format"),
            properties: v
                .get("properties")
                .and_then(Value::as_object)
                .map(|m| {
                    m.iter()
                        .map(|(k, p)| (k.clone(), Schema::parse(p)))
                        .collect()
                })
                .unwrap_or_default(),
            required: keelson_apimachinery::meta::path_strings(v, "required"),
            items: v
                .get("items")
                .filter(|i| i.is_object())
                .map(|i| Box::new(Schema::parse(i))),
            additional: match v.get("additionalProperties") {
                Some(Value::Bool(true)) => Some(None),
                Some(o @ Value::Object(_)) => Some(Some(Box::new(Schema::parse(o)))),
                _ => None,
            },
            enum_: v.get("enum").and_then(Value::as_array).cloned(),
            minimum: f("minimum"),
            maximum: f("maximum"),
            exclusive_minimum: b("exclusiveMinimum"),
            exclusive_maximum: b("exclusiveMaximum"),
            multiple_of: f("multipleOf"),
            min_length: u64_at(v, "minLength"),
            max_length: u64_at(v, "maxLength"),
            pattern: v
                .get("pattern")
                .and_then(Value::as_str)
                .and_then(|p| regex::Regex::new(p).ok().map(|r| (p.to_string(), r))),
            min_items: u64_at(v, "minItems"),
            max_items: u64_at(v, "maxItems"),
            unique_items: b("uniqueItems"),
            min_properties: u64_at(v, "minProperties"),
            max_properties: u64_at(v, "maxProperties"),
            nullable: b("nullable"),
            default: v.get("default").cloned(),
            preserve_unknown: b("x-kubernetes-preserve-unknown-fields"),
            int_or_string: b("x-kubernetes-int-or-string"),
            embedded_resource: b("x-kubernetes-embedded-resource"),
            all_of: schemas_at(v, "allOf"),
            any_of: schemas_at(v, "anyOf"),
            one_of: schemas_at(v, "oneOf"),
            not: v.get("not").map(|n| Box::new(Schema::parse(n))),
            rules: super::rules::parse_all(v),
            has_rules: false,
            list_type: s("x-kubernetes-list-type"),
            // Interned only where apply uses them (lists of type map).
            list_map_keys: if s("x-kubernetes-list-type") == "map" {
                super::intern_keys(&keelson_apimachinery::meta::path_strings(
                    v,
                    "x-kubernetes-list-map-keys",
                ))
            } else {
                &[]
            },
            map_type: s("x-kubernetes-map-type"),
        };
        parsed.has_rules = !parsed.rules.is_empty()
            || parsed.properties.values().any(|p| p.has_rules)
            || parsed.items.as_ref().is_some_and(|i| i.has_rules)
            || matches!(&parsed.additional, Some(Some(a)) if a.has_rules)
            || parsed.all_of.iter().any(|a| a.has_rules);
        parsed
    }

    /// The node a path of field names reaches from here (list items add nothing to
    /// such paths: a name after a list names a field of its items).
    fn at(&self, path: &[&str]) -> Option<&Schema> {
        let mut node = self;
        for name in path {
            node = node.element().child(name)?;
        }
        Some(node)
    }

    /// The schema of the values this node holds: the items of a list (of a list...),
    /// or itself.
    fn element(&self) -> &Schema {
        let mut node = self;
        while node.type_ == "array" {
            match &node.items {
                Some(items) => node = items,
                None => break,
            }
        }
        node
    }

    /// The schema of property `key` of an object this schema describes.
    fn child(&self, key: &str) -> Option<&Schema> {
        self.properties
            .get(key)
            .or_else(|| self.additional.as_ref().and_then(|a| a.as_deref()))
    }
}

/// Server-side apply's view of a custom resource: lists as their
/// `x-kubernetes-list-type` says (atomic without one, as Kubernetes builds the schema),
/// maps and structs granular unless `x-kubernetes-map-type: atomic`.
impl MergeSchema for Schema {
    fn list_type(&self, path: &[&str]) -> ListType {
        let Some(node) = self.at(path) else {
            return ListType::Atomic;
        };
        match node.list_type.as_str() {
            "set" => ListType::Set,
            "map" if !node.list_map_keys.is_empty() => ListType::Map(node.list_map_keys),
            _ => ListType::Atomic,
        }
    }

    fn atomic_map(&self, path: &[&str]) -> bool {
        self.at(path)
            .is_some_and(|node| node.element().map_type == "atomic")
    }

    fn key_default(&self, path: &[&str], key: &str) -> Option<Value> {
        self.at(path)?
            .element()
            .properties
            .get(key)?
            .default
            .clone()
    }
}

/// `spec.replicas`, `spec.items[0]`, as kube-openapi names fields.
fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// The JSON type of a value as kube-openapi names it in messages.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(n) if n.as_f64().is_some_and(|f| f.fract() == 0.0) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn type_matches(want: &str, v: &Value) -> bool {
    match want {
        "" => true,
        "number" => v.is_number(),
        "integer" => type_name(v) == "integer",
        other => type_name(v) == other,
    }
}

/// Go's `%v` of a float: `3`, `2.5`.
fn num(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else {
        format!("{f}")
    }
}

/// A kube-openapi error that is not one of the kinds apiextensions maps to a
/// field error of its own: `Invalid value: <value>: <name> in body <detail>`.
fn invalid(path: &str, v: &Value, detail: String) -> Cause {
    let name = if path.is_empty() { "body" } else { path };
    let detail = if path.is_empty() {
        format!("body {detail}")
    } else {
        format!("{name} in body {detail}")
    };
    Cause::invalid(path, v, detail)
}

/// Whether a string has the named format (the ones kube-openapi checks for CRDs).
fn format_ok(format: &str, s: &str) -> bool {
    match format {
        "date-time" | "datetime" => chrono::DateTime::parse_from_rfc3339(s).is_ok(),
        "date" => chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok(),
        "byte" => {
            use base64::Engine;
            base64::engine::general_purpose::STANDARD.decode(s).is_ok()
        }
        "uuid" => {
            let parts: Vec<&str> = s.split('-').collect();
            parts.iter().map(|p| p.len()).eq([8, 4, 4, 4, 12])
                && parts
                    .iter()
                    .all(|p| p.chars().all(|c| c.is_ascii_hexdigit()))
        }
        "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
        "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
        "cidr" => s.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::IpAddr>().is_ok() && bits.parse::<u8>().is_ok()
        }),
        "hostname" => keelson_apimachinery::validation::dns1123_subdomain(s).is_empty(),
        "email" => s
            .split_once('@')
            .is_some_and(|(a, b)| !a.is_empty() && b.contains('.')),
        "duration" => keelson_apimachinery::duration::parse(s).is_ok(),
        "int32" | "int64" | "float" | "double" | "password" | "" => true,
        // Formats kube-openapi does not know are not checked.
        _ => true,
    }
}

/// Validate `v` at `path` (relative to the object root, "" at the root).
pub fn validate(schema: &Schema, v: &Value, path: &str, out: &mut Vec<Cause>) {
    if v.is_null() {
        if !schema.nullable && !schema.type_.is_empty() {
            out.push(Cause::new(
                "FieldValueTypeInvalid",
                path,
                format!(
                    "Invalid value: \"null\": {} in body must be of type {}: \"null\"",
                    if path.is_empty() { "body" } else { path },
                    schema.type_
                ),
            ));
        }
        return;
    }
    if schema.int_or_string {
        if !(type_name(v) == "integer" || v.is_string()) {
            out.push(type_error(path, v, "integer,string"));
            return;
        }
    } else if !type_matches(&schema.type_, v) {
        out.push(type_error(path, v, &schema.type_));
        return;
    }
    if let Some(allowed) = &schema.enum_ {
        if !allowed.contains(v) {
            let shown: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            let refs: Vec<&str> = shown.iter().map(String::as_str).collect();
            out.push(Cause::not_supported(path, v, &refs));
        }
    }
    match v {
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            if let Some(min) = schema.minimum {
                if schema.exclusive_minimum && f <= min {
                    out.push(invalid(
                        path,
                        v,
                        format!("should be greater than {}", num(min)),
                    ));
                } else if f < min {
                    out.push(invalid(
                        path,
                        v,
                        format!("should be greater than or equal to {}", num(min)),
                    ));
                }
            }
            if let Some(max) = schema.maximum {
                if schema.exclusive_maximum && f >= max {
                    out.push(invalid(
                        path,
                        v,
                        format!("should be less than {}", num(max)),
                    ));
                } else if f > max {
                    out.push(invalid(
                        path,
                        v,
                        format!("should be less than or equal to {}", num(max)),
                    ));
                }
            }
            if let Some(m) = schema.multiple_of.filter(|m| *m > 0.0) {
                let q = f / m;
                if (q - q.round()).abs() > 1e-9 {
                    out.push(invalid(
                        path,
                        v,
                        format!("should be a multiple of {}", num(m)),
                    ));
                }
            }
        }
        Value::String(s) => {
            let len = s.chars().count() as u64;
            if let Some(min) = schema.min_length.filter(|m| len < *m) {
                out.push(invalid(
                    path,
                    v,
                    format!("should be at least {min} chars long"),
                ));
            }
            if let Some(max) = schema.max_length.filter(|m| len > *m) {
                out.push(Cause::new(
                    "FieldValueTooLong",
                    path,
                    format!("Too long: may not be more than {max} bytes"),
                ));
            }
            if let Some((p, re)) = &schema.pattern {
                if !re.is_match(s) {
                    out.push(invalid(path, v, format!("should match '{p}'")));
                }
            }
            if !schema.int_or_string && !format_ok(&schema.format, s) {
                out.push(invalid(
                    path,
                    v,
                    format!("must be of type {}: \"{s}\"", schema.format),
                ));
            }
        }
        Value::Array(items) => {
            let n = items.len() as u64;
            if let Some(min) = schema.min_items.filter(|m| n < *m) {
                out.push(invalid(
                    path,
                    v,
                    format!("should have at least {min} items"),
                ));
            }
            if let Some(max) = schema.max_items.filter(|m| n > *m) {
                out.push(Cause::new(
                    "FieldValueTooMany",
                    path,
                    format!("Too many: {n}: must have at most {max} items"),
                ));
            }
            if schema.unique_items {
                let dup = items
                    .iter()
                    .enumerate()
                    .any(|(i, a)| items[..i].contains(a));
                if dup {
                    out.push(invalid(path, v, "shouldn't contain duplicates".into()));
                }
            }
            if let Some(item) = &schema.items {
                for (i, x) in items.iter().enumerate() {
                    validate(item, x, &format!("{path}[{i}]"), out);
                }
            }
        }
        Value::Object(m) => validate_object(schema, m, v, path, out),
        _ => {}
    }
    validate_combinators(schema, v, path, out);
}

fn type_error(path: &str, v: &Value, want: &str) -> Cause {
    let name = if path.is_empty() { "body" } else { path };
    let shown = match v {
        Value::String(s) => format!("\"{s}\""),
        Value::Object(_) | Value::Array(_) => format!("\"{}\"", type_name(v)),
        other => other.to_string(),
    };
    Cause::new(
        "FieldValueTypeInvalid",
        path,
        format!(
            "Invalid value: {shown}: {name} in body must be of type {want}: \"{}\"",
            type_name(v)
        ),
    )
}

fn validate_object(
    schema: &Schema,
    m: &Map<String, Value>,
    v: &Value,
    path: &str,
    out: &mut Vec<Cause>,
) {
    for r in &schema.required {
        if !m.contains_key(r) {
            out.push(Cause::required(join(path, r)));
        }
    }
    let n = m.len() as u64;
    if let Some(min) = schema.min_properties.filter(|x| n < *x) {
        out.push(invalid(
            path,
            v,
            format!("should have at least {min} properties"),
        ));
    }
    if let Some(max) = schema.max_properties.filter(|x| n > *x) {
        out.push(Cause::new(
            "FieldValueTooMany",
            path,
            format!("Too many: {n}: must have at most {max} items"),
        ));
    }
    if schema.embedded_resource {
        for k in ["apiVersion", "kind"] {
            if m.get(k).and_then(Value::as_str).unwrap_or("").is_empty() {
                out.push(Cause::required(join(path, k)));
            }
        }
    }
    for (k, x) in m {
        // Root metadata is ObjectMeta, checked by the store like any kind's.
        if path.is_empty() && (k == "metadata" || k == "apiVersion" || k == "kind") {
            continue;
        }
        if let Some(child) = schema.child(k) {
            validate(child, x, &join(path, k), out);
        }
    }
}

fn validate_combinators(schema: &Schema, v: &Value, path: &str, out: &mut Vec<Cause>) {
    for s in &schema.all_of {
        validate(s, v, path, out);
    }
    let passes = |s: &Schema| {
        let mut errs = Vec::new();
        validate(s, v, path, &mut errs);
        errs.is_empty()
    };
    if !schema.any_of.is_empty() && !schema.any_of.iter().any(passes) {
        out.push(invalid(
            path,
            v,
            "must validate at least one schema (anyOf)".into(),
        ));
    }
    if !schema.one_of.is_empty() && schema.one_of.iter().filter(|s| passes(s)).count() != 1 {
        out.push(invalid(
            path,
            v,
            "must validate one and only one schema (oneOf)".into(),
        ));
    }
    if let Some(not) = &schema.not {
        if passes(not) {
            out.push(invalid(
                path,
                v,
                "must not validate the schema (not)".into(),
            ));
        }
    }
}

/// Remove every field the schema does not name (unless it preserves unknown fields);
/// `unknown` collects their paths for `fieldValidation`. `root` keeps `apiVersion`,
/// `kind` and `metadata`, as embedded resources do.
pub fn prune(schema: &Schema, v: &mut Value, path: &str, root: bool, unknown: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            let keep_meta = root || schema.embedded_resource;
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                if keep_meta && (k == "apiVersion" || k == "kind" || k == "metadata") {
                    continue;
                }
                let child_path = join(path, &k);
                match schema.child(&k) {
                    Some(child) => prune(
                        child,
                        m.get_mut(&k).expect("listed key"),
                        &child_path,
                        false,
                        unknown,
                    ),
                    None if schema.preserve_unknown || matches!(schema.additional, Some(None)) => {}
                    None => {
                        unknown.push(child_path);
                        m.remove(&k);
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &schema.items {
                for (i, x) in items.iter_mut().enumerate() {
                    prune(item, x, &format!("{path}[{i}]"), false, unknown);
                }
            }
        }
        _ => {}
    }
}

/// Apply `default`s: a missing property with a default gets it; a null where the
/// schema is not nullable is dropped, or defaulted when it has a default (Kubernetes
/// prunes such nulls before defaulting).
pub fn apply_defaults(schema: &Schema, v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, child) in &schema.properties {
                match m.get(k) {
                    Some(Value::Null) if !child.nullable => match &child.default {
                        Some(d) => {
                            m.insert(k.clone(), d.clone());
                        }
                        None => {
                            m.remove(k);
                        }
                    },
                    None => {
                        if let Some(d) = &child.default {
                            m.insert(k.clone(), d.clone());
                        }
                    }
                    _ => {}
                }
                if let Some(x) = m.get_mut(k) {
                    apply_defaults(child, x);
                }
            }
            if let Some(Some(each)) = &schema.additional {
                for x in m.values_mut() {
                    apply_defaults(each, x);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item) = &schema.items {
                for x in items.iter_mut() {
                    if x.is_null() && !item.nullable {
                        if let Some(d) = &item.default {
                            *x = d.clone();
                        }
                    }
                    apply_defaults(item, x);
                }
            }
        }
        _ => {}
    }
}

const TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];

/// What makes a schema unacceptable in a CRD, with apiextensions-apiserver's paths
/// (`spec.versions[0].schema.openAPIV3Schema.properties[spec].type`) and messages.
pub fn check(schema: &Value, path: &str) -> Vec<Cause> {
    let mut out = Vec::new();
    if schema.get("nullable").and_then(Value::as_bool) == Some(true) {
        out.push(Cause::forbidden(
            format!("{path}.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    check_node(schema, path, Level::Root, &mut out);
    out.sort_by(|a, b| a.field.cmp(&b.field));
    out
}

#[derive(Clone, Copy, PartialEq)]
enum Level {
    Root,
    /// A property, an array's items or a map's values: its type must be given.
    Property,
    Items,
    /// Inside allOf/anyOf/oneOf/not: types are optional.
    Junctor,
    /// Under metadata at the root or of an embedded resource.
    Meta,
}

fn check_node(s: &Value, path: &str, level: Level, out: &mut Vec<Cause>) {
    let Some(o) = s.as_object() else {
        out.push(Cause::invalid(path, s, "must be an object"));
        return;
    };
    let type_ = o.get("type").and_then(Value::as_str).unwrap_or("");
    let int_or_string = o.get("x-kubernetes-int-or-string").and_then(Value::as_bool) == Some(true);
    let preserve = o.get("x-kubernetes-preserve-unknown-fields");
    let embedded = o
        .get("x-kubernetes-embedded-resource")
        .and_then(Value::as_bool)
        == Some(true);
    if !type_.is_empty() && !TYPES.contains(&type_) {
        if type_ == "null" {
            out.push(Cause::forbidden(
                format!("{path}.type"),
                "type cannot be set to null, use nullable as an alternative",
            ));
        } else {
            out.push(Cause::not_supported(
                format!("{path}.type"),
                &Value::String(type_.into()),
                TYPES,
            ));
        }
    }
    for (key, what) in [
        ("$ref", "$ref is not supported"),
        ("id", "id is not supported"),
        ("additionalItems", "additionalItems is not supported"),
        ("patternProperties", "patternProperties is not supported"),
        ("definitions", "definitions is not supported"),
        ("dependencies", "dependencies is not supported"),
    ] {
        if o.contains_key(key) {
            out.push(Cause::forbidden(format!("{path}.{key}"), what));
        }
    }
    if o.get("uniqueItems").and_then(Value::as_bool) == Some(true) {
        out.push(Cause::forbidden(
            format!("{path}.uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    check_list_and_map_types(o, type_, path, out);
    if let Some(p) = o.get("pattern").and_then(Value::as_str) {
        if let Err(e) = regex::Regex::new(p) {
            out.push(Cause::invalid(
                format!("{path}.pattern"),
                &Value::String(p.into()),
                format!("must be a valid regular expression: {e}"),
            ));
        }
    }
    if let Some(Value::Bool(false)) = preserve {
        out.push(Cause::invalid(
            format!("{path}.x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    let has_props = o
        .get("properties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty());
    if let Some(ap) = o.get("additionalProperties") {
        if has_props && (ap == &Value::Bool(false) || ap.is_object()) {
            out.push(Cause::forbidden(
                format!("{path}.additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        if ap.is_object() {
            check_node(
                ap,
                &format!("{path}.additionalProperties"),
                Level::Property,
                out,
            );
        }
    }
    // Structural: every specified node says its type.
    match level {
        Level::Root if type_.is_empty() => out.push(Cause::new(
            "FieldValueRequired",
            format!("{path}.type"),
            "Required value: must not be empty at the root",
        )),
        Level::Root if type_ != "object" => out.push(Cause::invalid(
            format!("{path}.type"),
            &Value::String(type_.into()),
            "must be object at the root",
        )),
        Level::Property | Level::Meta
            if type_.is_empty() && !int_or_string && preserve.is_none() =>
        {
            out.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.type"),
                "Required value: must not be empty for specified object fields",
            ))
        }
        Level::Items if type_.is_empty() && !int_or_string && preserve.is_none() => {
            out.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.type"),
                "Required value: must not be empty for specified array items",
            ))
        }
        _ => {}
    }
    if int_or_string && !type_.is_empty() && level != Level::Junctor {
        out.push(Cause::invalid(
            format!("{path}.type"),
            &Value::String(type_.into()),
            "must be empty to be structural",
        ));
    }
    if embedded && type_ != "object" {
        out.push(Cause::invalid(
            format!("{path}.type"),
            &Value::String(type_.into()),
            "must be object if x-kubernetes-embedded-resource is true",
        ));
    }
    if embedded && level == Level::Meta {
        out.push(Cause::forbidden(
            format!("{path}.x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
    if type_ == "array" && !o.get("items").is_some_and(Value::is_object) {
        if o.get("items").is_some_and(Value::is_array) {
            out.push(Cause::forbidden(
                format!("{path}.items"),
                "items must be a schema object and not an array",
            ));
        } else if level != Level::Junctor {
            out.push(Cause::new(
                "FieldValueRequired",
                format!("{path}.items"),
                "Required value: must be specified",
            ));
        }
    }
    super::rules::check(s, path, level == Level::Root || embedded, out);
    if let Some(props) = o.get("properties").and_then(Value::as_object) {
        for (k, p) in props {
            let meta = (level == Level::Root || embedded)
                && (k == "metadata" || k == "apiVersion" || k == "kind");
            let child = format!("{path}.properties[{k}]");
            if level == Level::Root && meta && p.get("default").is_some() {
                out.push(Cause::forbidden(
                    format!("{child}.default"),
                    format!("must not be set in top-level {k}"),
                ));
            }
            check_node(
                p,
                &child,
                if meta || level == Level::Meta {
                    Level::Meta
                } else {
                    Level::Property
                },
                out,
            );
        }
    }
    if let Some(items) = o.get("items").filter(|i| i.is_object()) {
        check_node(items, &format!("{path}.items"), Level::Items, out);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = o.get(key).and_then(Value::as_array) {
            for (i, j) in list.iter().enumerate() {
                check_node(j, &format!("{path}.{key}[{i}]"), Level::Junctor, out);
            }
        }
    }
    if let Some(not) = o.get("not") {
        check_node(not, &format!("{path}.not"), Level::Junctor, out);
    }
    // A default must survive pruning unchanged and pass its own schema.
    if let Some(d) = o.get("default") {
        if level != Level::Meta {
            let parsed = Schema::parse(s);
            let mut pruned = d.clone();
            let mut unknown = Vec::new();
            prune(&parsed, &mut pruned, "", false, &mut unknown);
            if &pruned != d {
                out.push(Cause::invalid(
                    format!("{path}.default"),
                    d,
                    "must not have unknown fields",
                ));
            } else {
                let mut errs = Vec::new();
                validate(&parsed, d, "", &mut errs);
                for mut e in errs {
                    e.field = if e.field.is_empty() {
                        format!("{path}.default")
                    } else {
                        format!("{path}.default.{}", e.field)
                    };
                    out.push(e);
                }
            }
        }
    }
}

fn required_because(field: String, why: &str) -> Cause {
    Cause::new(
        "FieldValueRequired",
        field,
        format!("Required value: {why}"),
    )
}

/// What apiextensions-apiserver checks about `x-kubernetes-list-type`,
/// `-list-map-keys` and `-map-type` (including the checks it applies to new CRDs
/// only: set items scalar or atomic, map keys required or defaulted and not nullable).
fn check_list_and_map_types(o: &Map<String, Value>, type_: &str, path: &str, out: &mut Vec<Cause>) {
    let type_value = Value::String(type_.into());
    if let Some(map_type) = o.get("x-kubernetes-map-type") {
        if type_.is_empty() {
            out.push(required_because(
                format!("{path}.type"),
                "must be object if x-kubernetes-map-type is specified",
            ));
        } else if type_ != "object" {
            out.push(Cause::invalid(
                format!("{path}.type"),
                &type_value,
                "must be object if x-kubernetes-map-type is specified",
            ));
        }
        if !matches!(map_type.as_str(), Some("atomic" | "granular")) {
            out.push(Cause::not_supported(
                format!("{path}.x-kubernetes-map-type"),
                map_type,
                &["atomic", "granular"],
            ));
        }
    }
    let items = o.get("items");
    let item = items.and_then(Value::as_object);
    let item_str = |k: &str| item.and_then(|i| i.get(k)).and_then(Value::as_str);
    let list_type = o.get("x-kubernetes-list-type");
    let list_type_str = list_type.and_then(Value::as_str);
    if let Some(lt) = list_type {
        if type_ != "array" {
            let why = "must be array if x-kubernetes-list-type is specified";
            if type_.is_empty() {
                out.push(required_because(format!("{path}.type"), why));
            } else {
                out.push(Cause::invalid(format!("{path}.type"), &type_value, why));
            }
        } else if list_type_str == Some("set") && item.is_some() {
            let why = "must be atomic as item of a list with x-kubernetes-list-type=set";
            match item_str("type") {
                Some("array") => {
                    if let Some(inner) = item.and_then(|i| i.get("x-kubernetes-list-type")) {
                        if inner.as_str() != Some("atomic") {
                            out.push(Cause::invalid(
                                format!("{path}.items.x-kubernetes-list-type"),
                                inner,
                                why,
                            ));
                        }
                    }
                }
                Some("object") if item_str("x-kubernetes-map-type") != Some("atomic") => {
                    let shown = item
                        .and_then(|i| i.get("x-kubernetes-map-type"))
                        .cloned()
                        .unwrap_or(Value::Null);
                    out.push(Cause::invalid(
                        format!("{path}.items.x-kubernetes-map-type"),
                        &shown,
                        why,
                    ));
                }
                _ => {}
            }
        }
        if !matches!(list_type_str, Some("atomic" | "set" | "map")) {
            out.push(Cause::not_supported(
                format!("{path}.x-kubernetes-list-type"),
                lt,
                &["atomic", "set", "map"],
            ));
        }
    }
    let keys = keelson_apimachinery::meta::strings(o.get("x-kubernetes-list-map-keys"));
    let keys_value = o
        .get("x-kubernetes-list-map-keys")
        .cloned()
        .unwrap_or(Value::Null);
    if !keys.is_empty() {
        let why = "must be map if x-kubernetes-list-map-keys is non-empty";
        match list_type {
            None => out.push(required_because(
                format!("{path}.x-kubernetes-list-type"),
                why,
            )),
            Some(lt) if list_type_str != Some("map") => out.push(Cause::invalid(
                format!("{path}.x-kubernetes-list-type"),
                lt,
                why,
            )),
            _ => {}
        }
    }
    if list_type_str == Some("map") {
        if keys.is_empty() {
            out.push(required_because(
                format!("{path}.x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match items {
            None => out.push(required_because(
                format!("{path}.items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(v @ Value::Array(_)) => out.push(Cause::invalid(
                format!("{path}.items"),
                v,
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
            _ => {}
        }
        if let Some(item) = item {
            let item_type = item.get("type").and_then(Value::as_str).unwrap_or("");
            if item_type != "object" {
                out.push(Cause::invalid(
                    format!("{path}.items.type"),
                    &Value::String(item_type.into()),
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
            } else {
                let props = item.get("properties").and_then(Value::as_object);
                let mut seen = Vec::new();
                for k in &keys {
                    match props.and_then(|p| p.get(k)) {
                        Some(prop) => {
                            let t = prop.get("type").and_then(Value::as_str);
                            if matches!(t, Some("array" | "object")) {
                                out.push(Cause::invalid(
                                    format!("{path}.items.properties[{k}].type"),
                                    &Value::String(item_type.into()),
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                        }
                        None => out.push(Cause::invalid(
                            format!("{path}.x-kubernetes-list-map-keys"),
                            &keys_value,
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(&k) {
                        out.push(Cause::invalid(
                            format!("{path}.x-kubernetes-list-map-keys"),
                            &keys_value,
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(k);
                }
            }
        }
    }
    // Set and map items must be identifiable.
    if let (Some(lt @ ("set" | "map")), Some(item)) = (list_type_str, item) {
        if item.get("nullable").and_then(Value::as_bool) == Some(true) {
            out.push(Cause::forbidden(
                format!("{path}.items.nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required = keelson_apimachinery::meta::strings(item.get("required"));
            let props = item.get("properties").and_then(Value::as_object);
            for k in &keys {
                let Some(prop) = props.and_then(|p| p.get(k)) else {
                    continue;
                };
                if !required.contains(k) && prop.get("default").is_none() {
                    out.push(required_because(
                        format!("{path}.items.properties[{k}].default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if prop.get("nullable").and_then(Value::as_bool) == Some(true) {
                    out.push(Cause::forbidden(
                        format!("{path}.items.properties[{k}].nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> Schema {
        Schema::parse(&json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["image"],
                    "properties": {
                        "image": {"type": "string", "minLength": 1, "pattern": "^[a-z:./0-9]+$"},
                        "replicas": {"type": "integer", "minimum": 0, "maximum": 10, "default": 1},
                        "mode": {"type": "string", "enum": ["fast", "safe"], "default": "safe"},
                        "ports": {"type": "array", "maxItems": 2, "items": {"type": "integer", "format": "int32"}},
                        "when": {"type": "string", "format": "date-time"},
                        "size": {"x-kubernetes-int-or-string": true},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "note": {"type": "string", "nullable": true},
                        "template": {"type": "object", "x-kubernetes-embedded-resource": true,
                                     "x-kubernetes-preserve-unknown-fields": true},
                    }
                },
                "status": {"type": "object", "properties": {"ready": {"type": "integer"}}}
            }
        }))
    }

    fn shown(obj: &Value) -> Vec<String> {
        let mut out = Vec::new();
        validate(&schema(), obj, "", &mut out);
        out.sort_by(|a, b| a.field.cmp(&b.field));
        out.iter().map(Cause::display).collect()
    }

    #[test]
    fn validation_speaks_kube_openapi() {
        let bad = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "spec": {"replicas": "three", "mode": "slow", "ports": [1, 2, "x"], "image": "",
                     "when": "yesterday", "size": true, "labels": {"a": 1},
                     "template": {"kind": "Pod"}}});
        assert_eq!(
            shown(&bad),
            vec![
                "spec.image: Invalid value: \"\": spec.image in body should be at least 1 chars long",
                "spec.image: Invalid value: \"\": spec.image in body should match '^[a-z:./0-9]+$'",
                "spec.labels.a: Invalid value: 1: spec.labels.a in body must be of type string: \"integer\"",
                "spec.mode: Unsupported value: \"slow\": supported values: \"fast\", \"safe\"",
                "spec.ports: Too many: 3: must have at most 2 items",
                "spec.ports[2]: Invalid value: \"x\": spec.ports[2] in body must be of type integer: \"string\"",
                "spec.replicas: Invalid value: \"three\": spec.replicas in body must be of type integer: \"string\"",
                "spec.size: Invalid value: true: spec.size in body must be of type integer,string: \"boolean\"",
                "spec.template.apiVersion: Required value",
                "spec.when: Invalid value: \"yesterday\": spec.when in body must be of type date-time: \"yesterday\"",
            ]
        );
        assert_eq!(
            shown(&json!({"spec": {}})),
            vec!["spec.image: Required value"]
        );
        assert_eq!(
            shown(&json!({"spec": {"image": "nginx", "replicas": 11}})),
            vec!["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"]
        );
        let good = json!({"spec": {"image": "nginx:1.27", "replicas": 3, "size": "10%",
            "note": null, "when": "2026-01-02T03:04:05Z", "free": {"anything": [1]}}});
        assert!(shown(&good).is_empty(), "{:?}", shown(&good));
    }

    #[test]
    fn pruning_drops_unknown_fields_but_keeps_preserved_ones() {
        let mut obj = json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
            "extra": 1,
            "spec": {"image": "i", "bogus": true, "free": {"kept": 1},
                     "labels": {"any": "thing"},
                     "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}},
            "status": {"ready": 1, "what": 2}});
        let mut unknown = Vec::new();
        prune(&schema(), &mut obj, "", true, &mut unknown);
        assert_eq!(unknown, vec!["extra", "spec.bogus", "status.what"]);
        assert_eq!(
            obj,
            json!({"apiVersion": "x/v1", "kind": "K", "metadata": {"name": "a"},
                "spec": {"image": "i", "free": {"kept": 1}, "labels": {"any": "thing"},
                         "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}},
                "status": {"ready": 1}})
        );
    }

    #[test]
    fn defaults_fill_missing_fields_and_non_nullable_nulls() {
        let mut obj = json!({"spec": {"image": "i", "mode": null, "note": null}});
        apply_defaults(&schema(), &mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"image": "i", "mode": "safe", "note": null, "replicas": 1}})
        );
        // No spec, no defaults inside it.
        let mut empty = json!({});
        apply_defaults(&schema(), &mut empty);
        assert_eq!(empty, json!({}));
    }

    #[test]
    fn structural_checks_word_problems_as_kubernetes() {
        let p = "spec.versions[0].schema.openAPIV3Schema";
        let bad = json!({"type": "object", "properties": {
            "spec": {"properties": {"a": {"type": "strin"}}},
            "list": {"type": "array"},
            "u": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
            "m": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": {"type": "string"}},
            "d": {"type": "integer", "minimum": 5, "default": 1},
            "r": {"$ref": "#/x"},
            "k": {"type": "object", "x-kubernetes-preserve-unknown-fields": false},
        }});
        let shown: Vec<String> = check(&bad, p).iter().map(Cause::display).collect();
        assert_eq!(
            shown,
            vec![
                format!("{p}.properties[d].default: Invalid value: 1: body should be greater than or equal to 5"),
                format!("{p}.properties[k].x-kubernetes-preserve-unknown-fields: Invalid value: false: must be true or undefined"),
                format!("{p}.properties[list].items: Required value: must be specified"),
                format!("{p}.properties[m].additionalProperties: Forbidden: additionalProperties and properties are mutual exclusive"),
                format!("{p}.properties[r].$ref: Forbidden: $ref is not supported"),
                format!("{p}.properties[r].type: Required value: must not be empty for specified object fields"),
                format!("{p}.properties[spec].properties[a].type: Unsupported value: \"strin\": supported values: \"array\", \"boolean\", \"integer\", \"number\", \"object\", \"string\""),
                format!("{p}.properties[spec].type: Required value: must not be empty for specified object fields"),
                format!("{p}.properties[u].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"),
            ]
        );
        assert_eq!(
            check(&json!({"type": "string"}), p)
                .iter()
                .map(Cause::display)
                .collect::<Vec<_>>(),
            vec![format!(
                "{p}.type: Invalid value: \"string\": must be object at the root"
            )]
        );
        assert!(check(
            &json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true}),
            p
        )
        .is_empty());
    }

    /// A custom resource whose lists say how they merge.
    fn lists_schema() -> Schema {
        Schema::parse(
            &json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                "ports": {"type": "array", "x-kubernetes-list-type": "map",
                          "x-kubernetes-list-map-keys": ["name", "protocol"],
                          "items": {"type": "object", "required": ["name"], "properties": {
                              "name": {"type": "string"},
                              "protocol": {"type": "string", "default": "TCP"},
                              "port": {"type": "integer"}}}},
                "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
                "args": {"type": "array", "items": {"type": "string"}},
                "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                             "additionalProperties": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            }}}}),
        )
    }

    fn apply_as(
        live: Option<&Value>,
        spec: Value,
        manager: &str,
        force: bool,
    ) -> Result<Value, keelson_apimachinery::ApiError> {
        use keelson_apimachinery::patch::schema::Merge;
        let cfg = json!({"apiVersion": "example.com/v1", "kind": "Widget",
                         "metadata": {"name": "w", "namespace": "default"}, "spec": spec});
        let merge = Merge::Structural(std::sync::Arc::new(lists_schema()));
        keelson_apimachinery::apply::apply(
            live,
            &cfg,
            manager,
            force,
            "example.com",
            "Widget",
            merge,
            false,
            "2026-01-01T00:00:00Z",
        )
    }

    #[test]
    fn schema_list_types_reach_apply() {
        let s = lists_schema();
        assert_eq!(
            s.list_type(&["spec", "ports"]),
            ListType::Map(&["name", "protocol"])
        );
        assert_eq!(s.list_type(&["spec", "tags"]), ListType::Set);
        assert_eq!(s.list_type(&["spec", "args"]), ListType::Atomic);
        assert_eq!(s.list_type(&["spec", "nothing"]), ListType::Atomic);
        assert!(s.atomic_map(&["spec", "selector"]));
        assert!(!s.atomic_map(&["spec", "labels"]));
        assert!(!s.atomic_map(&["spec"]));
    }

    #[test]
    fn two_managers_keep_their_items_of_a_map_list_and_a_set() {
        let a = apply_as(
            None,
            json!({"ports": [{"name": "http", "protocol": "TCP", "port": 80}],
                                      "tags": ["a"], "args": ["x"]}),
            "a",
            false,
        )
        .unwrap();
        let b = apply_as(
            Some(&a),
            json!({"ports": [{"name": "dns", "protocol": "UDP", "port": 53}],
                                          "tags": ["b"]}),
            "b",
            false,
        )
        .unwrap();
        assert_eq!(
            b["spec"]["ports"],
            json!([{"name": "http", "protocol": "TCP", "port": 80}, {"name": "dns", "protocol": "UDP", "port": 53}])
        );
        assert_eq!(b["spec"]["tags"], json!(["a", "b"]));
        // Each manager owns its own items, by key.
        let fields = |obj: &Value, m: &str| {
            obj["metadata"]["managedFields"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["manager"] == m)
                .unwrap()["fieldsV1"]
                .to_string()
        };
        assert!(
            fields(&b, "b").contains(r#"k:{\"name\":\"dns\",\"protocol\":\"UDP\"}"#),
            "{}",
            fields(&b, "b")
        );
        assert!(!fields(&b, "b").contains("http"));
        assert!(
            fields(&b, "a").contains(r#"v:\"a\""#),
            "{}",
            fields(&b, "a")
        );
        // a drops its item: b's stays.
        let a2 = apply_as(Some(&b), json!({"args": ["x"]}), "a", false).unwrap();
        assert_eq!(
            a2["spec"]["ports"],
            json!([{"name": "dns", "protocol": "UDP", "port": 53}])
        );
        assert_eq!(a2["spec"]["tags"], json!(["b"]));
    }

    #[test]
    fn a_defaulted_key_identifies_items_that_leave_it_out() {
        let s = lists_schema();
        let mut first = apply_as(
            None,
            json!({"ports": [{"name": "http", "port": 80}]}),
            "a",
            false,
        )
        .unwrap();
        // As the store leaves it: defaults applied after the merge.
        apply_defaults(&s, &mut first);
        assert_eq!(
            first["spec"]["ports"],
            json!([{"name": "http", "protocol": "TCP", "port": 80}])
        );
        let mut again = apply_as(
            Some(&first),
            json!({"ports": [{"name": "http", "port": 81}]}),
            "a",
            false,
        )
        .unwrap();
        apply_defaults(&s, &mut again);
        assert_eq!(
            again["spec"]["ports"],
            json!([{"name": "http", "protocol": "TCP", "port": 81}])
        );
        let fields = again["metadata"]["managedFields"][0]["fieldsV1"].to_string();
        assert!(
            fields.contains(r#"k:{\"name\":\"http\",\"protocol\":\"TCP\"}"#),
            "{fields}"
        );
    }

    #[test]
    fn atomic_lists_and_maps_are_replaced_whole_and_conflict_as_one() {
        let a = apply_as(
            None,
            json!({"args": ["x", "y"], "selector": {"app": "w", "tier": "web"},
                                      "labels": {"a": "1"}}),
            "a",
            false,
        )
        .unwrap();
        // Another manager setting the same atomic list or map conflicts on the whole of it.
        let err = apply_as(
            Some(&a),
            json!({"args": ["z"], "selector": {"app": "w"}, "labels": {"b": "2"}}),
            "b",
            false,
        )
        .unwrap_err();
        assert_eq!(err.code, 409);
        let fields: Vec<&str> = err.causes.iter().map(|c| c.field.as_str()).collect();
        assert_eq!(fields, [".spec.args", ".spec.selector"], "{}", err.message);
        let b = apply_as(
            Some(&a),
            json!({"args": ["z"], "selector": {"app": "w"}, "labels": {"b": "2"}}),
            "b",
            true,
        )
        .unwrap();
        assert_eq!(b["spec"]["args"], json!(["z"]));
        assert_eq!(b["spec"]["selector"], json!({"app": "w"}));
        // A granular map merges.
        assert_eq!(b["spec"]["labels"], json!({"a": "1", "b": "2"}));
        // The same key of a map list from two managers with different values conflicts.
        let p = apply_as(
            None,
            json!({"ports": [{"name": "http", "protocol": "TCP", "port": 80}]}),
            "a",
            false,
        )
        .unwrap();
        let err = apply_as(
            Some(&p),
            json!({"ports": [{"name": "http", "protocol": "TCP", "port": 8080}]}),
            "b",
            false,
        )
        .unwrap_err();
        assert_eq!(err.causes.len(), 1, "{}", err.message);
        assert_eq!(
            err.causes[0].field,
            r#".spec.ports[name="http",protocol="TCP"].port"#
        );
    }

    #[test]
    fn list_type_checks_word_problems_as_kubernetes() {
        let p = "spec.versions[0].schema.openAPIV3Schema";
        let bad = json!({"type": "object", "properties": {
            "a": {"type": "string", "x-kubernetes-list-type": "set"},
            "b": {"type": "array", "x-kubernetes-list-type": "bag", "items": {"type": "string"}},
            "c": {"type": "array", "x-kubernetes-list-map-keys": ["k"], "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "d": {"type": "array", "x-kubernetes-list-type": "map", "items": {"type": "string"}},
            "e": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k", "x", "o"],
                  "items": {"type": "object", "properties": {"k": {"type": "string", "nullable": true}, "o": {"type": "object"}}}},
            "f": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "object"}},
            "g": {"type": "string", "x-kubernetes-map-type": "atomic"},
            "h": {"type": "object", "x-kubernetes-map-type": "sometimes"},
        }});
        let shown: Vec<String> = check(&bad, p).iter().map(Cause::display).collect();
        assert_eq!(
            shown,
            vec![
                format!("{p}.properties[a].type: Invalid value: \"string\": must be array if x-kubernetes-list-type is specified"),
                format!("{p}.properties[b].x-kubernetes-list-type: Unsupported value: \"bag\": supported values: \"atomic\", \"set\", \"map\""),
                format!("{p}.properties[c].x-kubernetes-list-type: Required value: must be map if x-kubernetes-list-map-keys is non-empty"),
                format!("{p}.properties[d].items.type: Invalid value: \"string\": must be object if parent array's x-kubernetes-list-type is map"),
                format!("{p}.properties[d].x-kubernetes-list-map-keys: Required value: must not be empty if x-kubernetes-list-type is map"),
                format!("{p}.properties[e].items.properties[k].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"),
                format!("{p}.properties[e].items.properties[k].nullable: Forbidden: this property is in x-kubernetes-list-map-keys, so it cannot be nullable"),
                format!("{p}.properties[e].items.properties[o].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"),
                format!("{p}.properties[e].items.properties[o].type: Invalid value: \"object\": must be a scalar type if parent array's x-kubernetes-list-type is map"),
                format!("{p}.properties[e].x-kubernetes-list-map-keys: Invalid value: [\"k\",\"x\",\"o\"]: entries must all be names of item properties"),
                format!("{p}.properties[f].items.x-kubernetes-map-type: Invalid value: null: must be atomic as item of a list with x-kubernetes-list-type=set"),
                format!("{p}.properties[g].type: Invalid value: \"string\": must be object if x-kubernetes-map-type is specified"),
                format!("{p}.properties[h].x-kubernetes-map-type: Unsupported value: \"sometimes\": supported values: \"atomic\", \"granular\""),
            ]
        );
        assert!(
            check(&lists_schema_json(), p).is_empty(),
            "{:?}",
            check(&lists_schema_json(), p)
        );
    }

    fn lists_schema_json() -> Value {
        json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
            "ports": {"type": "array", "x-kubernetes-list-type": "map",
                      "x-kubernetes-list-map-keys": ["name", "protocol"],
                      "items": {"type": "object", "required": ["name"], "properties": {
                          "name": {"type": "string"}, "protocol": {"type": "string", "default": "TCP"}}}},
            "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "selector": {"type": "object", "x-kubernetes-map-type": "atomic",
                         "additionalProperties": {"type": "string"}}}}}})
    }
}
