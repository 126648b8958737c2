//! The audit.k8s.io/v1 `Policy` (`--audit-policy-file`): which requests are logged, at
//! which level, and which stages are left out. Rules are tried in order and the first
//! that matches decides; a request no rule matches is not logged (level `None`), as in
//! Kubernetes' policy checker.

use crate::authz::Attributes;
use crate::registry::UserInfo;
use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How much of a request is logged; ordered, so `level >= Level::Request` reads well.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Level {
    None,
    Metadata,
    Request,
    RequestResponse,
}

/// The points in a request's life an event is written at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Stage {
    RequestReceived,
    ResponseStarted,
    ResponseComplete,
    Panic,
}

/// `resources` of a rule: a group, its resources (`pods`, `pods/log`, `*`, `*/status`,
/// `pods/*`) and optionally object names.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct GroupResources {
    pub group: String,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Rule {
    pub level: Level,
    #[serde(default)]
    pub users: Vec<String>,
    #[serde(default)]
    pub user_groups: Vec<String>,
    #[serde(default)]
    pub verbs: Vec<String>,
    #[serde(default)]
    pub resources: Vec<GroupResources>,
    /// `""` matches cluster-scoped resources.
    #[serde(default)]
    pub namespaces: Vec<String>,
    #[serde(default, rename = "nonResourceURLs")]
    pub non_resource_urls: Vec<String>,
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    /// Overrides the policy's `omitManagedFields` when set.
    #[serde(default)]
    pub omit_managed_fields: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub kind: String,
    #[serde(default)]
    pub rules: Vec<Rule>,
    /// Left out for every request, in addition to each rule's own.
    #[serde(default)]
    pub omit_stages: Vec<Stage>,
    #[serde(default)]
    pub omit_managed_fields: bool,
}

/// What the policy decided for one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub level: Level,
    pub omit_stages: Vec<Stage>,
    pub omit_managed_fields: bool,
}

impl Decision {
    pub fn omits(&self, stage: Stage) -> bool {
        self.omit_stages.contains(&stage)
    }
}

impl Policy {
    pub fn load(path: &Path) -> anyhow::Result<Policy> {
        let text = std::fs::read(path)
            .with_context(|| format!("reading audit policy {}", path.display()))?;
        Policy::parse(&text).with_context(|| format!("audit policy {}", path.display()))
    }

    /// A policy from YAML or JSON, checked as kube-apiserver checks it.
    pub fn parse(text: &[u8]) -> anyhow::Result<Policy> {
        let policy: Policy = serde_yaml::from_slice(text).context("decoding the policy")?;
        if policy.kind != "Policy" {
            bail!("kind must be Policy, not {:?}", policy.kind);
        }
        if policy.api_version != "audit.k8s.io/v1" {
            bail!(
                "apiVersion must be audit.k8s.io/v1, not {:?}",
                policy.api_version
            );
        }
        for (i, rule) in policy.rules.iter().enumerate() {
            rule.validate()
                .with_context(|| format!("rules[{i}] is invalid"))?;
        }
        Ok(policy)
    }

    /// The first matching rule's level and stages; `None` when no rule matches. `user`
    /// is who authenticated (`None` when authentication failed: then rules naming users
    /// or groups do not match); `a` says what the request asks.
    pub fn evaluate(&self, user: Option<&UserInfo>, a: &Attributes) -> Decision {
        for rule in &self.rules {
            if rule.matches(user, a) {
                let mut omit_stages = rule.omit_stages.clone();
                for s in &self.omit_stages {
                    if !omit_stages.contains(s) {
                        omit_stages.push(*s);
                    }
                }
                return Decision {
                    level: rule.level,
                    omit_stages,
                    omit_managed_fields: rule
                        .omit_managed_fields
                        .unwrap_or(self.omit_managed_fields),
                };
            }
        }
        Decision {
            level: Level::None,
            omit_stages: self.omit_stages.clone(),
            omit_managed_fields: self.omit_managed_fields,
        }
    }
}

impl Rule {
    fn validate(&self) -> anyhow::Result<()> {
        let resourceful = !self.resources.is_empty() || !self.namespaces.is_empty();
        if resourceful && !self.non_resource_urls.is_empty() {
            bail!("rules cannot apply to both regular resources and non-resource URLs");
        }
        for url in &self.non_resource_urls {
            if url.is_empty() {
                bail!("nonResourceURLs: empty URL");
            }
            if url.len() > 1 && !url.starts_with('/') {
                bail!("nonResourceURLs: {url:?} must start with /");
            }
            if url.trim_end_matches('*').contains('*') {
                bail!("nonResourceURLs: {url:?}: * is only allowed at the end");
            }
        }
        for gr in &self.resources {
            if gr.group.contains('/') {
                bail!("resources: group {:?} must not contain /", gr.group);
            }
            for r in &gr.resources {
                if r.is_empty() {
                    bail!("resources: empty resource in group {:?}", gr.group);
                }
                let wildcard = r == "*" || r.starts_with("*/") || r.ends_with("/*");
                if wildcard && !gr.resource_names.is_empty() {
                    bail!("resources: {r:?}: resourceNames require specific resources");
                }
            }
        }
        Ok(())
    }

