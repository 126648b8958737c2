//! The audit.k8s.io/v1 `Event` as kube-apiserver writes it, one JSON object per line.

use super::policy::{Level, Stage};
use crate::registry::UserInfo;
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

/// `authentication.k8s.io/v1` UserInfo as the audit log spells it.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct User {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub username: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl From<&UserInfo> for User {
    fn from(u: &UserInfo) -> User {
        User {
            username: u.name.clone(),
            uid: u.uid.clone(),
            groups: u.groups.clone(),
            extra: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ObjectRef {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_group: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub api_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub resource_version: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub subresource: String,
}

impl ObjectRef {
    /// Fill what the URL did not say from the request's object (a create's name), as
    /// Kubernetes' `LogRequestObject` does.
    pub fn complete_from(&mut self, obj: &Value) {
        let meta = &obj["metadata"];
        let fill = |field: &mut String, key: &str| {
            if field.is_empty() {
                if let Some(v) = meta[key].as_str() {
                    *field = v.to_string();
                }
            }
        };
        fill(&mut self.namespace, "namespace");
        fill(&mut self.name, "name");
        fill(&mut self.uid, "uid");
        fill(&mut self.resource_version, "resourceVersion");
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    pub kind: &'static str,
    pub api_version: &'static str,
    pub level: Level,
    #[serde(rename = "auditID")]
    pub audit_id: String,
    pub stage: Stage,
    #[serde(rename = "requestURI")]
    pub request_uri: String,
    pub verb: String,
    /// Empty (`{}`) when authentication failed.
    pub user: User,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub impersonated_user: Option<User>,
    #[serde(rename = "sourceIPs", skip_serializing_if = "Vec::is_empty")]
    pub source_ips: Vec<String>,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub user_agent: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object_ref: Option<ObjectRef>,
    /// A `metav1.Status`: `{"metadata":{},"code":200}`, the whole Status for failures.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_status: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_object: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_object: Option<Value>,
    #[serde(serialize_with = "micro_time")]
    pub request_received_timestamp: DateTime<Utc>,
    #[serde(serialize_with = "micro_time")]
    pub stage_timestamp: DateTime<Utc>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `metav1.MicroTime`: RFC 3339 with microseconds, in UTC.
fn micro_time<S: serde::Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

impl Event {
    pub fn new(audit_id: String, received: DateTime<Utc>) -> Event {
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: Level::None,
            audit_id,
            stage: Stage::RequestReceived,
            request_uri: String::new(),
            verb: String::new(),
            user: User::default(),
            impersonated_user: None,
            source_ips: Vec::new(),
            user_agent: String::new(),
            object_ref: None,
            response_status: None,
            request_object: None,
            response_object: None,
            request_received_timestamp: received,
            stage_timestamp: received,
            annotations: BTreeMap::new(),
        }
    }

    /// One log line (with its newline).
    pub fn to_line(&self) -> Vec<u8> {
        let mut line = serde_json::to_vec(self).unwrap_or_default();
        line.push(b'\n');
        line
    }
}

/// The `responseStatus` of a response: the Status it carries when it failed (without
/// kind and apiVersion, as Kubernetes logs it), else only its code.
pub fn response_status(code: u16, body: Option<&Value>) -> Value {
    if code >= 300 {
        if let Some(status) = body.filter(|b| b["kind"] == "Status") {
            let mut s = status.clone();
            if let Some(o) = s.as_object_mut() {
                o.remove("kind");
                o.remove("apiVersion");
                o.insert("code".into(), code.into());
                o.entry("metadata").or_insert_with(|| serde_json::json!({}));
            }
            return s;
        }
    }
    serde_json::json!({"metadata": {}, "code": code})
}

/// Drop `metadata.managedFields` from an object, or from each item of a list
/// (`omitManagedFields`).
pub fn strip_managed_fields(v: &mut Value) {
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("managedFields");
    }
    if let Some(items) = v.get_mut("items").and_then(Value::as_array_mut) {
        for item in items {
            if let Some(meta) = item.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("managedFields");
            }
        }
    }
}

/// kube-apiserver's `SourceIPs`: the `X-Forwarded-For` chain, then `X-Real-Ip`, then
/// the peer, each once.
pub fn source_ips(headers: &http::HeaderMap, peer: std::net::IpAddr) -> Vec<String> {
    let mut ips: Vec<std::net::IpAddr> = Vec::new();
    if let Some(xff) = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok()) {
        ips.extend(
            xff.split(',')
                .filter_map(|s| s.trim().parse::<std::net::IpAddr>().ok()),
        );
    }
    if let Some(ip) = headers
        .get("x-real-ip")
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse().ok())
    {
        if !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if !ips.contains(&peer) {
        ips.push(peer);
    }
    ips.into_iter().map(|ip| ip.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_event_line_reads_like_kubernetes() {
        let at = DateTime::parse_from_rfc3339("2024-05-01T10:20:30.123456789Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut e = Event::new("4f7a".into(), at);
        e.level = Level::Metadata;
        e.stage = Stage::ResponseComplete;
        e.verb = "create".into();
        e.request_uri = "/api/v1/namespaces/default/pods".into();
        e.object_ref = Some(ObjectRef {
            resource: "pods".into(),
            namespace: "default".into(),
            api_version: "v1".into(),
            ..Default::default()
        });
        e.response_status = Some(response_status(201, None));
        let v: Value = serde_json::from_slice(&e.to_line()).unwrap();
        assert_eq!(v["kind"], "Event");
        assert_eq!(v["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(v["auditID"], "4f7a");
        assert_eq!(v["requestURI"], "/api/v1/namespaces/default/pods");
        assert_eq!(v["user"], json!({}));
        assert_eq!(
            v["objectRef"],
            json!({"resource":"pods","namespace":"default","apiVersion":"v1"})
        );
        assert_eq!(v["responseStatus"], json!({"metadata":{},"code":201}));
        assert_eq!(v["requestReceivedTimestamp"], "2024-05-01T10:20:30.123456Z");
        assert!(v.get("requestObject").is_none() && v.get("annotations").is_none());
    }

    #[test]
    fn failures_keep_their_status() {
        let status = json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"pods is forbidden","reason":"Forbidden","details":{"kind":"pods"},"code":403});
        assert_eq!(
            response_status(403, Some(&status)),
            json!({"metadata":{},"status":"Failure","message":"pods is forbidden","reason":"Forbidden","details":{"kind":"pods"},"code":403})
        );
        assert_eq!(
            response_status(200, Some(&status)),
            json!({"metadata":{},"code":200})
        );
    }

    #[test]
    fn forwarded_addresses_come_first() {
        let mut h = http::HeaderMap::new();
        h.insert("x-forwarded-for", "10.0.0.1, 10.0.0.2".parse().unwrap());
        h.insert("x-real-ip", "10.0.0.2".parse().unwrap());
        assert_eq!(
            source_ips(&h, "127.0.0.1".parse().unwrap()),
            vec!["10.0.0.1", "10.0.0.2", "127.0.0.1"]
        );
        assert_eq!(
            source_ips(&http::HeaderMap::new(), "::1".parse().unwrap()),
            vec!["::1"]
        );
    }

    #[test]
    fn managed_fields_are_stripped_from_objects_and_lists() {
        let mut o = json!({"metadata":{"name":"a","managedFields":[{}]}});
        strip_managed_fields(&mut o);
        assert_eq!(o, json!({"metadata":{"name":"a"}}));
        let mut l = json!({"items":[{"metadata":{"managedFields":[]}}]});
        strip_managed_fields(&mut l);
        assert_eq!(l, json!({"items":[{"metadata":{}}]}));
    }
}
