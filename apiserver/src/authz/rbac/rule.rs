//! RBAC policy rules: whether one allows a request (`RuleAllows`), whether a set of
//! rules covers another (`Covers`, for escalation checks), and the compact form
//! Kubernetes prints missing rules in.

use crate::authz::Attributes;
use serde_json::{json, Value};

/// One `PolicyRule`, owned.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rule {
    pub verbs: Vec<String>,
    pub api_groups: Vec<String>,
    pub resources: Vec<String>,
    pub resource_names: Vec<String>,
    pub non_resource_urls: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

const ALL: &str = "*";

impl Rule {
    pub fn from_json(v: &Value) -> Rule {
        Rule {
            verbs: strings(&v["verbs"]),
            api_groups: strings(&v["apiGroups"]),
            resources: strings(&v["resources"]),
            resource_names: strings(&v["resourceNames"]),
            non_resource_urls: strings(&v["nonResourceURLs"]),
        }
    }

    /// The rules of a role object.
    pub fn all_from(role: &Value) -> Vec<Rule> {
        role["rules"]
            .as_array()
            .into_iter()
            .flatten()
            .map(Rule::from_json)
            .collect()
    }

    pub fn to_json(&self) -> Value {
        let mut v = json!({"verbs": self.verbs});
        for (field, list) in [
            ("apiGroups", &self.api_groups),
            ("resources", &self.resources),
            ("resourceNames", &self.resource_names),
            ("nonResourceURLs", &self.non_resource_urls),
        ] {
            if !list.is_empty() {
                v[field] = json!(list);
            }
        }
        v
    }

    /// `RuleAllows`: whether this rule grants the request.
    pub fn allows(&self, a: &Attributes) -> bool {
        if !has_or_all(&self.verbs, &a.verb) {
            return false;
        }
        if !a.resource_request {
            return url_matches(&self.non_resource_urls, &a.path);
        }
        has_or_all(&self.api_groups, &a.api_group)
            && resource_matches(&self.resources, &a.resource, &a.subresource)
            && (self.resource_names.is_empty() || self.resource_names.contains(&a.name))
    }

    /// `{APIGroups:["apps"], Resources:["deployments"], Verbs:["get"]}`, as
    /// `PolicyRule.CompactString` prints a rule (Go's `%q` of a string slice).
    pub fn compact_string(&self) -> String {
        let q = |list: &[String]| {
            let quoted: Vec<String> = list.iter().map(|s| format!("{s:?}")).collect();
            format!("[{}]", quoted.join(" "))
        };
        let mut parts = Vec::new();
        for (label, list) in [
            ("APIGroups", &self.api_groups),
            ("Resources", &self.resources),
            ("NonResourceURLs", &self.non_resource_urls),
            ("ResourceNames", &self.resource_names),
            ("Verbs", &self.verbs),
        ] {
            if !list.is_empty() {
                parts.push(format!("{label}:{}", q(list)));
            }
        }
        format!("{{{}}}", parts.join(", "))
    }
}

fn has_or_all(list: &[String], want: &str) -> bool {
    list.iter().any(|s| s == ALL || s == want)
}

/// `ResourceMatches`: `*`, the exact `resource[/subresource]`, or `*/subresource`.
fn resource_matches(rule_resources: &[String], resource: &str, subresource: &str) -> bool {
    let combined = if subresource.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}/{subresource}")
    };
    rule_resources.iter().any(|r| {
        r == ALL
            || *r == combined
            || (!subresource.is_empty() && r.strip_prefix("*/") == Some(subresource))
    })
}

/// `NonResourceURLMatches`: exact, `*`, or a prefix ending in `*`.
fn url_matches(urls: &[String], path: &str) -> bool {
    urls.iter().any(|u| {
        u == ALL
            || u == path
            || u.strip_suffix('*')
                .is_some_and(|prefix| path.starts_with(prefix))
    })
}

/// Whether `owner` rules grant everything `wanted` does (`validation.Covers`); the
/// uncovered parts, one verb/group/resource/name (or verb/URL) each.
pub fn covers(owner: &[Rule], wanted: &[Rule]) -> (bool, Vec<Rule>) {
    let mut missing = Vec::new();
    for rule in wanted {
        for atom in breakdown(rule) {
            if !owner.iter().any(|o| rule_covers(o, &atom)) {
                missing.push(atom);
            }
        }
    }
    (missing.is_empty(), missing)
}

