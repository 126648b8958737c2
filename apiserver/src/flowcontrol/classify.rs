//! Which FlowSchema a request matches, and so its priority level and flow
//! (`apf_filter`'s matching): schemas are tried by `matchingPrecedence` (then name);
//! a schema matches when one of its rules matches both a subject (user, group or
//! service account, `*` for any) and the request (resource rules: verb, API group,
//! resource with subresource, namespace or cluster scope; non-resource rules: verb and
//! URL, with `/*` suffix globs).

use crate::authz::Attributes;
use serde_json::Value;

/// `system:serviceaccount:<namespace>:<name>`.
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

/// How a schema tells flows apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Distinguisher {
    None,
    ByUser,
    ByNamespace,
}

/// One FlowSchema as the dispatcher uses it.
#[derive(Debug, Clone)]
pub struct Schema {
    pub name: String,
    pub uid: String,
    pub level: String,
    pub precedence: i64,
    pub distinguisher: Distinguisher,
    rules: Vec<Value>,
}

impl Schema {
    pub fn from_object(obj: &Value) -> Schema {
        let spec = &obj["spec"];
        Schema {
            name: obj["metadata"]["name"].as_str().unwrap_or("").to_string(),
            uid: obj["metadata"]["uid"].as_str().unwrap_or("").to_string(),
            level: spec["priorityLevelConfiguration"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            precedence: spec["matchingPrecedence"].as_i64().unwrap_or(1000),
            distinguisher: match spec["distinguisherMethod"]["type"].as_str() {
                Some("ByUser") => Distinguisher::ByUser,
                Some("ByNamespace") => Distinguisher::ByNamespace,
                _ => Distinguisher::None,
            },
            rules: spec["rules"].as_array().cloned().unwrap_or_default(),
        }
    }

    pub fn matches(&self, a: &Attributes) -> bool {
        self.rules.iter().any(|rule| {
            let subjects = list(rule, "subjects");
            if !subjects.iter().any(|s| subject_matches(s, a)) {
                return false;
            }
            if a.resource_request {
                list(rule, "resourceRules")
                    .iter()
                    .any(|r| resource_rule_matches(r, a))
            } else {
                list(rule, "nonResourceRules")
                    .iter()
                    .any(|r| non_resource_rule_matches(r, a))
            }
        })
    }

    /// The flow's distinguisher for a request this schema matched.
    pub fn flow_of(&self, a: &Attributes) -> String {
        match self.distinguisher {
            Distinguisher::None => String::new(),
            Distinguisher::ByUser => a.user.name.clone(),
            Distinguisher::ByNamespace => a.namespace.clone(),
        }
    }
}

fn list<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings<'a>(v: &'a Value, key: &str) -> impl Iterator<Item = &'a str> {
    list(v, key).iter().filter_map(Value::as_str)
}

fn has(v: &Value, key: &str, wanted: &str) -> bool {
    strings(v, key).any(|s| s == "*" || s == wanted)
}

fn subject_matches(s: &Value, a: &Attributes) -> bool {
    let user = &a.user;
    match s["kind"].as_str() {
        Some("User") => matches!(s["user"]["name"].as_str(), Some(n) if n == "*" || n == user.name),
        Some("Group") => match s["group"]["name"].as_str() {
            Some("*") => true,
            Some(g) => user.groups.iter().any(|ug| ug == g),
            None => false,
        },
        Some("ServiceAccount") => {
            let Some(rest) = user.name.strip_prefix(SERVICE_ACCOUNT_PREFIX) else {
                return false;
            };
            let Some((ns, name)) = rest.split_once(':') else {
                return false;
            };
            let sa = &s["serviceAccount"];
            sa["namespace"].as_str() == Some(ns)
                && matches!(sa["name"].as_str(), Some(n) if n == "*" || n == name)
        }
        _ => false,
    }
}

fn resource_rule_matches(r: &Value, a: &Attributes) -> bool {
    let resource = if a.subresource.is_empty() {
        a.resource.clone()
    } else {
        format!("{}/{}", a.resource, a.subresource)
    };
    if !has(r, "verbs", &a.verb)
        || !has(r, "apiGroups", &a.api_group)
        || !has(r, "resources", &resource)
    {
        return false;
    }
    if a.namespace.is_empty() {
        r["clusterScope"].as_bool().unwrap_or(false)
    } else {
        has(r, "namespaces", &a.namespace)
    }
}

fn url_matches(rule: &str, path: &str) -> bool {
    if rule == "*" || rule == path {
        return true;
    }
    match rule.strip_suffix('*') {
        Some(prefix) if rule.ends_with("/*") => {
            path.starts_with(prefix) || path == prefix.trim_end_matches('/')
        }
        _ => false,
    }
}

fn non_resource_rule_matches(r: &Value, a: &Attributes) -> bool {
    has(r, "verbs", &a.verb) && strings(r, "nonResourceURLs").any(|u| url_matches(u, &a.path))
}

/// The first schema (in precedence order) that matches, among those given.
pub fn classify<'a>(schemas: &'a [Schema], a: &Attributes) -> Option<&'a Schema> {
    schemas.iter().find(|s| s.matches(a))
}

