//! Deployment against a real apiserver and etcd, with the ReplicaSet controller
//! creating the pods and a stand-in kubelet (a loop in the test) marking every pod
//! Running and Ready shortly after it appears.

use crate::support;

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::core::v1::Pod;
use keelson_client::{
    Api, Client, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use keelson_testkit::Cluster;
use serde_json::json;
use support::{controlled_by, eventually_within, mark_ready};

const WAIT: Duration = Duration::from_secs(60);

async fn start() -> (Cluster, Client, tokio::task::JoinHandle<()>) {
    keelson_component::init_logging();
    let started = support::start(&["deployment", "replicaset"]).await;
    tokio::spawn(kubelet(started.1.clone()));
    started
}

const HASH: &str = "pod-template-hash";
const REVISION: &str = "deployment.kubernetes.io/revision";

/// Pods with this in their image never become ready.
const NEVER_READY: &str = "never-ready";

/// Marks every pod in `default` Running and Ready 300 ms after it is first seen.
async fn kubelet(client: Client) {
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let mut seen: HashMap<String, Instant> = HashMap::new();
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let Ok(list) = pods.list(&ListParams::default()).await else {
            continue;
        };
        for p in list.items {
            let uid = p.metadata.uid.clone().unwrap_or_default();
            let first = *seen.entry(uid).or_insert_with(Instant::now);
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready"));
            let image = p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.image.clone())
                .unwrap_or_default();
            if ready || p.metadata.deletion_timestamp.is_some() || image.contains(NEVER_READY) {
                continue;
            }
            if first.elapsed() < Duration::from_millis(300) {
                continue;
            }
            let name = p.metadata.name.unwrap_or_default();
            let _ = mark_ready(&pods, &name).await;
        }
    }
}

fn deployment(name: &str, replicas: i32, strategy: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "strategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.25"}]}
            }
        }
    }))
    .unwrap()
}

fn annotation<'a>(
    meta: &'a k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
    key: &str,
) -> Option<&'a str> {
    meta.annotations.as_ref()?.get(key).map(String::as_str)
}

/// The deployment's ReplicaSets (by controllerRef), oldest revision first.
async fn replica_sets(client: &Client, d: &Deployment) -> Vec<ReplicaSet> {
    let api: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let uid = d.metadata.uid.clone().unwrap();
    let mut rss: Vec<ReplicaSet> = api
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|rs| controlled_by(&rs.metadata, &uid))
        .collect();
    rss.sort_by_key(|rs| {
        annotation(&rs.metadata, REVISION)
            .and_then(|r| r.parse::<i64>().ok())
            .unwrap_or(0)
    });
    rss
}

fn rs_replicas(rs: &ReplicaSet) -> i32 {
    rs.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1)
}

/// What `kubectl rollout status` waits for.
async fn rolled_out(deployments: &Api<Deployment>, name: &str) -> Deployment {
    eventually_within(WAIT, &format!("{name} rolled out"), || async {
        let d = deployments.get(name).await.ok()?;
        let s = d.status.clone()?;
        let want = d.spec.as_ref()?.replicas?;
        (s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(want)
            && s.replicas == Some(want)
            && s.available_replicas == Some(want))
        .then_some(d)
    })
    .await
}

async fn set_image(deployments: &Api<Deployment>, name: &str, image: &str) {
    let patch =
        json!({"spec": {"template": {"spec": {"containers": [{"name": "c", "image": image}]}}}});
    deployments
        .patch(name, &PatchParams::default(), &Patch::Merge(patch))
        .await
        .unwrap();
}

