//! Review kinds: questions a POST answers, with nothing stored (their strategy is
//! `create_only`). authentication.k8s.io/v1 TokenReview ("whom does this token
//! authenticate as?") and SelfSubjectReview ("who am I?", `kubectl auth whoami`).

use crate::auth::Authenticator;
use crate::registry::UserInfo;
use keelson_apimachinery::ApiError;
use keelson_resources::ResourceType;
use serde_json::{json, Value};

fn user_info(user: &UserInfo) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    info
}

/// Answer a review of kind `rt` asked by `user`.
pub async fn answer(
    auth: &Authenticator,
    rt: &ResourceType,
    mut review: Value,
    user: &UserInfo,
) -> Result<Value, ApiError> {
    crate::registry::metadata::check_type(rt, &mut review)?;
    review["metadata"] = json!({"creationTimestamp": null});
    match rt.kind {
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
