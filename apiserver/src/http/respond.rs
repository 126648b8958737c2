//! Response encoding: content negotiation (JSON, YAML, Table), Status errors, warnings.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Response, StatusCode};
use keelson_apimachinery::ApiError;
use serde_json::Value;

/// What the client asked for in `Accept`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Yaml,
    /// `application/json;as=Table;v=v1;g=meta.k8s.io` (kubectl get).
    Table {
        v1beta1: bool,
    },
    /// `as=PartialObjectMetadata[List]` (garbage collector, metadata informers).
    Metadata,
}

/// Pick the response format from `Accept`, in the client's order of preference.
pub fn negotiate(headers: &HeaderMap) -> Result<Format, ApiError> {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if accept.trim().is_empty() {
        return Ok(Format::Json);
    }
    for clause in accept.split(',') {
        let mut parts = clause.split(';').map(str::trim);
        let media = parts.next().unwrap_or("");
        let params: Vec<(&str, &str)> = parts.filter_map(|p| p.split_once('=')).collect();
        let param = |k: &str| params.iter().find(|(pk, _)| *pk == k).map(|(_, v)| *v);
        match media {
            "application/json" | "application/*" | "*/*" | "application/yaml" => {
                match (param("as"), param("g")) {
                    (Some("Table"), Some("meta.k8s.io")) => {
                        return Ok(Format::Table {
                            v1beta1: param("v") == Some("v1beta1"),
                        })
                    }
                    (
                        Some("PartialObjectMetadata" | "PartialObjectMetadataList"),
                        Some("meta.k8s.io"),
                    ) => return Ok(Format::Metadata),
                    (Some(_), _) => continue,
                    (None, _) => {}
                }
                return Ok(if media == "application/yaml" {
                    Format::Yaml
                } else {
                    Format::Json
                });
            }
            _ => continue,
        }
    }
    Err(ApiError::not_acceptable(
        "only the following media types are accepted: application/json, application/yaml",
    ))
}

pub fn json_response(code: u16, value: &Value, format: Format) -> Response<Body> {
    let (body, ct) = match format {
        Format::Yaml => (
            serde_yaml::to_string(value)
                .unwrap_or_default()
                .into_bytes(),
            "application/yaml",
        ),
        _ => (
            serde_json::to_vec(value).unwrap_or_default(),
            "application/json",
        ),
    };
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

pub fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status(), Format::Json);
    if let Some(s) = e.retry_after_seconds {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// Add `Warning: 299 - "..."` headers, as Kubernetes does (kubectl prints them).
pub fn add_warnings(r: &mut Response<Body>, warnings: &[String]) {
    for w in warnings {
        let escaped = w.replace('\\', "\\\\").replace('"', "\\\"");
        if let Ok(v) = HeaderValue::from_str(&format!("299 - \"{escaped}\"")) {
            r.headers_mut().append("warning", v);
        }
    }
}

/// Decode a request body as JSON or YAML according to its content type.
pub fn decode_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json");
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "application/json" | "" | "*/*" => serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding JSON body: {e}"))),
        "application/yaml" | "application/x-yaml" | "text/yaml" => {
            serde_yaml::from_slice::<Value>(body)
                .map_err(|e| ApiError::bad_request(format!("error decoding YAML body: {e}")))
        }
        // client-go's typed clients (kubectl create configmap, ...) send protobuf.
        m if keelson_protobuf::is_protobuf_content_type(m) => keelson_protobuf::decode(body)
            .map_err(|e| {
                let mut err = ApiError::bad_request(format!("error decoding protobuf body: {e}"));
                err.code = e.http_status();
                if err.code == 415 {
                    err.reason = "UnsupportedMediaType".into();
                }
                err
            }),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(v: &str) -> Result<Format, ApiError> {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT, HeaderValue::from_str(v).unwrap());
        negotiate(&h)
    }

    #[test]
    fn kubectl_get_gets_a_table() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(accept(kubectl).unwrap(), Format::Table { v1beta1: false });
        assert_eq!(accept("application/json").unwrap(), Format::Json);
        assert_eq!(accept("application/yaml").unwrap(), Format::Yaml);
        assert_eq!(
            accept("application/vnd.kubernetes.protobuf, application/json").unwrap(),
            Format::Json
        );
        assert_eq!(accept("text/html").unwrap_err().code, 406);
    }
}
