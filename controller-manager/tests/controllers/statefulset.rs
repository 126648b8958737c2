//! The StatefulSet controller against a real etcd and apiserver (`cargo build -p
//! keelson-apiserver` first). Pods get no node: the tests play the kubelet by writing
//! pod status (Running, Ready) through the status subresource.

use crate::support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet};
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use keelson_client::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::{json, Value};
use support::{mark_ready, poll, record_pod_events, set_phase, start};

const NS: &str = "default";
const HASH: &str = "controller-revision-hash";

const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_millis(50);

fn set(name: &str, spec: Value) -> StatefulSet {
    let mut full = json!({
        "replicas": 3,
        "serviceName": name,
        "selector": {"matchLabels": {"app": name}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {"containers": [{"name": "nginx", "image": "nginx:1.25",
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}
        },
        "volumeClaimTemplates": [{"metadata": {"name": "data"}, "spec": {
            "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}}]
    });
    for (k, v) in spec.as_object().unwrap() {
        full[k] = v.clone();
    }
    serde_json::from_value(json!({
        "apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": name, "namespace": NS},
        "spec": full,
    }))
    .unwrap()
}

/// Plays the kubelet for every pod of the namespace: each becomes Running and Ready.
fn kubelet(pods: Api<Pod>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            if let Ok(list) = pods.list(&ListParams::default()).await {
                for p in list {
                    let name = p.metadata.name.clone().unwrap_or_default();
                    let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                    if p.metadata.deletion_timestamp.is_none()
                        && phase.as_deref() == Some("Pending")
                    {
                        let _ = mark_ready(&pods, &name).await;
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

fn events_of(log: &Arc<Mutex<Vec<(String, String)>>>, kind: &str) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(k, _)| k == kind)
        .map(|(_, n)| n.clone())
        .collect()
}

fn revision_label(pod: &Pod) -> String {
    pod.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH))
        .cloned()
        .unwrap_or_default()
}

async fn status(sets: &Api<StatefulSet>, name: &str) -> Value {
    let s = sets.get(name).await.unwrap();
    let mut v = serde_json::to_value(&s.status).unwrap();
    v["generation"] = json!(s.metadata.generation);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordered_ready_scale_up_and_down_with_claims() {
    let (_cluster, client, _cm) = start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    let log = record_pod_events(&pods, |kind, p| {
        (kind.to_string(), p.metadata.name.unwrap_or_default())
    })
    .await;
    sets.create(&PostParams::default(), &set("web", json!({})))
        .await
        .unwrap();

    // web-0 first, with its claim, identity and volume.
    let web0 = poll(POLL, WAIT, "web-0", || async {
        pods.get_opt("web-0").await.unwrap()
    })
    .await;
    let claim = claims
        .get("data-web-0")
        .await
        .expect("the claim exists before the pod");
    assert_eq!(claim.metadata.labels.unwrap()["app"], "web");
    let v = serde_json::to_value(&web0).unwrap();
    assert_eq!(v["spec"]["hostname"], "web-0");
    assert_eq!(v["spec"]["subdomain"], "web");
    assert_eq!(
        v["metadata"]["labels"]["statefulset.kubernetes.io/pod-name"],
        "web-0"
    );
    assert_eq!(v["metadata"]["labels"]["apps.kubernetes.io/pod-index"], "0");
    assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "StatefulSet");
    assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
    let volume = v["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "data")
        .cloned();
    assert_eq!(
        volume.unwrap()["persistentVolumeClaim"]["claimName"],
        "data-web-0"
    );

    // OrderedReady: nothing more until web-0 is Running and Ready.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        pods.get_opt("web-1").await.unwrap().is_none(),
        "web-1 waits for web-0"
    );
    mark_ready(&pods, "web-0")
        .await
        .expect("marking the pod ready");
    poll(POLL, WAIT, "web-1", || async {
        pods.get_opt("web-1").await.unwrap()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(
        pods.get_opt("web-2").await.unwrap().is_none(),
        "web-2 waits for web-1"
    );
    mark_ready(&pods, "web-1")
        .await
        .expect("marking the pod ready");
    poll(POLL, WAIT, "web-2", || async {
        pods.get_opt("web-2").await.unwrap()
    })
    .await;
    mark_ready(&pods, "web-2")
        .await
        .expect("marking the pod ready");
    assert_eq!(events_of(&log, "ADDED"), ["web-0", "web-1", "web-2"]);
    for c in ["data-web-0", "data-web-1", "data-web-2"] {
        claims
            .get(c)
            .await
            .unwrap_or_else(|e| panic!("claim {c}: {e}"));
    }

    // Status and the revision.
    let st = poll(POLL, WAIT, "status with 3 ready", || async {
        let st = status(&sets, "web").await;
        (st["readyReplicas"] == 3 && st["availableReplicas"] == 3).then_some(st)
    })
    .await;
    assert_eq!(st["replicas"], 3);
    assert_eq!(st["currentReplicas"], 3);
    assert_eq!(st["updatedReplicas"], 3);
    assert_eq!(st["observedGeneration"], st["generation"]);
    assert_eq!(st["currentRevision"], st["updateRevision"]);
    let revision = st["updateRevision"].as_str().unwrap().to_string();
    assert!(revision.starts_with("web-"), "{revision}");
    let cr = revisions.get(&revision).await.unwrap();
    assert_eq!(cr.revision, 1);
    let data = &cr.data.as_ref().unwrap().0;
    assert_eq!(data["spec"]["template"]["$patch"], "replace");
    assert_eq!(
        data["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    assert_eq!(
        cr.metadata.labels.as_ref().unwrap()[HASH],
        revision.trim_start_matches("web-")
    );
    assert_eq!(revision_label(&pods.get("web-2").await.unwrap()), revision);

    // Scale down to 1: web-2 goes first, then web-1; claims stay (Retain).
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    poll(POLL, WAIT, "web-1 and web-2 deleted", || async {
        (events_of(&log, "DELETED").len() >= 2).then_some(())
    })
    .await;
    assert_eq!(events_of(&log, "DELETED"), ["web-2", "web-1"]);
    poll(POLL, WAIT, "status replicas 1", || async {
        (status(&sets, "web").await["replicas"] == 1).then_some(())
    })
    .await;
    claims
        .get("data-web-2")
        .await
        .expect("claims are retained by default");
    assert!(pods.get_opt("web-0").await.unwrap().is_some());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rolling_update_respects_partition_and_rolls_back() {
    let (_cluster, client, _cm) = start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), NS);
    let kubelet = kubelet(pods.clone());
    let spec =
        json!({"updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 2}}});
    sets.create(&PostParams::default(), &set("web", spec))
        .await
        .unwrap();
    let st = poll(POLL, WAIT, "3 ready", || async {
        let st = status(&sets, "web").await;
        (st["readyReplicas"] == 3).then_some(st)
    })
    .await;
    let r1 = st["updateRevision"].as_str().unwrap().to_string();
    let uid = |p: &Pod| p.metadata.uid.clone().unwrap();
    let web0 = uid(&pods.get("web-0").await.unwrap());
    let web1 = uid(&pods.get("web-1").await.unwrap());

    // A new template: only web-2 (ordinal >= partition) moves to the new revision.
    let image = |i: &str| json!({"spec": {"template": {"spec": {"containers": [{"name": "nginx", "image": i}]}}}});
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(image("nginx:1.26")),
    )
    .await
    .unwrap();
    let st = poll(POLL, WAIT, "web-2 updated", || async {
        let st = status(&sets, "web").await;
        (st["updatedReplicas"] == 1 && st["readyReplicas"] == 3).then_some(st)
    })
    .await;
    let r2 = st["updateRevision"].as_str().unwrap().to_string();
    assert_ne!(r1, r2);
    assert_eq!(st["currentRevision"], r1.as_str());
    assert_eq!(st["currentReplicas"], 2);
    assert_eq!(revision_label(&pods.get("web-2").await.unwrap()), r2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    for (name, before) in [("web-0", &web0), ("web-1", &web1)] {
        let p = pods.get(name).await.unwrap();
        assert_eq!(&uid(&p), before, "{name} is below the partition");
        assert_eq!(revision_label(&p), r1);
    }
    assert_eq!(revisions.get(&r2).await.unwrap().revision, 2);

    // Partition 0: the rest follow, highest ordinal first, and r2 becomes current.
    let log = record_pod_events(&pods, |kind, p| {
        (kind.to_string(), p.metadata.name.unwrap_or_default())
    })
    .await;
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}})),
    )
    .await
    .unwrap();
    let st = poll(POLL, WAIT, "rollout complete", || async {
        let st = status(&sets, "web").await;
        (st["currentRevision"] == r2.as_str()
            && st["updatedReplicas"] == 3
            && st["readyReplicas"] == 3)
            .then_some(st)
    })
    .await;
    assert_eq!(st["currentReplicas"], 3);
    assert_eq!(events_of(&log, "DELETED"), ["web-1", "web-0"]);

    // A failed pod is replaced.
    let before = uid(&pods.get("web-1").await.unwrap());
    set_phase(&pods, "web-1", "Failed").await;
    poll(POLL, WAIT, "web-1 recreated", || async {
        let p = pods.get_opt("web-1").await.unwrap()?;
        (uid(&p) != before).then_some(())
    })
    .await;

    // Rolling back to the first template reuses (renumbers) the first revision.
    sets.patch(
        "web",
        &PatchParams::default(),
        &Patch::Strategic(image("nginx:1.25")),
    )
    .await
    .unwrap();
    poll(POLL, WAIT, "rolled back", || async {
        let st = status(&sets, "web").await;
        (st["currentRevision"] == r1.as_str()
            && st["updatedReplicas"] == 3
            && st["readyReplicas"] == 3)
            .then_some(())
    })
    .await;
    let all = revisions.list(&ListParams::default()).await.unwrap();
    assert_eq!(all.items.len(), 2, "no new revision for a rollback");
    assert_eq!(revisions.get(&r1).await.unwrap().revision, 3);
    kubelet.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_with_start_ordinal_and_claim_retention() {
    let (_cluster, client, _cm) = start(&["statefulset"]).await;
    let sets: Api<StatefulSet> = Api::namespaced(client.clone(), NS);
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let claims: Api<PersistentVolumeClaim> = Api::namespaced(client.clone(), NS);
    let spec = json!({
        "podManagementPolicy": "Parallel",
        "ordinals": {"start": 5},
        "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Delete", "whenScaled": "Delete"},
    });
    let created = sets
        .create(&PostParams::default(), &set("db", spec))
        .await
        .unwrap();
    // Parallel: all three at once, none of them ready.
    for name in ["db-5", "db-6", "db-7"] {
        poll(POLL, WAIT, name, || async {
            pods.get_opt(name).await.unwrap()
        })
        .await;
    }
    assert!(pods.get_opt("db-0").await.unwrap().is_none());
    // WhenDeleted=Delete: each claim is controlled by the set.
    let claim = claims.get("data-db-7").await.unwrap();
    let refs = claim.metadata.owner_references.unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].kind.as_str(), refs[0].uid.as_str()),
        ("StatefulSet", created.metadata.uid.as_deref().unwrap())
    );
    assert_eq!(refs[0].controller, Some(true));

    // Scale down: WhenScaled=Delete hands the claims of removed pods to the pods.
    let db7 = pods.get("db-7").await.unwrap();
    sets.patch(
        "db",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"replicas": 1}})),
    )
    .await
    .unwrap();
    poll(POLL, WAIT, "db-6 and db-7 gone", || async {
        let gone = pods.get_opt("db-6").await.unwrap().is_none()
            && pods.get_opt("db-7").await.unwrap().is_none();
        gone.then_some(())
    })
    .await;
    let refs = claims
        .get("data-db-7")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(
        (refs[0].kind.as_str(), refs[0].uid.as_str()),
        ("Pod", db7.metadata.uid.as_deref().unwrap())
    );
    let refs = claims
        .get("data-db-5")
        .await
        .unwrap()
        .metadata
        .owner_references
        .unwrap();
    assert_eq!(refs[0].kind, "StatefulSet");
}
