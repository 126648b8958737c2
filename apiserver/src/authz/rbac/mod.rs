//! The RBAC authorizer: a request is allowed when a rule of a role bound to its user
//! allows it (ClusterRoleBindings anywhere; RoleBindings in the request's namespace).
//! Roles and bindings are kept in memory from the watch cache ([`follow`]).
//!
//! - [`rule`]: one rule's semantics, coverage and printing.
//! - [`escalation`]: a user may only write roles and bindings granting what they hold.
//! - [`defaults`]: the roles and bindings Kubernetes bootstraps, reconciled at start.

pub mod defaults;
pub mod escalation;
pub mod rule;

use super::follow::{self, Loaded, Sink};
use super::{Attributes, Verdict};
use crate::registry::UserInfo;
use crate::storage::Storage;
use crate::watch_cache::WatchCache;
use rule::Rule;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

const CLUSTER_ROLES: &str = "/registry/rbac.authorization.k8s.io/clusterroles/";
const ROLES: &str = "/registry/rbac.authorization.k8s.io/roles/";
const CLUSTER_ROLE_BINDINGS: &str = "/registry/rbac.authorization.k8s.io/clusterrolebindings/";
const ROLE_BINDINGS: &str = "/registry/rbac.authorization.k8s.io/rolebindings/";

/// A role's rules, parsed once per change.
struct Role {
    rules: Arc<Vec<Rule>>,
}

/// A binding: to which role, for whom.
struct Binding {
    name: String,
    role_kind: String,
    role_name: String,
    subjects: Vec<Subject>,
}

struct Subject {
    kind: String,
    name: String,
    namespace: String,
}

#[derive(Default)]
struct Policy {
    cluster_roles: HashMap<String, Role>,
    /// (namespace, name).
    roles: HashMap<(String, String), Role>,
    cluster_role_bindings: BTreeMap<String, Binding>,
    /// namespace → name → binding.
    role_bindings: HashMap<String, BTreeMap<String, Binding>>,
}

fn binding(name: &str, obj: &Value) -> Binding {
    Binding {
        name: name.to_string(),
        role_kind: obj["roleRef"]["kind"].as_str().unwrap_or("").to_string(),
        role_name: obj["roleRef"]["name"].as_str().unwrap_or("").to_string(),
        subjects: obj["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| Subject {
                kind: s["kind"].as_str().unwrap_or("").to_string(),
                name: s["name"].as_str().unwrap_or("").to_string(),
                namespace: s["namespace"].as_str().unwrap_or("").to_string(),
            })
            .collect(),
    }
}

impl Policy {
    fn put(&mut self, key: &str, obj: Option<&Arc<Value>>) {
        let split = |rest: &str| -> Option<(String, String)> {
            rest.split_once('/')
                .map(|(a, b)| (a.to_string(), b.to_string()))
        };
        if let Some(name) = key.strip_prefix(CLUSTER_ROLES) {
            match obj {
                Some(o) => {
                    let rules = Arc::new(Rule::all_from(o));
                    self.cluster_roles.insert(name.to_string(), Role { rules });
                }
                None => {
                    self.cluster_roles.remove(name);
                }
            }
        } else if let Some(name) = key.strip_prefix(CLUSTER_ROLE_BINDINGS) {
            match obj {
                Some(o) => {
                    self.cluster_role_bindings
                        .insert(name.to_string(), binding(name, o));
                }
                None => {
                    self.cluster_role_bindings.remove(name);
                }
            }
        } else if let Some((ns, name)) = key.strip_prefix(ROLES).and_then(split) {
            match obj {
                Some(o) => {
                    let rules = Arc::new(Rule::all_from(o));
                    self.roles.insert((ns, name), Role { rules });
                }
                None => {
                    self.roles.remove(&(ns, name));
                }
            }
        } else if let Some((ns, name)) = key.strip_prefix(ROLE_BINDINGS).and_then(split) {
            match obj {
                Some(o) => {
                    let b = binding(&name, o);
                    self.role_bindings.entry(ns).or_default().insert(name, b);
                }
                None => {
                    if let Some(m) = self.role_bindings.get_mut(&ns) {
                        m.remove(&name);
                    }
                }
            }
        }
    }
}