/// Sort schemas the way they are tried.
pub fn sort(schemas: &mut [Schema]) {
    schemas.sort_by(|x, y| {
        x.precedence
            .cmp(&y.precedence)
            .then_with(|| x.name.cmp(&y.name))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::UserInfo;
    use axum::http::Method;

    fn defaults() -> Vec<Schema> {
        let mut all: Vec<Schema> = super::super::defaults::mandatory_schemas()
            .iter()
            .chain(super::super::defaults::suggested_schemas().iter())
            .map(Schema::from_object)
            .collect();
        sort(&mut all);
        all
    }

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        let mut g: Vec<String> = groups.iter().map(|s| s.to_string()).collect();
        g.push("system:authenticated".into());
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: g,
        }
    }

    fn classified(
        u: &UserInfo,
        method: Method,
        path: &str,
        query: &str,
    ) -> (String, String, String) {
        let a = crate::authz::request::attributes(u, &method, path, query);
        let all = defaults();
        let s = classify(&all, &a).expect("catch-all matches everyone");
        (s.name.clone(), s.level.clone(), s.flow_of(&a))
    }

    fn t(s: &str, l: &str, f: &str) -> (String, String, String) {
        (s.into(), l.into(), f.into())
    }

    #[test]
    fn default_schemas_place_requests_as_kubernetes_does() {
        let node = user("system:node:n1", &["system:nodes"]);
        // A node's Lease renewal and its status updates: node-high.
        assert_eq!(
            classified(
                &node,
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/n1",
                ""
            ),
            t("system-node-high", "node-high", "system:node:n1")
        );
        assert_eq!(
            classified(&node, Method::PATCH, "/api/v1/nodes/n1/status", ""),
            t("system-node-high", "node-high", "system:node:n1")
        );
        // Anything else a node asks (its pods, secrets): system.
        assert_eq!(
            classified(
                &node,
                Method::GET,
                "/api/v1/pods",
                "fieldSelector=spec.nodeName%3Dn1"
            ),
            t("system-nodes", "system", "system:node:n1")
        );
        // Admins are exempt.
        let admin = user("kubernetes-admin", &["system:masters"]);
        assert_eq!(
            classified(&admin, Method::GET, "/api/v1/pods", ""),
            t("exempt", "exempt", "")
        );
        // Probes by anyone are exempt; other non-resource requests are not.
        let anon = UserInfo {
            name: "system:anonymous".into(),
            uid: String::new(),
            groups: vec!["system:unauthenticated".into()],
        };
        assert_eq!(
            classified(&anon, Method::GET, "/readyz", ""),
            t("probes", "exempt", "")
        );
        assert_eq!(
            classified(&anon, Method::GET, "/version", ""),
            t("global-default", "global-default", "system:anonymous")
        );
        // Controllers: leader election, endpoints, then the rest by namespace.
        let kcm = user("system:kube-controller-manager", &[]);
        assert_eq!(
            classified(&kcm, Method::PUT, "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/kube-controller-manager", ""),
            t("system-leader-election", "leader-election", "system:kube-controller-manager")
        );
        assert_eq!(
            classified(
                &kcm,
                Method::PUT,
                "/api/v1/namespaces/web/endpoints/svc",
                ""
            ),
            t(
                "endpoint-controller",
                "workload-high",
                "system:kube-controller-manager"
            )
        );
        assert_eq!(
            classified(
                &kcm,
                Method::GET,
                "/apis/apps/v1/namespaces/web/deployments",
                ""
            ),
            t("kube-controller-manager", "workload-high", "web")
        );
        let sched = user("system:kube-scheduler", &[]);
        assert_eq!(
            classified(
                &sched,
                Method::POST,
                "/api/v1/namespaces/web/pods/p/binding",
                ""
            ),
            t("kube-scheduler", "workload-high", "web")
        );
        // Service accounts: kube-system's are workload-high, others workload-low.
        let ks = user(
            "system:serviceaccount:kube-system:replicaset-controller",
            &[
                "system:serviceaccounts",
                "system:serviceaccounts:kube-system",
            ],
        );
        assert_eq!(
            classified(&ks, Method::GET, "/api/v1/namespaces/web/pods", ""),
            t("kube-system-service-accounts", "workload-high", "web")
        );
        assert_eq!(
            classified(
                &ks,
                Method::PUT,
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x",
                ""
            ),
            t(
                "system-leader-election",
                "leader-election",
                "system:serviceaccount:kube-system:replicaset-controller"
            )
        );
        let sa = user(
            "system:serviceaccount:web:app",
            &["system:serviceaccounts", "system:serviceaccounts:web"],
        );
        assert_eq!(
            classified(&sa, Method::GET, "/api/v1/namespaces/web/pods", ""),
            t(
                "service-accounts",
                "workload-low",
                "system:serviceaccount:web:app"
            )
        );
        // Everyone else: global-default, one flow per user.
        let jane = user("jane", &["devs"]);
        assert_eq!(
            classified(&jane, Method::GET, "/api/v1/pods", ""),
            t("global-default", "global-default", "jane")
        );
    }

    #[test]
    fn rules_match_scope_verbs_and_urls() {
        assert!(url_matches("/healthz/*", "/healthz/etcd"));
        assert!(url_matches("/healthz/*", "/healthz"));
        assert!(!url_matches("/healthz", "/healthz/etcd"));
        assert!(url_matches("*", "/anything"));
        let rule = serde_json::json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"], "namespaces": ["a"]});
        let mut a = Attributes::resource(&user("u", &[]), "get", "", "pods", "a", "p");
        assert!(resource_rule_matches(&rule, &a));
        a.verb = "list".into();
        assert!(!resource_rule_matches(&rule, &a));
        a.verb = "get".into();
        a.namespace = String::new();
        assert!(!resource_rule_matches(&rule, &a), "not cluster scoped");
        a.namespace = "a".into();
        a.subresource = "log".into();
        assert!(!resource_rule_matches(&rule, &a), "pods/log is not pods");
    }
}
