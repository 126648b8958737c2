//! `serviceaccounts/token` (TokenRequest): a signed, expiring token for a
//! ServiceAccount, optionally bound to a Pod, Secret or Node so that it stops working
//! when that object goes (`kubectl create token`, and kubelets for projected volumes).
//! The claims are Kubernetes' (`sub`, `aud`, `exp`, `iat`, `nbf`, `jti` and the
//! `kubernetes.io` private claims), so tokens read the same to anything that inspects
//! them.

use super::{Registry, WriteOptions};
use keelson_apimachinery::{meta, ApiError, Cause};
use serde_json::{json, Value};

/// Tokens live an hour unless asked otherwise, at least ten minutes, at most 2^32 s.
const DEFAULT_EXPIRATION: i64 = 3600;
const MIN_EXPIRATION: i64 = 600;
const MAX_EXPIRATION: i64 = 1 << 32;

impl Registry {
    pub async fn create_token(
        &self,
        ns: &str,
        name: &str,
        mut request: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let Some(issuer) = self.token_issuer.clone() else {
            return Err(ApiError::new(
                404,
                "NotFound",
                "this apiserver does not issue service-account tokens",
            ));
        };
        // The status is the server's to fill (kubectl sends an empty one, with a null
        // expirationTimestamp the typed check would refuse).
        if let Some(o) = request.as_object_mut() {
            o.remove("status");
        }
        super::fields::check_kind(
            &keelson_resources::typed::bodies::TOKEN_REQUEST,
            &mut request,
            opts.field_validation,
        )?;
        let accounts = keelson_resources::find("", "serviceaccounts").expect("served");
        let sa = self.get(accounts, ns, name).await?;

        let spec = request.get("spec").cloned().unwrap_or(json!({}));
        let mut audiences = meta::path_strings(&spec, "audiences");
        if audiences.is_empty() {
            audiences = issuer.audiences.clone();
        }
        let mut expiration = spec["expirationSeconds"]
            .as_i64()
            .unwrap_or(DEFAULT_EXPIRATION);
        let mut causes = Vec::new();
        if expiration < MIN_EXPIRATION {
            causes.push(Cause::invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration less than 10 minutes",
            ));
        } else if expiration > MAX_EXPIRATION {
            causes.push(Cause::invalid(
                "spec.expirationSeconds",
                &json!(expiration),
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
        if !causes.is_empty() {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                name,
                causes,
            ));
        }
        if let Some(max) = self.max_token_expiration {
            expiration = expiration.min(max.as_secs() as i64);
        }

        let mut private = json!({
            "namespace": ns,
            "serviceaccount": {"name": name, "uid": meta::uid(&sa)},
        });
        if let Some(bound) = spec.get("boundObjectRef").filter(|b| !b.is_null()) {
            self.bind_token(ns, bound, &mut private).await?;
        }
        let now = chrono::Utc::now().timestamp();
        let claims = json!({
            "sub": format!("system:serviceaccount:{ns}:{name}"),
            "aud": audiences,
            "iat": now,
            "nbf": now,
            "exp": now + expiration,
            "jti": uuid::Uuid::new_v4().to_string(),
            "kubernetes.io": private,
        });
        let expires = chrono::DateTime::from_timestamp(now + expiration, 0)
            .ok_or_else(|| ApiError::internal("token expiry out of range"))?;
        let token = if opts.dry_run {
            String::new()
        } else {
            issuer.sign(&claims)
        };
        Ok(json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {"name": name, "namespace": ns, "creationTimestamp": null},
            "spec": {
                "audiences": audiences,
                "expirationSeconds": expiration,
                "boundObjectRef": spec.get("boundObjectRef").cloned().unwrap_or(Value::Null),
            },
            "status": {"token": token, "expirationTimestamp": expires.format("%Y-%m-%dT%H:%M:%SZ").to_string()},
        }))
    }

    /// Check the object a token is bound to and name it in the private claims (a pod's
    /// node too, as Kubernetes does).
    async fn bind_token(
        &self,
        ns: &str,
        bound: &Value,
        private: &mut Value,
    ) -> Result<(), ApiError> {
        let kind = bound["kind"].as_str().unwrap_or("");
        let name = bound["name"].as_str().unwrap_or("");
        let (plural, claim, namespaced) = match kind {
            "Pod" => ("pods", "pod", true),
            "Secret" => ("secrets", "secret", true),
            "Node" => ("nodes", "node", false),
            other => {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{}\" to object of type {other}",
                    private["serviceaccount"]["name"].as_str().unwrap_or("")
                )))
            }
        };
        if name.is_empty() {
            return Err(ApiError::invalid(
                "authentication.k8s.io",
                "TokenRequest",
                "",
                vec![Cause::required("spec.boundObjectRef.name")],
            ));
        }
        let rt = keelson_resources::find("", plural).expect("served");
        let obj = self.get(rt, if namespaced { ns } else { "" }, name).await?;
        let uid = meta::uid(&obj);
        if let Some(want) = bound["uid"].as_str().filter(|u| !u.is_empty()) {
            if want != uid {
                return Err(ApiError::conflict(
                    "",
                    plural,
                    name,
                    &format!("the UID in the bound object reference ({want}) does not match the UID in record. The object might have been deleted and then recreated"),
                ));
            }
        }
        private[claim] = json!({"name": name, "uid": uid});
        if kind == "Pod" {
            let node = obj
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .unwrap_or("");
            if !node.is_empty() {
                let nodes = keelson_resources::find("", "nodes").expect("served");
                if let Ok(n) = self.get(nodes, "", node).await {
                    private["node"] = json!({"name": node, "uid": meta::uid(&n)});
                }
            }
        }
        Ok(())
    }
}
