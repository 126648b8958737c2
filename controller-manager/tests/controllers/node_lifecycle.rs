//! Node IPAM and node lifecycle against a real apiserver and etcd: pod CIDRs handed out
//! once; a node whose Lease stops being renewed goes Unknown and gets the unreachable
//! taints; pods on it are evicted after their tolerationSeconds (or stay, tolerating for
//! ever) and marked not ready; the taints go when the node comes back.

use crate::support;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use keelson_client::{Api, Client, Patch, PatchParams, PostParams};
use keelson_controller_manager::ControllerManagerOptions;
use serde_json::json;
use support::{eventually_within, start_with};

/// Nodes are checked every 300 ms and go unknown after 3 s of silence.
fn options(controllers: &[&str]) -> ControllerManagerOptions {
    ControllerManagerOptions {
        node_monitor_grace_period: Duration::from_secs(3),
        node_monitor_period: Duration::from_millis(300),
        ..support::options(controllers)
    }
}

fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%S.%6fZ")
        .to_string()
}

/// A node with a Ready condition and a freshly renewed Lease, as a kubelet leaves them.
async fn register(client: &Client, name: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
        )
        .await
        .unwrap();
    heartbeat(client, name, "True").await;
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    leases
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": name},
                "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": now()}}))
            .unwrap(),
        )
        .await
        .unwrap();
}

/// What a kubelet does every few seconds: post its Ready status and renew its Lease.
async fn heartbeat(client: &Client, name: &str, ready: &str) {
    let nodes: Api<Node> = Api::all(client.clone());
    let t = jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string();
    nodes
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"conditions": [
                {"type": "Ready", "status": ready, "reason": "KubeletReady",
                 "lastHeartbeatTime": t, "lastTransitionTime": "2024-01-01T00:00:00Z"}]}})),
        )
        .await
        .unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let _ = leases
        .patch(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"renewTime": now()}})),
        )
        .await;
}

fn taints(node: &Node) -> Vec<(String, String)> {
    let mut t: Vec<_> = node
        .spec
        .iter()
        .flat_map(|s| s.taints.iter().flatten())
        .map(|t| (t.key.clone(), t.effect.clone()))
        .collect();
    t.sort();
    t
}