    fn matches(&self, user: Option<&UserInfo>, a: &Attributes) -> bool {
        if !self.users.is_empty() && !user.is_some_and(|u| self.users.contains(&u.name)) {
            return false;
        }
        if !self.user_groups.is_empty()
            && !user.is_some_and(|u| u.groups.iter().any(|g| self.user_groups.contains(g)))
        {
            return false;
        }
        if !self.verbs.is_empty() && !self.verbs.contains(&a.verb) {
            return false;
        }
        if !self.namespaces.is_empty() || !self.resources.is_empty() {
            return self.matches_resource(a);
        }
        if !self.non_resource_urls.is_empty() {
            return !a.resource_request
                && self
                    .non_resource_urls
                    .iter()
                    .any(|spec| path_matches(&a.path, spec));
        }
        true
    }

    fn matches_resource(&self, a: &Attributes) -> bool {
        if !a.resource_request {
            return false;
        }
        if !self.namespaces.is_empty() && !self.namespaces.contains(&a.namespace) {
            return false;
        }
        if self.resources.is_empty() {
            return true;
        }
        let combined = if a.subresource.is_empty() {
            a.resource.clone()
        } else {
            format!("{}/{}", a.resource, a.subresource)
        };
        self.resources
            .iter()
            .filter(|gr| gr.group == a.api_group)
            .any(|gr| {
                if gr.resources.is_empty() {
                    return true;
                }
                if !gr.resource_names.is_empty() && !gr.resource_names.contains(&a.name) {
                    return false;
                }
                gr.resources.iter().any(|r| {
                    r == "*"
                        || *r == combined
                        || (!a.subresource.is_empty()
                            && r.strip_prefix("*/") == Some(a.subresource.as_str()))
                        || r.strip_suffix("/*") == Some(a.resource.as_str())
                })
            })
    }
}

/// A non-resource URL rule: exact, `*`, or a prefix ending in `*`.
fn path_matches(path: &str, spec: &str) -> bool {
    spec == "*"
        || spec == path
        || spec
            .strip_suffix('*')
            .is_some_and(|prefix| path.starts_with(prefix.trim_end_matches('*')))
}

/// The policy `keelson up` installs: Secrets, ConfigMaps and TokenReviews (whose bodies
/// carry credentials) at Metadata, nothing at RequestResponse, health checks, Events and
/// Leases (constant, high-volume traffic) not at all, everything else at Metadata;
/// RequestReceived is left out (ResponseComplete says all it says and more).
pub const DEFAULT_POLICY_YAML: &str = r#"apiVersion: audit.k8s.io/v1
kind: Policy
omitStages:
  - RequestReceived
rules:
  # Health and readiness probes: constant and uninteresting.
  - level: None
    nonResourceURLs:
      - /healthz*
      - /livez*
      - /readyz*
      - /version
  # Events and Leases are written all the time by components.
  - level: None
    resources:
      - group: ""
        resources: ["events"]
      - group: events.k8s.io
        resources: ["events"]
      - group: coordination.k8s.io
        resources: ["leases"]
  # Their bodies carry secrets and tokens: who touched them, never what they hold.
  - level: Metadata
    resources:
      - group: ""
        resources: ["secrets", "configmaps"]
      - group: authentication.k8s.io
        resources: ["tokenreviews"]
  - level: Metadata
"#;

