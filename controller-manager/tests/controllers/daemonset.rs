//! The DaemonSet controller against a real etcd and apiserver (`cargo build -p
//! keelson-apiserver` first). Nodes are plain Node objects; the test plays scheduler and
//! kubelet: it binds each pod to the node its affinity names, marks it Running and
//! Ready, and finishes graceful deletions.

use crate::support;

use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::{Binding, Node, ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use keelson_client::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::{mark_ready, poll, record_pod_events, set_phase, start};

const NS: &str = "default";
const HASH: &str = "controller-revision-hash";
const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

async fn create_node(nodes: &Api<Node>, name: &str, labels: Value, taints: Value) {
    let now = jiff::Timestamp::now().to_string();
    let node: Node = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": labels},
        "spec": {"taints": taints},
        "status": {"conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
            "message": "ready", "lastHeartbeatTime": now, "lastTransitionTime": now}]},
    }))
    .unwrap();
    nodes.create(&PostParams::default(), &node).await.unwrap();
}

fn daemonset(name: &str, template_spec: Value, strategy: Value) -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "DaemonSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {"metadata": {"labels": {"app": name}}, "spec": template_spec},
        }
    }))
    .unwrap()
}

/// The node named by a pod's `matchFields metadata.name In [node]` affinity.
fn affinity_node(pod: &Pod) -> Option<String> {
    let v = serde_json::to_value(pod).ok()?;
    let terms = v.pointer(
        "/spec/affinity/nodeAffinity/requiredDuringSchedulingIgnoredDuringExecution/nodeSelectorTerms",
    )?;
    let field = &terms[0]["matchFields"][0];
    (field["key"] == "metadata.name" && field["operator"] == "In")
        .then(|| field["values"][0].as_str().map(String::from))?
}

