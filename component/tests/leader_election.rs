//! Leader election against a real apiserver and etcd: exactly one of two candidates
//! acts, and when the leader dies without releasing, the other takes over within the
//! lease duration.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use keelson_client::{Api, Client};
use keelson_component::{LeaderElection, LeaderElectionOptions};
use keelson_testkit::Cluster;
use prometheus_client::registry::Registry;

fn options() -> LeaderElectionOptions {
    LeaderElectionOptions {
        enabled: true,
        lease_duration: Duration::from_secs(3),
        renew_deadline: Duration::from_secs(2),
        retry_period: Duration::from_millis(300),
        namespace: "kube-system".into(),
        name: None,
    }
}

/// Starts a candidate whose elected work counts itself in `acting` while it runs.
fn candidate(
    client: Client,
    acting: Arc<AtomicUsize>,
    max_acting: Arc<AtomicUsize>,
) -> (String, tokio::task::JoinHandle<()>) {
    let election = LeaderElection::new(
        client,
        "test-component",
        options(),
        &mut Registry::default(),
    );
    let identity = election.identity().to_string();
    let task = tokio::spawn(async move {
        election
            .run(async move {
                struct Acting(Arc<AtomicUsize>);
                impl Drop for Acting {
                    fn drop(&mut self) {
                        self.0.fetch_sub(1, Ordering::SeqCst);
                    }
                }
                let now = acting.fetch_add(1, Ordering::SeqCst) + 1;
                max_acting.fetch_max(now, Ordering::SeqCst);
                let _guard = Acting(acting);
                std::future::pending::<()>().await
            })
            .await;
    });
    (identity, task)
}

async fn holder(api: &Api<Lease>) -> Option<String> {
    api.get("test-component")
        .await
        .ok()
        .and_then(|l| l.spec?.holder_identity)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_and_failover_within_the_lease_duration() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cluster = tokio::task::spawn_blocking(Cluster::start)
        .await
        .unwrap()
        .unwrap();
    let client = Client::from_kubeconfig(&cluster.kubeconfig).unwrap();
    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");

    let acting = Arc::new(AtomicUsize::new(0));
    let max_acting = Arc::new(AtomicUsize::new(0));
    let (id_a, task_a) = candidate(client.clone(), acting.clone(), max_acting.clone());
    let (id_b, task_b) = candidate(client.clone(), acting.clone(), max_acting.clone());

    // One of them acquires; over several retry periods, only ever one acts.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first = loop {
        if let Some(h) = holder(&leases).await {
            break h;
        }
        assert!(Instant::now() < deadline, "no leader elected");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        acting.load(Ordering::SeqCst),
        1,
        "exactly one candidate acts"
    );
    assert_eq!(
        holder(&leases).await.as_deref(),
        Some(first.as_str()),
        "leadership is stable"
    );
    let lease = leases.get("test-component").await.unwrap();
    assert_eq!(lease.spec.as_ref().unwrap().lease_duration_seconds, Some(3));

    // Kill the leader without releasing (as kill -9 would): the other takes over once
    // the lease has gone unrenewed for its duration, and not much later.
    let (leader_task, survivor) = if first == id_a {
        (task_a, id_b)
    } else {
        (task_b, id_a)
    };
    leader_task.abort();
    let killed = Instant::now();
    loop {
        if holder(&leases).await.as_deref() == Some(survivor.as_str()) {
            break;
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "the survivor did not take over"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_millis(2500),
        "took over before the lease expired: {took:?}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(acting.load(Ordering::SeqCst), 1, "the survivor acts");
    assert_eq!(
        max_acting.load(Ordering::SeqCst),
        1,
        "never two acting at once"
    );
    let transitions = leases
        .get("test-component")
        .await
        .unwrap()
        .spec
        .unwrap()
        .lease_transitions;
    assert_eq!(transitions, Some(1));
}
