//! Leader failover mid-rollout: two schedulers and two controller-managers; kill -9
//! both leaders while a Deployment rolls out; the standbys take over and the rollout
//! completes with exactly the desired pods, none duplicated or lost.

use keelson_e2e::json;
use keelson_testkit::{eventually, ok, Cluster, Proc};
use std::time::{Duration, Instant};

const LEADER_ELECTION: [&str; 3] = [
    "--leader-elect-lease-duration=4s",
    "--leader-elect-renew-deadline=3s",
    "--leader-elect-retry-period=500ms",
];

fn start(cluster: &Cluster, binary: &str, name: &str, extra: &[&str]) -> Proc {
    let mut args: Vec<String> = LEADER_ELECTION.iter().map(|s| s.to_string()).collect();
    args.push("--port=0".into());
    args.extend(extra.iter().map(|s| s.to_string()));
    cluster
        .start_component(binary, name, &args)
        .expect("starting a component")
}

fn holder(cluster: &Cluster, lease: &str) -> String {
    let out = ok(cluster.kubectl(&[
        "get",
        "lease",
        lease,
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]));
    out.trim().to_string()
}

/// Which of two candidates leads, from their logs ("became leader").
fn leader_index(cluster: &Cluster, logs: [&str; 2]) -> usize {
    eventually(Duration::from_secs(30), "a leader", || {
        logs.iter().position(|l| {
            std::fs::read_to_string(cluster.dir.path().join(format!("{l}.log")))
                .unwrap_or_default()
                .contains("became leader")
        })
    })
}

#[test]
fn killing_the_leaders_mid_rollout_loses_and_duplicates_nothing() {
    let cluster = Cluster::start().expect("cluster");
    let mut schedulers =
        ["scheduler-a", "scheduler-b"].map(|n| start(&cluster, "keelson-scheduler", n, &[]));
    let mut managers =
        ["cm-a", "cm-b"].map(|n| start(&cluster, "keelson-controller-manager", n, &[]));
    let _nodes = cluster
        .start_component(
            "keelson",
            "hollow-nodes",
            &[
                "hollow-nodes",
                "--count=3",
                "--renew-interval=2s",
                "--ready-delay=500ms",
            ]
            .map(String::from),
        )
        .expect("hollow nodes");

    ok(cluster.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx:1.25",
        "--replicas=12",
    ]));
    ok(cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=90s"]));
    let scheduler_holder = holder(&cluster, "keelson-scheduler");
    let manager_holder = holder(&cluster, "keelson-controller-manager");

    // Start a slow rollout, then kill both leaders without warning.
    ok(cluster.kubectl(&[
        "patch", "deployment", "web", "-p",
        r#"{"spec":{"strategy":{"rollingUpdate":{"maxSurge":1,"maxUnavailable":0}},"template":{"spec":{"containers":[{"name":"nginx","image":"nginx:1.26"}]}}}}"#,
    ]));
    std::thread::sleep(Duration::from_millis(700));
    let s = leader_index(&cluster, ["scheduler-a", "scheduler-b"]);
    let m = leader_index(&cluster, ["cm-a", "cm-b"]);
    schedulers[s].kill();
    managers[m].kill();
    let killed = Instant::now();

    ok(cluster.kubectl(&["rollout", "status", "deployment/web", "--timeout=120s"]));
    assert_ne!(
        holder(&cluster, "keelson-scheduler"),
        scheduler_holder,
        "scheduler took over"
    );
    assert_ne!(
        holder(&cluster, "keelson-controller-manager"),
        manager_holder
    );
    assert!(schedulers[1 - s].is_running() && managers[1 - m].is_running());
    eprintln!(
        "rollout finished {:?} after the leaders were killed",
        killed.elapsed()
    );

    // Settled: exactly 12 live pods, all from the new ReplicaSet, none extra.
    eventually(
        Duration::from_secs(60),
        "exactly 12 new pods and nothing else",
        || {
            let pods = json(&ok(
                cluster.kubectl(&["get", "pods", "-l", "app=web", "-o", "json"])
            ));
            let items = pods["items"].as_array().unwrap();
            let live: Vec<_> = items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .collect();
            let new = live
                .iter()
                .filter(|p| {
                    p["spec"]["containers"][0]["image"] == "nginx:1.26"
                        && p["status"]["phase"] == "Running"
                })
                .count();
            (items.len() == 12 && live.len() == 12 && new == 12).then_some(())
        },
    );
    let rs = json(&ok(
        cluster.kubectl(&["get", "rs", "-l", "app=web", "-o", "json"])
    ));
    let mut replicas: Vec<i64> = rs["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"]["replicas"].as_i64().unwrap_or(0))
        .collect();
    replicas.sort();
    assert_eq!(replicas, [0, 12]);
}
