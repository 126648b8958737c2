//! Hollow nodes against a real etcd and apiserver (`cargo build -p keelson-apiserver`
//! first). Each test starts its own cluster and runs the hollow nodes in-process.

use std::future::Future;
use std::path::Path;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use keelson_client::{Api, Client, DeleteParams, PostParams};
use keelson_hollow_node::{HollowOptions, EXIT_CODE_ANNOTATION, RUN_DURATION_ANNOTATION};
use keelson_testkit::Cluster;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

async fn start_cluster() -> Cluster {
    tokio::task::spawn_blocking(Cluster::start)
        .await
        .expect("join")
        .expect("starting the test cluster (cargo build -p keelson-apiserver first)")
}

/// The hollow nodes, running on a task of the test's runtime.
struct Hollow {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Hollow {
    fn start(kubeconfig: &Path, opts: HollowOptions) -> Hollow {
        let client = Client::from_kubeconfig(kubeconfig).expect("client");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(keelson_hollow_node::run(client, opts, async move {
            let _ = stopped.await;
        }));
        Hollow { stop, task }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("hollow nodes stop within 10s")
            .expect("join")
            .expect("hollow nodes ran without error");
    }
}

fn opts(args: &[&str]) -> HollowOptions {
    HollowOptions::try_parse_from(args).expect("options")
}

async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn namespace(client: &Client, name: &str) {
    let api: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": name}})).unwrap();
    api.create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
}

fn pod(name: &str, extra: Value) -> Pod {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name},
        "spec": {"containers": [{"name": "app", "image": "registry.example/app:1"}]},
    });
    merge(&mut v, extra);
    serde_json::from_value(v).expect("pod")
}

fn merge(a: &mut Value, b: Value) {
    match (a, b) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                merge(a.entry(k).or_insert(Value::Null), v);
            }
        }
        (a, b) => *a = b,
    }
}

fn status(p: &Pod) -> Value {
    serde_json::to_value(&p.status).unwrap()
}

fn condition(p: &Pod, kind: &str) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn wait_phase(pods: &Api<Pod>, name: &str, want: &str) -> Pod {
    eventually(
        Duration::from_secs(20),
        &format!("pod {name} {want}"),
        || async {
            let p = pods.get(name).await.ok()?;
            (phase(&p) == want).then_some(p)
        },
    )
    .await
}

#[tokio::test]
async fn nodes_register_with_leases_that_are_renewed() {
    let cluster = start_cluster().await;
    let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    let hollow = Hollow::start(
        &cluster.kubeconfig,
        opts(&[
            "--count",
            "3",
            "--zones",
            "2",
            "--labels",
            "team=sim",
            "--renew-interval",
            "300ms",
            "--node-status-interval",
            "1s",
        ]),
    );
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");

    let lease_of = |name: &'static str| {
        let leases = leases.clone();
        async move { leases.get_opt(name).await.ok().flatten() }
    };
    for (i, name) in ["hollow-0", "hollow-1", "hollow-2"].into_iter().enumerate() {
        let node = eventually(Duration::from_secs(20), name, || async {
            nodes.get_opt(name).await.ok().flatten()
        })
        .await;
        let labels = node.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels["kubernetes.io/hostname"], name);
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["node.kubernetes.io/instance-type"], "hollow");
        assert_eq!(labels["team"], "sim");
        assert_eq!(
            labels["topology.kubernetes.io/zone"],
            format!("zone-{}", i % 2)
        );
        let st = serde_json::to_value(&node.status).unwrap();
        assert_eq!(st["capacity"]["cpu"], "4");
        assert_eq!(st["capacity"]["memory"], "16Gi");
        assert_eq!(st["allocatable"]["pods"], "110");
        assert_eq!(st["allocatable"]["ephemeral-storage"], "100Gi");
        let ready = st["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .expect("Ready condition")
            .clone();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(
            st["addresses"][0],
            json!({"type": "InternalIP", "address": format!("10.200.0.{}", i + 1)})
        );
        assert_eq!(
            st["nodeInfo"]["kubeletVersion"],
            keelson_hollow_node::KUBELET_VERSION
        );

        let lease = eventually(Duration::from_secs(10), "lease", || lease_of(name)).await;
        let spec = lease.spec.clone().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some(name));
        assert_eq!(spec.lease_duration_seconds, Some(40));
        let owner = &lease.metadata.owner_references.as_ref().expect("owner")[0];
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), ("Node", name));
        assert_eq!(Some(&owner.uid), node.metadata.uid.as_ref());
    }

    // renewTime advances.
    let first = lease_of("hollow-2")
        .await
        .unwrap()
        .spec
        .unwrap()
        .renew_time
        .unwrap()
        .0;
    let later = eventually(Duration::from_secs(10), "lease renewal", || async {
        let t = lease_of("hollow-2").await?.spec?.renew_time?.0;
        (t > first).then_some(t)
    })
    .await;
    assert!(later > first);

    // The Ready heartbeat advances too.
    let heartbeat = |n: Node| -> Option<k8s_openapi::jiff::Timestamp> {
        n.status?
            .conditions?
            .into_iter()
            .find(|c| c.type_ == "Ready")?
            .last_heartbeat_time
            .map(|t| t.0)
    };
    let hb0 = heartbeat(nodes.get("hollow-0").await.unwrap()).expect("heartbeat");
    eventually(Duration::from_secs(10), "node heartbeat", || async {
        let hb = heartbeat(nodes.get("hollow-0").await.ok()?)?;
        (hb > hb0).then_some(())
    })
    .await;
    hollow.stop().await;

    // Restarted with another label: the existing Nodes are adopted, not recreated.
    let uid = nodes.get("hollow-0").await.unwrap().metadata.uid;
    let hollow = Hollow::start(
        &cluster.kubeconfig,
        opts(&["--count", "3", "--labels", "extra=yes"]),
    );
    let node = eventually(Duration::from_secs(20), "adopted node", || async {
        let n = nodes.get("hollow-0").await.ok()?;
        let labelled = n.metadata.labels.as_ref()?.get("extra").map(String::as_str) == Some("yes");
        labelled.then_some(n)
    })
    .await;
    assert_eq!(node.metadata.uid, uid, "same Node object");
    assert_eq!(condition_of_node(&node, "Ready").as_deref(), Some("True"));
    hollow.stop().await;
    assert_eq!(
        nodes.list(&Default::default()).await.unwrap().items.len(),
        3,
        "nodes stay registered after stop"
    );
}