/// `appliesTo`: whether a binding's subject names this user.
fn applies_to(user: &UserInfo, s: &Subject, binding_namespace: &str) -> bool {
    match s.kind.as_str() {
        "User" => user.name == s.name,
        "Group" => user.groups.contains(&s.name),
        "ServiceAccount" => {
            let ns = if s.namespace.is_empty() {
                binding_namespace
            } else {
                &s.namespace
            };
            !ns.is_empty() && user.name == format!("system:serviceaccount:{ns}:{}", s.name)
        }
        _ => false,
    }
}

/// Where a rule came from, for the reason an allowed request is logged with.
pub struct Source<'a> {
    pub binding_kind: &'static str,
    pub binding: &'a str,
    pub binding_namespace: &'a str,
    pub role_kind: &'a str,
    pub role: &'a str,
}

impl std::fmt::Display for Source<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.binding_namespace.is_empty() {
            write!(
                f,
                "{} {:?} of {} {:?}",
                self.binding_kind, self.binding, self.role_kind, self.role
            )
        } else {
            write!(
                f,
                "{} \"{}/{}\" of {} {:?}",
                self.binding_kind, self.binding_namespace, self.binding, self.role_kind, self.role
            )
        }
    }
}

pub struct Rbac {
    policy: RwLock<Policy>,
    loaded: std::sync::OnceLock<Loaded>,
}

impl Sink for Rbac {
    fn prefixes(&self) -> &'static [&'static str] {
        &[CLUSTER_ROLES, ROLES, CLUSTER_ROLE_BINDINGS, ROLE_BINDINGS]
    }

    fn reset(&self, objects: Vec<(String, Arc<Value>)>) {
        let mut p = Policy::default();
        for (key, obj) in &objects {
            p.put(key, Some(obj));
        }
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = p;
    }

    fn apply(&self, key: &str, object: Option<&Arc<Value>>) {
        self.policy
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, object);
    }
}

impl Rbac {
    /// Load the policy and follow it.
    pub fn start(cache: Arc<WatchCache>, storage: Storage) -> Arc<Rbac> {
        let rbac = Arc::new(Rbac {
            policy: RwLock::default(),
            loaded: std::sync::OnceLock::new(),
        });
        let loaded = follow::follow(rbac.clone(), cache, storage);
        let _ = rbac.loaded.set(loaded);
        rbac
    }

    async fn ready(&self) {
        if let Some(l) = self.loaded.get() {
            l.wait().await;
        }
    }

