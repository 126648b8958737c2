//! rbac.authorization.k8s.io/v1 Role, ClusterRole, RoleBinding, ClusterRoleBinding.
//!
//! Roles are lists of policy rules (verbs on resources in API groups, optionally by
//! name, or verbs on non-resource URLs for cluster roles); bindings grant a role to
//! users, groups and service accounts. Names are path segments (`system:node` is a
//! valid role name). A binding's `roleRef` never changes. Enforcing the rules, and
//! refusing roles and bindings that would escalate the writer's privileges, is the
//! apiserver's authorizer's job (`apiserver/src/authz`); a ClusterRole's
//! `aggregationRule` is filled in by the controller-manager's aggregation controller.

use crate::strategy::{name_age_columns, name_age_row, Strategy};
use crate::table::{Column, TableRow};
use crate::{ResourceType, Root, Typed};
use keelson_apimachinery::selector::LabelSelector;
use keelson_apimachinery::{validation, Cause};
use serde_json::{json, Value};

pub const GROUP: &str = "rbac.authorization.k8s.io";

const fn rbac(
    kind: &'static str,
    plural: &'static str,
    singular: &'static str,
    namespaced: bool,
    strategy: &'static dyn Strategy,
    typed: Typed,
) -> ResourceType {
    ResourceType {
        group: GROUP,
        version: "v1",
        kind,
        plural,
        singular,
        namespaced,
        short_names: &[],
        categories: &[],
        subresources: &[],
        strategy,
        typed: Some(typed),
        // Rules, subjects and aggregation selectors are atomic lists.
        merge: Some(Root::MetadataOnly),
    }
}

pub static ROLES: ResourceType = rbac(
    "Role",
    "roles",
    "role",
    true,
    &Roles { cluster: false },
    Typed::of::<k8s_openapi::api::rbac::v1::Role>(),
);
pub static CLUSTER_ROLES: ResourceType = rbac(
    "ClusterRole",
    "clusterroles",
    "clusterrole",
    false,
    &Roles { cluster: true },
    Typed::of::<k8s_openapi::api::rbac::v1::ClusterRole>(),
);
pub static ROLE_BINDINGS: ResourceType = rbac(
    "RoleBinding",
    "rolebindings",
    "rolebinding",
    true,
    &Bindings { cluster: false },
    Typed::of::<k8s_openapi::api::rbac::v1::RoleBinding>(),
);
pub static CLUSTER_ROLE_BINDINGS: ResourceType = rbac(
    "ClusterRoleBinding",
    "clusterrolebindings",
    "clusterrolebinding",
    false,
    &Bindings { cluster: true },
    Typed::of::<k8s_openapi::api::rbac::v1::ClusterRoleBinding>(),
);

struct Roles {
    cluster: bool,
}

fn non_empty(v: &Value) -> bool {
    v.as_array().is_some_and(|a| !a.is_empty())
}

