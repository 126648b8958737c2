//! Prometheus metrics, with Kubernetes' own names so existing dashboards work.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DurationLabels {
    pub verb: String,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct EtcdLabels {
    pub operation: String,
}

fn latency_buckets() -> impl Iterator<Item = f64> {
    [
        0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
        10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
    ]
    .into_iter()
}

struct Inner {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Family<DurationLabels, Histogram>,
    etcd: Family<EtcdLabels, Histogram>,
    watchers: Gauge,
}

/// The apiserver's metrics; cheap to clone.
#[derive(Clone)]
pub struct Metrics(Arc<Inner>);

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations = Family::<DurationLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(latency_buckets())
        });
        let etcd = Family::<EtcdLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
            ])
        });
        let watchers = Gauge::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, group, version, resource and HTTP response code.",
            requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, group, version, resource and subresource.",
            durations.clone(),
        );
        registry.register(
            "etcd_request_duration_seconds",
            "Etcd request latency in seconds for each operation.",
            etcd.clone(),
        );
        registry.register(
            "apiserver_registered_watchers",
            "Number of currently registered watchers.",
            watchers.clone(),
        );
        crate::flowcontrol::metrics::register(&mut registry);
        Metrics(Arc::new(Inner {
            registry,
            requests,
            durations,
            etcd,
            watchers,
        }))
    }

    pub fn request(&self, d: DurationLabels, code: u16, elapsed: Duration) {
        self.0
            .requests
            .get_or_create(&RequestLabels {
                verb: d.verb.clone(),
                group: d.group.clone(),
                version: d.version.clone(),
                resource: d.resource.clone(),
                subresource: d.subresource.clone(),
                code: code.to_string(),
            })
            .inc();
        self.0
            .durations
            .get_or_create(&d)
            .observe(elapsed.as_secs_f64());
    }

    pub fn etcd_request(&self, operation: &str, elapsed: Duration) {
        self.0
            .etcd
            .get_or_create(&EtcdLabels {
                operation: operation.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    pub fn watcher_started(&self) {
        self.0.watchers.inc();
    }
    pub fn watcher_stopped(&self) {
        self.0.watchers.dec();
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.0.registry)
            .expect("encode metrics");
        out
    }
}

static GLOBAL: std::sync::OnceLock<Metrics> = std::sync::OnceLock::new();

/// The process's metrics, once the server has installed them.
pub fn global() -> Option<&'static Metrics> {
    GLOBAL.get()
}

/// Install the process-wide metrics (first call wins).
pub fn install(m: Metrics) -> &'static Metrics {
    GLOBAL.get_or_init(|| m)
}
