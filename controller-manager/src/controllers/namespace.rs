//! Namespace deletion (Kubernetes' pkg/controller/namespace): a namespace with a
//! deletionTimestamp has everything in it deleted, kind by kind (deletecollection
//! with Background propagation, else a delete per object). The kinds are what
//! discovery says at each pass, as Kubernetes reads it on every attempt: every
//! namespaced kind that can be listed and deleted, custom resources included. While something is left (pods finishing their grace
//! period, objects with finalizers) the namespace is looked at again later; once
//! nothing is left, its `kubernetes` finalizer is removed through
//! `namespaces/<name>/finalize` and the apiserver removes it. The namespace's status
//! conditions say what is left and why, with Kubernetes' reasons and messages.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use keelson_client::runtime::HandlerFuncs;
use keelson_client::{
    Api, Client, DeleteParams, ListParams, Patch, PatchParams, PostParams, ServedResource,
};
use keelson_component::{Queue, Requeue};
use serde_json::{json, Value};

use crate::common::kinds;
use crate::Context;

/// The finalizer this controller owns (`spec.finalizers`, not `metadata.finalizers`).
const FINALIZER: &str = "kubernetes";
/// Kubernetes' `--concurrent-namespace-syncs` default.
const WORKERS: usize = 10;
/// How long to wait for objects held by finalizers before looking again.
const FINALIZER_ESTIMATE_SECONDS: i64 = 15;

pub async fn run(ctx: Context) {
    let informer = ctx.informers.get::<Namespace>();
    let queue: Queue<String> = Queue::new("namespace", &ctx.queue_metrics);
    let enqueue = {
        let q = queue.clone();
        move |ns: &Namespace| {
            if ns.metadata.deletion_timestamp.is_some() {
                q.add(ns.metadata.name.clone().unwrap_or_default());
            }
        }
    };
    let on_update = enqueue.clone();
    informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |ns: Arc<Namespace>| enqueue(&ns))
            .on_update(move |_, ns: Arc<Namespace>| on_update(&ns)),
    );
    informer.wait_for_sync().await;
    let client = ctx.client.clone();
    queue
        .run(WORKERS, move |name: String| {
            let client = client.clone();
            async move { sync(&client, &name).await }
        })
        .await;
}

async fn sync(client: &Client, name: &str) -> anyhow::Result<Requeue> {
    let api: Api<Namespace> = Api::all(client.clone());
    // The latest state, not the cache: other controllers edit terminating namespaces.
    let Some(ns) = api.get_opt(name).await? else {
        return Ok(None);
    };
    let Some(deleted_at) = ns.metadata.deletion_timestamp.clone() else {
        return Ok(None);
    };
    let status = ns.status.clone().unwrap_or_default();
    if status.phase.as_deref() != Some("Terminating") {
        let patch = Patch::Merge(json!({"status": {"phase": "Terminating"}}));
        api.patch_status(name, &PatchParams::default(), &patch)
            .await?;
    }
    let finalizers = ns
        .spec
        .as_ref()
        .and_then(|s| s.finalizers.clone())
        .unwrap_or_default();
    if !finalizers.iter().any(|f| f == FINALIZER) {
        return Ok(None);
    }

    let elapsed = jiff::Timestamp::now()
        .duration_since(deleted_at.0)
        .as_secs();
    let content = delete_all_content(client, name, elapsed).await;
    let old = serde_json::to_value(&status.conditions).unwrap_or(Value::Null);
    let conditions = conditions(
        old.as_array().map(Vec::as_slice).unwrap_or_default(),
        &content,
    );
    if conditions != old {
        let patch = Patch::Merge(json!({"status": {"conditions": conditions}}));
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &patch)
            .await
        {
            tracing::warn!(namespace = name, error = %e, "could not update the namespace's conditions");
        }
    }
    if let Some(e) = &content.discovery_failure {
        anyhow::bail!("discovery for namespace {name}: {e}");
    }
    if !content.errors.is_empty() {
        anyhow::bail!(
            "deleting the content of namespace {name}: {}",
            content.errors.join("; ")
        );
    }
    if content.estimate > 0 {
        tracing::debug!(
            namespace = name,
            estimate = content.estimate,
            "content remains; looking again later"
        );
        return Ok(Some(Duration::from_secs((content.estimate / 2 + 1) as u64)));
    }

    // Everything is gone: hand the namespace back to the apiserver.
    let rest: Vec<&String> = finalizers.iter().filter(|f| *f != FINALIZER).collect();
    let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name},
        "spec": {"finalizers": rest}});
    match api
        .replace_subresource::<_, Value>("finalize", name, &PostParams::default(), &body)
        .await
    {
        Err(e) if !e.is_not_found() => Err(e.into()),
        _ => {
            tracing::info!(namespace = name, "namespace content deleted; finalized");
            Ok(None)
        }
    }
}