fn condition_of_node(n: &Node, kind: &str) -> Option<String> {
    n.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == kind)
        .map(|c| c.status.clone())
}

#[tokio::test]
async fn bound_pods_become_running_and_ready() {
    let cluster = start_cluster().await;
    let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    namespace(&client, "apps").await;
    let hollow = Hollow::start(&cluster.kubeconfig, opts(&["--count", "3"]));
    let nodes: Api<Node> = Api::all(client.clone());
    eventually(Duration::from_secs(20), "hollow-1", || async {
        nodes.get_opt("hollow-1").await.ok().flatten()
    })
    .await;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "apps");
    for name in ["a", "b"] {
        pods.create(&PostParams::default(), &pod(name, json!({})))
            .await
            .unwrap();
    }
    // Unbound pods are left alone.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(phase(&pods.get("a").await.unwrap()), "Pending");

    for name in ["a", "b"] {
        let binding = json!({
            "apiVersion": "v1", "kind": "Binding",
            "metadata": {"name": name, "namespace": "apps"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "hollow-1"},
        });
        let _: Value = pods
            .create_subresource("binding", name, &PostParams::default(), &binding)
            .await
            .unwrap();
    }
    let mut ips = Vec::new();
    for name in ["a", "b"] {
        let p = wait_phase(&pods, name, "Running").await;
        assert_eq!(condition(&p, "Ready").as_deref(), Some("True"));
        assert_eq!(condition(&p, "ContainersReady").as_deref(), Some("True"));
        assert_eq!(condition(&p, "Initialized").as_deref(), Some("True"));
        assert_eq!(condition(&p, "PodScheduled").as_deref(), Some("True"));
        let st = status(&p);
        assert_eq!(st["hostIP"], "10.200.0.2", "hollow-1's InternalIP");
        let ip = st["podIP"].as_str().expect("podIP").to_string();
        assert_eq!(st["podIPs"][0]["ip"], ip.as_str());
        assert!(st["startTime"].is_string());
        let cs = &st["containerStatuses"][0];
        assert_eq!(cs["ready"], true);
        assert_eq!(cs["started"], true);
        assert_eq!(cs["restartCount"], 0);
        assert_eq!(cs["image"], "registry.example/app:1");
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(cs["containerID"], format!("hollow://{uid}-app"));
        assert!(cs["state"]["running"]["startedAt"].is_string());
        ips.push(ip);
    }
    assert_ne!(ips[0], ips[1], "pods get different IPs");
    // restartPolicy Always pods keep running.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(phase(&pods.get("a").await.unwrap()), "Running");
    hollow.stop().await;
}

