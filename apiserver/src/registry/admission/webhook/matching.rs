//! Which webhooks a request goes to: rules (operation, group, version, resource and
//! subresource, scope), then the object selector; the namespace selector needs the
//! namespace's labels, which the caller fetches only for hooks that got this far.
//! Follows Kubernetes' `rules.Matcher`, `namespace.Matcher` and `object.Matcher`.

use super::config::{Hook, Rule};
use super::{Attributes, Operation};
use keelson_apimachinery::selector::LabelSelector;
use serde_json::Value;

/// Requests for the webhook configurations themselves never go to webhooks, so a broken
/// webhook cannot keep an administrator from removing it (Kubernetes'
/// `IsExemptAdmissionConfigurationResource`).
pub fn exempt(attrs: &Attributes) -> bool {
    attrs.rt.group == "admissionregistration.k8s.io"
}

fn listed(values: &[String], v: &str) -> bool {
    values.iter().any(|x| x == "*" || x == v)
}

/// `res` or `res/sub` against a rule's resources (`*`, `res/*`, `*/sub`, `*/*`).
fn resource_listed(resources: &[String], resource: &str, subresource: &str) -> bool {
    resources.iter().any(|r| {
        let (res, sub) = r.split_once('/').unwrap_or((r, ""));
        (res == "*" || res == resource) && (sub == "*" || sub == subresource)
    })
}

fn scope_matches(scope: &str, attrs: &Attributes) -> bool {
    let is_namespaces = attrs.rt.group.is_empty() && attrs.rt.plural == "namespaces";
    match scope {
        "Cluster" => is_namespaces || !attrs.rt.namespaced,
        "Namespaced" => !is_namespaces && attrs.rt.namespaced,
        _ => true,
    }
}

/// Whether one rule covers the request. With `matchPolicy: Equivalent` a rule naming
/// another served version of the same group and resource also covers it (the object is
/// sent in the version it was written in: Keelson does not convert for webhooks).
pub fn rule_matches(rule: &Rule, attrs: &Attributes, equivalent: bool) -> bool {
    let rt = attrs.rt;
    let version_ok = listed(&rule.api_versions, rt.version)
        || (equivalent
            && rule
                .api_versions
                .iter()
                .any(|v| keelson_resources::find_version(rt.group, v, rt.plural).is_some()));
    listed(&rule.operations, attrs.operation.as_str())
        && listed(&rule.api_groups, rt.group)
        && version_ok
        && resource_listed(&rule.resources, rt.plural, attrs.subresource)
        && scope_matches(&rule.scope, attrs)
}

/// Whether `selector` matches the labels of `object` or of `old_object`.
pub fn object_selector_matches(
    selector: &LabelSelector,
    object: Option<&Value>,
    old_object: Option<&Value>,
) -> bool {
    selector.is_empty()
        || [object, old_object]
            .into_iter()
            .flatten()
            .any(|o| selector.matches_object(o))
}

/// What the namespace selector applies to: `None` when it is not consulted (an empty
/// selector, or a cluster-scoped resource other than namespaces), the namespace to look
/// up, or (for namespaces themselves) the labels of the object written.
pub enum NamespaceLabels<'a> {
    Skip,
    Lookup(&'a str),
    Own(&'a Value),
}

pub fn namespace_labels_needed<'a>(
    hook: &Hook,
    attrs: &'a Attributes<'_>,
    object: Option<&'a Value>,
) -> NamespaceLabels<'a> {
    if hook.namespace_selector.is_empty() {
        return NamespaceLabels::Skip;
    }
    let is_namespaces = attrs.rt.group.is_empty() && attrs.rt.plural == "namespaces";
    if is_namespaces {
        // Creating or updating a namespace: its new labels; deleting: its stored ones.
        let own = match attrs.operation {
            Operation::Delete => attrs.old_object,
            _ => object.or(attrs.old_object),
        };
        return match own {
            Some(o) => NamespaceLabels::Own(o),
            None => NamespaceLabels::Lookup(&attrs.name),
        };
    }
    if attrs.namespace.is_empty() {
        return NamespaceLabels::Skip;
    }
    NamespaceLabels::Lookup(&attrs.namespace)
}

