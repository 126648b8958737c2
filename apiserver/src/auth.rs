//! Authentication: client certificates (CN = user, O = groups), static bearer tokens
//! (`--token-auth-file`) and service-account tokens (signed JWTs whose ServiceAccount,
//! and the pod, secret or node they are bound to, still exist), then impersonation
//! (`Impersonate-User`/`-Group`/`-Uid` headers, `kubectl --as`), which the requester
//! must be authorized for (the `impersonate` verb on `users`, `groups`,
//! `serviceaccounts`, `uids`). Without credentials a request is `system:anonymous`
//! when anonymous requests are allowed (`--anonymous-auth`).

use crate::authz::{Attributes, Authorizer, ANONYMOUS_USER, UNAUTHENTICATED_GROUP};
use crate::registry::{Registry, UserInfo};
use crate::serviceaccount::Issuer;
use axum::http::{header, HeaderMap};
use base64::Engine as _;
use keelson_apimachinery::{meta, ApiError};
use keelson_pki::{Identity, TokenFile};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a service-account token's subject is trusted before it is looked up again
/// (kube-apiserver caches successful token authentications for 10 s too).
const CHECKED_FOR: Duration = Duration::from_secs(10);
/// Remembered tokens; the memory is cleared when it would grow past this.
const MAX_REMEMBERED: usize = 4096;

#[derive(Default)]
pub struct Authenticator {
    pub tokens: Option<TokenFile>,
    pub service_accounts: Option<ServiceAccountTokens>,
    /// Requests without credentials are `system:anonymous` rather than refused.
    pub anonymous: bool,
    /// Asked whether the requester may impersonate.
    pub authorizer: Arc<Authorizer>,
}

/// The user of requests without credentials.
pub fn anonymous_user() -> UserInfo {
    UserInfo {
        name: ANONYMOUS_USER.into(),
        uid: String::new(),
        groups: vec![UNAUTHENTICATED_GROUP.into()],
    }
}

/// Checks service-account tokens: the signature and claims, then (at most every
/// [`CHECKED_FOR`]) that what the token names still exists.
pub struct ServiceAccountTokens {
    pub issuer: Arc<Issuer>,
    pub registry: Registry,
    checked: Mutex<HashMap<String, (UserInfo, Instant)>>,
}

impl ServiceAccountTokens {
    pub fn new(issuer: Arc<Issuer>, registry: Registry) -> Self {
        ServiceAccountTokens {
            issuer,
            registry,
            checked: Mutex::default(),
        }
    }

    /// The service account's user, or `None` when the token is not a valid one.
    async fn authenticate(&self, token: &str) -> Option<UserInfo> {
        self.authenticate_for(token, &self.issuer.audiences).await
    }

    /// [`Self::authenticate`] for a token that must name one of `audiences`.
    async fn authenticate_for(&self, token: &str, audiences: &[String]) -> Option<UserInfo> {
        let claims = self
            .issuer
            .verify_for(token, chrono::Utc::now().timestamp(), audiences)
            .ok()?;
        if let Some((user, at)) = self.checked.lock().unwrap().get(token) {
            if at.elapsed() < CHECKED_FOR {
                return Some(user.clone());
            }
        }
        let user = if claims["iss"] == crate::serviceaccount::LEGACY_ISSUER {
            self.check_legacy(&claims, token).await?
        } else {
            self.check(&claims).await?
        };
        let mut checked = self.checked.lock().unwrap();
        if checked.len() >= MAX_REMEMBERED {
            checked.clear();
        }
        checked.insert(token.to_string(), (user.clone(), Instant::now()));
        Some(user)
    }

