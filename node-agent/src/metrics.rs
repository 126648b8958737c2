//! The agent's Prometheus metrics, named as the kubelet names them where it has the
//! same metric (`kubelet_running_pods`, `kubelet_pod_start_duration_seconds`, ...).

use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct Metrics {
    pub running_pods: Gauge,
    pub running_containers: Gauge,
    pub pod_start_duration: Histogram,
    pub pod_worker_duration: Histogram,
    pub pleg_relist_duration: Histogram,
    pub containers_started: Counter,
    pub sandboxes_started: Counter,
    pub image_pulls: Counter,
    pub status_writes: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            running_pods: Gauge::default(),
            running_containers: Gauge::default(),
            pod_start_duration: Histogram::new(exponential_buckets(0.05, 2.0, 14)),
            pod_worker_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            pleg_relist_duration: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            containers_started: Counter::default(),
            sandboxes_started: Counter::default(),
            image_pulls: Counter::default(),
            status_writes: Counter::default(),
        };
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            m.running_pods.clone(),
        );
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            m.running_containers.clone(),
        );
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from the agent seeing a pod for the first time to the pod starting to run",
            m.pod_start_duration.clone(),
        );
        registry.register(
            "kubelet_pod_worker_duration_seconds",
            "Duration in seconds to sync a single pod",
            m.pod_worker_duration.clone(),
        );
        registry.register(
            "kubelet_pleg_relist_duration_seconds",
            "Duration in seconds for relisting pods in PLEG",
            m.pleg_relist_duration.clone(),
        );
        registry.register(
            "kubelet_started_containers",
            "Cumulative number of containers started",
            m.containers_started.clone(),
        );
        registry.register(
            "kubelet_started_pods",
            "Cumulative number of pod sandboxes started",
            m.sandboxes_started.clone(),
        );
        registry.register(
            "keelson_node_agent_image_pulls",
            "Images pulled by the agent",
            m.image_pulls.clone(),
        );
        registry.register(
            "keelson_node_agent_pod_status_writes",
            "Pod status writes to the apiserver",
            m.status_writes.clone(),
        );
        m
    }

    pub fn observe_sync(&self, d: Duration) {
        self.pod_worker_duration.observe(d.as_secs_f64());
    }

    pub fn observe_relist(&self, d: Duration) {
        self.pleg_relist_duration.observe(d.as_secs_f64());
    }
}
