//! keelson-scheduler: assigns pending pods to nodes as Kubernetes' kube-scheduler does.
//!
//! ```no_run
//! # async fn f(client: keelson_client::Client) {
//! use keelson_scheduler::{Scheduler, SchedulerConfig};
//! let mut registry = prometheus_client::registry::Registry::default();
//! let scheduler = Scheduler::new(client, SchedulerConfig::default(), &mut registry);
//! scheduler.run().await; // until the future is dropped (e.g. leadership lost)
//! # }
//! ```
//!
//! How it is put together, one concern per module:
//!
//! - [`cache`]: every node with the pods bound or assumed on it ([`nodeinfo`]), fed
//!   by Node, Pod and Namespace informers; pods are parsed once into [`podinfo`].
//! - [`queue`]: active (by priority, then age), backoff and unschedulable pods.
//! - [`framework`]: the plugin traits; [`filters`] and [`scores`] hold one plugin per
//!   file; [`algorithm`] runs them for one pod (adaptive share of nodes, rotating
//!   start, weighted scores, random tie-break).
//! - [`fit_error`]: Kubernetes' "0/N nodes are available: ..." message.
//! - [`preemption`]: making room by deleting lower-priority pods.
//! - [`api`] and [`events`]: bindings, `PodScheduled` conditions, Events.
//! - `scheduler`: the loop: decide synchronously, bind asynchronously.
//! - [`metrics`]: kube-scheduler's metric names.
//!
//! Only pods with `spec.schedulerName` equal to [`SchedulerConfig::scheduler_name`],
//! no `spec.nodeName`, no scheduling gates and not terminating are scheduled; every
//! bound pod counts on its node whoever bound it.

pub mod algorithm;
pub mod api;
pub mod cache;
pub mod config;
pub mod events;
pub mod filters;
pub mod fit_error;
pub mod framework;
pub mod labels;
pub mod metrics;
pub mod nodeinfo;
mod parallel;
pub mod podinfo;
pub mod preemption;
pub mod queue;
pub mod resources;
mod scheduler;
pub mod scores;

pub use config::SchedulerConfig;

/// The scheduler: [`Scheduler::new`], then [`Scheduler::run`].
pub struct Scheduler {
    client: keelson_client::Client,
    config: SchedulerConfig,
    metrics: metrics::Metrics,
}

impl Scheduler {
    /// A scheduler talking to the apiserver through `client`; its metrics are
    /// registered in `registry` at once.
    pub fn new(
        client: keelson_client::Client,
        config: SchedulerConfig,
        registry: &mut prometheus_client::registry::Registry,
    ) -> Self {
        let metrics = metrics::Metrics::new(&config.scheduler_name, registry);
        Scheduler {
            client,
            config,
            metrics,
        }
    }

    /// Watch the cluster and schedule pods until the future is dropped. Dropping it
    /// stops the informers and cancels the writes in flight.
    pub async fn run(self) {
        scheduler::run(self.client, self.config, self.metrics).await
    }
}