    /// Kubernetes' legacy validator, for tokens kept in `kubernetes.io/service-account-token`
    /// Secrets: the Secret still holds this very token and the account still has the
    /// token's uid.
    async fn check_legacy(&self, claims: &Value, token: &str) -> Option<UserInfo> {
        let claim = |k: &str| {
            claims[format!("kubernetes.io/serviceaccount/{k}")]
                .as_str()
                .filter(|v| !v.is_empty())
        };
        let (ns, secret_name, sa_name, sa_uid) = (
            claim("namespace")?,
            claim("secret.name")?,
            claim("service-account.name")?,
            claim("service-account.uid")?,
        );
        let secrets = keelson_resources::find("", "secrets")?;
        let secret = self.registry.get(secrets, ns, secret_name).await.ok()?;
        let kept = secret["data"]["token"].as_str()?;
        let kept = base64::engine::general_purpose::STANDARD
            .decode(kept)
            .ok()?;
        if !bool::from(subtle_eq(&kept, token.as_bytes())) || deleted_long_ago(&secret) {
            return None;
        }
        let accounts = keelson_resources::find("", "serviceaccounts")?;
        let account = self.registry.get(accounts, ns, sa_name).await.ok()?;
        if meta::uid(&account) != sa_uid || deleted_long_ago(&account) {
            return None;
        }
        Some(UserInfo {
            name: format!("system:serviceaccount:{ns}:{sa_name}"),
            uid: sa_uid.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        })
    }

    /// Kubernetes' validator: the service account exists with the token's uid, and so
    /// does the object the token is bound to, which must not have been deleted yet.
    async fn check(&self, claims: &Value) -> Option<UserInfo> {
        let private = claims.get("kubernetes.io")?;
        let ns = private["namespace"].as_str()?;
        let sa_name = private["serviceaccount"]["name"].as_str()?;
        let wanted = [
            ("serviceaccounts", "serviceaccount", true),
            ("pods", "pod", true),
            ("secrets", "secret", true),
            ("nodes", "node", false),
        ];
        for (plural, claim, namespaced) in wanted {
            let Some(reference) = private.get(claim).filter(|r| r.is_object()) else {
                continue;
            };
            // A pod's node is informational; only the pod itself binds the token.
            if claim == "node" && private.get("pod").is_some_and(Value::is_object) {
                continue;
            }
            let rt = keelson_resources::find("", plural)?;
            let name = reference["name"].as_str()?;
            let obj = self
                .registry
                .get(rt, if namespaced { ns } else { "" }, name)
                .await
                .ok()?;
            if meta::uid(&obj) != reference["uid"].as_str()? {
                return None;
            }
            if deleted_long_ago(&obj) {
                return None;
            }
        }
        Some(UserInfo {
            name: format!("system:serviceaccount:{ns}:{sa_name}"),
            uid: private["serviceaccount"]["uid"].as_str()?.to_string(),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
                "system:authenticated".into(),
            ],
        })
    }
}

/// Whether an object's deletion started over a minute ago. A pod shutting down still
/// talks to the API: its token holds through the grace period and a minute past it, as
/// Kubernetes allows.
fn deleted_long_ago(obj: &Value) -> bool {
    obj.pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() < chrono::Utc::now().timestamp() - 60)
}

/// Constant-time comparison, so that timing says nothing about a stored token.
fn subtle_eq(a: &[u8], b: &[u8]) -> subtle::Choice {
    use subtle::ConstantTimeEq;
    a.ct_eq(b)
}

fn user(id: Identity) -> UserInfo {
    let mut groups = id.groups;
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    UserInfo {
        name: id.user,
        uid: String::new(),
        groups,
    }
}

impl Authenticator {
    /// TokenReview: whom `token` authenticates as, for one of `audiences` (the
    /// apiserver's own when empty), and the audiences it is good for.
    pub async fn review(
        &self,
        token: &str,
        audiences: &[String],
    ) -> Option<(UserInfo, Vec<String>)> {
        if let Some(id) = self.tokens.as_ref().and_then(|t| t.lookup(token)) {
            let own = self
                .service_accounts
                .as_ref()
                .map(|s| s.issuer.audiences.clone());
            let aud = if audiences.is_empty() {
                own.unwrap_or_default()
            } else {
                audiences.to_vec()
            };
            return Some((user(id), aud));
        }
        let sa = self.service_accounts.as_ref()?;
        let wanted = if audiences.is_empty() {
            sa.issuer.audiences.clone()
        } else {
            audiences.to_vec()
        };
        let user = sa.authenticate_for(token, &wanted).await?;
        Some((user, wanted))
    }