fn condition(d: &Deployment, type_: &str) -> (String, String, String) {
    let c = d
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_))
        .unwrap_or_else(|| panic!("no {type_} condition"));
    (
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn creates_a_replicaset_and_reports_availability() {
    let (_cluster, client, _cm) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let strategy = json!({"type": "RollingUpdate"});
    deployments
        .create(&PostParams::default(), &deployment("web", 3, strategy))
        .await
        .unwrap();

    let d = rolled_out(&deployments, "web").await;
    let rss = replica_sets(&client, &d).await;
    assert_eq!(rss.len(), 1);
    let rs = &rss[0];
    let hash = rs.metadata.labels.as_ref().unwrap()[HASH].clone();
    assert_eq!(
        rs.metadata.name.as_deref(),
        Some(format!("web-{hash}").as_str())
    );
    assert!(hash
        .chars()
        .all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
    let spec = rs.spec.as_ref().unwrap();
    assert_eq!(spec.selector.match_labels.as_ref().unwrap()[HASH], hash);
    let template_labels = spec
        .template
        .as_ref()
        .unwrap()
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .clone();
    assert_eq!(template_labels.unwrap()[HASH], hash);
    assert_eq!(annotation(&rs.metadata, REVISION), Some("1"));
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/desired-replicas"),
        Some("3")
    );
    // 25% surge of 3 rounds up to 1.
    assert_eq!(
        annotation(&rs.metadata, "deployment.kubernetes.io/max-replicas"),
        Some("4")
    );
    assert_eq!(annotation(&d.metadata, REVISION), Some("1"));

    let listed = pods
        .list(&ListParams::default().labels(&format!("{HASH}={hash}")))
        .await
        .unwrap();
    assert_eq!(listed.items.len(), 3);

    let d = eventually_within(WAIT, "conditions", || async {
        let d = deployments.get("web").await.ok()?;
        (condition(&d, "Progressing").1 == "NewReplicaSetAvailable").then_some(d)
    })
    .await;
    let s = d.status.as_ref().unwrap();
    assert_eq!((s.available_replicas, s.ready_replicas), (Some(3), Some(3)));
    assert_eq!(s.unavailable_replicas.unwrap_or(0), 0);
    assert_eq!(
        condition(&d, "Available"),
        (
            "True".into(),
            "MinimumReplicasAvailable".into(),
            "Deployment has minimum availability.".into()
        )
    );
    assert_eq!(
        condition(&d, "Progressing"),
        (
            "True".into(),
            "NewReplicaSetAvailable".into(),
            format!("ReplicaSet \"web-{hash}\" has successfully progressed.")
        )
    );
    assert_eq!(
        d.metadata.uid,
        rs.metadata.owner_references.as_ref().unwrap()[0]
            .uid
            .clone()
            .into()
    );
}

/// Per pod: (template hash, ready), for pods not being deleted.
type Live = BTreeMap<String, (String, bool)>;

fn track(live: &mut Live, event: WatchEvent<Pod>) {
    let (pod, gone) = match event {
        WatchEvent::Added(p) | WatchEvent::Modified(p) => {
            let gone = p.metadata.deletion_timestamp.is_some();
            (p, gone)
        }
        WatchEvent::Deleted(p) => (p, true),
        _ => return,
    };
    let name = pod.metadata.name.clone().unwrap_or_default();
    if gone {
        live.remove(&name);
        return;
    }
    let hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH))
        .cloned()
        .unwrap_or_default();
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    live.insert(name, (hash, ready));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_stays_within_surge_and_unavailability() {
    let (_cluster, client, _cm) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 1}});
    deployments
        .create(&PostParams::default(), &deployment("roll", 4, strategy))
        .await
        .unwrap();
    let d = rolled_out(&deployments, "roll").await;
    let first = replica_sets(&client, &d).await.remove(0);

    // Every pod change in order, from the state before the update.
    let list = pods.list(&ListParams::default()).await.unwrap();
    let mut live = Live::new();
    for p in list.items {
        track(&mut live, WatchEvent::Added(p));
    }
    let mut events = pods
        .watch(&WatchParams::default(), &list.metadata.resource_version)
        .await
        .unwrap();
    set_image(&deployments, "roll", "nginx:1.26").await;

    let (mut most, mut fewest_ready) = (live.len(), usize::MAX);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
        if let Ok(Some(Ok(e))) = next {
            track(&mut live, e);
            let ready = live.values().filter(|(_, r)| *r).count();
            most = most.max(live.len());
            fewest_ready = fewest_ready.min(ready);
            assert!(
                live.len() <= 5,
                "more than replicas+maxSurge pods: {live:?}"
            );
            assert!(
                ready >= 3,
                "fewer than replicas-maxUnavailable ready: {live:?}"
            );
        }
        let d = deployments.get("roll").await.unwrap();
        let s = d.status.clone().unwrap_or_default();
        let done = s.observed_generation >= d.metadata.generation
            && s.updated_replicas == Some(4)
            && s.replicas == Some(4)
            && s.available_replicas == Some(4);
        if done && live.len() == 4 && live.values().all(|(h, r)| *r && h != first_hash(&first)) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rollout did not finish: {s:?} {live:?}"
        );
    }
    assert_eq!(most, 5, "the rollout used its surge");
    assert_eq!(
        fewest_ready, 3,
        "the rollout used its unavailability budget"
    );

    let d = deployments.get("roll").await.unwrap();
    let rss = replica_sets(&client, &d).await;
    assert_eq!(rss.len(), 2);
    assert_eq!(rss[0].metadata.name, first.metadata.name);
    assert_eq!(rs_replicas(&rss[0]), 0);
    assert_eq!(rs_replicas(&rss[1]), 4);
    assert_eq!(annotation(&rss[0].metadata, REVISION), Some("1"));
    assert_eq!(annotation(&rss[1].metadata, REVISION), Some("2"));
    assert_eq!(annotation(&d.metadata, REVISION), Some("2"));
}

