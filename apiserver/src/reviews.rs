//! Review kinds: questions a POST answers, with nothing stored (their strategy is
//! `create_only`, their kinds in `keelson_resources::kinds::reviews`).
//! authentication.k8s.io/v1 TokenReview ("whom does this token authenticate as?") and
//! SelfSubjectReview ("who am I?", `kubectl auth whoami`); authorization.k8s.io/v1
//! access reviews ("may they do that?", `kubectl auth can-i`), answered as
//! kube-apiserver's AlwaysAllow authorizer answers them, because Keelson does not
//! enforce authorization yet: yes.

use crate::auth::Authenticator;
use crate::registry::UserInfo;
use keelson_apimachinery::{ApiError, Cause};
use keelson_resources::ResourceType;
use serde_json::{json, Value};

fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    info
}

/// Kubernetes' checks of an access review's spec.
fn validate_access(rt: &ResourceType, review: &Value, ns: &str) -> Result<(), ApiError> {
    let spec = &review["spec"];
    let (resource, non_resource) = (
        spec.get("resourceAttributes").filter(|v| !v.is_null()),
        spec.get("nonResourceAttributes").filter(|v| !v.is_null()),
    );
    let mut causes = Vec::new();
    match (resource, non_resource) {
        (None, None) => causes.push(Cause::invalid(
            "spec.resourceAttributes",
            &Value::Null,
            "exactly one of nonResourceAttributes or resourceAttributes must be specified",
        )),
        (Some(_), Some(n)) => causes.push(Cause::invalid(
            "spec.nonResourceAttributes",
            n,
            "cannot be specified in combination with resourceAttributes",
        )),
        _ => {}
    }
    let subject = spec["user"].as_str().is_some_and(|u| !u.is_empty())
        || spec["groups"].as_array().is_some_and(|g| !g.is_empty());
    if rt.kind != "SelfSubjectAccessReview" && !subject {
        causes.push(Cause::invalid(
            "spec.user",
            &json!(""),
            "at least one of user or group must be specified",
        ));
    }
    if rt.namespaced {
        let asked = resource.and_then(|r| r["namespace"].as_str()).unwrap_or("");
        if asked != ns {
            causes.push(Cause::invalid(
                "spec.resourceAttributes.namespace",
                &json!(asked),
                "must match metadata.namespace",
            ));
        }
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt.group, rt.kind, "", causes))
    }
}

/// Answer a review of kind `rt` asked by `user` (in namespace `ns` for the namespaced
/// LocalSubjectAccessReview).
pub async fn answer(
    auth: &Authenticator,
    rt: &ResourceType,
    ns: &str,
    mut review: Value,
    user: &UserInfo,
) -> Result<Value, ApiError> {
    crate::registry::metadata::check_type(rt, &mut review)?;
    if rt.namespaced {
        let given = keelson_apimachinery::meta::namespace(&review);
        if !given.is_empty() && given != ns {
            return Err(ApiError::bad_request(format!(
                "spec.resourceAttributes.namespace must match namespace: {ns}"
            )));
        }
        review["metadata"] = json!({"namespace": ns, "creationTimestamp": null});
    } else {
        review["metadata"] = json!({"creationTimestamp": null});
    }
    match rt.kind {
        "SubjectAccessReview" | "LocalSubjectAccessReview" | "SelfSubjectAccessReview" => {
            validate_access(rt, &review, ns)?;
            review["status"] = json!({"allowed": true});
        }
        "SelfSubjectRulesReview" => {
            review["status"] = json!({
                "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
                "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
                "incomplete": false,
            });
        }
        "SelfSubjectReview" => {
            review["status"] = json!({"userInfo": user_info(user)});
        }
        "TokenReview" => {
            let token = review
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if token.is_empty() {
                return Err(ApiError::bad_request(
                    "token is required for TokenReview in authentication",
                ));
            }
            let audiences = keelson_apimachinery::meta::path_strings(&review, "spec.audiences");
            review["status"] = match auth.review(&token, &audiences).await {
                Some((who, aud)) => {
                    json!({"authenticated": true, "user": user_info(&who), "audiences": aud})
                }
                None => {
                    json!({"authenticated": false, "user": {}, "error": "invalid bearer token"})
                }
            };
        }
        other => return Err(ApiError::internal(format!("no review for kind {other}"))),
    }
    Ok(review)
}
