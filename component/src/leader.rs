//! Leader election on a coordination.k8s.io/v1 Lease, with client-go's rules.
//!
//! A candidate tries to acquire or renew the Lease every retry period. It may take the
//! Lease when nobody holds it, or when the record has not changed for a whole lease
//! duration *as observed on this candidate's own clock* (so clock skew between
//! machines does not matter). The leader renews every retry period; if no renewal has
//! succeeded for the renew deadline, it stops acting. Because the renew deadline is
//! shorter than the lease duration, a leader that loses its Lease has stopped before
//! anyone else may start.
//!
//! The elected work is a future, dropped the moment leadership is lost, which cancels
//! everything it owns (informers, workers).

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use keelson_client::{Api, Client, PostParams};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::options::LeaderElectionOptions;

/// Whether this process leads, for `/healthz` and the `leader_election_master_status`
/// metric. Cheap to clone.
#[derive(Clone, Default)]
pub struct LeaderState {
    /// The last successful renewal, while leading.
    last_renewal: Arc<Mutex<Option<Instant>>>,
}

impl LeaderState {
    pub fn is_leader(&self) -> bool {
        self.lock().is_some()
    }

    /// Time since the last successful renewal, when leading.
    pub fn since_renewal(&self) -> Option<Duration> {
        self.lock().map(|t| t.elapsed())
    }

    fn set_leading(&self, leading: bool) {
        *self.lock() = leading.then(Instant::now);
    }

    fn renewed(&self) {
        self.set_leading(true);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Instant>> {
        self.last_renewal.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// One candidate for one Lease.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    opts: LeaderElectionOptions,
    state: LeaderState,
    status_metric: Family<Vec<(String, String)>, Gauge>,
}

/// What this candidate last saw of the Lease, and when (on its own clock).
struct Observed {
    holder: Option<String>,
    renew_time: Option<Timestamp>,
    lease_duration: Duration,
    at: Instant,
}

enum Attempt {
    /// We hold the Lease now.
    Held,
    /// Someone else holds an unexpired Lease.
    HeldByOther(String),
}

impl LeaderElection {
    /// `name` is the Lease's name (and the component's); the identity is
    /// `<hostname>_<random>` like client-go's.
    pub fn new(
        client: Client,
        name: &str,
        opts: LeaderElectionOptions,
        registry: &mut Registry,
    ) -> Self {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "localhost".into());
        let identity = format!("{host}_{}", uuid::Uuid::new_v4());
        let status_metric = Family::<Vec<(String, String)>, Gauge>::default();
        registry.register(
            "leader_election_master_status",
            "Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, 1 indicates master. 'name' is the string used to identify the lease.",
            status_metric.clone(),
        );
        LeaderElection {
            api: Api::namespaced(client, &opts.namespace),
            name: opts.name.clone().unwrap_or_else(|| name.to_string()),
            identity,
            opts,
            state: LeaderState::default(),
            status_metric,
        }
    }

    pub fn identity(&self) -> &str {
        &self.identity
    }

    pub fn state(&self) -> LeaderState {
        self.state.clone()
    }

    /// Wait to be elected, then run `work` while leading. Returns why the term ended:
    /// leadership lost (and `work` dropped at that moment), or `work` finished. Like
    /// Kubernetes' components, callers end the process after losing leadership rather
    /// than trying to lead again with state from the previous term.
    pub async fn run(&self, work: impl Future<Output = ()>) -> String {
        let mut observed: Option<Observed> = None;
        self.acquire(&mut observed).await;
        tracing::info!(lease = %self.name, identity = %self.identity, "became leader");
        self.set_metric(true);
        self.state.set_leading(true);
        let why = tokio::select! {
            _ = work => "elected work finished".to_string(),
            why = self.keep_renewing(&mut observed) => format!("leader election lost: {why}"),
        };
        self.state.set_leading(false);
        self.set_metric(false);
        why
    }

    /// Give the Lease up (on shutdown) so that another candidate takes over at once.
    pub async fn release(&self) {
        if !self.state.is_leader() {
            return;
        }
        if let Ok(mut lease) = self.api.get(&self.name).await {
            let spec = lease.spec.get_or_insert_with(Default::default);
            if spec.holder_identity.as_deref() == Some(self.identity.as_str()) {
                spec.holder_identity = None;
                spec.lease_duration_seconds = Some(1);
                let _ = self
                    .api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await;
            }
        }
    }

    fn set_metric(&self, leading: bool) {
        self.status_metric
            .get_or_create(&vec![("name".to_string(), self.name.clone())])
            .set(leading as i64);
    }

    async fn acquire(&self, observed: &mut Option<Observed>) {
        loop {
            match self.try_acquire_or_renew(observed).await {
                Ok(Attempt::Held) => return,
                Ok(Attempt::HeldByOther(holder)) => {
                    tracing::debug!(lease = %self.name, %holder, "lease held by another candidate");
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "acquiring the lease failed")
                }
            }
            tokio::time::sleep(jitter(self.opts.retry_period)).await;
        }
    }