fn first_hash(rs: &ReplicaSet) -> &str {
    rs.metadata.labels.as_ref().unwrap()[HASH].as_str()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recreate_removes_old_pods_before_creating_new_ones() {
    let (_cluster, client, _cm) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    deployments
        .create(
            &PostParams::default(),
            &deployment("rec", 3, json!({"type": "Recreate"})),
        )
        .await
        .unwrap();
    let d = rolled_out(&deployments, "rec").await;
    let old_hash = first_hash(&replica_sets(&client, &d).await[0]).to_string();

    let list = pods.list(&ListParams::default()).await.unwrap();
    let mut live = Live::new();
    for p in list.items {
        track(&mut live, WatchEvent::Added(p));
    }
    let mut events = pods
        .watch(&WatchParams::default(), &list.metadata.resource_version)
        .await
        .unwrap();
    set_image(&deployments, "rec", "nginx:1.26").await;

    let deadline = Instant::now() + Duration::from_secs(60);
    let mut saw_none = false;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), events.next()).await;
        if let Ok(Some(Ok(e))) = next {
            track(&mut live, e);
            let old = live.values().filter(|(h, _)| *h == old_hash).count();
            assert!(
                old == 0 || old == live.len(),
                "old and new pods together: {live:?}"
            );
            saw_none |= live.is_empty();
        }
        // What the conformance test watches: never updated pods beside old ones.
        let s = deployments
            .get("rec")
            .await
            .unwrap()
            .status
            .unwrap_or_default();
        let (updated, replicas) = (s.updated_replicas.unwrap_or(0), s.replicas.unwrap_or(0));
        assert!(
            updated == 0 || updated == replicas,
            "new pods alongside old ones: {s:?}"
        );
        if live.len() == 3 && live.values().all(|(h, r)| *r && *h != old_hash) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "recreate did not finish: {live:?}"
        );
    }
    assert!(saw_none, "every old pod was gone before the new ones came");
    let d = rolled_out(&deployments, "rec").await;
    let rss = replica_sets(&client, &d).await;
    assert_eq!(rss.iter().map(rs_replicas).collect::<Vec<_>>(), [0, 3]);
    assert_eq!(annotation(&d.metadata, REVISION), Some("2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollback_reuses_the_old_replicaset() {
    let (_cluster, client, _cm) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("undo", 2, json!({"type": "RollingUpdate"}));
    d.metadata.annotations = Some(
        [(
            "kubernetes.io/change-cause".to_string(),
            "first".to_string(),
        )]
        .into(),
    );
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let d = rolled_out(&deployments, "undo").await;
    let first = replica_sets(&client, &d).await.remove(0);
    assert_eq!(
        annotation(&first.metadata, "kubernetes.io/change-cause"),
        Some("first")
    );

    set_image(&deployments, "undo", "nginx:1.26").await;
    eventually_within(WAIT, "a second ReplicaSet", || async {
        let d = deployments.get("undo").await.ok()?;
        (replica_sets(&client, &d).await.len() == 2).then_some(())
    })
    .await;
    let d = rolled_out(&deployments, "undo").await;

    // What `kubectl rollout undo` sends: the old ReplicaSet's template without the hash.
    let mut template = first.spec.clone().unwrap().template.unwrap();
    template
        .metadata
        .as_mut()
        .unwrap()
        .labels
        .as_mut()
        .unwrap()
        .remove(HASH);
    let patch = json!([{"op": "replace", "path": "/spec/template", "value": template}]);
    deployments
        .patch("undo", &PatchParams::default(), &Patch::<()>::Json(patch))
        .await
        .unwrap();

    eventually_within(WAIT, "the rollback's revision", || async {
        let got = deployments.get("undo").await.ok()?;
        (got.metadata.generation > d.metadata.generation
            && annotation(&got.metadata, REVISION) == Some("3"))
        .then_some(())
    })
    .await;
    let d = rolled_out(&deployments, "undo").await;
    let rss = replica_sets(&client, &d).await;
    assert_eq!(rss.len(), 2, "no new ReplicaSet for a rollback");
    let reused = &rss[1];
    assert_eq!(reused.metadata.name, first.metadata.name);
    assert_eq!(annotation(&reused.metadata, REVISION), Some("3"));
    assert_eq!(
        annotation(
            &reused.metadata,
            "deployment.kubernetes.io/revision-history"
        ),
        Some("1")
    );
    assert_eq!(rs_replicas(reused), 2);
    assert_eq!(annotation(&rss[0].metadata, REVISION), Some("2"));
    assert_eq!(rs_replicas(&rss[0]), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_waits_and_old_replicasets_are_pruned() {
    let (_cluster, client, _cm) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("pause", 2, json!({"type": "RollingUpdate"}));
    d.spec.as_mut().unwrap().revision_history_limit = Some(1);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let d = rolled_out(&deployments, "pause").await;
    let first = replica_sets(&client, &d).await.remove(0);

    let pause = |paused: bool| json!({"spec": {"paused": paused}});
    deployments
        .patch("pause", &PatchParams::default(), &Patch::Merge(pause(true)))
        .await
        .unwrap();
    eventually_within(WAIT, "the paused condition", || async {
        let d = deployments.get("pause").await.ok()?;
        (condition(&d, "Progressing")
            == (
                "Unknown".into(),
                "DeploymentPaused".into(),
                "Deployment is paused".into(),
            ))
            .then_some(())
    })
    .await;

    // A template change waits; a scale does not.
    set_image(&deployments, "pause", "nginx:1.26").await;
    deployments
        .patch(
            "pause",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .unwrap();
    let d = eventually_within(WAIT, "scaled while paused", || async {
        let d = deployments.get("pause").await.ok()?;
        let s = d.status.clone()?;
        (s.observed_generation == d.metadata.generation && s.available_replicas == Some(3))
            .then_some(d)
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss = replica_sets(&client, &d).await;
    assert_eq!(rss.len(), 1, "no rollout while paused");
    assert_eq!(rss[0].metadata.name, first.metadata.name);
    assert_eq!(rs_replicas(&rss[0]), 3);

    deployments
        .patch(
            "pause",
            &PatchParams::default(),
            &Patch::Merge(pause(false)),
        )
        .await
        .unwrap();
    eventually_within(WAIT, "the resumed rollout", || async {
        let d = deployments.get("pause").await.ok()?;
        (annotation(&d.metadata, REVISION) == Some("2")).then_some(())
    })
    .await;
    let d = rolled_out(&deployments, "pause").await;
    assert_eq!(replica_sets(&client, &d).await.len(), 2);

    // A third template: with revisionHistoryLimit 1 the first ReplicaSet goes.
    set_image(&deployments, "pause", "nginx:1.27").await;
    eventually_within(WAIT, "one old ReplicaSet kept", || async {
        let d = deployments.get("pause").await.ok()?;
        let rss = replica_sets(&client, &d).await;
        let revisions: Vec<_> = rss
            .iter()
            .map(|rs| annotation(&rs.metadata, REVISION).unwrap_or("").to_string())
            .collect();
        (revisions == ["2", "3"]).then_some(())
    })
    .await;
    let d = rolled_out(&deployments, "pause").await;
    let rss = replica_sets(&client, &d).await;
    assert_eq!(rss.iter().map(rs_replicas).collect::<Vec<_>>(), [0, 3]);
    assert!(rss.iter().all(|rs| rs.metadata.name != first.metadata.name));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_mid_rollout_is_proportional_and_a_stuck_rollout_times_out() {
    let (_cluster, client, _cm) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 0}});
    let mut d = deployment("prop", 10, strategy);
    d.spec.as_mut().unwrap().progress_deadline_seconds = Some(4);
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    rolled_out(&deployments, "prop").await;
    // New pods never become ready, so the rollout stops at the surge: 10 old + 3 new.
    set_image(&deployments, "prop", &format!("nginx:{NEVER_READY}")).await;
    eventually_within(WAIT, "the rollout stuck at its surge", || async {
        let d = deployments.get("prop").await.ok()?;
        let sizes: Vec<i32> = replica_sets(&client, &d)
            .await
            .iter()
            .map(rs_replicas)
            .collect();
        (sizes == [10, 3]).then_some(())
    })
    .await;

    // 10 -> 20 replicas: at most 13 -> 23 pods, shared as 10:3 (Kubernetes rounds
    // 10*23/13 = 17.7 to 18 and 3*23/13 = 5.3 to 5).
    deployments
        .patch(
            "prop",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 20}})),
        )
        .await
        .unwrap();
    eventually_within(WAIT, "proportional scale-up", || async {
        let d = deployments.get("prop").await.ok()?;
        let sizes: Vec<i32> = replica_sets(&client, &d)
            .await
            .iter()
            .map(rs_replicas)
            .collect();
        (sizes == [18, 5]).then_some(())
    })
    .await;

    // No progress within progressDeadlineSeconds: Progressing turns False.
    let d = eventually_within(WAIT, "the progress deadline", || async {
        let d = deployments.get("prop").await.ok()?;
        (condition(&d, "Progressing").0 == "False").then_some(d)
    })
    .await;
    let new_rs = replica_sets(&client, &d).await.remove(1);
    assert_eq!(
        condition(&d, "Progressing"),
        (
            "False".into(),
            "ProgressDeadlineExceeded".into(),
            format!(
                "ReplicaSet {:?} has timed out progressing.",
                new_rs.metadata.name.unwrap()
            )
        )
    );
    // 18 ready old pods of 20 wanted, with maxUnavailable 0.
    assert_eq!(
        condition(&d, "Available"),
        (
            "False".into(),
            "MinimumReplicasUnavailable".into(),
            "Deployment does not have minimum availability.".into()
        )
    );
}

