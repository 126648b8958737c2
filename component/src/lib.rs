//! What every Keelson control-plane process shares, so that the scheduler, the
//! controller-manager and later components do not each write their own:
//!
//! - [`leader`]: leader election on a coordination.k8s.io/v1 Lease, with client-go's
//!   timing rules (`--leader-elect-lease-duration`, `-renew-deadline`, `-retry-period`).
//!   The elected work runs as a future that is dropped the moment leadership is lost.
//! - [`serve`]: the `/healthz`, `/livez`, `/readyz` and `/metrics` endpoint.
//! - [`events`]: an Event recorder (`SuccessfulCreate`, `FailedScheduling`, ...) that
//!   folds repeats into one Event's count.
//! - [`scheduling`]: where a pod may run (tolerations, node selector terms), shared
//!   by the scheduler and the controllers that place or evict pods.
//! - [`informers`]: one [`SharedInformer`](keelson_client::runtime::SharedInformer) per
//!   resource type, shared by every controller in the process.
//! - [`queue`]: a work queue with Kubernetes' `workqueue_*` metrics, and the worker loop
//!   that runs a reconcile function with rate-limited retries (a panicking reconcile is
//!   one more failure to retry).
//! - [`loops`]: supervised controller loops; one that panics fails `/healthz`.
//! - [`run`]: [`Component::run`], the main loop of a component binary.
//! - [`options`]: the flags every component takes (`--kubeconfig`, leader election,
//!   serving address).

pub mod events;
pub mod informers;
pub mod leader;
pub mod loops;
pub mod options;
pub mod queue;
pub mod run;
pub mod scheduling;
pub mod serve;

pub use events::{EventType, Recorder};
pub use informers::Informers;
pub use leader::{LeaderElection, LeaderState};
pub use loops::Loops;
pub use options::{ComponentOptions, LeaderElectionOptions};
pub use queue::{Queue, QueueMetrics, Requeue};
pub use run::Component;

/// Logs to stderr, filtered by `RUST_LOG` (default `info`); `KEELSON_LOG_FORMAT=json`
/// switches to one JSON object per line.
pub fn init_logging() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if std::env::var("KEELSON_LOG_FORMAT").as_deref() == Ok("json") {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    let mut int = signal(SignalKind::interrupt()).expect("SIGINT handler");
    tokio::select! {
        _ = term.recv() => {},
        _ = int.recv() => {},
    }
}
