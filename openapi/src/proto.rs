//! The Swagger 2.0 document in gnostic's protobuf encoding (`openapi.v2.Document`), the
//! form client-go's `OpenAPISchema` asks `/openapi/v2` for and `proto.Unmarshal`s.
//!
//! A hand-written encoder for the messages a Kubernetes document uses, driven by the
//! same JSON value the JSON form serializes, so the two forms cannot disagree. Field
//! numbers follow gnostic's `openapiv2/OpenAPIv2.proto`. As gnostic does, every vendor
//! extension is a `NamedAny` whose `Any.yaml` holds the value's text (JSON text, which is
//! YAML, is what kube-openapi's `VendorExtensionToMap` reads back).

use serde_json::{Map, Value};

/// Protobuf wire writer: fields are appended in the order written.
#[derive(Default)]
struct W(Vec<u8>);

impl W {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u8) {
        self.varint(u64::from(field) << 3 | u64::from(wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }

    /// A proto3 string: empty ones are not written.
    fn string(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    fn bool(&mut self, field: u32, b: bool) {
        if b {
            self.key(field, 0);
            self.varint(1);
        }
    }

    fn int64(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v as u64);
        }
    }

    fn double(&mut self, field: u32, v: f64) {
        if v != 0.0 {
            self.key(field, 1);
            self.0.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// A sub-message, always written (presence matters: `properties: {}` is not absent).
    fn message(&mut self, field: u32, f: impl FnOnce(&mut W)) {
        let mut inner = W::default();
        f(&mut inner);
        self.bytes(field, &inner.0);
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, k: &str) -> &'a str {
    m.get(k).and_then(Value::as_str).unwrap_or("")
}

fn strings<'a>(m: &'a Map<String, Value>, k: &str) -> impl Iterator<Item = &'a str> {
    m.get(k)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

/// `Any { yaml = 2 }` holding the value's JSON text.
fn any(w: &mut W, field: u32, v: &Value) {
    let text = serde_json::to_string(v).expect("a JSON value serializes");
    w.message(field, |a| a.string(2, &text));
}

/// `repeated NamedAny vendor_extension = field` from every `x-` key.
fn vendor_extensions(w: &mut W, field: u32, m: &Map<String, Value>) {
    for (k, v) in m.iter().filter(|(k, _)| k.starts_with("x-")) {
        w.message(field, |na| {
            na.string(1, k);
            any(na, 2, v);
        });
    }
}

/// Encodes a Swagger 2.0 document.
pub(crate) fn encode_document(doc: &Value) -> Vec<u8> {
    let Value::Object(d) = doc else {
        return Vec::new();
    };
    let mut w = W::default();
    w.string(1, str_of(d, "swagger"));
    if let Some(Value::Object(info)) = d.get("info") {
        w.message(2, |i| {
            i.string(1, str_of(info, "title"));
            i.string(2, str_of(info, "version"));
            i.string(3, str_of(info, "description"));
            vendor_extensions(i, 7, info);
        });
    }
    w.string(3, str_of(d, "host"));
    w.string(4, str_of(d, "basePath"));
    for (field, key) in [(5, "schemes"), (6, "consumes"), (7, "produces")] {
        for s in strings(d, key) {
            w.string(field, s);
        }
    }
    if let Some(Value::Object(paths)) = d.get("paths") {
        w.message(8, |p| {
            vendor_extensions(p, 1, paths);
            for (name, item) in paths.iter().filter(|(k, _)| !k.starts_with("x-")) {
                p.message(2, |np| {
                    np.string(1, name);
                    np.message(2, |pi| path_item(pi, item));
                });
            }
        });
    }
    if let Some(Value::Object(defs)) = d.get("definitions") {
        w.message(9, |ds| {
            for (name, s) in defs {
                ds.message(1, |ns| {
                    ns.string(1, name);
                    ns.message(2, |sw| schema(sw, s));
                });
            }
        });
    }
    if let Some(Value::Object(params)) = d.get("parameters") {
        w.message(10, |pd| {
            for (name, p) in params {
                pd.message(1, |np| {
                    np.string(1, name);
                    np.message(2, |pw| parameter(pw, p));
                });
            }
        });
    }
    for req in d
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(12, |sr| security_requirement(sr, req));
    }
    if let Some(Value::Object(defs)) = d.get("securityDefinitions") {
        w.message(13, |sd| {
            for (name, def) in defs {
                let Value::Object(def) = def else { continue };
                sd.message(1, |nsd| {
                    nsd.string(1, name);
                    nsd.message(2, |item| {
                        // Only API key security (field 2) is published.
                        item.message(2, |k| {
                            k.string(1, str_of(def, "type"));
                            k.string(2, str_of(def, "name"));
                            k.string(3, str_of(def, "in"));
                            k.string(4, str_of(def, "description"));
                            vendor_extensions(k, 5, def);
                        });
                    });
                });
            }
        });
    }
    vendor_extensions(&mut w, 16, d);
    w.0
}

