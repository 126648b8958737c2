//! core/v1 Secret.
//!
//! `stringData` is merged into `data` (base64) on write and dropped, as Kubernetes'
//! conversion does; `type` defaults to `Opaque`. Data keys, base64 values, the 1 MiB
//! limit and the per-type required keys are validated with Kubernetes' paths; `type` is
//! immutable and `immutable: true` freezes `data`.

use crate::podspec::{ensure_object, str_at};
use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::{meta, validation, Cause};
use serde_json::{json, Value};

pub static RESOURCE: ResourceType = ResourceType {
    group: "",
    version: "v1",
    kind: "Secret",
    plural: "secrets",
    singular: "secret",
    namespaced: true,
    short_names: &[],
    categories: &[],
    subresources: &[],
    strategy: &Secrets,
    typed: Some(Typed::of::<k8s_openapi::api::core::v1::Secret>()),
    merge: Some(Root::MetadataOnly),
};

struct Secrets;

/// `core.MaxSecretSize`.
pub(crate) const MAX_SIZE: usize = 1024 * 1024;

/// What Kubernetes shows instead of secret bytes in error messages.
const REDACTED: &str = "<secret contents redacted>";

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 with padding, as Go's `encoding/json` writes `[]byte`.
pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decode standard padded base64 the way Go's `encoding/json` decodes `[]byte`
/// (line breaks ignored). The error is Go's message: `illegal base64 data at input
/// byte N`.
pub(crate) fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let bad = |i: usize| format!("illegal base64 data at input byte {i}");
    let chars: Vec<(usize, u8)> = s
        .bytes()
        .enumerate()
        .filter(|(_, c)| *c != b'\r' && *c != b'\n')
        .collect();
    let mut out = Vec::with_capacity(chars.len() / 4 * 3);
    for (q, quad) in chars.chunks(4).enumerate() {
        let last = (q + 1) * 4 >= chars.len();
        let mut n: u32 = 0;
        let mut pad = 0;
        for (j, &(pos, c)) in quad.iter().enumerate() {
            let v = match c {
                b'A'..=b'Z' => c - b'A',
                b'a'..=b'z' => c - b'a' + 26,
                b'0'..=b'9' => c - b'0' + 52,
                b'+' => 62,
                b'/' => 63,
                b'=' if last && j >= 2 => {
                    pad += 1;
                    0
                }
                _ => return Err(bad(pos)),
            };
            if pad > 0 && c != b'=' {
                return Err(bad(pos));
            }
            n = (n << 6) | u32::from(v);
        }
        if quad.len() < 4 {
            return Err(bad(s.len()));
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..3 - pad]);
    }
    Ok(out)
}

/// Validate a map of base64 values (`data`, `binaryData`): keys are config keys, values
/// decode. Returns the total decoded size.
pub(crate) fn validate_base64_map(obj: &Value, field: &str, causes: &mut Vec<Cause>) -> usize {
    let Some(map) = obj.get(field).and_then(Value::as_object) else {
        return 0;
    };
    let mut total = 0;
    for (key, value) in map {
        for msg in validation::config_map_key(key) {
            causes.push(Cause::invalid(format!("{field}[{key}]"), &json!(key), msg));
        }
        match value {
            Value::String(s) => match base64_decode(s) {
                Ok(bytes) => total += bytes.len(),
                Err(e) => causes.push(Cause::invalid(
                    format!("{field}[{key}]"),
                    &json!(REDACTED),
                    e,
                )),
            },
            Value::Null => {}
            _ => causes.push(Cause::invalid(
                format!("{field}[{key}]"),
                &json!(REDACTED),
                "must be a base64-encoded string",
            )),
        }
    }
    total
}

/// `field.TooLong` as Kubernetes 1.33 words it.
pub(crate) fn too_long(field: &str, max: usize) -> Cause {
    Cause::new(
        "FieldValueTooLong",
        field,
        format!("Too long: may not be more than {max} bytes"),
    )
}