/// `ValidatePolicyRule`.
fn validate_rule(rule: &Value, at: &str, namespaced: bool, out: &mut Vec<Cause>) {
    if !non_empty(&rule["verbs"]) {
        out.push(Cause::new(
            "FieldValueRequired",
            format!("{at}.verbs"),
            "Required value: verbs must contain at least one value",
        ));
    }
    let urls = &rule["nonResourceURLs"];
    if non_empty(urls) {
        if namespaced {
            out.push(Cause::invalid(
                format!("{at}.nonResourceURLs"),
                urls,
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if non_empty(&rule["apiGroups"])
            || non_empty(&rule["resources"])
            || non_empty(&rule["resourceNames"])
        {
            out.push(Cause::invalid(
                format!("{at}.nonResourceURLs"),
                urls,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if !non_empty(&rule["apiGroups"]) {
        out.push(Cause::new(
            "FieldValueRequired",
            format!("{at}.apiGroups"),
            "Required value: resource rules must supply at least one api group",
        ));
    }
    if !non_empty(&rule["resources"]) {
        out.push(Cause::new(
            "FieldValueRequired",
            format!("{at}.resources"),
            "Required value: resource rules must supply at least one resource",
        ));
    }
}

impl Strategy for Roles {
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::path_segment_name(name)
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        for (i, rule) in obj["rules"].as_array().into_iter().flatten().enumerate() {
            validate_rule(rule, &format!("rules[{i}]"), !self.cluster, &mut out);
        }
        if self.cluster {
            let selectors = obj.pointer("/aggregationRule/clusterRoleSelectors");
            for (i, sel) in selectors
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                let at = format!("aggregationRule.clusterRoleSelectors[{i}]");
                if let Err(causes) = LabelSelector::from_object_at(sel, &at) {
                    out.extend(causes);
                }
            }
        }
        out
    }
    // Tables: the default (NAME, CREATED AT), as Kubernetes' printer shows roles.
}

struct Bindings {
    cluster: bool,
}

const SUBJECT_KINDS: &[&str] = &["ServiceAccount", "User", "Group"];

fn validate_subject(subject: &Value, at: &str, cluster: bool, out: &mut Vec<Cause>) {
    let name = subject["name"].as_str().unwrap_or("");
    if name.is_empty() {
        out.push(Cause::required(format!("{at}.name")));
    }
    let group = subject["apiGroup"].as_str().unwrap_or("");
    match subject["kind"].as_str().unwrap_or("") {
        "ServiceAccount" => {
            if !group.is_empty() {
                out.push(Cause::not_supported(
                    format!("{at}.apiGroup"),
                    &json!(group),
                    &[""],
                ));
            }
            if !name.is_empty() {
                for msg in validation::dns1123_subdomain(name) {
                    out.push(Cause::invalid(format!("{at}.name"), &json!(name), msg));
                }
            }
            if cluster && subject["namespace"].as_str().unwrap_or("").is_empty() {
                out.push(Cause::required(format!("{at}.namespace")));
            }
        }
        "User" | "Group" => {
            if group != GROUP {
                out.push(Cause::not_supported(
                    format!("{at}.apiGroup"),
                    &json!(group),
                    &[GROUP],
                ));
            }
        }
        other => out.push(Cause::not_supported(
            format!("{at}.kind"),
            &json!(other),
            SUBJECT_KINDS,
        )),
    }
}

/// `Role/admin`, as kubectl's printer shows a binding's role.
fn role_cell(obj: &Value) -> Value {
    json!(format!(
        "{}/{}",
        obj.pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or(""),
        obj.pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("")
    ))
}

/// The subjects of one kind, comma-separated (`-o wide`).
fn subjects_cell(obj: &Value, kind: &str) -> Value {
    let names: Vec<String> = obj["subjects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|s| s["kind"] == kind)
        .map(|s| {
            let name = s["name"].as_str().unwrap_or("");
            match s["namespace"].as_str().filter(|n| !n.is_empty()) {
                Some(ns) if kind == "ServiceAccount" => format!("{ns}/{name}"),
                _ => name.to_string(),
            }
        })
        .collect();
    json!(names.join(", "))
}

impl Strategy for Bindings {
    fn validate_name(&self, name: &str) -> Vec<String> {
        validation::path_segment_name(name)
    }

    fn default(&self, obj: &mut Value) {
        // Kubernetes defaults a User or Group subject's apiGroup.
        if let Some(subjects) = obj.get_mut("subjects").and_then(Value::as_array_mut) {
            for s in subjects {
                let kind = s["kind"].as_str().unwrap_or("");
                let unset = s["apiGroup"].as_str().unwrap_or("").is_empty();
                if (kind == "User" || kind == "Group") && unset {
                    s["apiGroup"] = json!(GROUP);
                }
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<Cause> {
        let mut out = Vec::new();
        let role_ref = &obj["roleRef"];
        let group = role_ref["apiGroup"].as_str().unwrap_or("");
        if group != GROUP {
            out.push(Cause::not_supported(
                "roleRef.apiGroup",
                &json!(group),
                &[GROUP],
            ));
        }
        let kinds: &[&str] = if self.cluster {
            &["ClusterRole"]
        } else {
            &["Role", "ClusterRole"]
        };
        let kind = role_ref["kind"].as_str().unwrap_or("");
        if !kinds.contains(&kind) {
            out.push(Cause::not_supported("roleRef.kind", &json!(kind), kinds));
        }
        match role_ref["name"].as_str().unwrap_or("") {
            "" => out.push(Cause::required("roleRef.name")),
            name => {
                for msg in validation::path_segment_name(name) {
                    out.push(Cause::invalid("roleRef.name", &json!(name), msg));
                }
            }
        }
        for (i, s) in obj["subjects"].as_array().into_iter().flatten().enumerate() {
            validate_subject(s, &format!("subjects[{i}]"), self.cluster, &mut out);
        }
        out
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<Cause> {
        if new["roleRef"] != old["roleRef"] {
            return vec![Cause::invalid(
                "roleRef",
                &new["roleRef"],
                "cannot change roleRef",
            )];
        }
        Vec::new()
    }

    fn columns(&self) -> Vec<Column> {
        name_age_columns(vec![
            Column::new("Role", "string", "Role"),
            Column::new("Users", "string", "Users in the binding").wide(),
            Column::new("Groups", "string", "Groups in the binding").wide(),
            Column::new(
                "ServiceAccounts",
                "string",
                "ServiceAccounts in the binding",
            )
            .wide(),
        ])
    }

    fn row(&self, obj: &Value) -> TableRow {
        name_age_row(
            obj,
            vec![
                role_cell(obj),
                subjects_cell(obj, "User"),
                subjects_cell(obj, "Group"),
                subjects_cell(obj, "ServiceAccount"),
            ],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reasons(causes: &[Cause]) -> Vec<(String, String)> {
        causes
            .iter()
            .map(|c| (c.field.clone(), c.reason.clone()))
            .collect()
    }

    #[test]
    fn rules_need_verbs_and_resources_or_urls() {
        let role = json!({"rules": [
            {"apiGroups": [""], "resources": ["pods"], "verbs": []},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
            {"verbs": ["get"]},
        ]});
        let got = reasons(&ROLES.strategy.validate(&role));
        assert_eq!(
            got,
            [
                ("rules[0].verbs".into(), "FieldValueRequired".into()),
                (
                    "rules[1].nonResourceURLs".into(),
                    "FieldValueInvalid".into()
                ),
                ("rules[2].apiGroups".into(), "FieldValueRequired".into()),
                ("rules[2].resources".into(), "FieldValueRequired".into()),
            ]
        );
        // A cluster role may name URLs.
        let cluster = json!({"rules": [{"verbs": ["get"], "nonResourceURLs": ["/healthz"]}]});
        assert!(CLUSTER_ROLES.strategy.validate(&cluster).is_empty());
    }

    #[test]
    fn bindings_check_role_ref_and_subjects() {
        let mut b = json!({
            "roleRef": {"apiGroup": GROUP, "kind": "Role", "name": "r"},
            "subjects": [
                {"kind": "User", "name": "jane"},
                {"kind": "ServiceAccount", "name": "bot"},
                {"kind": "Robot", "name": "x"},
            ],
        });
        ROLE_BINDINGS.strategy.default(&mut b);
        assert_eq!(b["subjects"][0]["apiGroup"], GROUP);
        let got = reasons(&ROLE_BINDINGS.strategy.validate(&b));
        assert_eq!(
            got,
            [("subjects[2].kind".into(), "FieldValueNotSupported".into())]
        );
        // A cluster binding may not name a Role, and its accounts need a namespace.
        let got = reasons(&CLUSTER_ROLE_BINDINGS.strategy.validate(&b));
        assert!(got.contains(&("roleRef.kind".into(), "FieldValueNotSupported".into())));
        assert!(got.contains(&("subjects[1].namespace".into(), "FieldValueRequired".into())));
        let mut changed = b.clone();
        changed["roleRef"]["name"] = json!("other");
        assert_eq!(
            ROLE_BINDINGS.strategy.validate_update(&changed, &b)[0].message,
            "Invalid value: {\"apiGroup\":\"rbac.authorization.k8s.io\",\"kind\":\"Role\",\"name\":\"other\"}: cannot change roleRef"
        );
    }
}
