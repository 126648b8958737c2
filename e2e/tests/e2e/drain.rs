//! `kubectl drain` against a PodDisruptionBudget: the real kubectl (each installed
//! version in turn) cordons a hollow node and evicts its pods through `pods/eviction`; the budget lets one go at a time,
//! refuses the next with 429 until the replacement is ready elsewhere, and the node
//! ends empty but for its DaemonSet pod.
//!
//! Draining cordons a node and evicts pods of every namespace, so this test has its
//! own control plane instead of the one `workloads` shares.

use keelson_e2e::{json, kubectl_versions, ControlPlane};
use keelson_testkit::{eventually, ok};
use std::collections::BTreeMap;
use std::time::Duration;

const MANIFEST: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 4
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 1
      containers: [{name: web, image: nginx}]
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: busybox}]}
"#;

/// Running, not-deleting pods in `ns` with `selector`, by node.
fn pods_by_node(plane: &ControlPlane, ns: &str, selector: &str) -> BTreeMap<String, Vec<String>> {
    let out = ok(plane.kubectl(&["get", "pods", "-n", ns, "-l", selector, "-o", "json"]));
    let mut by_node: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in json(&out)["items"].as_array().unwrap() {
        let ready = p["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter()
                .any(|c| c["type"] == "Ready" && c["status"] == "True")
        });
        if ready && p["metadata"]["deletionTimestamp"].is_null() {
            by_node
                .entry(
                    p["spec"]["nodeName"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                )
                .or_default()
                .push(p["metadata"]["name"].as_str().unwrap().to_string());
        }
    }
    by_node
}

#[test]
fn drain_evicts_within_the_disruption_budget() {
    let plane = ControlPlane::start(3).expect("control plane");
    let kubectl = |args: &[&str]| ok(plane.kubectl(args));
    let ns = "drain";
    kubectl(&["create", "namespace", ns]);
    ok(plane
        .cluster
        .kubectl_with("kubectl", &["apply", "-n", ns, "-f", "-"], Some(MANIFEST)));
    // kubectl's own generator (a protobuf body) for the budget.
    kubectl(&[
        "create",
        "pdb",
        "web",
        "-n",
        ns,
        "--selector=app=web",
        "--min-available=3",
    ]);
    kubectl(&[
        "rollout",
        "status",
        "deployment/web",
        "-n",
        ns,
        "--timeout=90s",
    ]);
    eventually(
        Duration::from_secs(60),
        "the budget to allow one disruption",
        || {
            let out = kubectl(&["get", "pdb", "web", "-n", ns, "-o", "json"]);
            let s = &json(&out)["status"];
            (s["disruptionsAllowed"] == 1 && s["currentHealthy"] == 4 && s["desiredHealthy"] == 3)
                .then_some(())
        },
    );
    let table = kubectl(&["get", "pdb", "-n", ns]);
    let mut lines = table.lines();
    let header: Vec<&str> = lines
        .next()
        .unwrap()
        .split("  ")
        .filter(|s| !s.is_empty())
        .map(str::trim)
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "MIN AVAILABLE",
            "MAX UNAVAILABLE",
            "ALLOWED DISRUPTIONS",
            "AGE"
        ]
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["web", "3", "N/A", "1"], "{table}");

    // Each installed kubectl drains once (1.32, then the oldest and newest).
    for binary in kubectl_versions() {
        drain_busiest_node(&plane, ns, &binary);
    }
}

/// Four pods on three nodes: drain the node with the most, so that the budget (one
/// disruption) must hold the second eviction back; then uncordon it.
fn drain_busiest_node(plane: &ControlPlane, ns: &str, binary: &str) {
    let kubectl = |args: &[&str]| ok(plane.kubectl(args));
    let by_node = eventually(
        Duration::from_secs(60),
        "web pods and agents placed",
        || {
            let web = pods_by_node(plane, ns, "app=web");
            let agents = pods_by_node(plane, ns, "app=agent");
            (web.values().map(Vec::len).sum::<usize>() == 4 && agents.len() == 3).then_some(web)
        },
    );
    eventually(
        Duration::from_secs(60),
        "the budget to allow one disruption",
        || {
            let out = kubectl(&["get", "pdb", "web", "-n", ns, "-o", "json"]);
            (json(&out)["status"]["disruptionsAllowed"] == 1).then_some(())
        },
    );
    let (node, victims) = by_node.iter().max_by_key(|(_, pods)| pods.len()).unwrap();
    assert!(victims.len() >= 2, "4 pods on 3 nodes: {by_node:?}");

    let out = plane.cluster.kubectl_with(
        binary,
        &["drain", node, "--ignore-daemonsets", "--timeout=120s"],
        None,
    );
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "{binary} drain failed:\n{stdout}\n{stderr}"
    );
    for pod in victims {
        assert!(
            stdout.contains(&format!("pod/{pod} evicted")),
            "{binary}: {stdout}\n{stderr}"
        );
    }
    assert!(
        stderr.contains("Cannot evict pod as it would violate the pod's disruption budget."),
        "{binary}: one eviction must have waited for the budget:\n{stdout}\n{stderr}"
    );
    assert!(stdout.contains(&format!("node/{node} drained")), "{stdout}");

    // The node is cordoned and holds only its DaemonSet pod; the Deployment is whole
    // again on the other nodes.
    let n = json(&kubectl(&["get", "node", node, "-o", "json"]));
    assert_eq!(n["spec"]["unschedulable"], true);
    let web = eventually(
        Duration::from_secs(60),
        "4 web pods ready elsewhere",
        || {
            let web = pods_by_node(plane, ns, "app=web");
            (web.values().map(Vec::len).sum::<usize>() == 4).then_some(web)
        },
    );
    assert!(!web.contains_key(node.as_str()), "{web:?}");
    assert!(pods_by_node(plane, ns, "app=agent").contains_key(node.as_str()));

    kubectl(&["uncordon", node]);
    let n = json(&kubectl(&["get", "node", node, "-o", "json"]));
    assert!(n["spec"]["unschedulable"].is_null() || n["spec"]["unschedulable"] == false);
}