    /// `VisitRulesFor`: every rule granted to `user` in `namespace` (cluster-wide
    /// ones included), until `visit` returns false. Errors are bindings whose role
    /// does not exist, worded as Kubernetes words them.
    fn visit(
        &self,
        user: &UserInfo,
        namespace: &str,
        mut visit: impl FnMut(&Source<'_>, &Rule) -> bool,
    ) -> Vec<String> {
        let p = self.policy.read().unwrap_or_else(|e| e.into_inner());
        let mut errors = Vec::new();
        for b in p.cluster_role_bindings.values() {
            if !b.subjects.iter().any(|s| applies_to(user, s, "")) {
                continue;
            }
            let Some(role) = p.cluster_roles.get(&b.role_name) else {
                errors.push(format!(
                    "clusterrole.rbac.authorization.k8s.io {:?} not found",
                    b.role_name
                ));
                continue;
            };
            let source = Source {
                binding_kind: "ClusterRoleBinding",
                binding: &b.name,
                binding_namespace: "",
                role_kind: "ClusterRole",
                role: &b.role_name,
            };
            for r in role.rules.iter() {
                if !visit(&source, r) {
                    return errors;
                }
            }
        }
        if namespace.is_empty() {
            return errors;
        }
        for b in p
            .role_bindings
            .get(namespace)
            .into_iter()
            .flatten()
            .map(|(_, b)| b)
        {
            if !b.subjects.iter().any(|s| applies_to(user, s, namespace)) {
                continue;
            }
            let role = if b.role_kind == "Role" {
                p.roles.get(&(namespace.to_string(), b.role_name.clone()))
            } else {
                p.cluster_roles.get(&b.role_name)
            };
            let Some(role) = role else {
                let what = if b.role_kind == "Role" {
                    "role"
                } else {
                    "clusterrole"
                };
                errors.push(format!(
                    "{what}.rbac.authorization.k8s.io {:?} not found",
                    b.role_name
                ));
                continue;
            };
            let source = Source {
                binding_kind: "RoleBinding",
                binding: &b.name,
                binding_namespace: namespace,
                role_kind: &b.role_kind,
                role: &b.role_name,
            };
            for r in role.rules.iter() {
                if !visit(&source, r) {
                    return errors;
                }
            }
        }
        errors
    }

    pub async fn authorize(&self, a: &Attributes) -> Verdict {
        self.ready().await;
        let mut allowed_by = None;
        let errors = self.visit(&a.user, &a.namespace, |source, rule| {
            if rule.allows(a) {
                allowed_by = Some(source.to_string());
                return false;
            }
            true
        });
        match allowed_by {
            Some(by) => Verdict::allow(format!("RBAC: allowed by {by}")),
            None if errors.is_empty() => Verdict::no_opinion(""),
            // Go's aggregate error: one error alone, several in brackets.
            None if errors.len() == 1 => Verdict::no_opinion(format!("RBAC: {}", errors[0])),
            None => Verdict::no_opinion(format!("RBAC: [{}]", errors.join(", "))),
        }
    }

    /// Every rule `user` holds in `namespace`, and the resolution errors.
    pub async fn rules_for(&self, user: &UserInfo, namespace: &str) -> (Vec<Rule>, Vec<String>) {
        self.ready().await;
        let mut rules = Vec::new();
        let errors = self.visit(user, namespace, |_, r| {
            rules.push(r.clone());
            true
        });
        (rules, errors)
    }

    /// A cluster role's rules, if it exists.
    pub fn cluster_role_rules(&self, name: &str) -> Option<Arc<Vec<Rule>>> {
        let p = self.policy.read().unwrap_or_else(|e| e.into_inner());
        p.cluster_roles.get(name).map(|r| r.rules.clone())
    }

    /// A namespaced role's rules, if it exists.
    pub fn role_rules(&self, namespace: &str, name: &str) -> Option<Arc<Vec<Rule>>> {
        let p = self.policy.read().unwrap_or_else(|e| e.into_inner());
        p.roles
            .get(&(namespace.to_string(), name.to_string()))
            .map(|r| r.rules.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn rbac(objects: Vec<(&str, Value)>) -> Rbac {
        let r = Rbac {
            policy: RwLock::default(),
            loaded: std::sync::OnceLock::new(),
        };
        r.reset(
            objects
                .into_iter()
                .map(|(k, v)| (k.to_string(), Arc::new(v)))
                .collect(),
        );
        r
    }

    #[tokio::test]
    async fn bindings_grant_their_roles_rules() {
        let r = rbac(vec![
            (
                "/registry/rbac.authorization.k8s.io/clusterroles/view",
                json!({"rules": [{"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]}]}),
            ),
            (
                "/registry/rbac.authorization.k8s.io/rolebindings/dev/jane-view",
                json!({"roleRef": {"kind": "ClusterRole", "name": "view"},
                       "subjects": [{"kind": "User", "name": "jane"}]}),
            ),
            (
                "/registry/rbac.authorization.k8s.io/rolebindings/dev/bot",
                json!({"roleRef": {"kind": "Role", "name": "missing"},
                       "subjects": [{"kind": "ServiceAccount", "name": "bot"}]}),
            ),
        ]);
        let jane = user("jane", &["system:authenticated"]);
        let a = Attributes::resource(&jane, "list", "", "pods", "dev", "");
        let v = r.authorize(&a).await;
        assert!(v.allowed());
        assert_eq!(
            v.reason,
            r#"RBAC: allowed by RoleBinding "dev/jane-view" of ClusterRole "view""#
        );
        let other_ns = Attributes::resource(&jane, "list", "", "pods", "prod", "");
        assert!(!r.authorize(&other_ns).await.allowed());
        let bot = user("system:serviceaccount:dev:bot", &[]);
        let v = r
            .authorize(&Attributes::resource(&bot, "get", "", "pods", "dev", "x"))
            .await;
        assert!(!v.allowed());
        assert_eq!(
            v.reason,
            r#"RBAC: role.rbac.authorization.k8s.io "missing" not found"#
        );
        r.apply(
            "/registry/rbac.authorization.k8s.io/rolebindings/dev/jane-view",
            None,
        );
        assert!(!r.authorize(&a).await.allowed());
    }
}