#[tokio::test]
async fn run_to_completion_pods_succeed_or_fail() {
    let cluster = start_cluster().await;
    let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    namespace(&client, "jobs").await;
    let hollow = Hollow::start(
        &cluster.kubeconfig,
        opts(&["--count", "2", "--run-duration", "300ms"]),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "jobs");
    let on = |node: &str, annotations: Value| {
        json!({
            "metadata": {"annotations": annotations},
            "spec": {"nodeName": node, "restartPolicy": "Never"},
        })
    };
    pods.create(
        &PostParams::default(),
        &pod("ok", on("hollow-0", json!({}))),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("bad", on("hollow-1", json!({EXIT_CODE_ANNOTATION: "3"}))),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod(
            "slow",
            on("hollow-0", json!({RUN_DURATION_ANNOTATION: "4s"})),
        ),
    )
    .await
    .unwrap();
    let mut retry_pod = pod("retry", on("hollow-1", json!({EXIT_CODE_ANNOTATION: "0"})));
    retry_pod.spec.as_mut().unwrap().restart_policy = Some("OnFailure".into());
    pods.create(&PostParams::default(), &retry_pod)
        .await
        .unwrap();

    let ok = wait_phase(&pods, "ok", "Succeeded").await;
    let term = status(&ok)["containerStatuses"][0]["state"]["terminated"].clone();
    assert_eq!(term["exitCode"], 0);
    assert_eq!(term["reason"], "Completed");
    assert_eq!(condition(&ok, "Ready").as_deref(), Some("False"));
    assert!(status(&ok)["podIP"].is_string(), "it ran with an IP");

    let bad = wait_phase(&pods, "bad", "Failed").await;
    let term = status(&bad)["containerStatuses"][0]["state"]["terminated"].clone();
    assert_eq!(term["exitCode"], 3);
    assert_eq!(term["reason"], "Error");

    wait_phase(&pods, "retry", "Succeeded").await;

    // The run-duration annotation keeps this one running for 4s.
    let slow = pods.get("slow").await.unwrap();
    assert_eq!(phase(&slow), "Running", "{:?}", slow.status);
    wait_phase(&pods, "slow", "Succeeded").await;
    hollow.stop().await;
}

#[tokio::test]
async fn deleted_pods_are_stopped_and_removed() {
    let cluster = start_cluster().await;
    let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    namespace(&client, "web").await;
    let hollow = Hollow::start(
        &cluster.kubeconfig,
        opts(&["--count", "1", "--terminate-delay", "1m"]),
    );
    let pods: Api<Pod> = Api::namespaced(client.clone(), "web");
    let bound = json!({"spec": {"nodeName": "hollow-0"}});
    let mut quick = bound.clone();
    quick["spec"]["terminationGracePeriodSeconds"] = json!(2);
    pods.create(&PostParams::default(), &pod("quick", quick))
        .await
        .unwrap();
    wait_phase(&pods, "quick", "Running").await;

    // Stopping the containers takes the terminate delay (1m), capped at the pod's
    // grace period (2s).
    let deleted = pods
        .delete("quick", &DeleteParams::default())
        .await
        .unwrap();
    assert!(
        deleted.metadata.deletion_timestamp.is_some(),
        "a pod on a node is deleted gracefully"
    );
    let t = tokio::time::Instant::now();
    eventually(Duration::from_secs(15), "quick deleted", || async {
        pods.get_opt("quick").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(
        t.elapsed() >= Duration::from_millis(1500),
        "the containers took the pod's 2s grace period to stop ({:?})",
        t.elapsed()
    );
    hollow.stop().await;

    // Without a terminate delay, a default-grace (30s) deletion completes at once.
    let hollow = Hollow::start(&cluster.kubeconfig, opts(&["--count", "1"]));
    pods.create(&PostParams::default(), &pod("web", bound.clone()))
        .await
        .unwrap();
    // A finalizer keeps this one around after the hollow kubelet's final delete, to
    // see what it wrote (as Job pods keep theirs).
    let mut held = bound.clone();
    held["metadata"] = json!({"finalizers": ["example.com/hold"]});
    pods.create(&PostParams::default(), &pod("held", held))
        .await
        .unwrap();
    wait_phase(&pods, "web", "Running").await;
    wait_phase(&pods, "held", "Running").await;

    let deleted = pods.delete("web", &DeleteParams::default()).await.unwrap();
    assert_eq!(deleted.metadata.deletion_grace_period_seconds, Some(30));
    // Well within the 30s grace period: the hollow kubelet completed the deletion.
    eventually(Duration::from_secs(15), "web deleted", || async {
        pods.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;

    pods.delete("held", &DeleteParams::default()).await.unwrap();
    let stopped = eventually(Duration::from_secs(15), "held stopped", || async {
        let p = pods.get("held").await.ok()?;
        (p.metadata.deletion_grace_period_seconds == Some(0)).then_some(p)
    })
    .await;
    assert_eq!(phase(&stopped), "Failed", "containers stopped by SIGTERM");
    let term = status(&stopped)["containerStatuses"][0]["state"]["terminated"].clone();
    assert_eq!(term["exitCode"], keelson_hollow_node::KILLED_EXIT_CODE);
    assert_eq!(condition(&stopped, "Ready").as_deref(), Some("False"));
    // Our finalizer is the last thing holding it.
    pods.patch(
        "held",
        &Default::default(),
        &keelson_client::Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    eventually(Duration::from_secs(10), "held deleted", || async {
        pods.get_opt("held").await.ok()?.is_none().then_some(())
    })
    .await;
    hollow.stop().await;
}