/// [`DEFAULT_POLICY_YAML`], for `keelson up` to write next to its other configuration
/// and pass as `--audit-policy-file`.
pub fn default_policy_yaml() -> &'static str {
    DEFAULT_POLICY_YAML
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    fn resource(
        verb: &str,
        group: &str,
        resource: &str,
        sub: &str,
        ns: &str,
        name: &str,
    ) -> Attributes {
        let mut a = Attributes::resource(&UserInfo::default(), verb, group, resource, ns, name);
        a.subresource = sub.into();
        a
    }

    fn url(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            path: path.into(),
            ..Default::default()
        }
    }

    fn policy(yaml: &str) -> Policy {
        Policy::parse(format!("apiVersion: audit.k8s.io/v1\nkind: Policy\n{yaml}").as_bytes())
            .unwrap()
    }

    fn level(p: &Policy, u: Option<&UserInfo>, a: &Attributes) -> Level {
        p.evaluate(u, a).level
    }

    #[test]
    fn first_matching_rule_wins_and_no_match_is_none() {
        let p = policy(
            "rules:\n- level: RequestResponse\n  verbs: [create]\n- level: Request\n  verbs: [create, update]\n- level: Metadata\n  verbs: [get]\n",
        );
        let jane = user("jane", &[]);
        let a = |verb| resource(verb, "", "pods", "", "default", "p");
        assert_eq!(level(&p, Some(&jane), &a("create")), Level::RequestResponse);
        assert_eq!(level(&p, Some(&jane), &a("update")), Level::Request);
        assert_eq!(level(&p, Some(&jane), &a("get")), Level::Metadata);
        assert_eq!(level(&p, Some(&jane), &a("delete")), Level::None);
    }

    #[test]
    fn users_and_groups() {
        let p = policy(
            "rules:\n- level: None\n  users: [system:kube-proxy]\n- level: Request\n  userGroups: [system:nodes]\n- level: Metadata\n",
        );
        let a = resource("list", "", "pods", "", "", "");
        assert_eq!(
            level(&p, Some(&user("system:kube-proxy", &[])), &a),
            Level::None
        );
        assert_eq!(
            level(
                &p,
                Some(&user(
                    "system:node:n1",
                    &["system:nodes", "system:authenticated"]
                )),
                &a
            ),
            Level::Request
        );
        assert_eq!(
            level(&p, Some(&user("jane", &["dev"])), &a),
            Level::Metadata
        );
        // A failed authentication has no user: only rules without users or groups apply.
        let p = policy(
            "rules:\n- level: Request\n  userGroups: [system:unauthenticated]\n- level: Metadata\n",
        );
        assert_eq!(level(&p, None, &a), Level::Metadata);
        let p = policy("rules:\n- level: Request\n  users: [jane]\n");
        assert_eq!(level(&p, None, &a), Level::None);
    }

    #[test]
    fn resources_subresources_and_names() {
        let p = policy(
            r#"rules:
- level: RequestResponse
  resources:
  - group: ""
    resources: ["pods/log"]
- level: Request
  resources:
  - group: ""
    resources: ["*/status"]
- level: None
  resources:
  - group: ""
    resources: ["configmaps"]
    resourceNames: ["controller-leader"]
- level: Metadata
  resources:
  - group: apps
    resources: ["deployments/*"]
- level: Request
  resources:
  - group: ""
    resources: ["pods", "configmaps"]
"#,
        );
        let lv =
            |group, res, sub, name| level(&p, None, &resource("get", group, res, sub, "ns", name));
        assert_eq!(lv("", "pods", "log", "p"), Level::RequestResponse);
        assert_eq!(lv("", "pods", "status", "p"), Level::Request);
        assert_eq!(lv("", "pods", "", "p"), Level::Request);
        // A subresource is not its resource.
        assert_eq!(lv("", "pods", "exec", "p"), Level::None);
        assert_eq!(lv("", "configmaps", "", "controller-leader"), Level::None);
        assert_eq!(lv("", "configmaps", "", "other"), Level::Request);
        assert_eq!(lv("apps", "deployments", "scale", "d"), Level::Metadata);
        // `deployments/*` names the subresources only when the resource matches; the
        // group must match too.
        assert_eq!(lv("apps", "deployments", "", "d"), Level::Metadata);
        assert_eq!(lv("", "deployments", "", "d"), Level::None);
        assert_eq!(lv("apps", "replicasets", "", "r"), Level::None);

        let star = policy(
            "rules:\n- level: Request\n  resources:\n  - group: \"\"\n    resources: [\"*\"]\n",
        );
        assert_eq!(
            level(&star, None, &resource("get", "", "pods", "log", "ns", "p")),
            Level::Request
        );
        assert_eq!(
            level(
                &star,
                None,
                &resource("get", "apps", "deployments", "", "ns", "d")
            ),
            Level::None
        );
        // A group with no resources is the whole group.
        let group = policy("rules:\n- level: Request\n  resources:\n  - group: apps\n");
        assert_eq!(
            level(
                &group,
                None,
                &resource("list", "apps", "deployments", "", "", "")
            ),
            Level::Request
        );
        // Resource rules never match non-resource URLs.
        assert_eq!(level(&star, None, &url("get", "/api")), Level::None);
    }

    #[test]
    fn namespaces() {
        let p = policy(
            "rules:\n- level: Request\n  namespaces: [kube-system, \"\"]\n- level: Metadata\n",
        );
        let lv = |ns| level(&p, None, &resource("list", "", "pods", "", ns, ""));
        assert_eq!(lv("kube-system"), Level::Request);
        // "" is cluster scope.
        assert_eq!(
            level(&p, None, &resource("get", "", "nodes", "", "", "n")),
            Level::Request
        );
        assert_eq!(lv("default"), Level::Metadata);
        assert_eq!(level(&p, None, &url("get", "/healthz")), Level::Metadata);
    }

    #[test]
    fn non_resource_urls() {
        let p = policy(
            "rules:\n- level: None\n  nonResourceURLs: [/healthz*, /version]\n- level: Request\n  nonResourceURLs: [\"/apis/*\"]\n- level: Metadata\n",
        );
        assert_eq!(level(&p, None, &url("get", "/healthz")), Level::None);
        assert_eq!(level(&p, None, &url("get", "/healthz/etcd")), Level::None);
        assert_eq!(level(&p, None, &url("get", "/version")), Level::None);
        assert_eq!(level(&p, None, &url("get", "/version/x")), Level::Metadata);
        assert_eq!(level(&p, None, &url("get", "/apis/apps")), Level::Request);
        assert_eq!(level(&p, None, &url("get", "/api")), Level::Metadata);
        // URL rules never match resource requests.
        let only = policy("rules:\n- level: Request\n  nonResourceURLs: [\"*\"]\n");
        assert_eq!(
            level(&only, None, &resource("get", "", "pods", "", "a", "p")),
            Level::None
        );
        assert_eq!(
            level(&only, None, &url("post", "/anything")),
            Level::Request
        );
    }

    #[test]
    fn omit_stages_and_managed_fields() {
        let p = policy(
            "omitStages: [RequestReceived]\nomitManagedFields: true\nrules:\n- level: Request\n  verbs: [create]\n  omitStages: [ResponseStarted]\n  omitManagedFields: false\n- level: Metadata\n",
        );
        let d = p.evaluate(None, &resource("create", "", "pods", "", "a", ""));
        assert_eq!(d.level, Level::Request);
        assert!(d.omits(Stage::RequestReceived) && d.omits(Stage::ResponseStarted));
        assert!(!d.omits(Stage::ResponseComplete));
        assert!(!d.omit_managed_fields);
        let d = p.evaluate(None, &resource("get", "", "pods", "", "a", "p"));
        assert_eq!(d.level, Level::Metadata);
        assert_eq!(d.omit_stages, vec![Stage::RequestReceived]);
        assert!(d.omit_managed_fields);
        // No match: still the policy's stages.
        let none = policy("omitStages: [ResponseStarted]\nrules: []\n");
        let d = none.evaluate(None, &url("get", "/"));
        assert_eq!(
            (d.level, d.omit_stages),
            (Level::None, vec![Stage::ResponseStarted])
        );
    }

    #[test]
    fn json_and_invalid_policies() {
        let p = Policy::parse(
            br#"{"apiVersion":"audit.k8s.io/v1","kind":"Policy","rules":[{"level":"Metadata","nonResourceURLs":["/api*"]}]}"#,
        )
        .unwrap();
        assert_eq!(level(&p, None, &url("get", "/apis")), Level::Metadata);
        for bad in [
            "apiVersion: audit.k8s.io/v1beta1\nkind: Policy\n",
            "apiVersion: audit.k8s.io/v1\nkind: Pod\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Everything\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- verbs: [get]\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nomitStages: [Sometimes]\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/a*b]\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  nonResourceURLs: [/a]\n  namespaces: [x]\n",
            "apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: None\n  resources:\n  - resources: [\"*\"]\n    resourceNames: [x]\n",
        ] {
            assert!(Policy::parse(bad.as_bytes()).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_default_policy() {
        let p = Policy::parse(DEFAULT_POLICY_YAML.as_bytes()).unwrap();
        let admin = user("admin", &["system:masters"]);
        let lv = |a: &Attributes| p.evaluate(Some(&admin), a);
        for (group, res) in [
            ("", "secrets"),
            ("", "configmaps"),
            ("authentication.k8s.io", "tokenreviews"),
        ] {
            for verb in ["create", "get", "list", "update", "patch", "delete"] {
                assert_eq!(
                    lv(&resource(verb, group, res, "", "default", "x")).level,
                    Level::Metadata
                );
            }
        }
        for (group, res) in [
            ("", "events"),
            ("events.k8s.io", "events"),
            ("coordination.k8s.io", "leases"),
        ] {
            assert_eq!(
                lv(&resource("update", group, res, "", "kube-system", "x")).level,
                Level::None
            );
        }
        for path in ["/healthz", "/livez", "/readyz", "/readyz/etcd", "/version"] {
            assert_eq!(lv(&url("get", path)).level, Level::None, "{path}");
        }
        let d = lv(&resource(
            "create",
            "apps",
            "deployments",
            "",
            "default",
            "d",
        ));
        assert_eq!(d.level, Level::Metadata);
        assert_eq!(d.omit_stages, vec![Stage::RequestReceived]);
        assert_eq!(lv(&url("get", "/api")).level, Level::Metadata);
    }
}
