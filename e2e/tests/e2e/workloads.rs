//! The workload control plane end to end: real etcd, apiserver, scheduler and
//! controller-manager processes, `keelson hollow-nodes` as the nodes, driven by the
//! real kubectl. One control plane for the whole file; each test has its namespace.

use keelson_e2e::{json, ControlPlane, CONTROL_PLANE};
use keelson_testkit::{eventually, ok};
use std::collections::BTreeSet;
use std::time::Duration;

fn plane() -> &'static ControlPlane {
    &CONTROL_PLANE
}

fn namespace(name: &str) -> &str {
    ok(plane().kubectl(&["create", "namespace", name]));
    name
}

fn kubectl(args: &[&str]) -> String {
    ok(plane().kubectl(args))
}

fn apply(ns: &str, manifest: &str) {
    ok(plane()
        .cluster
        .kubectl_with("kubectl", &["apply", "-n", ns, "-f", "-"], Some(manifest)));
}

/// Running pods in `ns` matching `selector`: (name, node, image).
fn running_pods(ns: &str, selector: &str) -> Vec<(String, String, String)> {
    let out = kubectl(&["get", "pods", "-n", ns, "-l", selector, "-o", "json"]);
    json(&out)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| {
            p["status"]["phase"] == "Running" && p["metadata"]["deletionTimestamp"].is_null()
        })
        .map(|p| {
            (
                p["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["nodeName"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                p["spec"]["containers"][0]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect()
}

fn rollout_status(ns: &str, what: &str) {
    kubectl(&["rollout", "status", what, "-n", ns, "--timeout=90s"]);
}

#[test]
fn deployment_create_scale_update_undo_restart() {
    let ns = namespace("wl-deploy");
    kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=3",
        "-n",
        ns,
    ]);
    rollout_status(ns, "deployment/web");
    let pods = running_pods(ns, "app=web");
    assert_eq!(pods.len(), 3, "{pods:?}");
    let nodes: BTreeSet<_> = pods.iter().map(|p| p.1.clone()).collect();
    assert!(nodes.len() >= 2, "replicas spread over nodes: {pods:?}");

    kubectl(&["scale", "deployment", "web", "--replicas=5", "-n", ns]);
    rollout_status(ns, "deployment/web");
    eventually(Duration::from_secs(30), "5 running pods", || {
        (running_pods(ns, "app=web").len() == 5).then_some(())
    });

    kubectl(&[
        "set",
        "image",
        "deployment/web",
        "nginx=nginx:1.26",
        "-n",
        ns,
    ]);
    rollout_status(ns, "deployment/web");
    eventually(Duration::from_secs(30), "only new pods", || {
        let pods = running_pods(ns, "app=web");
        (pods.len() == 5 && pods.iter().all(|p| p.2 == "nginx:1.26")).then_some(())
    });
    let history = kubectl(&["rollout", "history", "deployment/web", "-n", ns]);
    assert!(
        history.contains("1 ") && history.contains("2 "),
        "{history}"
    );

    kubectl(&["rollout", "undo", "deployment/web", "-n", ns]);
    rollout_status(ns, "deployment/web");
    eventually(
        Duration::from_secs(30),
        "pods back on the old image",
        || {
            let pods = running_pods(ns, "app=web");
            (pods.len() == 5 && pods.iter().all(|p| p.2 == "nginx:1.25")).then_some(())
        },
    );
    let rs = kubectl(&["get", "rs", "-n", ns, "-o", "json"]);
    assert_eq!(
        json(&rs)["items"].as_array().unwrap().len(),
        2,
        "undo reuses the first ReplicaSet"
    );

    kubectl(&["rollout", "restart", "deployment/web", "-n", ns]);
    rollout_status(ns, "deployment/web");
    let rs = kubectl(&["get", "rs", "-n", ns, "-o", "json"]);
    assert_eq!(
        json(&rs)["items"].as_array().unwrap().len(),
        3,
        "restart makes a new ReplicaSet"
    );
}

#[test]
fn deleting_a_namespace_removes_everything_in_it() {
    let ns = namespace("wl-nsdel");
    kubectl(&[
        "create",
        "deployment",
        "doomed",
        "--image=nginx",
        "--replicas=2",
        "-n",
        ns,
    ]);
    kubectl(&["create", "configmap", "cfg", "--from-literal=a=b", "-n", ns]);
    kubectl(&[
        "create",
        "service",
        "clusterip",
        "doomed",
        "--tcp=80:80",
        "-n",
        ns,
    ]);
    rollout_status(ns, "deployment/doomed");
    // kubectl waits until the namespace is gone.
    kubectl(&["delete", "namespace", ns, "--timeout=90s"]);
    let out = plane().kubectl(&["get", "namespace", ns]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("NotFound"));
}

#[test]
fn job_runs_to_completion() {
    let ns = namespace("wl-job");
    kubectl(&[
        "create",
        "job",
        "hello",
        "--image=busybox",
        "-n",
        ns,
        "--",
        "echo",
        "hi",
    ]);
    kubectl(&[
        "wait",
        "--for=condition=complete",
        "job/hello",
        "-n",
        ns,
        "--timeout=60s",
    ]);
    let job = json(&kubectl(&["get", "job", "hello", "-n", ns, "-o", "json"]));
    assert_eq!(job["status"]["succeeded"], 1);
}

#[test]
fn daemonset_runs_one_pod_per_node() {
    let ns = namespace("wl-ds");
    apply(
        ns,
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec: {containers: [{name: agent, image: busybox}]}
"#,
    );
    eventually(
        Duration::from_secs(60),
        "a ready agent on each of 3 nodes",
        || {
            let pods = running_pods(ns, "app=agent");
            let nodes: BTreeSet<_> = pods.iter().map(|p| p.1.clone()).collect();
            (pods.len() == 3 && nodes.len() == 3).then_some(())
        },
    );
    kubectl(&["delete", "daemonset", "agent", "-n", ns]);
    eventually(Duration::from_secs(60), "the agents to go", || {
        let out = kubectl(&["get", "pods", "-n", ns, "-l", "app=agent", "-o", "name"]);
        out.trim().is_empty().then_some(())
    });
}

#[test]
fn unschedulable_pod_says_why_and_schedules_when_a_node_fits() {
    let ns = namespace("wl-sched");
    apply(
        ns,
        r#"
apiVersion: v1
kind: Pod
metadata: {name: picky}
spec:
  nodeSelector: {disktype: ssd}
  containers: [{name: c, image: nginx}]
"#,
    );
    let message = eventually(Duration::from_secs(30), "PodScheduled=False", || {
        let pod = json(&kubectl(&["get", "pod", "picky", "-n", ns, "-o", "json"]));
        let cond = pod["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "PodScheduled")?
            .clone();
        (cond["status"] == "False" && cond["reason"] == "Unschedulable")
            .then(|| cond["message"].as_str().unwrap_or_default().to_string())
    });
    assert!(
        message.starts_with(
            "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."
        ),
        "{message}"
    );
    eventually(Duration::from_secs(30), "a FailedScheduling event", || {
        let events = kubectl(&["get", "events", "-n", ns, "-o", "json"]);
        json(&events)["items"]
            .as_array()?
            .iter()
            .any(|e| e["reason"] == "FailedScheduling" && e["involvedObject"]["name"] == "picky")
            .then_some(())
    });
    kubectl(&["label", "node", "hollow-1", "disktype=ssd"]);
    let node = eventually(Duration::from_secs(30), "the pod to be bound", || {
        let pod = json(&kubectl(&["get", "pod", "picky", "-n", ns, "-o", "json"]));
        pod["spec"]["nodeName"].as_str().map(str::to_string)
    });
    kubectl(&["label", "node", "hollow-1", "disktype-"]);
    assert_eq!(node, "hollow-1");
}

#[test]
fn statefulset_scales_in_order() {
    let ns = namespace("wl-sts");
    apply(
        ns,
        r#"
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: db}
spec:
  serviceName: db
  replicas: 3
  selector: {matchLabels: {app: db}}
  template:
    metadata: {labels: {app: db}}
    spec: {containers: [{name: db, image: postgres}]}
"#,
    );
    rollout_status(ns, "statefulset/db");
    let mut names: Vec<_> = running_pods(ns, "app=db")
        .into_iter()
        .map(|p| p.0)
        .collect();
    names.sort();
    assert_eq!(names, ["db-0", "db-1", "db-2"]);
    kubectl(&["scale", "statefulset", "db", "--replicas=1", "-n", ns]);
    eventually(Duration::from_secs(60), "only db-0 left", || {
        let names: Vec<_> = running_pods(ns, "app=db")
            .into_iter()
            .map(|p| p.0)
            .collect();
        (names == ["db-0"]).then_some(())
    });
}

/// GET a plain-HTTP path on loopback.
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn components_serve_health_and_metrics() {
    let p = plane();
    // Make sure something was scheduled and reconciled.
    let ns = namespace("wl-metrics");
    kubectl(&["create", "deployment", "m", "--image=nginx", "-n", ns]);
    rollout_status(ns, "deployment/m");
    for port in [p.scheduler_port, p.controller_manager_port] {
        assert!(http_get(port, "/healthz").ends_with("ok"));
    }
    let sched = http_get(p.scheduler_port, "/metrics");
    assert!(
        sched.contains("scheduler_schedule_attempts_total{"),
        "{sched}"
    );
    assert!(
        sched.contains("leader_election_master_status{name=\"keelson-scheduler\"} 1"),
        "{sched}"
    );
    let cm = http_get(p.controller_manager_port, "/metrics");
    assert!(
        cm.contains("workqueue_adds_total{name=\"deployment\"}"),
        "{cm}"
    );
    assert!(cm.contains("leader_election_master_status{name=\"keelson-controller-manager\"} 1"));
}