/// The `immutable: true` rules shared by secrets and configmaps.
pub(crate) fn immutable_rules(new: &Value, old: &Value, fields: &[&str]) -> Vec<Cause> {
    let mut causes = Vec::new();
    if old.get("immutable").and_then(Value::as_bool) != Some(true) {
        return causes;
    }
    if new.get("immutable").and_then(Value::as_bool) != Some(true) {
        causes.push(Cause::forbidden(
            "immutable",
            "field is immutable when `immutable` is set",
        ));
    }
    let empty = json!({});
    for f in fields {
        let norm = |v: Option<&Value>| match v {
            None | Some(Value::Null) => empty.clone(),
            Some(v) => v.clone(),
        };
        if norm(new.get(*f)) != norm(old.get(*f)) {
            causes.push(Cause::forbidden(
                *f,
                "field is immutable when `immutable` is set",
            ));
        }
    }
    causes
}

fn has_key(obj: &Value, key: &str) -> bool {
    obj.get("data").and_then(|d| d.get(key)).is_some()
}

fn decoded(obj: &Value, key: &str) -> Option<Vec<u8>> {
    obj.get("data")
        .and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .and_then(|s| base64_decode(s).ok())
}

impl Strategy for Secrets {
    fn default(&self, obj: &mut Value) {
        let o = ensure_object(obj);
        if let Some(Value::Object(string_data)) = o.remove("stringData") {
            let data = ensure_object(o.entry("data").or_insert(Value::Null));
            for (k, v) in string_data {
                let text = match v {
                    Value::String(s) => s,
                    Value::Null => continue,
                    other => other.to_string(),
                };
                data.insert(k, json!(base64_encode(text.as_bytes())));
            }
        }
        match o.get("type") {
            Some(Value::String(s)) if !s.is_empty() => {}
            _ => {
                o.insert("type".into(), json!("Opaque"));
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let total = validate_base64_map(obj, "data", &mut causes);
        if total > MAX_SIZE {
            causes.push(too_long("data", MAX_SIZE));
        }
        let required = |key: &str| Cause::required(format!("data[{key}]"));
        match str_at(obj, "type") {
            "kubernetes.io/service-account-token" => {
                let name = meta::string_map(obj, "annotations")
                    .into_iter()
                    .find(|(k, _)| *k == "kubernetes.io/service-account.name")
                    .map(|(_, v)| v)
                    .unwrap_or("");
                if name.is_empty() {
                    causes.push(Cause::required(
                        "metadata.annotations[kubernetes.io/service-account.name]",
                    ));
                }
            }
            "kubernetes.io/dockercfg" | "kubernetes.io/dockerconfigjson" => {
                let key = if str_at(obj, "type") == "kubernetes.io/dockercfg" {
                    ".dockercfg"
                } else {
                    ".dockerconfigjson"
                };
                if !has_key(obj, key) {
                    causes.push(required(key));
                } else if let Some(bytes) = decoded(obj, key) {
                    match serde_json::from_slice::<Value>(&bytes) {
                        Ok(Value::Object(_)) => {}
                        Ok(_) => causes.push(Cause::invalid(
                            format!("data[{key}]"),
                            &json!(REDACTED),
                            "json: cannot unmarshal non-object into Go value of type map[string]interface {}",
                        )),
                        Err(e) => causes.push(Cause::invalid(
                            format!("data[{key}]"),
                            &json!(REDACTED),
                            e.to_string(),
                        )),
                    }
                }
            }
            "kubernetes.io/basic-auth"
                if !has_key(obj, "username") && !has_key(obj, "password") =>
            {
                causes.push(required("username"));
                causes.push(required("password"));
            }
            "kubernetes.io/ssh-auth"
                if decoded(obj, "ssh-privatekey").is_none_or(|b| b.is_empty()) =>
            {
                causes.push(required("ssh-privatekey"));
            }
            "kubernetes.io/tls" => {
                for key in ["tls.crt", "tls.key"] {
                    if !has_key(obj, key) {
                        causes.push(required(key));
                    }
                }
            }
            _ => {}
        }
        causes
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        let mut causes = Vec::new();
        let (nt, ot) = (str_at(new, "type"), str_at(old, "type"));
        if nt != ot {
            causes.push(Cause::immutable("type", &json!(nt)));
        }
        causes.extend(immutable_rules(new, old, &["data"]));
        causes
    }

    fn selectable_fields(&self, obj: &Value) -> Vec<(&'static str, String)> {
        vec![("type", str_at(obj, "type").to_string())]
    }

    fn selectable_field_names(&self) -> &'static [&'static str] {
        &["type"]
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![
            Column::new(
                "Type",
                "string",
                "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types",
            ),
            Column::new(
                "Data",
                "string",
                "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4",
            ),
        ])
    }