/// Scheduler and kubelet for the namespace: bind to the affinity's node, mark Running
/// and Ready, finish deletions.
fn kubelet(pods: Api<Pod>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            for p in pods
                .list(&ListParams::default())
                .await
                .into_iter()
                .flatten()
            {
                let name = p.metadata.name.clone().unwrap_or_default();
                let bound = p.spec.as_ref().and_then(|s| s.node_name.clone());
                let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                if p.metadata.deletion_timestamp.is_some() {
                    let _ = pods
                        .delete(&name, &DeleteParams::default().grace_period(0))
                        .await;
                } else if bound.is_none() {
                    let Some(node) = affinity_node(&p) else {
                        continue;
                    };
                    let binding = Binding {
                        metadata: ObjectMeta {
                            name: Some(name.clone()),
                            ..Default::default()
                        },
                        target: ObjectReference {
                            kind: Some("Node".into()),
                            name: Some(node),
                            ..Default::default()
                        },
                    };
                    let _: Result<Value, _> = pods
                        .create_subresource("binding", &name, &PostParams::default(), &binding)
                        .await;
                } else if phase.as_deref() == Some("Pending") {
                    let _ = mark_ready(&pods, &name).await;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Pods of the DaemonSet `app` that are not being deleted, by target node.
async fn pods_by_node(pods: &Api<Pod>, app: &str) -> Vec<(String, Pod)> {
    let list = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .unwrap();
    let mut out: Vec<(String, Pod)> = list
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| (affinity_node(&p).unwrap_or_default(), p))
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn node_names(pods: &[(String, Pod)]) -> Vec<&str> {
    pods.iter().map(|(n, _)| n.as_str()).collect()
}

fn label(pod: &Pod, key: &str) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .cloned()
        .unwrap_or_default()
}

async fn status(sets: &Api<DaemonSet>, name: &str) -> Value {
    let d = sets.get(name).await.unwrap();
    let mut v = serde_json::to_value(&d.status).unwrap();
    v["generation"] = json!(d.metadata.generation);
    v
}

fn container(image: &str) -> Value {
    json!([{"name": "agent", "image": image}])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pod_per_eligible_node() {
    let (_cluster, client, _cm) = start(&["daemonset"]).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    create_node(&nodes, "node-a", json!({"role": "worker"}), json!([])).await;
    create_node(
        &nodes,
        "node-b",
        json!({"role": "worker"}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await;
    create_node(&nodes, "node-c", json!({"role": "db"}), json!([])).await;
    let spec = json!({"nodeSelector": {"role": "worker"}, "containers": container("agent:1")});
    sets.create(&PostParams::default(), &daemonset("agent", spec, json!({})))
        .await
        .unwrap();

    // Only node-a qualifies: node-b is tainted, node-c does not match the selector.
    let placed = poll(POLL, WAIT, "a pod for node-a", || async {
        let p = pods_by_node(&pods, "agent").await;
        (!p.is_empty()).then_some(p)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(node_names(&pods_by_node(&pods, "agent").await), ["node-a"]);
    let pod = serde_json::to_value(&placed[0].1).unwrap();
    assert!(
        pod["spec"].get("nodeName").is_none(),
        "placed by affinity, not nodeName"
    );
    assert_eq!(
        pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
        json!({"nodeSelectorTerms": [{"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["node-a"]}]}]})
    );
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
        "node.kubernetes.io/unschedulable",
    ] {
        assert!(
            tolerations
                .iter()
                .any(|t| t["key"] == key && t["operator"] == "Exists"),
            "{key}"
        );
    }
    assert_eq!(pod["metadata"]["labels"]["pod-template-generation"], "1");
    assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "DaemonSet");
    let hash = label(&placed[0].1, HASH);
    let revs = revisions.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(revs.len(), 1);
    assert_eq!(
        revs[0].metadata.name.as_deref(),
        Some(format!("agent-{hash}").as_str())
    );
    assert_eq!(revs[0].revision, 1);
    let st = poll(POLL, WAIT, "status scheduled", || async {
        let st = status(&sets, "agent").await;
        (st["currentNumberScheduled"] == 1).then_some(st)
    })
    .await;
    assert_eq!(st["desiredNumberScheduled"], 1);
    assert_eq!(st["numberMisscheduled"], 0);
    assert_eq!(st["numberUnavailable"], 1);

    // Bound and ready: available.
    let kubelet = kubelet(pods.clone());
    let st = poll(POLL, WAIT, "status ready", || async {
        let st = status(&sets, "agent").await;
        (st["numberAvailable"] == 1).then_some(st)
    })
    .await;
    assert_eq!(
        (
            &st["numberReady"],
            &st["updatedNumberScheduled"],
            &st["numberUnavailable"]
        ),
        (&json!(1), &json!(1), &json!(0))
    );
    assert_eq!(st["observedGeneration"], st["generation"]);

    // A new eligible node gets a pod.
    create_node(&nodes, "node-d", json!({"role": "worker"}), json!([])).await;
    poll(POLL, WAIT, "pods on node-a and node-d", || async {
        (node_names(&pods_by_node(&pods, "agent").await) == ["node-a", "node-d"]).then_some(())
    })
    .await;
    poll(POLL, WAIT, "2 ready", || async {
        (status(&sets, "agent").await["numberReady"] == 2).then_some(())
    })
    .await;

    // A node that stops matching loses its pod.
    nodes
        .patch(
            "node-d",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"role": "db"}}})),
        )
        .await
        .unwrap();
    poll(POLL, WAIT, "node-d's pod removed", || async {
        (node_names(&pods_by_node(&pods, "agent").await) == ["node-a"]).then_some(())
    })
    .await;
    poll(POLL, WAIT, "desired 1", || async {
        let st = status(&sets, "agent").await;
        (st["desiredNumberScheduled"] == 1 && st["currentNumberScheduled"] == 1).then_some(())
    })
    .await;

    // A failed pod is replaced.
    let failed = pods_by_node(&pods, "agent").await[0]
        .1
        .metadata
        .name
        .clone()
        .unwrap();
    set_phase(&pods, &failed, "Failed").await;
    poll(POLL, WAIT, "failed pod replaced", || async {
        let p = pods_by_node(&pods, "agent").await;
        (p.len() == 1 && p[0].1.metadata.name.as_deref() != Some(failed.as_str())).then_some(())
    })
    .await;
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_updates_with_max_unavailable_and_max_surge() {
    let (_cluster, client, _cm) = start(&["daemonset"]).await;
    let nodes: Api<Node> = Api::all(client.clone());
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    for n in ["node-a", "node-c"] {
        create_node(&nodes, n, json!({}), json!([])).await;
    }
    create_node(
        &nodes,
        "node-b",
        json!({}),
        json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
    )
    .await;
    let kubelet = kubelet(pods.clone());
    let all_ready = |name: &'static str, n: i64| {
        let sets = sets.clone();
        async move {
            let st = status(&sets, name).await;
            (st["numberAvailable"] == n
                && st["updatedNumberScheduled"] == n
                && st["desiredNumberScheduled"] == n
                && st["observedGeneration"] == st["generation"])
                .then_some(())
        }
    };

    // maxUnavailable 1 (the default).
    sets.create(
        &PostParams::default(),
        &daemonset(
            "agent",
            json!({"containers": container("agent:1")}),
            json!({}),
        ),
    )
    .await
    .unwrap();
    poll(POLL, WAIT, "agent ready on 2 nodes", || {
        all_ready("agent", 2)
    })
    .await;
    let old: Vec<String> = pods_by_node(&pods, "agent")
        .await
        .iter()
        .map(|(_, p)| p.metadata.name.clone().unwrap())
        .collect();
    let log = record_pod_events(&pods, |kind, p| {
        let node = affinity_node(&p).unwrap_or_default();
        (kind.to_string(), p.metadata.name.unwrap_or_default(), node)
    })
    .await;
    // New image, and a toleration that brings node-b in.
    let patch = json!({"spec": {"template": {"spec": {"containers": container("agent:2"),
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}}}});
    sets.patch("agent", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    poll(POLL, WAIT, "agent updated on 3 nodes", || {
        all_ready("agent", 3)
    })
    .await;
    let now = pods_by_node(&pods, "agent").await;
    assert_eq!(node_names(&now), ["node-a", "node-b", "node-c"]);
    let hash = label(&now[0].1, HASH);
    for (_, p) in &now {
        assert_eq!(label(p, HASH), hash);
        assert_eq!(label(p, "pod-template-generation"), "2");
        assert_eq!(
            p.spec.as_ref().unwrap().containers[0].image.as_deref(),
            Some("agent:2")
        );
        assert!(!old.contains(p.metadata.name.as_ref().unwrap()));
    }
    // One node at a time: the second old pod went only after the first node had its
    // new pod.
    let events = log.lock().unwrap().clone();
    let deleted: Vec<usize> = events
        .iter()
        .enumerate()
        .filter(|(_, (k, n, _))| k == "DELETED" && old.contains(n))
        .map(|(i, _)| i)
        .collect();
    assert_eq!(deleted.len(), 2, "{events:?}");
    let first_node = &events[deleted[0]].2;
    assert!(
        events[deleted[0]..deleted[1]]
            .iter()
            .any(|(k, _, n)| k == "ADDED" && n == first_node),
        "{events:?}"
    );
    let revs = revisions.list(&ListParams::default()).await.unwrap().items;
    assert_eq!(revs.len(), 2);
    assert!(revs.iter().any(|r| r.metadata.name.as_deref()
        == Some(format!("agent-{hash}").as_str())
        && r.revision == 2));

    // maxSurge 1: the new pod starts beside the old one, which goes once it is ready.
    let surge =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}});
    sets.create(
        &PostParams::default(),
        &daemonset("surge", json!({"containers": container("s:1")}), surge),
    )
    .await
    .unwrap();
    poll(POLL, WAIT, "surge ready on 2 nodes", || {
        all_ready("surge", 2)
    })
    .await;
    let old: Vec<String> = pods_by_node(&pods, "surge")
        .await
        .iter()
        .map(|(_, p)| p.metadata.name.clone().unwrap())
        .collect();
    let log = record_pod_events(&pods, |kind, p| {
        let node = affinity_node(&p).unwrap_or_default();
        (kind.to_string(), p.metadata.name.unwrap_or_default(), node)
    })
    .await;
    let patch = json!({"spec": {"template": {"spec": {"containers": container("s:2")}}}});
    sets.patch("surge", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    poll(POLL, WAIT, "surge updated", || all_ready("surge", 2)).await;
    let events = log.lock().unwrap().clone();
    for (_, name, node) in events
        .iter()
        .filter(|(k, n, _)| k == "DELETED" && old.contains(n))
    {
        let deleted_at = events
            .iter()
            .position(|(k, n, _)| k == "DELETED" && n == name)
            .unwrap();
        assert!(
            events[..deleted_at]
                .iter()
                .any(|(k, n, nd)| k == "ADDED" && nd == node && !old.contains(n)),
            "{name} on {node} deleted before its replacement was created: {events:?}"
        );
    }

    // OnDelete: a new template waits until a pod is deleted.
    sets.create(
        &PostParams::default(),
        &daemonset(
            "manual",
            json!({"containers": container("m:1")}),
            json!({"type": "OnDelete"}),
        ),
    )
    .await
    .unwrap();
    poll(POLL, WAIT, "manual ready", || async {
        (status(&sets, "manual").await["numberAvailable"] == 2).then_some(())
    })
    .await;
    let patch = json!({"spec": {"template": {"spec": {"containers": container("m:2")}}}});
    sets.patch("manual", &PatchParams::default(), &Patch::Strategic(patch))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = pods_by_node(&pods, "manual").await;
    assert_eq!(status(&sets, "manual").await["updatedNumberScheduled"], 0);
    let victim = before[0].1.metadata.name.clone().unwrap();
    pods.delete(&victim, &DeleteParams::default())
        .await
        .unwrap();
    poll(
        POLL,
        WAIT,
        "deleted pod recreated at the new template",
        || async {
            let st = status(&sets, "manual").await;
            (st["updatedNumberScheduled"] == 1 && st["numberAvailable"] == 2).then_some(())
        },
    )
    .await;
    let after = pods_by_node(&pods, "manual").await;
    assert_eq!(
        after[1].1.metadata.uid, before[1].1.metadata.uid,
        "the other pod is untouched"
    );
    kubelet.abort();
}
