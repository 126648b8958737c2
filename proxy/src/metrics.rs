//! The proxy's Prometheus metrics, under kube-proxy's names.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone)]
pub struct Metrics {
    pub sync_duration: Histogram,
    pub full_sync_duration: Histogram,
    pub partial_sync_duration: Histogram,
    pub last_sync_timestamp: Gauge<f64, std::sync::atomic::AtomicU64>,
    pub sync_failures: Counter,
    pub service_changes: Counter,
    pub endpoint_changes: Counter,
    pub nftables_chains: Gauge,
    pub nftables_rules: Gauge,
    pub conntrack_deletions: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Metrics {
        let m = Metrics {
            sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            full_sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            partial_sync_duration: Histogram::new(exponential_buckets(0.001, 2.0, 15)),
            last_sync_timestamp: Gauge::default(),
            sync_failures: Counter::default(),
            service_changes: Counter::default(),
            endpoint_changes: Counter::default(),
            nftables_chains: Gauge::default(),
            nftables_rules: Gauge::default(),
            conntrack_deletions: Counter::default(),
        };
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            m.sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_full_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for full resyncs",
            m.full_sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_partial_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds for partial resyncs",
            m.partial_sync_duration.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "The last time proxy rules were successfully synced",
            m.last_sync_timestamp.clone(),
        );
        // prometheus-client appends `_total` to counters.
        registry.register(
            "kubeproxy_sync_proxy_rules_nftables_sync_failures",
            "Cumulative proxy nftables sync failures",
            m.sync_failures.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_service_changes",
            "Cumulative proxy rules Service changes",
            m.service_changes.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_endpoint_changes",
            "Cumulative proxy rules EndpointSlice changes",
            m.endpoint_changes.clone(),
        );
        registry.register(
            "keelson_proxy_nftables_chains",
            "Chains in the proxy's nftables table after the last sync",
            m.nftables_chains.clone(),
        );
        registry.register(
            "keelson_proxy_nftables_rules",
            "Rules in the proxy's nftables table after the last sync",
            m.nftables_rules.clone(),
        );
        registry.register(
            "keelson_proxy_conntrack_deletions",
            "conntrack -D commands run for stale UDP flows",
            m.conntrack_deletions.clone(),
        );
        m
    }
}
