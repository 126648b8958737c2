//! Authentication: client certificates (CN = user, O = groups) and static bearer tokens
//! (`--token-auth-file`). Authorization is not enforced yet: every authenticated user may
//! do everything.

use crate::registry::UserInfo;
use axum::http::{header, HeaderMap};
use keelson_apimachinery::ApiError;
use keelson_pki::{Identity, TokenFile};

#[derive(Default)]
pub struct Authenticator {
    pub tokens: Option<TokenFile>,
}

fn user(id: Identity) -> UserInfo {
    let mut groups = id.groups;
    if !groups.iter().any(|g| g == "system:authenticated") {
        groups.push("system:authenticated".into());
    }
    UserInfo {
        name: id.user,
        groups,
    }
}

impl Authenticator {
    /// The request's user: the client certificate's, else the bearer token's. `Ok(None)`
    /// when no credentials were presented; an unknown token is a 401.
    pub fn authenticate(
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
        match self.tokens.as_ref().and_then(|t| t.lookup(token)) {
            Some(id) => Ok(Some(user(id))),
            None => Err(ApiError::unauthorized()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_and_certs() {
        let a = Authenticator {
            tokens: Some(TokenFile::parse("s3cret,alice,1,\"dev,ops\"\n").unwrap()),
        };
        let mut h = HeaderMap::new();
        assert!(a.authenticate(&h, None).unwrap().is_none());
        h.insert(header::AUTHORIZATION, "Bearer s3cret".parse().unwrap());
        let u = a.authenticate(&h, None).unwrap().unwrap();
        assert_eq!(u.name, "alice");
        assert!(u.groups.contains(&"ops".to_string()));
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert_eq!(a.authenticate(&h, None).unwrap_err().code, 401);
        let id = Identity {
            user: "kubernetes-admin".into(),
            groups: vec!["system:masters".into()],
        };
        assert_eq!(
            a.authenticate(&h, Some(&id)).unwrap().unwrap().name,
            "kubernetes-admin"
        );
    }
}