/// The real kubectl: `rollout status`, `history`, `undo` and `restart` against what
/// this controller writes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_rollout_status_history_undo_and_restart() {
    let (cluster, client, _cm) = start().await;
    let kubectl =
        |args: &[&str]| keelson_testkit::ok(tokio::task::block_in_place(|| cluster.kubectl(args)));
    let status = || kubectl(&["rollout", "status", "deployment/k", "--timeout=60s"]);
    let history = || -> Vec<(String, String)> {
        kubectl(&["rollout", "history", "deployment/k"])
            .lines()
            .skip(2)
            .filter(|l| !l.trim().is_empty())
            .map(|l| {
                let (rev, cause) = l.split_once(char::is_whitespace).unwrap();
                (rev.to_string(), cause.trim().to_string())
            })
            .collect()
    };

    kubectl(&[
        "create",
        "deployment",
        "k",
        "--image=nginx:1.25",
        "--replicas=2",
    ]);
    assert!(status().contains("deployment \"k\" successfully rolled out"));

    kubectl(&["set", "image", "deployment/k", "nginx=nginx:1.26"]);
    kubectl(&[
        "annotate",
        "deployment/k",
        "kubernetes.io/change-cause=to 1.26",
    ]);
    assert!(status().contains("successfully rolled out"));
    assert_eq!(
        history(),
        [
            ("1".into(), "<none>".into()),
            ("2".into(), "to 1.26".into())
        ]
    );

    // Undo goes back to revision 1's template; its ReplicaSet becomes revision 3.
    assert!(kubectl(&["rollout", "undo", "deployment/k"]).contains("rolled back"));
    status();
    let revisions: Vec<String> = history().into_iter().map(|(r, _)| r).collect();
    assert_eq!(revisions, ["2", "3"]);
    assert!(
        kubectl(&["rollout", "history", "deployment/k", "--revision=3"]).contains("nginx:1.25")
    );
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let d = deployments.get("k").await.unwrap();
    let image = d.spec.unwrap().template.spec.unwrap().containers[0]
        .image
        .clone();
    assert_eq!(image.as_deref(), Some("nginx:1.25"));

    // Restart changes a template annotation: a new ReplicaSet, revision 4.
    assert!(kubectl(&["rollout", "restart", "deployment/k"]).contains("restarted"));
    status();
    let revisions: Vec<String> = history().into_iter().map(|(r, _)| r).collect();
    assert_eq!(revisions, ["2", "3", "4"]);
    let d = deployments.get("k").await.unwrap();
    assert_eq!(replica_sets(&client, &d).await.len(), 3);
}

