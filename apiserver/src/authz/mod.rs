//! Authorization, as kube-apiserver's: every request becomes [`Attributes`] (who, which
//! verb, on what), which a chain of authorizers (`--authorization-mode`, in order)
//! answers. The first to allow or deny decides; when none has an opinion the request is
//! forbidden. Members of `system:masters` are allowed before the chain is asked.
//!
//! - [`request`]: attributes from an HTTP request (Kubernetes' `RequestInfo`).
//! - [`rbac`]: Role, ClusterRole and their bindings, read from the watch cache; the
//!   escalation checks on writes of roles and bindings; the default policy.
//! - [`node`]: the Node authorizer: a node reads what its pods use, and only that.
//! - [`follow`]: keeping objects of a few kinds in memory from the watch cache.

pub mod follow;
pub mod node;
pub mod rbac;
pub mod request;

use crate::registry::UserInfo;
use keelson_apimachinery::ApiError;
use std::sync::Arc;

/// Who may do anything without being asked about.
pub const MASTERS_GROUP: &str = "system:masters";
pub const ANONYMOUS_USER: &str = "system:anonymous";
pub const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// What a request asks to do (`authorizer.Attributes`).
#[derive(Debug, Clone, Default)]
pub struct Attributes {
    pub user: UserInfo,
    /// `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or another verb (`impersonate`, `bind`, `escalate`, `use`);
    /// the lower-cased HTTP method for non-resource requests.
    pub verb: String,
    pub resource_request: bool,
    pub namespace: String,
    pub api_group: String,
    pub api_version: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
    /// The URL path, for non-resource requests.
    pub path: String,
}

impl Attributes {
    /// A resource request by `user`.
    pub fn resource(
        user: &UserInfo,
        verb: &str,
        api_group: &str,
        resource: &str,
        namespace: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            user: user.clone(),
            verb: verb.into(),
            resource_request: true,
            namespace: namespace.into(),
            api_group: api_group.into(),
            resource: resource.into(),
            name: name.into(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny,
    NoOpinion,
}

/// An authorizer's answer and, when it has one, why.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decision: Decision,
    pub reason: String,
}

impl Verdict {
    pub fn allow(reason: impl Into<String>) -> Verdict {
        Verdict {
            decision: Decision::Allow,
            reason: reason.into(),
        }
    }
    pub fn no_opinion(reason: impl Into<String>) -> Verdict {
        Verdict {
            decision: Decision::NoOpinion,
            reason: reason.into(),
        }
    }
    pub fn deny(reason: impl Into<String>) -> Verdict {
        Verdict {
            decision: Decision::Deny,
            reason: reason.into(),
        }
    }
    pub fn allowed(&self) -> bool {
        self.decision == Decision::Allow
    }
}

/// One `--authorization-mode`.
#[derive(Clone)]
pub enum Mode {
    AlwaysAllow,
    AlwaysDeny,
    Node(Arc<node::NodeAuthorizer>),
    Rbac(Arc<rbac::Rbac>),
}

impl Mode {
    pub fn name(&self) -> &'static str {
        match self {
            Mode::AlwaysAllow => "AlwaysAllow",
            Mode::AlwaysDeny => "AlwaysDeny",
            Mode::Node(_) => "Node",
            Mode::Rbac(_) => "RBAC",
        }
    }
}

/// The modes kube-apiserver knows that Keelson answers.
pub const MODES: &[&str] = &["AlwaysAllow", "AlwaysDeny", "Node", "RBAC"];

/// The authorizer chain.
#[derive(Clone)]
pub struct Authorizer {
    modes: Vec<Mode>,
}

/// Allows everything: what an apiserver without `--authorization-mode` does.
impl Default for Authorizer {
    fn default() -> Self {
        Authorizer::always_allow()
    }
}

impl Authorizer {
    pub fn new(modes: Vec<Mode>) -> Authorizer {
        Authorizer { modes }
    }

    /// Every request allowed (what Keelson did before authorization existed).
    pub fn always_allow() -> Authorizer {
        Authorizer::new(vec![Mode::AlwaysAllow])
    }

    pub fn modes(&self) -> &[Mode] {
        &self.modes
    }

    pub fn has_always_allow(&self) -> bool {
        self.modes.iter().any(|m| matches!(m, Mode::AlwaysAllow))
    }

    /// The RBAC authorizer, if it is in the chain (rules reviews and escalation
    /// checks read its rules).
    pub fn rbac(&self) -> Option<&Arc<rbac::Rbac>> {
        self.modes.iter().find_map(|m| match m {
            Mode::Rbac(r) => Some(r),
            _ => None,
        })
    }