    fn row(&self, obj: &Value) -> TableRow {
        let count = obj
            .get("data")
            .and_then(Value::as_object)
            .map_or(0, |m| m.len());
        name_age_row(obj, vec![json!(str_at(obj, "type")), json!(count)])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trip_and_errors() {
        for s in ["", "a", "ab", "abc", "abcd", "hello world"] {
            assert_eq!(
                base64_decode(&base64_encode(s.as_bytes())).unwrap(),
                s.as_bytes()
            );
        }
        assert_eq!(base64_encode(b"admin"), "YWRtaW4=");
        assert_eq!(base64_decode("YWRt\naW4=").unwrap(), b"admin");
        assert_eq!(
            base64_decode("YW!t").unwrap_err(),
            "illegal base64 data at input byte 2"
        );
        assert!(base64_decode("YWRtaW4").is_err());
        assert!(base64_decode("YW=taW4=").is_err());
    }

    #[test]
    fn defaults_type_and_merges_string_data() {
        let mut s =
            json!({"metadata": {"name": "s"}, "data": {"a": "YQ=="}, "stringData": {"b": "admin"}});
        RESOURCE.strategy.default(&mut s);
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "YQ==", "b": "YWRtaW4="}));
        assert!(s.get("stringData").is_none());
    }

    #[test]
    fn validates_keys_values_and_types() {
        let s = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"ok": "YQ==", "bad": "%%%"}});
        let c = RESOURCE.strategy.validate(&s);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "data[bad]");
        let tok = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/service-account-token"});
        let c = RESOURCE.strategy.validate(&tok);
        assert_eq!(
            c[0].field,
            "metadata.annotations[kubernetes.io/service-account.name]"
        );
        assert_eq!(c[0].message, "Required value");
        let tls = json!({"metadata": {"name": "t"}, "type": "kubernetes.io/tls", "data": {"tls.crt": ""}});
        let c = RESOURCE.strategy.validate(&tls);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].field, "data[tls.key]");
    }

    #[test]
    fn type_and_immutable_data_are_frozen() {
        let old = json!({"type": "Opaque", "immutable": true, "data": {"a": "YQ=="}});
        let new = json!({"type": "kubernetes.io/tls", "immutable": true, "data": {"a": "Yg=="}});
        let c = RESOURCE.strategy.validate_update(&new, &old);
        let shown: Vec<String> = c.iter().map(Cause::display).collect();
        assert_eq!(
            shown,
            vec![
                "type: Invalid value: \"kubernetes.io/tls\": field is immutable",
                "data: Forbidden: field is immutable when `immutable` is set",
            ]
        );
    }

    #[test]
    fn table_row_counts_data() {
        let s = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"a": "YQ==", "b": "Yg=="}});
        let row = RESOURCE.strategy.row(&s);
        assert_eq!(row[1], "Opaque");
        assert_eq!(row[2], 2);
        assert_eq!(
            RESOURCE.strategy.selectable_fields(&s),
            vec![("type", "Opaque".to_string())]
        );
    }
}
