//! ClusterRole aggregation (Kubernetes' pkg/controller/clusterroleaggregation): the
//! `rules` of a ClusterRole with an `aggregationRule` are the rules of every other
//! ClusterRole that one of its `clusterRoleSelectors` matches. Selectors are taken in
//! order, the roles each selects by name, and a rule already present is not added
//! again, so the result is stable; the role is updated only when it differs.
//!
//! Any ClusterRole change (labels, rules, a deletion) can change what an aggregated
//! role selects, so every change looks at every aggregating role, as Kubernetes does.

use std::sync::Arc;

use k8s_openapi::api::rbac::v1::{AggregationRule, ClusterRole, PolicyRule};
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, Client, PostParams};
use keelson_component::{Queue, Requeue};

use crate::common::owner::parse_selector;
use crate::Context;

pub async fn run(ctx: Context) {
    let informer = ctx.informers.get::<ClusterRole>();
    let queue: Queue<String> = Queue::new("clusterrole_aggregation", &ctx.queue_metrics);
    let store = informer.store();
    let enqueue_all = {
        let (queue, store) = (queue.clone(), store.clone());
        move || {
            for role in store.list() {
                if role.aggregation_rule.is_some() {
                    queue.add(role.metadata.name.clone().unwrap_or_default());
                }
            }
        }
    };
    let (on_add, on_update, on_delete) = (enqueue_all.clone(), enqueue_all.clone(), enqueue_all);
    informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |_: Arc<ClusterRole>| on_add())
            .on_update(move |_, _: Arc<ClusterRole>| on_update())
            .on_delete(move |_: Arc<ClusterRole>| on_delete()),
    );
    informer.wait_for_sync().await;
    let client = ctx.client.clone();
    queue
        .run(ctx.options.concurrent_syncs, move |name: String| {
            let (client, store) = (client.clone(), store.clone());
            async move { sync(&client, &store, &name).await }
        })
        .await;
}

async fn sync(client: &Client, store: &Store<ClusterRole>, name: &str) -> anyhow::Result<Requeue> {
    let Some(role) = store.get_by_name(None, name) else {
        return Ok(None);
    };
    let Some(rule) = &role.aggregation_rule else {
        return Ok(None);
    };
    let rules = aggregate(name, rule, &store.list());
    if role.rules.as_deref().unwrap_or_default() == rules.as_slice() {
        return Ok(None);
    }
    let mut updated = ClusterRole::clone(&role);
    updated.rules = Some(rules);
    // Conditioned on the cached resourceVersion: a conflict retries on a fresher cache.
    Api::<ClusterRole>::all(client.clone())
        .replace(name, &PostParams::default(), &updated)
        .await?;
    tracing::info!(clusterrole = name, "aggregated rules updated");
    Ok(None)
}

/// The rules `rule` gathers for the role `name` from `roles`.
pub fn aggregate(
    name: &str,
    rule: &AggregationRule,
    roles: &[Arc<ClusterRole>],
) -> Vec<PolicyRule> {
    let mut by_name: Vec<&ClusterRole> = roles.iter().map(Arc::as_ref).collect();
    by_name.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let mut out: Vec<PolicyRule> = Vec::new();
    for selector in rule.cluster_role_selectors.iter().flatten() {
        // An invalid selector selects nothing (the apiserver validates them).
        let Some(selector) = parse_selector(selector) else {
            continue;
        };
        for other in &by_name {
            if other.metadata.name.as_deref() == Some(name) {
                continue;
            }
            let labels = other.metadata.labels.as_ref();
            if !selector.matches_with(|k| labels?.get(k).map(String::as_str)) {
                continue;
            }
            for r in other.rules.iter().flatten() {
                if !out.contains(r) {
                    out.push(r.clone());
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn role(v: serde_json::Value) -> Arc<ClusterRole> {
        Arc::new(serde_json::from_value(v).unwrap())
    }

    #[test]
    fn union_in_selector_then_name_order_without_repeats() {
        let get = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        let list = json!({"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]});
        let edit = json!({"verbs": ["update"], "apiGroups": [""], "resources": ["pods"]});
        let roles = vec![
            role(
                json!({"metadata": {"name": "b", "labels": {"view": "true"}}, "rules": [list, get]}),
            ),
            role(json!({"metadata": {"name": "a", "labels": {"view": "true"}}, "rules": [get]})),
            role(json!({"metadata": {"name": "c", "labels": {"edit": "true"}}, "rules": [edit]})),
            role(json!({"metadata": {"name": "d", "labels": {"view": "false"}}, "rules": [edit]})),
        ];
        let rule: AggregationRule = serde_json::from_value(json!({"clusterRoleSelectors": [
            {"matchLabels": {"edit": "true"}},
            {"matchExpressions": [{"key": "view", "operator": "In", "values": ["true"]}]},
        ]}))
        .unwrap();
        let got = serde_json::to_value(aggregate("agg", &rule, &roles)).unwrap();
        assert_eq!(got, json!([edit, get, list]));
    }

    #[test]
    fn a_role_does_not_aggregate_itself() {
        let get = json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]});
        let roles = vec![role(json!({
            "metadata": {"name": "agg", "labels": {"view": "true"}},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"view": "true"}}]},
            "rules": [get],
        }))];
        let rule = roles[0].aggregation_rule.clone().unwrap();
        assert!(aggregate("agg", &rule, &roles).is_empty());
    }
}