fn security_requirement(w: &mut W, req: &Value) {
    let Value::Object(req) = req else { return };
    for (name, scopes) in req {
        w.message(1, |nsa| {
            nsa.string(1, name);
            nsa.message(2, |sa| {
                for s in scopes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    sa.string(1, s);
                }
            });
        });
    }
}

fn path_item(w: &mut W, item: &Value) {
    let Value::Object(m) = item else { return };
    w.string(1, str_of(m, "$ref"));
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        if let Some(op) = m.get(method) {
            w.message(field, |o| operation(o, op));
        }
    }
    for p in m
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(9, |pi| parameters_item(pi, p));
    }
    vendor_extensions(w, 10, m);
}

fn operation(w: &mut W, op: &Value) {
    let Value::Object(m) = op else { return };
    for t in strings(m, "tags") {
        w.string(1, t);
    }
    w.string(2, str_of(m, "summary"));
    w.string(3, str_of(m, "description"));
    w.string(5, str_of(m, "operationId"));
    for s in strings(m, "produces") {
        w.string(6, s);
    }
    for s in strings(m, "consumes") {
        w.string(7, s);
    }
    for p in m
        .get("parameters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(8, |pi| parameters_item(pi, p));
    }
    if let Some(Value::Object(responses)) = m.get("responses") {
        w.message(9, |rs| {
            for (code, r) in responses.iter().filter(|(k, _)| !k.starts_with("x-")) {
                rs.message(1, |nrv| {
                    nrv.string(1, code);
                    nrv.message(2, |rv| response_value(rv, r));
                });
            }
            vendor_extensions(rs, 2, responses);
        });
    }
    for s in strings(m, "schemes") {
        w.string(10, s);
    }
    w.bool(
        11,
        m.get("deprecated")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    );
    for req in m
        .get("security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(12, |sr| security_requirement(sr, req));
    }
    vendor_extensions(w, 13, m);
}

fn response_value(w: &mut W, r: &Value) {
    let Value::Object(m) = r else { return };
    if let Some(reference) = m.get("$ref").and_then(Value::as_str) {
        w.message(2, |jr| jr.string(1, reference));
        return;
    }
    w.message(1, |resp| {
        resp.string(1, str_of(m, "description"));
        if let Some(s) = m.get("schema") {
            resp.message(2, |si| si.message(1, |sw| schema(sw, s)));
        }
        vendor_extensions(resp, 5, m);
    });
}

/// `ParametersItem`: a parameter, or a `JsonReference` to a shared one.
fn parameters_item(w: &mut W, p: &Value) {
    if let Some(reference) = p.get("$ref").and_then(Value::as_str) {
        w.message(2, |jr| jr.string(1, reference));
    } else {
        w.message(1, |pw| parameter(pw, p));
    }
}

/// `Parameter`: a body parameter, or one of the non-body kinds by `in`.
fn parameter(w: &mut W, p: &Value) {
    let Value::Object(m) = p else { return };
    let location = str_of(m, "in");
    if location == "body" {
        w.message(1, |b| {
            b.string(1, str_of(m, "description"));
            b.string(2, str_of(m, "name"));
            b.string(3, location);
            b.bool(
                4,
                m.get("required").and_then(Value::as_bool).unwrap_or(false),
            );
            if let Some(s) = m.get("schema") {
                b.message(5, |sw| schema(sw, s));
            }
            vendor_extensions(b, 6, m);
        });
        return;
    }
    let required = m.get("required").and_then(Value::as_bool).unwrap_or(false);
    let unique = m
        .get("uniqueItems")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    w.message(2, |nb| match location {
        "query" | "formData" => {
            // QueryParameterSubSchema (3) and FormDataParameterSubSchema (2) share numbering.
            let field = if location == "query" { 3 } else { 2 };
            nb.message(field, |s| {
                s.bool(1, required);
                s.string(2, location);
                s.string(3, str_of(m, "description"));
                s.string(4, str_of(m, "name"));
                s.string(6, str_of(m, "type"));
                s.string(7, str_of(m, "format"));
                s.bool(20, unique);
                vendor_extensions(s, 23, m);
            });
        }
        // HeaderParameterSubSchema (1) and PathParameterSubSchema (4) share numbering.
        _ => {
            let field = if location == "header" { 1 } else { 4 };
            nb.message(field, |s| {
                s.bool(1, required);
                s.string(2, location);
                s.string(3, str_of(m, "description"));
                s.string(4, str_of(m, "name"));
                s.string(5, str_of(m, "type"));
                s.string(6, str_of(m, "format"));
                s.bool(19, unique);
                vendor_extensions(s, 22, m);
            });
        }
    });
}