/// `BreakdownRule`: one rule per verb × group × resource × name, and per verb × URL.
fn breakdown(rule: &Rule) -> Vec<Rule> {
    let one = |s: &String| vec![s.clone()];
    let mut out = Vec::new();
    for group in &rule.api_groups {
        for resource in &rule.resources {
            for verb in &rule.verbs {
                if rule.resource_names.is_empty() {
                    out.push(Rule {
                        api_groups: one(group),
                        resources: one(resource),
                        verbs: one(verb),
                        ..Default::default()
                    });
                }
                for name in &rule.resource_names {
                    out.push(Rule {
                        api_groups: one(group),
                        resources: one(resource),
                        resource_names: one(name),
                        verbs: one(verb),
                        ..Default::default()
                    });
                }
            }
        }
    }
    for url in &rule.non_resource_urls {
        for verb in &rule.verbs {
            out.push(Rule {
                non_resource_urls: one(url),
                verbs: one(verb),
                ..Default::default()
            });
        }
    }
    out
}

/// `ruleCovers` for one atomic `wanted` rule.
fn rule_covers(owner: &Rule, wanted: &Rule) -> bool {
    let all_in = |have: &[String], want: &[String]| {
        have.iter().any(|h| h == ALL) || want.iter().all(|w| have.contains(w))
    };
    let verbs = all_in(&owner.verbs, &wanted.verbs);
    let groups = all_in(&owner.api_groups, &wanted.api_groups);
    let resources = wanted
        .resources
        .iter()
        .all(|r| resource_covers(&owner.resources, r));
    let urls = wanted
        .non_resource_urls
        .iter()
        .all(|u| url_matches(&owner.non_resource_urls, u));
    let names = owner.resource_names.is_empty()
        || (!wanted.resource_names.is_empty()
            && wanted
                .resource_names
                .iter()
                .all(|n| owner.resource_names.contains(n)));
    verbs && groups && resources && urls && names
}

/// `resourceCoversAll` for one requested resource (maybe `pods/log`).
fn resource_covers(owner: &[String], wanted: &str) -> bool {
    if owner.iter().any(|r| r == ALL || r == wanted) {
        return true;
    }
    let Some((_, sub)) = wanted.split_once('/') else {
        return false;
    };
    owner.iter().any(|r| r.strip_prefix("*/") == Some(sub))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::UserInfo;

    fn rule(v: Value) -> Rule {
        Rule::from_json(&v)
    }

    fn req(verb: &str, group: &str, resource: &str, sub: &str, name: &str) -> Attributes {
        Attributes {
            user: UserInfo::default(),
            verb: verb.into(),
            resource_request: true,
            namespace: "default".into(),
            api_group: group.into(),
            api_version: "v1".into(),
            resource: resource.into(),
            subresource: sub.into(),
            name: name.into(),
            path: String::new(),
        }
    }

    #[test]
    fn rules_match_like_kubernetes() {
        let r = rule(json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods", "*/log"]}));
        assert!(r.allows(&req("get", "", "pods", "", "x")));
        assert!(r.allows(&req("get", "", "nodes", "log", "")));
        assert!(!r.allows(&req("get", "", "pods", "exec", "x")));
        assert!(!r.allows(&req("list", "", "pods", "", "")));
        assert!(!r.allows(&req("get", "apps", "pods", "", "x")));
        let named = rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["configmaps"], "resourceNames": ["a"]}),
        );
        assert!(named.allows(&req("update", "", "configmaps", "", "a")));
        assert!(!named.allows(&req("list", "", "configmaps", "", "")));
        let urls = rule(json!({"verbs": ["get"], "nonResourceURLs": ["/healthz", "/apis/*"]}));
        let mut a = req("get", "", "", "", "");
        a.resource_request = false;
        for (path, ok) in [("/healthz", true), ("/apis/apps", true), ("/api", false)] {
            a.path = path.into();
            assert_eq!(urls.allows(&a), ok, "{path}");
        }
    }

    #[test]
    fn covers_finds_what_is_missing() {
        let owner = vec![
            rule(json!({"verbs": ["get", "list"], "apiGroups": [""], "resources": ["pods"]})),
            rule(
                json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"]}),
            ),
        ];
        let wanted = vec![rule(
            json!({"verbs": ["get", "delete"], "apiGroups": [""], "resources": ["pods"]}),
        )];
        let (ok, missing) = covers(&owner, &wanted);
        assert!(!ok);
        assert_eq!(
            missing[0].compact_string(),
            r#"{APIGroups:[""], Resources:["pods"], Verbs:["delete"]}"#
        );
        let named = vec![rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"], "resourceNames": ["s"]}),
        )];
        assert!(covers(&owner, &named).0);
        let unnamed = vec![rule(
            json!({"verbs": ["get"], "apiGroups": [""], "resources": ["secrets"]}),
        )];
        assert!(!covers(&owner, &unnamed).0);
        let star = vec![rule(
            json!({"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}),
        )];
        assert!(covers(&star, &wanted).0);
    }
}
