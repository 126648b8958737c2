//! Structural schemas (the OpenAPI v3 subset a CustomResourceDefinition may use):
//! validating objects with kube-openapi's messages and field paths, pruning fields the
//! schema does not name, and applying `default`s.
//!
//! A schema is parsed once per CRD version into [`Schema`]; what makes a schema
//! acceptable in a CRD at all is checked by [`check`], worded as
//! apiextensions-apiserver words it.

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
    /// `x-kubernetes-list-type` (`atomic`, `set`, `map`) and `x-kubernetes-list-map-keys`.
    pub list_type: String,
    pub list_map_keys: Vec<String>,
    /// `x-kubernetes-map-type: atomic`: old values are not correlated by key below it.
    pub map_atomic: bool,
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
            list_map_keys: keelson_apimachinery::meta::path_strings(
                v,
                "x-kubernetes-list-map-keys",
            ),
            map_atomic: s("x-kubernetes-map-type") == "atomic",
        };
        parsed.has_rules = !parsed.rules.is_empty()
            || parsed.properties.values().any(|p| p.has_rules)
            || parsed.items.as_ref().is_some_and(|i| i.has_rules)
            || matches!(&parsed.additional, Some(Some(a)) if a.has_rules)
            || parsed.all_of.iter().any(|a| a.has_rules);
        parsed
    }

    /// The schema of property `key` of an object this schema describes.
    fn child(&self, key: &str) -> Option<&Schema> {
        self.properties
            .get(key)
            .or_else(|| self.additional.as_ref().and_then(|a| a.as_deref()))
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
}