/// `Schema`.
fn schema(w: &mut W, s: &Value) {
    let Value::Object(m) = s else { return };
    w.string(1, str_of(m, "$ref"));
    w.string(2, str_of(m, "format"));
    w.string(3, str_of(m, "title"));
    w.string(4, str_of(m, "description"));
    if let Some(d) = m.get("default") {
        any(w, 5, d);
    }
    let num = |k: &str| m.get(k).and_then(Value::as_f64).unwrap_or(0.0);
    let int = |k: &str| m.get(k).and_then(Value::as_i64).unwrap_or(0);
    let flag = |k: &str| m.get(k).and_then(Value::as_bool).unwrap_or(false);
    w.double(6, num("multipleOf"));
    w.double(7, num("maximum"));
    w.bool(8, flag("exclusiveMaximum"));
    w.double(9, num("minimum"));
    w.bool(10, flag("exclusiveMinimum"));
    w.int64(11, int("maxLength"));
    w.int64(12, int("minLength"));
    w.string(13, str_of(m, "pattern"));
    w.int64(14, int("maxItems"));
    w.int64(15, int("minItems"));
    w.bool(16, flag("uniqueItems"));
    w.int64(17, int("maxProperties"));
    w.int64(18, int("minProperties"));
    for r in strings(m, "required") {
        w.string(19, r);
    }
    for e in m
        .get("enum")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        any(w, 20, e);
    }
    match m.get("additionalProperties") {
        Some(Value::Bool(b)) => {
            let b = *b;
            w.message(21, |ap| {
                // A oneof member is written even when false.
                ap.key(2, 0);
                ap.varint(u64::from(b));
            });
        }
        Some(sub @ Value::Object(_)) => w.message(21, |ap| ap.message(1, |sw| schema(sw, sub))),
        _ => {}
    }
    match m.get("type") {
        Some(Value::String(t)) => w.message(22, |ti| ti.string(1, t)),
        Some(Value::Array(ts)) => w.message(22, |ti| {
            for t in ts.iter().filter_map(Value::as_str) {
                ti.string(1, t);
            }
        }),
        _ => {}
    }
    match m.get("items") {
        Some(Value::Array(items)) => w.message(23, |ii| {
            for item in items {
                ii.message(1, |sw| schema(sw, item));
            }
        }),
        Some(item @ Value::Object(_)) => w.message(23, |ii| ii.message(1, |sw| schema(sw, item))),
        _ => {}
    }
    for sub in m
        .get("allOf")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        w.message(24, |sw| schema(sw, sub));
    }
    if let Some(Value::Object(props)) = m.get("properties") {
        w.message(25, |ps| {
            for (name, sub) in props {
                ps.message(1, |ns| {
                    ns.string(1, name);
                    ns.message(2, |sw| schema(sw, sub));
                });
            }
        });
    }
    w.string(26, str_of(m, "discriminator"));
    w.bool(27, flag("readOnly"));
    if let Some(e) = m.get("example") {
        any(w, 30, e);
    }
    vendor_extensions(w, 31, m);
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn varints_and_strings() {
        let mut w = W::default();
        w.varint(300);
        assert_eq!(w.0, [0xac, 0x02]);
        let mut w = W::default();
        w.string(1, "2.0");
        assert_eq!(w.0, [0x0a, 3, b'2', b'.', b'0']);
    }

    #[test]
    fn schema_type_and_extension() {
        let mut w = W::default();
        schema(&mut w, &json!({ "type": "string", "x-a": true }));
        // type = 22 (TypeItem { value = 1 }), vendor_extension = 31 (NamedAny).
        let mut expect = vec![0xb2, 0x01, 8, 0x0a, 6];
        expect.extend_from_slice(b"string");
        expect.extend_from_slice(&[0xfa, 0x01, 13, 0x0a, 3, b'x', b'-', b'a', 0x12, 6, 0x12, 4]);
        expect.extend_from_slice(b"true");
        assert_eq!(w.0, expect);
    }
}
