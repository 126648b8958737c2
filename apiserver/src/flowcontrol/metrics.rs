//! `apiserver_flowcontrol_*` metrics, with Kubernetes' names and labels, registered
//! into the apiserver's `/metrics` registry.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::LazyLock;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabels {
    pub flow_schema: String,
    pub priority_level: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectedLabels {
    pub flow_schema: String,
    pub priority_level: String,
    /// `queue-full`, `concurrency-limit` (a level that rejects), `time-out`.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitLabels {
    pub flow_schema: String,
    pub priority_level: String,
    /// Whether the request went on to execute.
    pub execute: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LevelLabels {
    pub priority_level: String,
}

pub struct FlowMetrics {
    pub dispatched: Family<FlowLabels, Counter>,
    pub rejected: Family<RejectedLabels, Counter>,
    pub inqueue: Family<FlowLabels, Gauge>,
    pub executing: Family<FlowLabels, Gauge>,
    /// Seats those requests occupy (a wide list takes several).
    pub executing_seats: Family<FlowLabels, Gauge>,
    pub wait: Family<WaitLabels, Histogram>,
    pub nominal_limit: Family<LevelLabels, Gauge>,
}

pub static METRICS: LazyLock<FlowMetrics> = LazyLock::new(|| FlowMetrics {
    dispatched: Family::default(),
    rejected: Family::default(),
    inqueue: Family::default(),
    executing: Family::default(),
    executing_seats: Family::default(),
    wait: Family::new_with_constructor(|| {
        Histogram::new([
            0.0, 0.005, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0,
        ])
    }),
    nominal_limit: Family::default(),
});

/// Add the flow-control metrics to the apiserver's registry.
pub fn register(registry: &mut Registry) {
    let m = &*METRICS;
    registry.register(
        "apiserver_flowcontrol_dispatched_requests",
        "Number of requests executed by API Priority and Fairness subsystem",
        m.dispatched.clone(),
    );
    registry.register(
        "apiserver_flowcontrol_rejected_requests",
        "Number of requests rejected by API Priority and Fairness subsystem",
        m.rejected.clone(),
    );
    registry.register(
        "apiserver_flowcontrol_current_inqueue_requests",
        "Number of requests currently pending in queues of the API Priority and Fairness subsystem",
        m.inqueue.clone(),
    );
    registry.register(
        "apiserver_flowcontrol_current_executing_requests",
        "Number of requests in initial (for a WATCH) or any (for a non-WATCH) execution stage in the API Priority and Fairness subsystem",
        m.executing.clone(),
    );
    registry.register(
        "apiserver_flowcontrol_request_wait_duration_seconds",
        "Length of time a request spent waiting in its queue",
        m.wait.clone(),
    );
    registry.register(
        "apiserver_flowcontrol_nominal_limit_seats",
        "Nominal number of execution seats configured for each priority level",
        m.nominal_limit.clone(),
    );
    registry.register(
        "apiserver_flowcontrol_current_executing_seats",
        "Concurrency (number of seats) occupied by the currently executing (initial stage for a WATCH, any stage otherwise) requests in the API Priority and Fairness subsystem",
        m.executing_seats.clone(),
    );
    registry.register(
        "apiserver_storage_objects",
        "Number of stored objects at the time of last check split by kind.",
        super::estimate::STORED_OBJECTS.clone(),
    );
}

pub fn flow(schema: &str, level: &str) -> FlowLabels {
    FlowLabels {
        flow_schema: schema.into(),
        priority_level: level.into(),
    }
}