    /// The request's user: the client certificate's, else the bearer token's. `Ok(None)`
    /// when no credentials were presented; an unknown token is a 401.
    pub async fn authenticate(
        &self,
        headers: &HeaderMap,
        cert: Option<&Identity>,
    ) -> Result<Option<UserInfo>, ApiError> {
        match self.authenticate_requester(headers, cert).await? {
            Some(requester) => Ok(Some(self.act_as(headers, requester).await?)),
            None => Ok(None),
        }
    }

    /// Who presented the credentials, or `system:anonymous` when allowed; `Ok(None)`
    /// when there were none. The audit log records this user (impersonation aside).
    pub async fn authenticate_requester(
        &self,
        headers: &HeaderMap,
        cert: Option<&Identity>,
    ) -> Result<Option<UserInfo>, ApiError> {
        Ok(match self.requester(headers, cert).await? {
            Some(user) => Some(user),
            None if self.anonymous => Some(anonymous_user()),
            None => None,
        })
    }

    /// Whom `requester` acts as: itself, or the user its impersonation headers name once
    /// it is allowed to impersonate them.
    pub async fn act_as(
        &self,
        headers: &HeaderMap,
        requester: UserInfo,
    ) -> Result<UserInfo, ApiError> {
        let Some(target) = impersonation(headers, &requester)? else {
            return Ok(requester);
        };
        for a in impersonation_checks(&requester, &target, headers) {
            self.authorizer.check(&a).await?;
        }
        Ok(target)
    }

    /// Who presented the credentials.
    async fn requester(
        &self,
        headers: &HeaderMap,
        cert: Option<&Identity>,
    ) -> Result<Option<UserInfo>, ApiError> {
        if let Some(id) = cert {
            return Ok(Some(user(id.clone())));
        }
        let Some(auth) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(None);
        };
        let token = auth
            .strip_prefix("Bearer ")
            .or_else(|| auth.strip_prefix("bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        if let Some(id) = self.tokens.as_ref().and_then(|t| t.lookup(token)) {
            return Ok(Some(user(id)));
        }
        if let Some(sa) = &self.service_accounts {
            if let Some(u) = sa.authenticate(token).await {
                return Ok(Some(u));
            }
        }
        Err(ApiError::unauthorized())
    }
}

/// What the requester must be allowed to do to act as `target` (Kubernetes'
/// impersonation filter): `impersonate` on the user (or service account), each group,
/// the uid and each extra.
fn impersonation_checks(
    requester: &UserInfo,
    target: &UserInfo,
    headers: &HeaderMap,
) -> Vec<Attributes> {
    let mut checks = Vec::new();
    let account = target
        .name
        .strip_prefix("system:serviceaccount:")
        .and_then(|rest| rest.split_once(':'));
    checks.push(match account {
        Some((ns, name)) => {
            Attributes::resource(requester, "impersonate", "", "serviceaccounts", ns, name)
        }
        None => Attributes::resource(requester, "impersonate", "", "users", "", &target.name),
    });
    // Groups asked for explicitly; those that come with the user are not checked.
    for g in headers
        .get_all("impersonate-group")
        .iter()
        .filter_map(|v| v.to_str().ok())
    {
        checks.push(Attributes::resource(
            requester,
            "impersonate",
            "",
            "groups",
            "",
            g,
        ));
    }
    if !target.uid.is_empty() {
        checks.push(Attributes::resource(
            requester,
            "impersonate",
            "authentication.k8s.io",
            "uids",
            "",
            &target.uid,
        ));
    }
    for (k, v) in headers.iter() {
        if let Some(key) = k.as_str().strip_prefix("impersonate-extra-") {
            let mut a = Attributes::resource(
                requester,
                "impersonate",
                "authentication.k8s.io",
                "userextras",
                "",
                v.to_str().unwrap_or(""),
            );
            a.subresource = key.to_string();
            checks.push(a);
        }
    }
    checks
}

