//! Prometheus metrics with kube-scheduler's names.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
    pub profile: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    pub queue: String,
}

/// What a scheduling attempt came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Scheduled,
    Unschedulable,
    Error,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Scheduled => "scheduled",
            Outcome::Unschedulable => "unschedulable",
            Outcome::Error => "error",
        }
    }
}

type HistogramFamily = Family<ResultLabels, Histogram, fn() -> Histogram>;

/// The scheduler's metrics; cheap to clone (the families share their values).
#[derive(Clone)]
pub struct Metrics {
    profile: String,
    attempts: Family<ResultLabels, Counter>,
    durations: HistogramFamily,
    pending: Family<QueueLabels, Gauge>,
    preemption_attempts: Counter,
}

fn attempt_histogram() -> Histogram {
    // Kubernetes: ExponentialBuckets(0.001, 2, 15).
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

impl Metrics {
    pub fn new(profile: &str, registry: &mut Registry) -> Metrics {
        let m = Metrics {
            profile: profile.to_string(),
            attempts: Family::default(),
            durations: Family::new_with_constructor(attempt_histogram),
            pending: Family::default(),
            preemption_attempts: Counter::default(),
        };
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result. 'unschedulable' means a pod could not be scheduled, while 'error' means an internal scheduler problem.",
            m.attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            m.durations.clone(),
        );
        registry.register(
            "scheduler_pending_pods",
            "Number of pending pods, by the queue type. 'active' means number of pods in activeQ; 'backoff' means number of pods in backoffQ; 'unschedulable' means number of pods in unschedulablePods.",
            m.pending.clone(),
        );
        registry.register(
            "scheduler_preemption_attempts",
            "Total preemption attempts in the cluster till now",
            m.preemption_attempts.clone(),
        );
        for q in ["active", "backoff", "unschedulable"] {
            m.pending
                .get_or_create(&QueueLabels { queue: q.into() })
                .set(0);
        }
        m
    }

    pub fn attempt(&self, outcome: Outcome, seconds: f64) {
        let labels = ResultLabels {
            result: outcome.label().into(),
            profile: self.profile.clone(),
        };
        self.attempts.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(seconds);
    }

    pub fn pending(&self, active: usize, backoff: usize, unschedulable: usize) {
        for (q, n) in [
            ("active", active),
            ("backoff", backoff),
            ("unschedulable", unschedulable),
        ] {
            self.pending
                .get_or_create(&QueueLabels { queue: q.into() })
                .set(n as i64);
        }
    }

    pub fn preemption_attempt(&self) {
        self.preemption_attempts.inc();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kubernetes_names() {
        let mut r = Registry::default();
        let m = Metrics::new("default-scheduler", &mut r);
        m.attempt(Outcome::Scheduled, 0.002);
        m.pending(3, 1, 2);
        m.preemption_attempt();
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &r).unwrap();
        assert!(out.contains("scheduler_schedule_attempts_total{result=\"scheduled\",profile=\"default-scheduler\"} 1"), "{out}");
        assert!(out.contains("scheduler_scheduling_attempt_duration_seconds_bucket{le=\"0.004\",result=\"scheduled\",profile=\"default-scheduler\"} 1") || out.contains("scheduler_scheduling_attempt_duration_seconds_bucket{result=\"scheduled\",profile=\"default-scheduler\",le=\"0.004\"} 1"), "{out}");
        assert!(
            out.contains("scheduler_pending_pods{queue=\"active\"} 3"),
            "{out}"
        );
        assert!(
            out.contains("scheduler_preemption_attempts_total 1"),
            "{out}"
        );
    }
}