/// The conformance test "RollingUpdate should delete old pods and create new ones": an
/// orphan ReplicaSet with the deployment's selector and a revision is adopted, its
/// revision continued, and its pods replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_an_orphan_replicaset_and_replaces_its_pods() {
    let (_cluster, client, _cm) = start().await;
    let rss: Api<ReplicaSet> = Api::namespaced(client.clone(), "default");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    let labels = json!({"name": "sample-pod", "pod": "httpd"});
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "test-rolling-update-controller", "labels": labels,
            "annotations": {REVISION: "3546343826724305832"}},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "httpd", "image": "httpd:2.4"}]}}}
    }))
    .unwrap();
    let rs = rss.create(&PostParams::default(), &rs).await.unwrap();
    eventually_within(WAIT, "the orphan's pod", || async {
        let s = rss
            .get("test-rolling-update-controller")
            .await
            .ok()?
            .status?;
        (s.ready_replicas == Some(1)).then_some(())
    })
    .await;

    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "test-rolling-update-deployment"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels},
            "strategy": {"type": "RollingUpdate"},
            "template": {"metadata": {"labels": labels},
                "spec": {"containers": [{"name": "agnhost", "image": "agnhost:2.52"}]}}}
    }))
    .unwrap();
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let d = rolled_out(&deployments, "test-rolling-update-deployment").await;
    assert_eq!(
        annotation(&d.metadata, REVISION),
        Some("3546343826724305833")
    );

    let owned = replica_sets(&client, &d).await;
    assert_eq!(owned.len(), 2, "the orphan was adopted");
    assert_eq!(owned[0].metadata.uid, rs.metadata.uid);
    assert_eq!(rs_replicas(&owned[0]), 0);
    let new_hash = first_hash(&owned[1]).to_string();
    eventually_within(WAIT, "only new pods", || async {
        let live: Vec<Pod> = pods
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
            .collect();
        (live.len() == 1 && live[0].metadata.labels.as_ref()?.get(HASH) == Some(&new_hash))
            .then_some(())
    })
    .await;
}

