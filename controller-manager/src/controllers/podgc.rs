//! Pod garbage collection (Kubernetes' pkg/controller/podgc). Every `period` it
//! force-deletes (grace period 0):
//!
//! - terminated pods (Succeeded or Failed) beyond `--terminated-pod-gc-threshold`,
//!   evicted ones first, then oldest first;
//! - terminating pods on a node that is not Ready and carries the
//!   `node.kubernetes.io/out-of-service` taint;
//! - pods bound to a node that no longer exists, once the node has been missing for a
//!   quarantine period and a live GET confirms it (marked Failed with a
//!   `DisruptionTarget` condition first, as no kubelet will ever do it);
//! - terminating pods that were never scheduled.

use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};
use keelson_client::{Api, Client, DeleteParams, KubeObject, Patch, PatchParams, Preconditions};
use serde_json::json;

use crate::Context;

const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

/// How often the collector runs and how long a node must be missing before its pods
/// count as orphaned (Kubernetes: 20s and 40s).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub period: Duration,
    pub quarantine: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            period: Duration::from_secs(20),
            quarantine: Duration::from_secs(40),
        }
    }
}

pub async fn run(ctx: Context) {
    run_with(ctx, Timing::default()).await
}

/// [`run`] with other timing (tests shorten it).
pub async fn run_with(ctx: Context, timing: Timing) {
    let pods = ctx.informers.get::<Pod>();
    let nodes = ctx.informers.get::<Node>();
    pods.wait_for_sync().await;
    nodes.wait_for_sync().await;
    let threshold = ctx.options.terminated_pod_gc_threshold;
    // Nodes seen missing, and since when.
    let mut missing: HashMap<String, Instant> = HashMap::new();
    let mut tick = tokio::time::interval(timing.period);
    loop {
        tick.tick().await;
        let pods = pods.store().list();
        let nodes: HashMap<String, Arc<Node>> = nodes
            .store()
            .list()
            .into_iter()
            .map(|n| (n.name().to_string(), n))
            .collect();
        if threshold > 0 {
            gc_terminated(&ctx.client, &pods, threshold).await;
        }
        gc_terminating_out_of_service(&ctx.client, &pods, &nodes).await;
        gc_orphaned(&ctx.client, &pods, &nodes, &mut missing, timing.quarantine).await;
        gc_unscheduled_terminating(&ctx.client, &pods).await;
    }
}

fn is_terminated(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    !matches!(phase, None | Some("Pending" | "Running" | "Unknown"))
}

fn node_name(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or_default()
}

fn is_evicted(pod: &Pod) -> bool {
    let status = pod.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Failed")
        && status.and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// Evicted pods first, then by creation time, then by name.
fn deletion_order(a: &Pod, b: &Pod) -> Ordering {
    is_evicted(b)
        .cmp(&is_evicted(a))
        .then_with(|| {
            let t = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
            t(a).cmp(&t(b))
        })
        .then_with(|| a.name().cmp(b.name()))
}

async fn gc_terminated(client: &Client, pods: &[Arc<Pod>], threshold: usize) {
    let mut terminated: Vec<&Arc<Pod>> = pods.iter().filter(|p| is_terminated(p)).collect();
    if terminated.len() <= threshold {
        return;
    }
    let excess = terminated.len() - threshold;
    terminated.sort_by(|a, b| deletion_order(a, b));
    tracing::info!(count = excess, "garbage collecting terminated pods");
    join_all(
        terminated[..excess]
            .iter()
            .map(|p| mark_failed_and_delete(client, p, None)),
    )
    .await;
}

async fn gc_terminating_out_of_service(
    client: &Client,
    pods: &[Arc<Pod>],
    nodes: &HashMap<String, Arc<Node>>,
) {
    let out_of_service = |name: &str| {
        nodes.get(name).is_some_and(|n| {
            let ready = n
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            let tainted = n
                .spec
                .as_ref()
                .and_then(|s| s.taints.as_ref())
                .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT));
            !ready && tainted
        })
    };
    let mut victims: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && out_of_service(node_name(p)))
        .collect();
    victims.sort_by(|a, b| deletion_order(a, b));
    join_all(
        victims
            .into_iter()
            .map(|p| mark_failed_and_delete(client, p, None)),
    )
    .await;
}