fn ready(node: &Node) -> Option<(String, Option<String>, Option<String>)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_get_distinct_pod_cidrs() {
    let (_cluster, client, _cm) = start_with(options(&["nodeipam"])).await;
    let nodes: Api<Node> = Api::all(client.clone());
    // One node already has a block: it is never handed out again.
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(
                json!({"metadata": {"name": "n0"}, "spec": {"podCIDR": "10.244.0.0/24"}}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    for name in ["n1", "n2", "n3"] {
        nodes
            .create(
                &PostParams::default(),
                &serde_json::from_value(json!({"metadata": {"name": name}})).unwrap(),
            )
            .await
            .unwrap();
    }
    let cidrs = eventually_within(Duration::from_secs(20), "pod CIDRs", || async {
        let mut cidrs = Vec::new();
        for name in ["n0", "n1", "n2", "n3"] {
            let spec = nodes.get(name).await.ok()?.spec?;
            let cidr = spec.pod_cidr?;
            assert_eq!(spec.pod_cidrs, Some(vec![cidr.clone()]));
            cidrs.push(cidr);
        }
        Some(cidrs)
    })
    .await;
    let distinct: HashSet<_> = cidrs.iter().collect();
    assert_eq!(distinct.len(), 4, "{cidrs:?}");
    for c in &cidrs {
        assert!(c.starts_with("10.244.") && c.ends_with(".0/24"), "{c}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_nodes_go_unknown_and_their_pods_are_evicted() {
    let (_cluster, client, _cm) = start_with(options(&["nodelifecycle"])).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    register(&client, "fresh").await;
    register(&client, "silent").await;
    register(&client, "sick").await;
    // The kubelets of "fresh" and "sick" keep posting (sick: not ready); the one of
    // "silent" has stopped.
    let beating = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                heartbeat(&client, "fresh", "True").await;
                heartbeat(&client, "sick", "False").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    for (name, seconds) in [("short", Some(2)), ("forever", None)] {
        let mut toleration = json!({"key": "node.kubernetes.io/unreachable",
            "operator": "Exists", "effect": "NoExecute"});
        if let Some(s) = seconds {
            toleration["tolerationSeconds"] = json!(s);
        }
        let pod = json!({"metadata": {"name": name}, "spec": {"nodeName": "silent",
            "tolerations": [toleration], "containers": [{"name": "c", "image": "pause"}]}});
        pods.create(
            &PostParams::default(),
            &serde_json::from_value(pod).unwrap(),
        )
        .await
        .unwrap();
        pods.patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"phase": "Running", "podIP": "10.0.0.9",
                "conditions": [{"type": "Ready", "status": "True"}]}})),
        )
        .await
        .unwrap();
    }

    let unknown_at = eventually_within(Duration::from_secs(15), "silent node Unknown", || async {
        let n = nodes.get("silent").await.ok()?;
        (ready(&n)
            == Some((
                "Unknown".into(),
                Some("NodeStatusUnknown".into()),
                Some("Kubelet stopped posting node status.".into()),
            )))
        .then(Instant::now)
    })
    .await;
    let silent = eventually_within(Duration::from_secs(10), "unreachable taints", || async {
        let n = nodes.get("silent").await.ok()?;
        (taints(&n)
            == vec![
                ("node.kubernetes.io/unreachable".into(), "NoExecute".into()),
                ("node.kubernetes.io/unreachable".into(), "NoSchedule".into()),
            ])
        .then_some(n)
    })
    .await;
    let no_execute = silent.spec.unwrap().taints.unwrap();
    let t = no_execute.iter().find(|t| t.effect == "NoExecute").unwrap();
    assert!(t.time_added.is_some(), "NoExecute taints carry timeAdded");
    let fresh = nodes.get("fresh").await.unwrap();
    assert_eq!(ready(&fresh).unwrap().0, "True");
    assert!(taints(&fresh).is_empty(), "{:?}", taints(&fresh));
    eventually_within(Duration::from_secs(10), "not-ready taints", || async {
        let n = nodes.get("sick").await.ok()?;
        (taints(&n)
            == vec![
                ("node.kubernetes.io/not-ready".into(), "NoExecute".into()),
                ("node.kubernetes.io/not-ready".into(), "NoSchedule".into()),
            ])
        .then_some(())
    })
    .await;

    // A NoExecute taint a pod does not tolerate at all evicts it at once; other
    // taints on the node are left as they are.
    let intolerant = json!({"metadata": {"name": "intolerant"}, "spec": {"nodeName": "fresh",
        "containers": [{"name": "c", "image": "pause"}]}});
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(intolerant).unwrap(),
    )
    .await
    .unwrap();
    nodes
        .patch(
            "fresh",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"taints": [
                {"key": "dedicated", "value": "db", "effect": "NoExecute"}]}})),
        )
        .await
        .unwrap();
    eventually_within(Duration::from_secs(10), "intolerant evicted", || async {
        let p = pods.get("intolerant").await.ok()?;
        p.metadata.deletion_timestamp.map(|_| ())
    })
    .await;
    let fresh = nodes.get("fresh").await.unwrap();
    assert_eq!(
        taints(&fresh),
        vec![("dedicated".into(), "NoExecute".into())]
    );

    // "short" goes after about 2 s; "forever" stays, marked not ready.
    eventually_within(Duration::from_secs(15), "short evicted", || async {
        let p = pods.get("short").await;
        match p {
            Err(e) if e.is_not_found() => Some(()),
            Ok(p) => p.metadata.deletion_timestamp.map(|_| ()),
            Err(_) => None,
        }
    })
    .await;
    assert!(
        unknown_at.elapsed() >= Duration::from_millis(1500),
        "evicted before its tolerationSeconds"
    );
    eventually_within(
        Duration::from_secs(10),
        "forever marked not ready",
        || async {
            let p = pods.get("forever").await.ok()?;
            let c = p.status?.conditions?;
            c.iter()
                .any(|c| c.type_ == "Ready" && c.status == "False")
                .then_some(())
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let forever = pods.get("forever").await.unwrap();
    assert!(forever.metadata.deletion_timestamp.is_none());

    // The kubelet comes back: Ready again, taints removed.
    beating.abort();
    let back = {
        let client = client.clone();
        tokio::spawn(async move {
            loop {
                heartbeat(&client, "silent", "True").await;
                heartbeat(&client, "fresh", "True").await;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        })
    };
    eventually_within(Duration::from_secs(15), "taints removed", || async {
        let n = nodes.get("silent").await.ok()?;
        (ready(&n)?.0 == "True" && taints(&n).is_empty()).then_some(())
    })
    .await;
    back.abort();
}
