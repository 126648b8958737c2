//! The roles and bindings Kubernetes bootstraps (its `bootstrappolicy`), plus what
//! Keelson's own components need, and their reconciliation at every apiserver start:
//! missing objects are created; existing ones annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` (the default) gain the rules,
//! subjects, labels and annotations they lack, and keep whatever an operator added.
//! An operator who sets the annotation to `"false"` owns the object.
//!
//! - [`cluster`]: cluster-wide roles (cluster-admin, admin/edit/view and their
//!   aggregation, `system:*`) and their bindings.
//! - [`controllers`]: one `system:controller:<name>` role per controller, for the
//!   controller-manager's `--use-service-account-credentials`.

pub mod cluster;
pub mod controllers;

use super::rule::{covers, Rule};
use crate::registry::{Registry, UserInfo, WriteOptions};
use keelson_resources::kinds::rbac::{CLUSTER_ROLES, CLUSTER_ROLE_BINDINGS, ROLES, ROLE_BINDINGS};
use keelson_resources::ResourceType;
use serde_json::{json, Map, Value};

pub const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";
pub const BOOTSTRAPPING_LABEL: (&str, &str) = ("kubernetes.io/bootstrapping", "rbac-defaults");

/// One rule of a default role, as static data.
pub struct R {
    pub verbs: &'static [&'static str],
    pub groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub names: &'static [&'static str],
    pub urls: &'static [&'static str],
}

/// `verbs` on `resources` in `groups`.
pub const fn r(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> R {
    R {
        verbs,
        groups,
        resources,
        names: &[],
        urls: &[],
    }
}

/// [`r`] restricted to objects of these names.
pub const fn named(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
) -> R {
    R {
        verbs,
        groups,
        resources,
        names,
        urls: &[],
    }
}

/// `verbs` on non-resource URLs.
pub const fn urls(verbs: &'static [&'static str], urls: &'static [&'static str]) -> R {
    R {
        verbs,
        groups: &[],
        resources: &[],
        names: &[],
        urls,
    }
}

pub const READ: &[&str] = &["get", "list", "watch"];
pub const READ_WRITE: &[&str] = &[
    "get",
    "list",
    "watch",
    "create",
    "update",
    "patch",
    "delete",
    "deletecollection",
];
pub const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
/// Events, as every component records them.
pub const EVENTS: R = r(
    &["create", "update", "patch"],
    &["", "events.k8s.io"],
    &["events"],
);

/// A default role: cluster-wide, or in `namespace`.
pub struct DefaultRole {
    pub name: &'static str,
    pub namespace: &'static str,
    pub labels: &'static [(&'static str, &'static str)],
    /// `aggregationRule.clusterRoleSelectors`, one `matchLabels` label each.
    pub aggregate_from: &'static [&'static str],
    pub rules: &'static [R],
}

/// A subject of a default binding.
pub enum S {
    User(&'static str),
    Group(&'static str),
    /// (namespace, name)
    ServiceAccount(&'static str, &'static str),
}

/// A default binding of a ClusterRole (or, with a namespace, of a Role).
pub struct DefaultBinding {
    pub name: &'static str,
    pub namespace: &'static str,
    pub role: &'static str,
    pub subjects: &'static [S],
}

impl R {
    pub fn to_rule(&self) -> Rule {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect();
        Rule {
            verbs: v(self.verbs),
            api_groups: v(self.groups),
            resources: v(self.resources),
            resource_names: v(self.names),
            non_resource_urls: v(self.urls),
        }
    }
}

fn meta(name: &str, namespace: &str, labels: &[(&str, &str)]) -> Value {
    let mut l = Map::new();
    l.insert(BOOTSTRAPPING_LABEL.0.into(), json!(BOOTSTRAPPING_LABEL.1));
    for (k, v) in labels {
        l.insert(k.to_string(), json!(v));
    }
    let mut m = json!({
        "name": name,
        "labels": l,
        "annotations": {AUTOUPDATE: "true"},
    });
    if !namespace.is_empty() {
        m["namespace"] = json!(namespace);
    }
    m
}

impl DefaultRole {
    pub fn to_object(&self) -> Value {
        let (api_kind, _) = self.kind();
        let mut obj = json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": api_kind,
            "metadata": meta(self.name, self.namespace, self.labels),
            "rules": self.rules.iter().map(|r| r.to_rule().to_json()).collect::<Vec<_>>(),
        });
        if !self.aggregate_from.is_empty() {
            let selectors: Vec<Value> = self
                .aggregate_from
                .iter()
                .map(|l| json!({"matchLabels": {*l: "true"}}))
                .collect();
            obj["aggregationRule"] = json!({"clusterRoleSelectors": selectors});
            obj["rules"] = json!([]);
        }
        obj
    }

