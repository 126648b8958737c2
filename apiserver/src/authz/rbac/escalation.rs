//! Privilege-escalation prevention, as Kubernetes' RBAC storage does it: a user may
//! create or change a role only with rules they already hold (or the `escalate` verb
//! on it), and a binding only to a role whose rules they hold (or the `bind` verb on
//! it). A ClusterRole's `aggregationRule` can gather anything, so setting one takes
//! every permission. Members of `system:masters` are never checked.

use super::rule::{covers, Rule};
use crate::authz::{Attributes, Authorizer, MASTERS_GROUP};
use crate::registry::UserInfo;
use keelson_apimachinery::{meta, ApiError};
use keelson_resources::ResourceType;
use serde_json::Value;

const GROUP: &str = "rbac.authorization.k8s.io";

fn is_rbac(rt: &ResourceType, plural: &str) -> bool {
    rt.group == GROUP && rt.plural == plural
}

/// Whether a write of `rt` is one this module checks.
pub fn applies(rt: &ResourceType) -> bool {
    rt.group == GROUP
}

fn forbidden(rt: &ResourceType, name: &str, msg: &str) -> ApiError {
    ApiError::forbidden(format!(
        "{} {name:?} is forbidden: {msg}",
        rt.group_resource()
    ))
    .with_details(rt.group, rt.plural, name)
}

/// `ConfirmNoEscalation`'s message.
fn not_held(user: &UserInfo, missing: &[Rule], errors: &[String]) -> String {
    let mut lines: Vec<String> = missing.iter().map(Rule::compact_string).collect();
    lines.sort();
    lines.dedup();
    let groups: Vec<String> = user.groups.iter().map(|g| format!("{g:?}")).collect();
    let mut msg = format!(
        "user {:?} (groups=[{}]) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        groups.join(" "),
        lines.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(", ")));
    }
    msg
}

async fn confirm_no_escalation(
    authorizer: &Authorizer,
    user: &UserInfo,
    namespace: &str,
    wanted: &[Rule],
) -> Result<(), String> {
    let (owned, errors) = match authorizer.rbac() {
        Some(rbac) => rbac.rules_for(user, namespace).await,
        None => (Vec::new(), Vec::new()),
    };
    let (ok, missing) = covers(&owned, wanted);
    if ok {
        Ok(())
    } else {
        Err(not_held(user, &missing, &errors))
    }
}

/// Check a create (`old` is None) or update of a role or binding by `user`.
pub async fn check(
    authorizer: &Authorizer,
    rt: &ResourceType,
    obj: &Value,
    old: Option<&Value>,
    user: &UserInfo,
) -> Result<(), ApiError> {
    if user.groups.iter().any(|g| g == MASTERS_GROUP) {
        return Ok(());
    }
    let (ns, name) = (meta::namespace(obj), meta::name(obj));
    if is_rbac(rt, "roles") || is_rbac(rt, "clusterroles") {
        let unchanged = old.is_some_and(|o| {
            o["rules"] == obj["rules"] && o["aggregationRule"] == obj["aggregationRule"]
        });
        if unchanged {
            return Ok(());
        }
        let escalate = Attributes::resource(user, "escalate", GROUP, rt.plural, ns, name);
        if authorizer.authorize(&escalate).await.allowed() {
            return Ok(());
        }
        confirm_no_escalation(authorizer, user, ns, &Rule::all_from(obj))
            .await
            .map_err(|msg| forbidden(rt, name, &msg))?;
        let aggregates = obj
            .pointer("/aggregationRule/clusterRoleSelectors")
            .and_then(Value::as_array)
            .is_some_and(|s| !s.is_empty());
        if aggregates {
            let everything = [
                Rule {
                    verbs: vec!["*".into()],
                    api_groups: vec!["*".into()],
                    resources: vec!["*".into()],
                    ..Default::default()
                },
                Rule {
                    verbs: vec!["*".into()],
                    non_resource_urls: vec!["*".into()],
                    ..Default::default()
                },
            ];
            if confirm_no_escalation(authorizer, user, "", &everything)
                .await
                .is_err()
            {
                return Err(forbidden(
                    rt,
                    name,
                    "must have cluster-admin privileges to use the aggregationRule",
                ));
            }
        }
        return Ok(());
    }
    if is_rbac(rt, "rolebindings") || is_rbac(rt, "clusterrolebindings") {
        let unchanged =
            old.is_some_and(|o| o["roleRef"] == obj["roleRef"] && o["subjects"] == obj["subjects"]);
        if unchanged {
            return Ok(());
        }
        let role_kind = obj
            .pointer("/roleRef/kind")
            .and_then(Value::as_str)
            .unwrap_or("");
        let role_name = obj
            .pointer("/roleRef/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let role_plural = if role_kind == "Role" {
            "roles"
        } else {
            "clusterroles"
        };
        let bind = Attributes::resource(user, "bind", GROUP, role_plural, ns, role_name);
        if authorizer.authorize(&bind).await.allowed() {
            return Ok(());
        }
        let rules = authorizer.rbac().and_then(|rbac| {
            if role_kind == "Role" {
                rbac.role_rules(ns, role_name)
            } else {
                rbac.cluster_role_rules(role_name)
            }
        });
        let Some(rules) = rules else {
            let what = if role_kind == "Role" {
                "role"
            } else {
                "clusterrole"
            };
            return Err(forbidden(
                rt,
                name,
                &format!("{what}.rbac.authorization.k8s.io {role_name:?} not found"),
            ));
        };
        confirm_no_escalation(authorizer, user, ns, &rules)
            .await
            .map_err(|msg| forbidden(rt, name, &msg))?;
    }
    Ok(())
}
