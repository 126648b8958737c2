//! Simulated nodes ("hollow nodes", like kwok) for scale tests and for end-to-end tests of
//! the scheduler and controllers without a container runtime.
//!
//! [`run`] registers [`HollowOptions::count`] Nodes, renews their Leases and plays a
//! minimal kubelet for the pods bound to them, until its shutdown future fires. Nodes
//! and Leases are left in place when it returns (as kwok does).
//!
//! - **Nodes** are created with their status (capacity = allocatable, Ready and the
//!   pressure conditions, an InternalIP from 10.200.0.0/16, nodeInfo), or adopted when
//!   they exist: our labels are added and our status written through the status
//!   subresource. Every `node_status_interval` the conditions' `lastHeartbeatTime` is
//!   refreshed (a strategic merge patch of `status.conditions`).
//! - **Leases** in `kube-node-lease`, one per node, owned by the Node, renewed every
//!   `renew_interval`. Renewals and heartbeats are spread evenly over their interval,
//!   with at most `max_in_flight` requests at once.
//! - **Pods**: one watch of every bound pod (`spec.nodeName!=`) feeding a cache of the
//!   pods of our nodes (cut down to the fields it reads), a work queue of pod
//!   keys and `pod_workers` workers. A pod bound to one of our nodes becomes Running
//!   and Ready after `ready_delay`; restartPolicy Never/OnFailure pods finish after
//!   `run_duration` (annotations [`RUN_DURATION_ANNOTATION`] and
//!   [`EXIT_CODE_ANNOTATION`] change that per pod). A deleted pod has its containers
//!   stopped (exit code 143) after `terminate_delay` (at most its grace period), then is
//!   deleted with grace period 0 and a uid precondition, as the kubelet does.
//!
//! ```no_run
//! # async fn f() -> anyhow::Result<()> {
//! let client = keelson_client::Client::from_kubeconfig("/var/lib/keelson/admin.kubeconfig")?;
//! let opts = keelson_hollow_node::HollowOptions::with_count(3);
//! keelson_hollow_node::run(client, opts, async { let _ = tokio::signal::ctrl_c().await; }).await
//! # }
//! ```

pub mod ip;
mod node;
mod options;
mod pods;

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use keelson_client::Client;
use tokio::task::JoinSet;

pub use ip::{fallback_pod_cidr, node_ip, PodIps};
pub use node::{
    node_labels, node_object, FIELD_MANAGER, KUBELET_VERSION, LEASE_NAMESPACE, RUNTIME_VERSION,
};
pub use options::{parse_duration, parse_label, HollowOptions};
pub use pods::{EXIT_CODE_ANNOTATION, KILLED_EXIT_CODE, RUN_DURATION_ANNOTATION};

/// Register the nodes, then renew their Leases, refresh their heartbeats and run their
/// pods until `shutdown` resolves. Returns an error only for unusable options or if a
/// background task dies; API errors are logged and retried.
pub async fn run(
    client: Client,
    opts: HollowOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    if opts.renew_interval.is_zero() || opts.node_status_interval.is_zero() {
        anyhow::bail!("--renew-interval and --node-status-interval must be positive");
    }
    if opts.lease_duration_seconds <= 0 {
        anyhow::bail!("--lease-duration-seconds must be positive");
    }
    let fleet = Arc::new(node::Fleet::new(client, opts));
    let mut tasks: JoinSet<()> = JoinSet::new();
    let work = run_fleet(fleet.clone(), &mut tasks);
    let result = tokio::select! {
        _ = shutdown => Ok(()),
        r = work => r,
    };
    // Stops the informer, workers, renewals and heartbeats (and requests in flight).
    tasks.shutdown().await;
    tracing::info!(
        nodes = fleet.nodes.len(),
        "hollow nodes stopped (Nodes and Leases left registered)"
    );
    result
}

async fn run_fleet(fleet: Arc<node::Fleet>, tasks: &mut JoinSet<()>) -> anyhow::Result<()> {
    let n = fleet.nodes.len();
    let started = tokio::time::Instant::now();
    // Pods of nodes that exist already can run while the rest register.
    pods::Kubelet::start(fleet.clone(), tasks);
    let registered = fleet.register_all().await;
    tracing::info!(
        nodes = n,
        registered,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "{registered} hollow nodes registered"
    );
    let opts = &fleet.opts;
    let f = fleet.clone();
    let renew: node::Job = Arc::new(move |i| -> BoxFuture<'static, ()> {
        let f = f.clone();
        Box::pin(async move {
            if let Err(e) = f.renew_lease(i).await {
                tracing::warn!(node = %f.nodes[i].name, error = %e, "renewing lease failed");
            }
        })
    });
    tasks.spawn(node::spread(
        n,
        opts.renew_interval,
        opts.max_in_flight,
        renew,
    ));
    let f = fleet.clone();
    let heartbeat: node::Job = Arc::new(move |i| -> BoxFuture<'static, ()> {
        let f = f.clone();
        Box::pin(async move {
            if let Err(e) = f.heartbeat(i).await {
                tracing::warn!(node = %f.nodes[i].name, error = %e, "node heartbeat failed");
            }
        })
    });
    let status_interval = opts.node_status_interval;
    let max_in_flight = opts.max_in_flight;
    tasks.spawn(async move {
        // The registration was the first status write.
        tokio::time::sleep(status_interval).await;
        node::spread(n, status_interval, max_in_flight, heartbeat).await
    });
    // The tasks run forever: one ending is a bug.
    match tasks.join_next().await {
        Some(Err(e)) if e.is_panic() => anyhow::bail!("a hollow-node task panicked: {e}"),
        Some(_) => anyhow::bail!("a hollow-node task ended unexpectedly"),
        None => Ok(()),
    }
}