    fn kind(&self) -> (&'static str, &'static ResourceType) {
        if self.namespace.is_empty() {
            ("ClusterRole", &CLUSTER_ROLES)
        } else {
            ("Role", &ROLES)
        }
    }
}

impl DefaultBinding {
    pub fn to_object(&self) -> Value {
        let (kind, role_kind) = if self.namespace.is_empty() {
            ("ClusterRoleBinding", "ClusterRole")
        } else {
            ("RoleBinding", "Role")
        };
        let subjects: Vec<Value> = self.subjects.iter().map(subject).collect();
        json!({
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": kind,
            "metadata": meta(self.name, self.namespace, &[]),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": role_kind, "name": self.role},
            "subjects": subjects,
        })
    }
}

fn subject(s: &S) -> Value {
    match s {
        S::User(n) => json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": n}),
        S::Group(n) => {
            json!({"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": n})
        }
        S::ServiceAccount(ns, n) => json!({"kind": "ServiceAccount", "namespace": ns, "name": n}),
    }
}

/// Every default role and binding.
pub fn roles() -> impl Iterator<Item = &'static DefaultRole> {
    cluster::ROLES.iter().chain(controllers::ROLES.iter())
}

pub fn bindings() -> impl Iterator<Item = &'static DefaultBinding> {
    cluster::BINDINGS.iter().chain(controllers::BINDINGS.iter())
}

/// The apiserver's own identity for its writes (the loopback client's).
fn apiserver_opts() -> WriteOptions {
    WriteOptions {
        field_manager: "keelson-apiserver".into(),
        user: UserInfo {
            name: "system:apiserver".into(),
            uid: String::new(),
            groups: vec!["system:masters".into()],
        },
        ..Default::default()
    }
}

fn autoupdate(existing: &Value) -> bool {
    existing
        .pointer(&format!(
            "/metadata/annotations/{}",
            AUTOUPDATE.replace('/', "~1")
        ))
        .and_then(Value::as_str)
        != Some("false")
}

/// Add to `existing` the labels and annotations of `wanted` it lacks.
fn merge_metadata(existing: &mut Value, wanted: &Value) -> bool {
    let mut changed = false;
    for field in ["labels", "annotations"] {
        let Some(want) = wanted["metadata"][field].as_object() else {
            continue;
        };
        let have = &mut existing["metadata"][field];
        if !have.is_object() {
            *have = json!({});
        }
        for (k, v) in want {
            if have.get(k).is_none() {
                have[k] = v.clone();
                changed = true;
            }
        }
    }
    changed
}

