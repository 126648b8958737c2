//! Review kinds: questions a POST answers, with nothing stored (their strategy is
//! `create_only`, their kinds in `keelson_resources::kinds::reviews`).
//! authentication.k8s.io/v1 TokenReview ("whom does this token authenticate as?") and
//! SelfSubjectReview ("who am I?", `kubectl auth whoami`); authorization.k8s.io/v1
//! access reviews ("may they do that?", `kubectl auth can-i`) and rules reviews
//! (`kubectl auth can-i --list`), answered by the authorizer chain that enforces
//! requests.

use crate::auth::Authenticator;
use crate::authz::{Attributes, Authorizer, Decision, Mode};
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

/// The user an access review asks about.
fn subject_of(spec: &Value) -> UserInfo {
    UserInfo {
        name: spec["user"].as_str().unwrap_or("").to_string(),
        uid: spec["uid"].as_str().unwrap_or("").to_string(),
        groups: keelson_apimachinery::meta::path_strings(spec, "groups"),
    }
}

/// The request an access review describes.
fn access_attributes(spec: &Value, user: UserInfo) -> Attributes {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    match spec.get("resourceAttributes").filter(|v| !v.is_null()) {
        Some(r) => Attributes {
            user,
            verb: s(r, "verb"),
            resource_request: true,
            namespace: s(r, "namespace"),
            api_group: s(r, "group"),
            api_version: s(r, "version"),
            resource: s(r, "resource"),
            subresource: s(r, "subresource"),
            name: s(r, "name"),
            path: String::new(),
        },
        None => {
            let n = &spec["nonResourceAttributes"];
            Attributes {
                user,
                verb: s(n, "verb"),
                path: s(n, "path"),
                ..Default::default()
            }
        }
    }
}

/// `SelfSubjectRulesReview`: what `user` may do in `namespace`, as far as the
/// authorizers can list it (the Node authorizer cannot: incomplete).
async fn rules_review(authorizer: &Authorizer, user: &UserInfo, namespace: &str) -> Value {
    let mut resource_rules = Vec::new();
    let mut non_resource_rules = Vec::new();
    let mut incomplete = false;
    let mut errors = Vec::new();
    let everything = || {
        (
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
            json!({"verbs": ["*"], "nonResourceURLs": ["*"]}),
        )
    };
    if user.groups.iter().any(|g| g == crate::authz::MASTERS_GROUP) {
        let (r, n) = everything();
        resource_rules.push(r);
        non_resource_rules.push(n);
    }
    for mode in authorizer.modes() {
        match mode {
            Mode::AlwaysAllow => {
                let (r, n) = everything();
                resource_rules.push(r);
                non_resource_rules.push(n);
            }
            Mode::AlwaysDeny => {}
            Mode::Node(_) => {
                if crate::authz::node::node_name(user).is_some() {
                    incomplete = true;
                    errors
                        .push("node authorizer does not support user rule resolution".to_string());
                }
            }
            Mode::Rbac(rbac) => {
                let (rules, errs) = rbac.rules_for(user, namespace).await;
                for r in rules {
                    if r.non_resource_urls.is_empty() {
                        let mut v = json!({"verbs": r.verbs, "apiGroups": r.api_groups, "resources": r.resources});
                        if !r.resource_names.is_empty() {
                            v["resourceNames"] = json!(r.resource_names);
                        }
                        resource_rules.push(v);
                    } else {
                        non_resource_rules.push(
                            json!({"verbs": r.verbs, "nonResourceURLs": r.non_resource_urls}),
                        );
                    }
                }
                if !errs.is_empty() {
                    incomplete = true;
                    errors.extend(errs);
                }
            }
        }
    }
    let mut status = json!({
        "resourceRules": resource_rules,
        "nonResourceRules": non_resource_rules,
        "incomplete": incomplete,
    });
    if !errors.is_empty() {
        status["evaluationError"] = json!(errors.join(", "));
    }
    status
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
            let subject = if rt.kind == "SelfSubjectAccessReview" {
                user.clone()
            } else {
                subject_of(&review["spec"])
            };
            let attrs = access_attributes(&review["spec"], subject);
            let verdict = auth.authorizer.authorize(&attrs).await;
            let mut status = json!({"allowed": verdict.allowed()});
            if verdict.decision == Decision::Deny {
                status["denied"] = json!(true);
            }
            if !verdict.reason.is_empty() {
                status["reason"] = json!(verdict.reason);
            }
            review["status"] = status;
        }
        "SelfSubjectRulesReview" => {
            let namespace = review
                .pointer("/spec/namespace")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            review["status"] = rules_review(&auth.authorizer, user, &namespace).await;
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