    /// Renew every retry period; returns (ending the term) when no renewal has
    /// succeeded within the renew deadline, or another holder is seen.
    async fn keep_renewing(&self, observed: &mut Option<Observed>) -> String {
        let mut last_success = Instant::now();
        loop {
            tokio::time::sleep(self.opts.retry_period).await;
            let attempt = tokio::time::timeout(
                self.opts
                    .renew_deadline
                    .saturating_sub(last_success.elapsed()),
                self.try_acquire_or_renew(observed),
            )
            .await;
            match attempt {
                Ok(Ok(Attempt::Held)) => {
                    last_success = Instant::now();
                    self.state.renewed();
                }
                Ok(Ok(Attempt::HeldByOther(holder))) => {
                    return format!("lease taken by {holder}");
                }
                Ok(Err(e)) => {
                    tracing::warn!(lease = %self.name, error = %e, "renewing the lease failed")
                }
                Err(_) => {}
            }
            if last_success.elapsed() >= self.opts.renew_deadline {
                return format!(
                    "no successful renewal within the renew deadline ({:?})",
                    self.opts.renew_deadline
                );
            }
        }
    }

    async fn try_acquire_or_renew(
        &self,
        observed: &mut Option<Observed>,
    ) -> keelson_client::Result<Attempt> {
        let now = Timestamp::now();
        let lease_seconds = self.opts.lease_duration.as_secs().max(1) as i32;
        let current = match self.api.get(&self.name).await {
            Ok(lease) => lease,
            Err(e) if e.is_not_found() => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.name.clone()),
                        namespace: Some(self.opts.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(self.identity.clone()),
                        lease_duration_seconds: Some(lease_seconds),
                        acquire_time: Some(MicroTime(now)),
                        renew_time: Some(MicroTime(now)),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                self.api.create(&PostParams::default(), &lease).await?;
                *observed = Some(self.observe(&lease));
                return Ok(Attempt::Held);
            }
            Err(e) => return Err(e),
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
        let ours = holder.as_deref() == Some(self.identity.as_str());

        // Refresh what we observed only when the record changed: expiry is judged by
        // how long it has stayed unchanged on our clock.
        let renew_time = spec.renew_time.as_ref().map(|t| t.0);
        let changed = observed
            .as_ref()
            .is_none_or(|o| o.holder != holder || o.renew_time != renew_time);
        if changed {
            *observed = Some(self.observe(&current));
        }
        if let (Some(other), false) = (&holder, ours) {
            let o = observed.as_ref().expect("observed above");
            if o.at.elapsed() < o.lease_duration {
                return Ok(Attempt::HeldByOther(other.clone()));
            }
        }

        let mut next = current.clone();
        let next_spec = next.spec.get_or_insert_with(Default::default);
        if !ours {
            next_spec.acquire_time = Some(MicroTime(now));
            next_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        next_spec.holder_identity = Some(self.identity.clone());
        next_spec.lease_duration_seconds = Some(lease_seconds);
        next_spec.renew_time = Some(MicroTime(now));
        // The write is conditioned on the resourceVersion we read: two candidates
        // racing for an expired Lease cannot both win.
        let written = self
            .api
            .replace(&self.name, &PostParams::default(), &next)
            .await?;
        *observed = Some(self.observe(&written));
        Ok(Attempt::Held)
    }

    fn observe(&self, lease: &Lease) -> Observed {
        let spec = lease.spec.clone().unwrap_or_default();
        Observed {
            holder: spec.holder_identity.filter(|h| !h.is_empty()),
            renew_time: spec.renew_time.map(|t| t.0),
            lease_duration: Duration::from_secs(
                spec.lease_duration_seconds.unwrap_or(0).max(0) as u64
            ),
            at: Instant::now(),
        }
    }
}

/// client-go waits retryPeriod * (1 + up to 1.2) between acquisition attempts.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + d.mul_f64(1.2 * (nanos % 1000) as f64 / 1000.0)
}