/// Whom a request's impersonation headers name, if any (`None`: the requester acts as
/// itself).
fn impersonation(headers: &HeaderMap, requester: &UserInfo) -> Result<Option<UserInfo>, ApiError> {
    impersonate(headers, requester.clone()).map(|u| {
        let asked = headers.contains_key("impersonate-user");
        asked.then_some(u)
    })
}

/// The user a request acts as: the requester, or whom its impersonation headers name.
fn impersonate(headers: &HeaderMap, requester: UserInfo) -> Result<UserInfo, ApiError> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_string)
            .collect()
    };
    let users = values("impersonate-user");
    let mut groups = values("impersonate-group");
    let uids = values("impersonate-uid");
    let extra = headers
        .keys()
        .any(|k| k.as_str().starts_with("impersonate-extra-"));
    let Some(name) = users.first().cloned() else {
        if !groups.is_empty() || !uids.is_empty() || extra {
            return Err(ApiError::bad_request(
                "requested impersonation of groups, uid or extra fields without impersonating a user",
            ));
        }
        return Ok(requester);
    };
    if groups.is_empty() {
        let account_ns = name
            .strip_prefix("system:serviceaccount:")
            .and_then(|rest| rest.split_once(':'))
            .map(|(ns, _)| ns.to_string());
        if let Some(ns) = account_ns {
            groups = vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{ns}"),
            ];
        }
    }
    let everyone = if name == "system:anonymous" {
        "system:unauthenticated"
    } else {
        "system:authenticated"
    };
    if !groups.iter().any(|g| g == everyone) {
        groups.push(everyone.into());
    }
    Ok(UserInfo {
        name,
        uid: uids.first().cloned().unwrap_or_default(),
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tokens_and_certs() {
        let a = Authenticator {
            tokens: Some(TokenFile::parse("s3cret,alice,1,\"dev,ops\"\n").unwrap()),
            ..Default::default()
        };
        let mut h = HeaderMap::new();
        assert!(a.authenticate(&h, None).await.unwrap().is_none());
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        let u = a.authenticate(&h, None).await.unwrap().unwrap();
        assert_eq!(u.name, "alice");
        assert!(u.groups.contains(&"ops".to_string()));
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert_eq!(a.authenticate(&h, None).await.unwrap_err().code, 401);
        let id = Identity {
            user: "kubernetes-admin".into(),
            groups: vec!["system:masters".into()],
        };
        assert_eq!(
            a.authenticate(&h, Some(&id)).await.unwrap().unwrap().name,
            "kubernetes-admin"
        );
    }
    #[tokio::test]
    async fn impersonation_headers_change_the_user() {
        let a = Authenticator::default();
        let admin = Identity {
            user: "kubernetes-admin".into(),
            groups: vec!["system:masters".into()],
        };
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", "jane".parse().unwrap());
        h.append("impersonate-group", "dev".parse().unwrap());
        h.append("impersonate-group", "ops".parse().unwrap());
        let u = a.authenticate(&h, Some(&admin)).await.unwrap().unwrap();
        assert_eq!(u.name, "jane");
        assert_eq!(u.groups, ["dev", "ops", "system:authenticated"]);
        let mut h = HeaderMap::new();
        h.insert(
            "impersonate-user",
            "system:serviceaccount:ci:bot".parse().unwrap(),
        );
        let u = a.authenticate(&h, Some(&admin)).await.unwrap().unwrap();
        assert_eq!(
            u.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:ci",
                "system:authenticated"
            ]
        );
        let mut h = HeaderMap::new();
        h.insert("impersonate-group", "dev".parse().unwrap());
        assert_eq!(
            a.authenticate(&h, Some(&admin)).await.unwrap_err().code,
            400
        );
        // No credentials, no impersonation.
        let mut h = HeaderMap::new();
        h.insert("impersonate-user", "jane".parse().unwrap());
        assert!(a.authenticate(&h, None).await.unwrap().is_none());
    }
}