/// Rules and object selector (everything but the namespace selector).
pub fn matches_without_namespace(hook: &Hook, attrs: &Attributes, object: Option<&Value>) -> bool {
    hook.rules
        .iter()
        .any(|r| rule_matches(r, attrs, hook.equivalent))
        && object_selector_matches(&hook.object_selector, object, attrs.old_object)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::UserInfo;
    use serde_json::json;

    fn rule(
        ops: &[&str],
        groups: &[&str],
        versions: &[&str],
        resources: &[&str],
        scope: &str,
    ) -> Rule {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect();
        Rule {
            operations: s(ops),
            api_groups: s(groups),
            api_versions: s(versions),
            resources: s(resources),
            scope: scope.into(),
        }
    }

    fn attrs<'a>(
        user: &'a UserInfo,
        op: Operation,
        group: &str,
        plural: &str,
        sub: &'a str,
        ns: &'a str,
    ) -> Attributes<'a> {
        Attributes {
            operation: op,
            rt: keelson_resources::find(group, plural).unwrap(),
            subresource: sub,
            namespace: ns.to_string(),
            name: "x".to_string(),
            user,
            dry_run: false,
            options: Value::Null,
            old_object: None,
        }
    }

    #[test]
    fn rules_match_operation_group_version_resource_and_scope() {
        let u = UserInfo::default();
        let pods = attrs(&u, Operation::Create, "", "pods", "", "default");
        let r = rule(&["CREATE"], &[""], &["v1"], &["pods"], "*");
        assert!(rule_matches(&r, &pods, false));
        assert!(!rule_matches(
            &rule(&["UPDATE"], &[""], &["v1"], &["pods"], "*"),
            &pods,
            false
        ));
        assert!(!rule_matches(
            &rule(&["*"], &["apps"], &["v1"], &["pods"], "*"),
            &pods,
            false
        ));
        assert!(!rule_matches(
            &rule(&["*"], &[""], &["v2"], &["pods"], "*"),
            &pods,
            false
        ));
        assert!(rule_matches(
            &rule(&["*"], &["*"], &["*"], &["*"], "Namespaced"),
            &pods,
            false
        ));
        assert!(!rule_matches(
            &rule(&["*"], &["*"], &["*"], &["*"], "Cluster"),
            &pods,
            false
        ));
        // A subresource matches `res/sub`, `res/*` and `*/*`, never the bare resource.
        let status = attrs(&u, Operation::Update, "", "pods", "status", "default");
        assert!(!rule_matches(
            &rule(&["*"], &[""], &["v1"], &["pods"], "*"),
            &status,
            false
        ));
        assert!(rule_matches(
            &rule(&["*"], &[""], &["v1"], &["pods/status"], "*"),
            &status,
            false
        ));
        assert!(rule_matches(
            &rule(&["*"], &[""], &["v1"], &["pods/*"], "*"),
            &status,
            false
        ));
        assert!(rule_matches(
            &rule(&["*"], &[""], &["v1"], &["*/*"], "*"),
            &status,
            false
        ));
        assert!(!rule_matches(
            &rule(&["*"], &[""], &["v1"], &["*"], "*"),
            &status,
            false
        ));
        // Namespaces are cluster-scoped for `scope`.
        let ns = attrs(&u, Operation::Create, "", "namespaces", "", "x");
        assert!(rule_matches(
            &rule(&["*"], &["*"], &["*"], &["*"], "Cluster"),
            &ns,
            false
        ));
        assert!(!rule_matches(
            &rule(&["*"], &["*"], &["*"], &["*"], "Namespaced"),
            &ns,
            false
        ));
    }

    #[test]
    fn equivalent_match_needs_a_served_version_of_the_same_resource() {
        let u = UserInfo::default();
        let deploy = attrs(&u, Operation::Create, "apps", "deployments", "", "default");
        let old = rule(&["*"], &["apps"], &["v1beta1"], &["deployments"], "*");
        // apps/v1beta1 is not served: no equivalent resource to match through.
        assert!(!rule_matches(&old, &deploy, true));
        assert!(rule_matches(
            &rule(&["*"], &["apps"], &["v1"], &["deployments"], "*"),
            &deploy,
            false
        ));
    }

    #[test]
    fn object_selector_matches_old_or_new_labels() {
        let sel = LabelSelector::from_object(&json!({"matchLabels": {"hook": "yes"}})).unwrap();
        let yes = json!({"metadata": {"labels": {"hook": "yes"}}});
        let no = json!({"metadata": {"labels": {"hook": "no"}}});
        assert!(object_selector_matches(&sel, Some(&yes), None));
        assert!(object_selector_matches(&sel, Some(&no), Some(&yes)));
        assert!(object_selector_matches(&sel, None, Some(&yes)));
        assert!(!object_selector_matches(&sel, Some(&no), None));
        assert!(object_selector_matches(
            &LabelSelector::everything(),
            Some(&no),
            None
        ));
    }

    #[test]
    fn webhook_configurations_are_exempt() {
        let u = UserInfo::default();
        let a = attrs(
            &u,
            Operation::Create,
            "admissionregistration.k8s.io",
            "validatingwebhookconfigurations",
            "",
            "",
        );
        assert!(exempt(&a));
        assert!(!exempt(&attrs(
            &u,
            Operation::Create,
            "",
            "configmaps",
            "",
            "d"
        )));
    }
}