/// The reconciled form of an existing role, if it must change.
pub fn reconcile_role(existing: &Value, wanted: &Value) -> Option<Value> {
    if !autoupdate(existing) {
        return None;
    }
    let mut out = existing.clone();
    let mut changed = merge_metadata(&mut out, wanted);
    if let Some(want) = wanted["aggregationRule"]["clusterRoleSelectors"].as_array() {
        // Aggregated rules are the aggregation controller's; only selectors are ours.
        let have = out["aggregationRule"]["clusterRoleSelectors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut merged = have.clone();
        for s in want {
            if !merged.contains(s) {
                merged.push(s.clone());
            }
        }
        if merged != have {
            out["aggregationRule"] = json!({"clusterRoleSelectors": merged});
            changed = true;
        }
    } else {
        let have = Rule::all_from(existing);
        let mut rules: Vec<Value> = existing["rules"].as_array().cloned().unwrap_or_default();
        for want in Rule::all_from(wanted) {
            if !covers(&have, std::slice::from_ref(&want)).0 {
                rules.push(want.to_json());
                changed = true;
            }
        }
        out["rules"] = json!(rules);
    }
    changed.then_some(out)
}

/// What reconciling an existing binding takes.
#[derive(Debug, PartialEq)]
pub enum BindingChange {
    None,
    Update(Value),
    /// Its `roleRef` differs, which an update cannot change.
    Recreate,
}

/// How an existing binding must change to match the default.
pub fn reconcile_binding(existing: &Value, wanted: &Value) -> BindingChange {
    if !autoupdate(existing) {
        return BindingChange::None;
    }
    if existing["roleRef"] != wanted["roleRef"] {
        return BindingChange::Recreate;
    }
    let mut out = existing.clone();
    let mut changed = merge_metadata(&mut out, wanted);
    let mut subjects = existing["subjects"].as_array().cloned().unwrap_or_default();
    for s in wanted["subjects"].as_array().into_iter().flatten() {
        if !subjects.contains(s) {
            subjects.push(s.clone());
            changed = true;
        }
    }
    out["subjects"] = json!(subjects);
    if changed {
        BindingChange::Update(out)
    } else {
        BindingChange::None
    }
}

async fn ensure(
    registry: &Registry,
    rt: &'static ResourceType,
    wanted: Value,
    is_binding: bool,
) -> anyhow::Result<()> {
    let ns = wanted["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = wanted["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let opts = apiserver_opts();
    let existing = match registry.get(rt, &ns, &name).await {
        Ok(o) => o,
        Err(e) if e.code == 404 => {
            return match registry.create(rt, &ns, wanted, &opts).await {
                Ok(_) => Ok(()),
                Err(e) if e.code == 409 => Ok(()),
                Err(e) => Err(anyhow::anyhow!("creating {} {name}: {e}", rt.kind)),
            };
        }
        Err(e) => return Err(anyhow::anyhow!("reading {} {name}: {e}", rt.kind)),
    };
    let update = if is_binding {
        match reconcile_binding(&existing, &wanted) {
            BindingChange::None => None,
            BindingChange::Update(new) => Some(new),
            BindingChange::Recreate => {
                let delete = crate::registry::DeleteOptions::default();
                registry
                    .delete(rt, &ns, &name, &delete)
                    .await
                    .map_err(|e| anyhow::anyhow!("replacing {} {name}: {e}", rt.kind))?;
                registry
                    .create(rt, &ns, wanted, &opts)
                    .await
                    .map_err(|e| anyhow::anyhow!("replacing {} {name}: {e}", rt.kind))?;
                return Ok(());
            }
        }
    } else {
        reconcile_role(&existing, &wanted)
    };
    if let Some(new) = update {
        tracing::info!(kind = rt.kind, %name, "reconciling default RBAC policy");
        registry
            .update(rt, &ns, &name, "", new, &opts)
            .await
            .map_err(|e| anyhow::anyhow!("updating {} {name}: {e}", rt.kind))?;
    }
    Ok(())
}

/// Create or reconcile every default role and binding.
pub async fn reconcile(registry: &Registry) -> anyhow::Result<()> {
    for role in roles() {
        let (_, rt) = role.kind();
        ensure(registry, rt, role.to_object(), false).await?;
    }
    for b in bindings() {
        let rt = if b.namespace.is_empty() {
            &CLUSTER_ROLE_BINDINGS
        } else {
            &ROLE_BINDINGS
        };
        ensure(registry, rt, b.to_object(), true).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconciling_adds_and_keeps() {
        let view = cluster::ROLES
            .iter()
            .find(|r| r.name == "system:aggregate-to-view")
            .unwrap();
        let wanted = view.to_object();
        // An operator added a rule and dropped one of ours: ours comes back, theirs stays.
        let mut existing = wanted.clone();
        let theirs =
            json!({"verbs": ["get"], "apiGroups": ["example.com"], "resources": ["widgets"]});
        existing["rules"] = json!([theirs]);
        existing["metadata"]["labels"]["team"] = json!("ops");
        let out = reconcile_role(&existing, &wanted).unwrap();
        let rules = Rule::all_from(&out);
        assert!(rules.contains(&Rule::from_json(&theirs)));
        assert!(covers(&rules, &Rule::all_from(&wanted)).0);
        assert_eq!(out["metadata"]["labels"]["team"], "ops");
        assert!(reconcile_role(&out, &wanted).is_none());
        // autoupdate=false: left alone.
        existing["metadata"]["annotations"][AUTOUPDATE] = json!("false");
        assert!(reconcile_role(&existing, &wanted).is_none());
    }

    #[test]
    fn bindings_gain_subjects_and_recreate_on_role_change() {
        let b = cluster::BINDINGS
            .iter()
            .find(|b| b.name == "system:discovery")
            .unwrap();
        let wanted = b.to_object();
        let mut existing = wanted.clone();
        existing["subjects"] =
            json!([{"kind": "User", "name": "extra", "apiGroup": "rbac.authorization.k8s.io"}]);
        let BindingChange::Update(out) = reconcile_binding(&existing, &wanted) else {
            panic!("the binding should gain the default's subject");
        };
        assert_eq!(out["subjects"].as_array().unwrap().len(), 2);
        existing["roleRef"]["name"] = json!("other");
        assert_eq!(
            reconcile_binding(&existing, &wanted),
            BindingChange::Recreate
        );
    }

    #[test]
    fn every_default_role_is_valid() {
        for role in roles() {
            let obj = role.to_object();
            let (_, rt) = role.kind();
            let causes = rt.strategy.validate(&obj);
            assert!(causes.is_empty(), "{}: {causes:?}", role.name);
        }
        for b in bindings() {
            let obj = b.to_object();
            let rt = if b.namespace.is_empty() {
                &CLUSTER_ROLE_BINDINGS
            } else {
                &ROLE_BINDINGS
            };
            let causes = rt.strategy.validate(&obj);
            assert!(causes.is_empty(), "{}: {causes:?}", b.name);
        }
    }
}