/// A ReplicaSet that cannot create its pods (here: an unknown PriorityClass, refused
/// by admission) shows up as the deployment's ReplicaFailure condition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replica_failure_is_surfaced() {
    let (_cluster, client, _cm) = start().await;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), "default");
    let mut d = deployment("fail", 1, json!({"type": "RollingUpdate"}));
    let template = &mut d.spec.as_mut().unwrap().template;
    template.spec.as_mut().unwrap().priority_class_name = Some("no-such-class".into());
    deployments
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let d = eventually_within(WAIT, "the ReplicaFailure condition", || async {
        let d = deployments.get("fail").await.ok()?;
        let has = d
            .status
            .as_ref()?
            .conditions
            .as_ref()?
            .iter()
            .any(|c| c.type_ == "ReplicaFailure");
        has.then_some(d)
    })
    .await;
    let (status, reason, message) = condition(&d, "ReplicaFailure");
    assert_eq!((status.as_str(), reason.as_str()), ("True", "FailedCreate"));
    assert!(message.contains("no-such-class"), "{message}");
    assert_eq!(condition(&d, "Available").0, "False");

    // The ReplicaSet controller keeps retrying; its identical warnings fold into one
    // Event whose count grows, as client-go's event correlator makes them.
    let events: Api<k8s_openapi::api::core::v1::Event> = Api::namespaced(client, "default");
    let failed_creates = || async {
        let list = events.list(&ListParams::default()).await.ok()?;
        let failed: Vec<_> = list
            .items
            .into_iter()
            .filter(|e| {
                e.reason.as_deref() == Some("FailedCreate")
                    && e.involved_object.kind.as_deref() == Some("ReplicaSet")
            })
            .collect();
        Some(failed)
    };
    let repeated = eventually_within(WAIT, "a FailedCreate event counting repeats", || async {
        let failed = failed_creates().await?;
        failed
            .iter()
            .any(|e| e.count.unwrap_or(0) >= 3)
            .then_some(failed)
    })
    .await;
    assert_eq!(
        repeated.len(),
        1,
        "repeats must not create new Events: {repeated:?}"
    );
}