    pub fn node(&self) -> Option<&Arc<node::NodeAuthorizer>> {
        self.modes.iter().find_map(|m| match m {
            Mode::Node(n) => Some(n),
            _ => None,
        })
    }

    /// Ask the chain. Reasons of the authorizers that had no opinion are joined, as
    /// the union authorizer does.
    pub async fn authorize(&self, a: &Attributes) -> Verdict {
        if a.user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return Verdict::allow("");
        }
        let mut reasons = Vec::new();
        for mode in &self.modes {
            let v = match mode {
                Mode::AlwaysAllow => Verdict::allow(""),
                Mode::AlwaysDeny => Verdict::deny("Everything is forbidden."),
                Mode::Node(n) => n.authorize(a).await,
                Mode::Rbac(r) => r.authorize(a).await,
            };
            match v.decision {
                Decision::NoOpinion => {
                    if !v.reason.is_empty() {
                        reasons.push(v.reason);
                    }
                }
                _ => return v,
            }
        }
        Verdict::no_opinion(reasons.join(", "))
    }

    /// [`Self::authorize`], as the 403 a refused request gets.
    pub async fn check(&self, a: &Attributes) -> Result<(), ApiError> {
        let v = self.authorize(a).await;
        if v.allowed() {
            Ok(())
        } else {
            Err(forbidden(a, &v.reason))
        }
    }
}

/// Kubernetes' `forbiddenMessage`: `User "jane" cannot list resource "pods" in API
/// group "" in the namespace "default"`.
pub fn forbidden_message(a: &Attributes) -> String {
    let user = &a.user.name;
    if !a.resource_request {
        return format!("User {user:?} cannot {} path {:?}", a.verb, a.path);
    }
    let mut resource = a.resource.clone();
    if !a.subresource.is_empty() {
        resource = format!("{resource}/{}", a.subresource);
    }
    if a.namespace.is_empty() {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} at the cluster scope",
            a.verb, a.api_group
        )
    } else {
        format!(
            "User {user:?} cannot {} resource {resource:?} in API group {:?} in the namespace {:?}",
            a.verb, a.api_group, a.namespace
        )
    }
}

/// The 403 for a refused request: `pods is forbidden: User ...`, with the resource and
/// name in the details as `errors.NewForbidden` gives them.
pub fn forbidden(a: &Attributes, reason: &str) -> ApiError {
    let mut msg = forbidden_message(a);
    if !reason.is_empty() {
        msg = format!("{msg}: {reason}");
    }
    let qualified = if a.api_group.is_empty() {
        a.resource.clone()
    } else {
        format!("{}.{}", a.resource, a.api_group)
    };
    let message = match (qualified.is_empty(), a.name.is_empty()) {
        (true, _) => format!("forbidden: {msg}"),
        (false, true) => format!("{qualified} is forbidden: {msg}"),
        (false, false) => format!("{qualified} {:?} is forbidden: {msg}", a.name),
    };
    ApiError::forbidden(message).with_details(&a.api_group, &a.resource, &a.name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jane() -> UserInfo {
        UserInfo {
            name: "jane".into(),
            uid: String::new(),
            groups: vec![AUTHENTICATED_GROUP.into()],
        }
    }

    #[test]
    fn denials_read_like_kubernetes() {
        let a = Attributes::resource(&jane(), "list", "", "pods", "default", "");
        assert_eq!(
            forbidden(&a, "").message,
            r#"pods is forbidden: User "jane" cannot list resource "pods" in API group "" in the namespace "default""#
        );
        let a = Attributes::resource(&jane(), "get", "apps", "deployments", "", "web");
        assert_eq!(
            forbidden(&a, "").message,
            r#"deployments.apps "web" is forbidden: User "jane" cannot get resource "deployments" in API group "apps" at the cluster scope"#
        );
        let a = Attributes {
            user: jane(),
            verb: "get".into(),
            path: "/metrics".into(),
            ..Default::default()
        };
        assert_eq!(
            forbidden(&a, "").message,
            r#"forbidden: User "jane" cannot get path "/metrics""#
        );
    }

    #[tokio::test]
    async fn masters_bypass_and_no_opinion_forbids() {
        let deny = Authorizer::new(vec![]);
        let a = Attributes::resource(&jane(), "list", "", "pods", "default", "");
        assert!(!deny.authorize(&a).await.allowed());
        let mut admin = a.clone();
        admin.user.groups.push(MASTERS_GROUP.into());
        assert!(deny.authorize(&admin).await.allowed());
        let chain = Authorizer::new(vec![Mode::AlwaysDeny, Mode::AlwaysAllow]);
        assert_eq!(chain.authorize(&a).await.decision, Decision::Deny);
    }
}