async fn gc_orphaned(
    client: &Client,
    pods: &[Arc<Pod>],
    nodes: &HashMap<String, Arc<Node>>,
    missing: &mut HashMap<String, Instant>,
    quarantine: Duration,
) {
    let now = Instant::now();
    let wanted: HashSet<&str> = pods
        .iter()
        .map(|p| node_name(p))
        .filter(|n| !n.is_empty() && !nodes.contains_key(*n))
        .collect();
    missing.retain(|n, _| wanted.contains(n.as_str()));
    for n in &wanted {
        missing.entry(n.to_string()).or_insert(now);
    }
    // After the quarantine, ask the apiserver: the node cache may lag.
    let due: Vec<String> = missing
        .iter()
        .filter(|(_, since)| now.duration_since(**since) >= quarantine)
        .map(|(n, _)| n.clone())
        .collect();
    let node_api: Api<Node> = Api::all(client.clone());
    let mut deleted = HashSet::new();
    for name in due {
        match node_api.get_opt(&name).await {
            Ok(None) => {
                deleted.insert(name.clone());
                missing.remove(&name);
            }
            Ok(Some(_)) => {
                missing.remove(&name);
            }
            Err(e) => tracing::warn!(node = %name, error = %e, "checking a missing node failed"),
        }
    }
    let condition = json!({"type": "DisruptionTarget", "status": "True",
        "reason": "DeletionByPodGC", "message": "PodGC: node no longer exists"});
    let orphans = pods.iter().filter(|p| deleted.contains(node_name(p)));
    join_all(orphans.map(|p| {
        tracing::info!(pod = %p.key(), node = node_name(p), "deleting pod bound to a node that no longer exists");
        mark_failed_and_delete(client, p, Some(condition.clone()))
    }))
    .await;
}

async fn gc_unscheduled_terminating(client: &Client, pods: &[Arc<Pod>]) {
    let victims = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty());
    join_all(victims.map(|p| mark_failed_and_delete(client, p, None))).await;
}

/// Mark a pod that has not finished Failed (no kubelet will), then delete it with
/// grace period 0. Errors are logged: the next pass tries again.
async fn mark_failed_and_delete(client: &Client, pod: &Pod, condition: Option<serde_json::Value>) {
    let api: Api<Pod> = Api::namespaced(client.clone(), pod.namespace().unwrap_or_default());
    let name = pod.name();
    if !is_terminated(pod) {
        let mut status = json!({"phase": "Failed"});
        if let Some(mut c) = condition {
            c["lastTransitionTime"] = json!(jiff::Timestamp::now()
                .round(jiff::Unit::Second)
                .unwrap_or(jiff::Timestamp::now())
                .to_string());
            status["conditions"] = json!([c]);
        }
        let patch = Patch::Strategic(json!({ "status": status }));
        match api
            .patch_status(name, &PatchParams::default(), &patch)
            .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => return,
            Err(e) => {
                tracing::warn!(pod = %pod.key(), error = %e, "marking pod Failed before deleting it failed");
                return;
            }
        }
    }
    let force = DeleteParams::default()
        .grace_period(0)
        .preconditions(Preconditions {
            uid: pod.uid().map(str::to_string),
            resource_version: None,
        });
    match api.delete(name, &force).await {
        Ok(_) => tracing::info!(pod = %pod.key(), "pod garbage collector force-deleted pod"),
        Err(e) if e.is_not_found() => {}
        Err(e) => tracing::warn!(pod = %pod.key(), error = %e, "force-deleting pod failed"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, created: &str, phase: &str, reason: Option<&str>) -> Pod {
        serde_json::from_value(
            json!({"metadata": {"name": name, "creationTimestamp": created},
            "status": {"phase": phase, "reason": reason}}),
        )
        .unwrap()
    }

    #[test]
    fn evicted_first_then_oldest_then_by_name() {
        let mut pods = [
            pod("c", "2026-01-01T00:00:02Z", "Succeeded", None),
            pod("b", "2026-01-01T00:00:01Z", "Failed", None),
            pod("a", "2026-01-01T00:00:01Z", "Succeeded", None),
            pod("z", "2026-01-01T00:00:09Z", "Failed", Some("Evicted")),
        ];
        pods.sort_by(deletion_order);
        let names: Vec<&str> = pods.iter().map(|p| p.name()).collect();
        assert_eq!(names, ["z", "a", "b", "c"]);
        assert!(is_terminated(&pods[0]));
        assert!(!is_terminated(&pod(
            "r",
            "2026-01-01T00:00:00Z",
            "Running",
            None
        )));
    }
}
