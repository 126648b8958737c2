//! `--event-ttl`: Events (core/v1 and events.k8s.io/v1) are stored on an etcd lease and
//! disappear that long after their last write, as on Kubernetes; an update extends
//! an Event's life, and other kinds never expire.

use crate::support::{client_for, describe, namespace, obj, Watcher};
use k8s_openapi::api::core::v1::{ConfigMap, Event};
use k8s_openapi::api::events::v1::Event as EventV1;
use keelson_testkit::{ApiserverOptions, Cluster};
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;
use std::time::{Duration, Instant};

const TTL: Duration = Duration::from_secs(6);

fn event(name: &str, ns: &str) -> Event {
    obj(json!({
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {"kind": "Pod", "name": "p", "namespace": ns},
        "reason": "Testing",
        "message": "expires",
        "type": "Normal",
    }))
}

/// Poll until `name` is gone; panics after `within`.
async fn wait_gone<K>(api: &Api<K>, name: &str, within: Duration)
where
    K: kube::Resource + Clone + k8s_openapi::serde::de::DeserializeOwned + std::fmt::Debug,
{
    let deadline = Instant::now() + within;
    while api.get_opt(name).await.expect("get").is_some() {
        assert!(
            Instant::now() < deadline,
            "{name} did not expire within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// A cluster whose apiserver keeps Events for `ttl`.
async fn cluster_with_event_ttl(ttl: Duration) -> Cluster {
    let opts = ApiserverOptions {
        extra_args: vec![format!("--event-ttl={}s", ttl.as_secs())],
        ..Default::default()
    };
    tokio::task::spawn_blocking(move || Cluster::start_with(1, opts))
        .await
        .expect("join")
        .expect("cluster")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_expire_after_their_last_write_and_other_kinds_stay() {
    let cluster = cluster_with_event_ttl(TTL).await;
    let client = client_for(&cluster).await;
    let ns = namespace(&client, "event-ttl").await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let v1_events: Api<EventV1> = Api::namespaced(client.clone(), &ns);
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    let mut watch = Watcher::start(&events, &WatchParams::default(), "0").await;

    let created = Instant::now();
    for name in ["untouched-1", "untouched-2"] {
        events.create(&pp, &event(name, &ns)).await.expect("create");
    }
    events
        .create(&pp, &event("touched", &ns))
        .await
        .expect("create");
    let v1: EventV1 = obj(json!({
        "metadata": {"name": "v1", "namespace": ns},
        "eventTime": "2026-11-22T10:00:00.000000Z",
        "reportingController": "keelson.test/e2e",
        "reportingInstance": "e2e",
        "action": "Testing",
        "reason": "Testing",
        "type": "Normal",
        "regarding": {"kind": "Pod", "name": "p", "namespace": ns},
    }));
    v1_events
        .create(&pp, &v1)
        .await
        .expect("create events.k8s.io/v1");
    let cm: ConfigMap = obj(json!({"metadata": {"name": "stays"}}));
    configmaps.create(&pp, &cm).await.expect("create configmap");

    // Half-way through its life, "touched" is written again: its clock restarts.
    tokio::time::sleep(TTL / 2).await;
    let patch = Patch::Merge(json!({"count": 2}));
    events
        .patch("touched", &PatchParams::default(), &patch)
        .await
        .expect("patch");

    // The untouched ones expire on their own, in one etcd revision (their lease's);
    // watchers see every deletion.
    let mut expired = Vec::new();
    while expired.len() < 2 {
        match watch.next(TTL + Duration::from_secs(20)).await {
            WatchEvent::Deleted(e) => expired.push(e.metadata.name.unwrap_or_default()),
            WatchEvent::Added(_) | WatchEvent::Modified(_) => {}
            other => panic!("unexpected watch event: {}", describe(&other)),
        }
    }
    let lived = created.elapsed();
    expired.sort();
    assert_eq!(
        expired,
        ["untouched-1", "untouched-2"],
        "the events written last must outlive the others"
    );
    assert!(
        lived >= TTL,
        "expired after {lived:?}, before their time to live of {TTL:?}"
    );
    // "touched" was written TTL/2 later, so it is still there; then it goes too.
    assert!(
        events.get_opt("touched").await.expect("get").is_some(),
        "the patched event expired together with the untouched ones"
    );

    wait_gone(&v1_events, "v1", Duration::from_secs(30)).await;
    wait_gone(&events, "touched", Duration::from_secs(30)).await;
    assert!(
        configmaps.get_opt("stays").await.expect("get").is_some(),
        "a ConfigMap must never expire"
    );
}

/// The etcd lease an Event's key is attached to, read with etcdctl.
fn lease_of(cluster: &Cluster, key: &str) -> String {
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &cluster.etcd.url, "get", key, "-w", "fields"])
        .output()
        .expect("running etcdctl");
    let fields = String::from_utf8_lossy(&out.stdout).into_owned();
    let lease = fields
        .lines()
        .find_map(|l| l.strip_prefix("\"Lease\" : "))
        .unwrap_or_else(|| panic!("no lease on {key}: {fields}"));
    format!("{:x}", lease.trim().parse::<i64>().expect("lease id"))
}

/// A lease revoked behind the apiserver's back (an etcd restore, an operator) fails
/// no write: the next Event goes on a new lease, and the revoked one's keys are gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_lease_fails_no_write() {
    let cluster = cluster_with_event_ttl(Duration::from_secs(3600)).await;
    let client = client_for(&cluster).await;
    let ns = namespace(&client, "event-lease").await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let pp = PostParams::default();
    events
        .create(&pp, &event("first", &ns))
        .await
        .expect("create");
    let lease = lease_of(&cluster, &format!("/registry/events/{ns}/first"));
    let out = std::process::Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .args(["--endpoints", &cluster.etcd.url, "lease", "revoke", &lease])
        .output()
        .expect("running etcdctl");
    assert!(out.status.success(), "revoking: {out:?}");

    events
        .create(&pp, &event("second", &ns))
        .await
        .expect("a create after the revocation must succeed");
    assert!(events.get_opt("first").await.expect("get").is_none());
    let second = lease_of(&cluster, &format!("/registry/events/{ns}/second"));
    assert_ne!(second, lease, "the second Event is on a new lease");
}
