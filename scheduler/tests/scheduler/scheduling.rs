//! The scheduler against a real apiserver and etcd: binding, spreading, the
//! Unschedulable condition and FailedScheduling events with Kubernetes' messages,
//! resources, taints, anti-affinity.

use crate::support;

use std::collections::HashMap;

use serde_json::json;
use support::{condition, start};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn binds_and_spreads() {
    let env = start().await;
    for n in ["n1", "n2", "n3"] {
        env.add_node(n, "4", json!({})).await;
    }
    // Pods of one ReplicaSet, without requests: default spreading puts two per node.
    let owner = json!({"metadata": {"labels": {"app": "web"}, "ownerReferences": [{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web", "uid": "4a6f7e59-0000-4000-8000-000000000001",
        "controller": true}]}});
    for i in 0..6 {
        env.add_pod(&format!("web-{i}"), "", owner.clone()).await;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        *per_node
            .entry(env.bound(&format!("web-{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|n| *n == 2), "{per_node:?}");

    // The binding set PodScheduled=True.
    let p = env.pod("web-0").await;
    assert_eq!(condition(&p, "PodScheduled").unwrap().0, "True");

    // Pods with requests spread by what is left.
    for i in 0..3 {
        env.add_pod(&format!("big-{i}"), "3", json!({})).await;
    }
    let mut nodes: Vec<String> = Vec::new();
    for i in 0..3 {
        nodes.push(env.bound(&format!("big-{i}")).await);
    }
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);

    // Counted when the binding call returns, which may be after the pod shows bound.
    support::eventually("9 scheduled in the metrics", || async {
        let metrics = env.metrics();
        (metrics.contains(
            "scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 9",
        ) && metrics.contains("scheduler_pending_pods{queue=\"active\"} 0"))
        .then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_selector_unschedulable_until_a_node_matches() {
    let env = start().await;
    for n in ["n1", "n2", "n3"] {
        env.add_node(n, "4", json!({})).await;
    }
    env.add_pod(
        "ssd",
        "100m",
        json!({"spec": {"nodeSelector": {"disk": "ssd"}}}),
    )
    .await;
    let expected = "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector. preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.";
    assert_eq!(env.unschedulable("ssd").await, expected);
    let events = support::eventually("a FailedScheduling event", || async {
        let e = env.failed_scheduling_events("ssd").await;
        (!e.is_empty()).then_some(e)
    })
    .await;
    let e = &events[0];
    assert_eq!(e.message.as_deref(), Some(expected));
    assert_eq!(e.type_.as_deref(), Some("Warning"));
    assert_eq!(e.reporting_component.as_deref(), Some("default-scheduler"));
    assert_eq!(
        e.source.as_ref().and_then(|s| s.component.as_deref()),
        Some("default-scheduler")
    );
    assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));

    // A matching label makes it schedulable at once (a Node update moves it).
    env.nodes()
        .patch(
            "n2",
            &Default::default(),
            &keelson_client::Patch::Merge(json!({"metadata": {"labels": {"disk": "ssd"}}})),
        )
        .await
        .unwrap();
    assert_eq!(env.bound("ssd").await, "n2");
    let p = env.pod("ssd").await;
    assert_eq!(condition(&p, "PodScheduled").unwrap().0, "True");
    assert!(env.metrics().contains(
        "scheduler_schedule_attempts_total{result=\"unschedulable\",profile=\"default-scheduler\"}"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_are_respected() {
    let env = start().await;
    env.add_node("n1", "2", json!({})).await;
    env.add_node("n2", "2", json!({})).await;
    for i in 0..6 {
        env.add_pod(&format!("p{i}"), "1", json!({})).await;
    }
    let pending: Vec<String> = support::eventually("4 bound and 2 unschedulable", || async {
        let mut bound = 0;
        let mut pending = Vec::new();
        for i in 0..6 {
            let p = env.pod(&format!("p{i}")).await;
            if support::node_of(&p).is_some() {
                bound += 1;
            } else if let Some((s, _, m)) = condition(&p, "PodScheduled") {
                if s == "False" {
                    pending.push(m);
                }
            }
        }
        (bound == 4 && pending.len() == 2).then_some(pending)
    })
    .await;
    for m in &pending {
        assert_eq!(
            m,
            "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: 2 No preemption victims found for incoming pod."
        );
    }
    // Deleting a bound pod frees room for one of the pending ones.
    for i in 0..6 {
        let name = format!("p{i}");
        if support::node_of(&env.pod(&name).await).is_some() {
            let dp = keelson_client::DeleteParams::default().grace_period(0);
            env.pods().delete(&name, &dp).await.unwrap();
            break;
        }
    }
    support::eventually("4 of the remaining 5 bound", || async {
        let list = env.pods().list(&Default::default()).await.ok()?;
        let bound = list
            .items
            .iter()
            .filter(|p| support::node_of(p).is_some())
            .count();
        (bound == 4 && list.items.len() == 5).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_and_tolerations() {
    let env = start().await;
    let taint =
        json!({"spec": {"taints": [{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]}});
    env.add_node("gpu-1", "4", taint.clone()).await;
    env.add_node("gpu-2", "4", taint).await;
    env.add_pod("plain", "100m", json!({})).await;
    assert_eq!(
        env.unschedulable("plain").await,
        "0/2 nodes are available: 2 node(s) had untolerated taint {dedicated: gpu}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    env.add_pod(
        "tolerant",
        "100m",
        json!({"spec": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]}}),
    )
    .await;
    assert!(env.bound("tolerant").await.starts_with("gpu-"));
    // An untainted node takes the plain pod.
    env.add_node("cpu-1", "4", json!({})).await;
    assert_eq!(env.bound("plain").await, "cpu-1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_anti_affinity_per_hostname() {
    let env = start().await;
    for n in ["n1", "n2", "n3"] {
        env.add_node(n, "4", json!({})).await;
    }
    let anti = json!({"metadata": {"labels": {"app": "db"}}, "spec": {"affinity": {"podAntiAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"app": "db"}}, "topologyKey": "kubernetes.io/hostname"}]}}}});
    for i in 0..4 {
        env.add_pod(&format!("db-{i}"), "100m", anti.clone()).await;
    }
    let (mut nodes, pending) = support::eventually("3 bound, 1 unschedulable", || async {
        let mut nodes = Vec::new();
        let mut pending = None;
        for i in 0..4 {
            let p = env.pod(&format!("db-{i}")).await;
            match support::node_of(&p) {
                Some(n) => nodes.push(n),
                None => {
                    pending = condition(&p, "PodScheduled")
                        .filter(|c| c.0 == "False")
                        .map(|c| c.2)
                }
            }
        }
        (nodes.len() == 3 && pending.is_some()).then_some((nodes, pending))
    })
    .await;
    nodes.sort();
    assert_eq!(nodes, ["n1", "n2", "n3"]);
    assert_eq!(
        pending.unwrap(),
        "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
    // A pod the others' anti-affinity selects cannot join them either.
    env.add_pod(
        "db-plain",
        "100m",
        json!({"metadata": {"labels": {"app": "db"}}}),
    )
    .await;
    assert_eq!(
        env.unschedulable("db-plain").await,
        "0/3 nodes are available: 3 node(s) didn't satisfy existing pods anti-affinity rules. preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod."
    );
}