/// What deleting a namespace's content left behind.
#[derive(Debug, Default)]
struct Content {
    /// Seconds until what is left should be gone (0: nothing to wait for).
    estimate: i64,
    /// Objects left by `resource.group`.
    remaining: BTreeMap<String, usize>,
    /// Objects left by finalizer.
    finalizers: BTreeMap<String, usize>,
    errors: Vec<String>,
    /// Discovery did not answer: nothing was deleted, and nothing is known to be gone.
    discovery_failure: Option<String>,
}

/// The kinds a namespace's deletion deletes: namespaced, and allowing list and delete
/// (each once, in its preferred version).
fn deletable(d: &keelson_client::Discovery) -> impl Iterator<Item = &ServedResource> {
    d.preferred()
        .filter(|r| r.resource.namespaced && r.supports(&["delete", "list"]))
}

async fn delete_all_content(client: &Client, ns: &str, elapsed_secs: i64) -> Content {
    let mut content = Content::default();
    let discovery = match client.discover().await {
        Ok(d) => d,
        Err(e) => {
            content.discovery_failure = Some(e.to_string());
            return content;
        }
    };
    for r in deletable(&discovery) {
        if let Err(e) = delete_kind(client, r, ns, elapsed_secs, &mut content).await {
            content.errors.push(e);
        }
    }
    content
}

/// Delete every `r` in `ns`, then count what is left (Kubernetes'
/// `deleteAllContentForGroupVersionResource`).
async fn delete_kind(
    client: &Client,
    served: &ServedResource,
    ns: &str,
    elapsed_secs: i64,
    content: &mut Content,
) -> Result<(), String> {
    let r = &served.resource;
    let gvr = format!("{}/{}, Resource={}", r.group, r.version, r.plural);
    let mut estimate = 0;
    if r.group.is_empty() && r.plural == "pods" {
        estimate = pod_grace_estimate(client, ns)
            .await
            .map_err(|e| e.to_string())?;
        // The namespace has been terminating longer than the pods may take.
        if elapsed_secs >= estimate {
            estimate = 0;
        }
    }
    let api = kinds::api(client, r, Some(ns));
    if served.supports(&["deletecollection"]) {
        api.delete_collection(&DeleteParams::background(), &ListParams::default())
            .await
            .map_err(|e| e.to_string())?;
    } else {
        for obj in api
            .list(&ListParams::default())
            .await
            .map_err(|e| e.to_string())?
            .items
        {
            let name = obj
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            match api.delete(name, &DeleteParams::background()).await {
                Err(e) if !e.is_not_found() => return Err(e.to_string()),
                _ => {}
            }
        }
    }
    let left = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items;
    if left.is_empty() {
        return Ok(());
    }
    *content
        .remaining
        .entry(format!("{}.{}", r.plural, r.group))
        .or_default() += left.len();
    let mut with_finalizers = false;
    for obj in &left {
        for f in obj
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            *content
                .finalizers
                .entry(f.as_str().unwrap_or_default().to_string())
                .or_default() += 1;
            with_finalizers = true;
        }
    }
    if estimate == 0 && with_finalizers {
        estimate = FINALIZER_ESTIMATE_SECONDS;
    }
    content.estimate = content.estimate.max(estimate);
    if estimate == 0 {
        // Nothing explains why it is still there.
        return Err(format!(
            "unexpected items still remain in namespace: {ns} for gvr: {gvr}"
        ));
    }
    Ok(())
}

