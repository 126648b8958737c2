//! The admission.k8s.io/v1 AdmissionReview: the request a webhook gets and the checks
//! its response must pass (Kubernetes' `CreateAdmissionObjects` and
//! `VerifyAdmissionResponse`, with their wording).

use super::Attributes;
use keelson_apimachinery::ApiError;
use serde_json::{json, Map, Value};

/// The AdmissionReview for one call; `uid` identifies it in the response.
pub fn request(attrs: &Attributes, uid: &str, object: Option<&Value>) -> Value {
    let mut r = admission_request(attrs);
    r.insert("uid".into(), json!(uid));
    if let Some(o) = object {
        r.insert("object".into(), o.clone());
    }
    if let Some(o) = attrs.old_object {
        r.insert("oldObject".into(), o.clone());
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": r})
}

/// The AdmissionRequest without its `uid` and objects: what match conditions see as
/// `request` (Kubernetes' `CreateAdmissionRequest`).
pub fn admission_request(attrs: &Attributes) -> Map<String, Value> {
    let rt = attrs.rt;
    let kind = json!({"group": rt.group, "version": rt.version, "kind": rt.kind});
    let resource = json!({"group": rt.group, "version": rt.version, "resource": rt.plural});
    let mut user = Map::new();
    user.insert("username".into(), json!(attrs.user.name));
    if !attrs.user.uid.is_empty() {
        user.insert("uid".into(), json!(attrs.user.uid));
    }
    if !attrs.user.groups.is_empty() {
        user.insert("groups".into(), json!(attrs.user.groups));
    }
    let mut r = Map::new();
    r.insert("kind".into(), kind.clone());
    r.insert("resource".into(), resource.clone());
    if !attrs.subresource.is_empty() {
        r.insert("subResource".into(), json!(attrs.subresource));
    }
    // Keelson sends every object in the version it was written in, so the request's
    // kind and resource are the ones matched.
    r.insert("requestKind".into(), kind);
    r.insert("requestResource".into(), resource);
    if !attrs.subresource.is_empty() {
        r.insert("requestSubResource".into(), json!(attrs.subresource));
    }
    if !attrs.name.is_empty() {
        r.insert("name".into(), json!(attrs.name));
    }
    if !attrs.namespace.is_empty() {
        r.insert("namespace".into(), json!(attrs.namespace));
    }
    r.insert("operation".into(), json!(attrs.operation.as_str()));
    r.insert("userInfo".into(), Value::Object(user));
    r.insert("dryRun".into(), json!(attrs.dry_run));
    if !attrs.options.is_null() {
        r.insert("options".into(), attrs.options.clone());
    }
    r
}

/// A response that passed the checks.
#[derive(Debug, Default)]
pub struct Verdict {
    pub allowed: bool,
    /// `response.status` of a refusal.
    pub status: Option<Value>,
    /// A JSON patch (mutating webhooks only), decoded.
    pub patch: Option<Value>,
    pub warnings: Vec<String>,
}

/// Check a webhook's response body against the request's `uid`. An error is the reason
/// the call counts as failed (`received invalid webhook response: ...`), which the
/// webhook's failure policy decides about.
pub fn verify(body: &[u8], uid: &str, mutating: bool) -> Result<Verdict, String> {
    let review: Value = serde_json::from_slice(body)
        .map_err(|e| format!("the response is not a JSON AdmissionReview: {e}"))?;
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (api_version, kind) = (s(&review, "apiVersion"), s(&review, "kind"));
    let Some(response) = review.get("response").filter(|r| r.is_object()) else {
        return Err("webhook response was absent".into());
    };
    let got_uid = s(response, "uid");
    if got_uid != uid {
        return Err(format!("expected response.uid={uid:?}, got {got_uid:?}"));
    }
    if api_version != "admission.k8s.io/v1" || kind != "AdmissionReview" {
        return Err(format!(
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {api_version}, Kind={kind}"
        ));
    }
    let allowed = match response.get("allowed") {
        Some(Value::Bool(b)) => *b,
        None | Some(Value::Null) => false,
        Some(other) => return Err(format!("response.allowed is not a boolean: {other}")),
    };
    let patch_type = s(response, "patchType");
    let patch = s(response, "patch");
    if mutating && !patch.is_empty() && patch_type.is_empty() {
        return Err("webhook returned response.patch but not response.patchType".into());
    }
    if mutating && patch.is_empty() && !patch_type.is_empty() {
        return Err("webhook returned response.patchType but not response.patch".into());
    }
    if !mutating && !patch_type.is_empty() {
        return Err("validating webhooks may not return response.patchType".into());
    }
    if !mutating && !patch.is_empty() {
        return Err("validating webhooks may not return response.patch".into());
    }
    let warnings = response
        .get("warnings")
        .and_then(Value::as_array)
        .map(|w| {
            w.iter()
                .filter_map(Value::as_str)
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    let mut verdict = Verdict {
        allowed,
        status: response.get("status").filter(|v| v.is_object()).cloned(),
        patch: None,
        warnings,
    };
    if allowed && !patch.is_empty() {
        if patch_type != "JSONPatch" {
            return Err(format!("unsupported patch type {patch_type:?}"));
        }
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&patch)
            .map_err(|e| format!("received undecodable patch in webhook response: {e}"))?;
        let value: Value = serde_json::from_slice(&bytes)
            .map_err(|e| format!("received undecodable patch in webhook response: {e}"))?;
        if !value.is_array() {
            return Err("received undecodable patch in webhook response: not a JSON array".into());
        }
        verdict.patch = Some(value);
    }
    Ok(verdict)
}

/// A refusal as the Status the client gets (Kubernetes' `ToStatusErr`): the webhook's
/// code (at least 400) and reason, its message after `admission webhook "<name>"
/// denied the request`.
pub fn denied(hook: &str, status: Option<&Value>) -> ApiError {
    let null = Value::Null;
    let status = status.unwrap_or(&null);
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400);
    let reason = status.get("reason").and_then(Value::as_str).unwrap_or("");
    let message = status.get("message").and_then(Value::as_str).unwrap_or("");
    let denied_by = format!("admission webhook {hook:?} denied the request");
    let text = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    ApiError::new(code, reason, text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::admission::webhook::Operation;
    use crate::registry::UserInfo;

    fn b64(s: &str) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    #[test]
    fn request_carries_what_kubernetes_sends() {
        let user = UserInfo {
            name: "alice".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into()],
        };
        let old = json!({"metadata": {"name": "p"}});
        let attrs = Attributes {
            operation: Operation::Update,
            rt: keelson_resources::find("", "pods").unwrap(),
            subresource: "status",
            namespace: "default".to_string(),
            name: "p".to_string(),
            user: &user,
            dry_run: true,
            options: json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
            old_object: Some(&old),
        };
        let new = json!({"metadata": {"name": "p", "labels": {"a": "b"}}});
        let r = request(&attrs, "u-1", Some(&new));
        assert_eq!(r["apiVersion"], "admission.k8s.io/v1");
        let q = &r["request"];
        assert_eq!(q["uid"], "u-1");
        assert_eq!(
            q["kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(
            q["resource"],
            json!({"group": "", "version": "v1", "resource": "pods"})
        );
        assert_eq!(q["subResource"], "status");
        assert_eq!(q["requestSubResource"], "status");
        assert_eq!(q["operation"], "UPDATE");
        assert_eq!(q["namespace"], "default");
        assert_eq!(
            q["userInfo"],
            json!({"username": "alice", "groups": ["system:authenticated"]})
        );
        assert_eq!(q["object"], new);
        assert_eq!(q["oldObject"], old);
        assert_eq!(q["dryRun"], true);
        assert_eq!(q["options"]["kind"], "UpdateOptions");
    }

    fn review(response: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})).unwrap()
    }

    #[test]
    fn responses_are_checked_as_kubernetes_checks_them() {
        let ok = verify(
            &review(json!({"uid": "u", "allowed": true, "warnings": ["careful"]})),
            "u",
            false,
        )
        .unwrap();
        assert!(ok.allowed && ok.patch.is_none());
        assert_eq!(ok.warnings, ["careful"]);
        assert_eq!(
            verify(
                &review(json!({"uid": "other", "allowed": true})),
                "u",
                false
            )
            .unwrap_err(),
            "expected response.uid=\"u\", got \"other\""
        );
        assert!(verify(b"garbage", "u", false)
            .unwrap_err()
            .starts_with("the response is not a JSON AdmissionReview"));
        assert_eq!(
            verify(
                br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview"}"#,
                "u",
                false
            )
            .unwrap_err(),
            "webhook response was absent"
        );
        assert_eq!(
            verify(br#"{"apiVersion":"admission.k8s.io/v1beta1","kind":"AdmissionReview","response":{"uid":"u"}}"#, "u", false).unwrap_err(),
            "expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got admission.k8s.io/v1beta1, Kind=AdmissionReview"
        );
        let patch = b64(r#"[{"op":"add","path":"/metadata/labels","value":{"a":"b"}}]"#);
        assert_eq!(
            verify(
                &review(json!({"uid": "u", "allowed": true, "patch": patch})),
                "u",
                true
            )
            .unwrap_err(),
            "webhook returned response.patch but not response.patchType"
        );
        assert_eq!(
            verify(
                &review(
                    json!({"uid": "u", "allowed": true, "patch": patch, "patchType": "JSONPatch"})
                ),
                "u",
                false
            )
            .unwrap_err(),
            "validating webhooks may not return response.patchType"
        );
        let v = verify(
            &review(json!({"uid": "u", "allowed": true, "patch": patch, "patchType": "JSONPatch"})),
            "u",
            true,
        )
        .unwrap();
        assert_eq!(v.patch.unwrap()[0]["op"], "add");
        assert!(verify(
            &review(
                json!({"uid": "u", "allowed": true, "patch": b64("{"), "patchType": "JSONPatch"})
            ),
            "u",
            true
        )
        .unwrap_err()
        .starts_with("received undecodable patch in webhook response"));
    }

    #[test]
    fn denials_keep_the_webhook_code_and_message() {
        let e = denied(
            "deny.x.io",
            Some(&json!({"code": 403, "reason": "Forbidden", "message": "no configmaps today"})),
        );
        assert_eq!((e.code, e.reason.as_str()), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "admission webhook \"deny.x.io\" denied the request: no configmaps today"
        );
        let e = denied("deny.x.io", Some(&json!({"code": 200})));
        assert_eq!(e.code, 400);
        assert_eq!(
            e.message,
            "admission webhook \"deny.x.io\" denied the request without explanation"
        );
    }
}