/// The longest grace period of the namespace's pods that are still running.
async fn pod_grace_estimate(client: &Client, ns: &str) -> keelson_client::Result<i64> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    Ok(pods
        .list(&ListParams::default())
        .await?
        .iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|p| p.spec.as_ref()?.termination_grace_period_seconds)
        .max()
        .unwrap_or(0))
}

/// The condition types the namespace controller keeps, in order, with the reason and
/// message of their "nothing wrong" (False) state.
const CONDITIONS: [(&str, &str, &str); 5] = [
    (
        "NamespaceDeletionDiscoveryFailure",
        "ResourcesDiscovered",
        "All resources successfully discovered",
    ),
    (
        "NamespaceDeletionGroupVersionParsingFailure",
        "ParsedGroupVersions",
        "All legacy kube types successfully parsed",
    ),
    (
        "NamespaceDeletionContentFailure",
        "ContentDeleted",
        "All content successfully deleted, may be waiting on finalization",
    ),
    (
        "NamespaceContentRemaining",
        "ContentRemoved",
        "All content successfully removed",
    ),
    (
        "NamespaceFinalizersRemaining",
        "ContentHasNoFinalizers",
        "All content-preserving finalizers finished",
    ),
];

/// The conditions after this pass: `old` with each kept type set from `content`
/// (lastTransitionTime changes only when the status does).
fn conditions(old: &[Value], content: &Content) -> Value {
    let failing = |ty: &str| -> Option<(String, String)> {
        match ty {
            "NamespaceDeletionDiscoveryFailure" => {
                let e = content.discovery_failure.as_ref()?;
                Some((
                    "DiscoveryFailed".into(),
                    format!("Discovery failed for some groups, 1 failing: {e}"),
                ))
            }
            "NamespaceDeletionContentFailure" if !content.errors.is_empty() => {
                let mut msgs = content.errors.clone();
                msgs.sort();
                Some((
                    "ContentDeletionFailed".into(),
                    format!(
                        "Failed to delete all resource types, {} remaining: {}",
                        msgs.len(),
                        msgs.join(", ")
                    ),
                ))
            }
            "NamespaceContentRemaining" if !content.remaining.is_empty() => {
                let parts: Vec<String> = content
                    .remaining
                    .iter()
                    .map(|(r, n)| format!("{r} has {n} resource instances"))
                    .collect();
                Some((
                    "SomeResourcesRemain".into(),
                    format!("Some resources are remaining: {}", parts.join(", ")),
                ))
            }
            "NamespaceFinalizersRemaining" if !content.finalizers.is_empty() => {
                let parts: Vec<String> = content
                    .finalizers
                    .iter()
                    .map(|(f, n)| format!("{f} in {n} resource instances"))
                    .collect();
                Some((
                    "SomeFinalizersRemain".into(),
                    format!(
                        "Some content in the namespace has finalizers remaining: {}",
                        parts.join(", ")
                    ),
                ))
            }
            _ => None,
        }
    };
    let now = jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now());
    let mut out: Vec<Value> = old.to_vec();
    for (ty, ok_reason, ok_message) in CONDITIONS {
        let (status, reason, message) = match failing(ty) {
            Some((reason, message)) => ("True", reason, message),
            None => ("False", ok_reason.to_string(), ok_message.to_string()),
        };
        let new = json!({"type": ty, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": now.to_string()});
        match out.iter_mut().find(|c| c["type"] == ty) {
            None => out.push(new),
            Some(c) => {
                if c["status"] != status {
                    c["lastTransitionTime"] = new["lastTransitionTime"].clone();
                }
                c["status"] = json!(status);
                c["reason"] = json!(reason);
                c["message"] = json!(message);
            }
        }
    }
    Value::Array(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_say_what_is_left_like_kubernetes() {
        let content = Content {
            estimate: 30,
            remaining: BTreeMap::from([("pods.".into(), 2), ("widgets.example.com".into(), 1)]),
            finalizers: BTreeMap::from([("example.com/hold".into(), 1)]),
            ..Default::default()
        };
        let c = conditions(&[], &content);
        let by_type = |ty: &str| {
            c.as_array()
                .unwrap()
                .iter()
                .find(|x| x["type"] == ty)
                .unwrap()
                .clone()
        };
        assert_eq!(c.as_array().unwrap().len(), 5);
        let remaining = by_type("NamespaceContentRemaining");
        assert_eq!(remaining["status"], "True");
        assert_eq!(remaining["reason"], "SomeResourcesRemain");
        assert_eq!(
            remaining["message"],
            "Some resources are remaining: pods. has 2 resource instances, widgets.example.com has 1 resource instances"
        );
        assert_eq!(
            by_type("NamespaceFinalizersRemaining")["message"],
            "Some content in the namespace has finalizers remaining: example.com/hold in 1 resource instances"
        );
        assert_eq!(
            by_type("NamespaceDeletionContentFailure")["reason"],
            "ContentDeleted"
        );

        // Once everything is gone the same conditions turn False, keeping their order.
        let mut old = c.as_array().unwrap().clone();
        old[3]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        old[0]["lastTransitionTime"] = json!("2020-01-01T00:00:00Z");
        let done = conditions(&old, &Content::default());
        let done = done.as_array().unwrap();
        assert_eq!(done[3]["type"], "NamespaceContentRemaining");
        assert_eq!(done[3]["status"], "False");
        assert_eq!(done[3]["reason"], "ContentRemoved");
        assert_ne!(
            done[3]["lastTransitionTime"], "2020-01-01T00:00:00Z",
            "status changed"
        );
        assert_eq!(
            done[0]["lastTransitionTime"], "2020-01-01T00:00:00Z",
            "status unchanged"
        );

        let failed = conditions(
            &[],
            &Content {
                errors: vec!["b".into(), "a".into()],
                ..Default::default()
            },
        );
        assert_eq!(
            failed[2]["message"],
            "Failed to delete all resource types, 2 remaining: a, b"
        );

        let undiscovered = conditions(
            &[],
            &Content {
                discovery_failure: Some("unavailable".into()),
                ..Default::default()
            },
        );
        assert_eq!(undiscovered[0]["status"], "True");
        assert_eq!(undiscovered[0]["reason"], "DiscoveryFailed");
        assert_eq!(
            undiscovered[0]["message"],
            "Discovery failed for some groups, 1 failing: unavailable"
        );
    }

    #[test]
    fn namespaced_deletable_kinds_are_deleted_custom_resources_included() {
        let all = [
            "create",
            "delete",
            "deletecollection",
            "get",
            "list",
            "patch",
            "update",
            "watch",
        ];
        let resource = |plural: &str, scope: &str, verbs: &[&str]| json!({"resource": plural, "scope": scope, "responseKind": {"kind": "K"}, "verbs": verbs});
        let doc = json!({"kind": "APIGroupDiscoveryList", "items": [
            {"metadata": {"name": ""}, "versions": [{"version": "v1", "resources": [
                resource("pods", "Namespaced", &all),
                resource("nodes", "Cluster", &all),
                resource("bindings", "Namespaced", &["create"]),
            ]}]},
            {"metadata": {"name": "example.com"}, "versions": [
                {"version": "v2", "resources": [resource("widgets", "Namespaced", &all)]},
                {"version": "v1", "resources": [resource("widgets", "Namespaced", &all)]},
            ]},
        ]});
        let d =
            keelson_client::Discovery::from_aggregated(&serde_json::to_vec(&doc).unwrap()).unwrap();
        let kinds: Vec<String> = deletable(&d)
            .map(|r| format!("{}/{}", r.resource.api_version(), r.resource.plural))
            .collect();
        assert_eq!(kinds, ["v1/pods", "example.com/v2/widgets"]);
    }
}
