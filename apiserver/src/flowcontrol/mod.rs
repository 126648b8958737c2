//! API Priority and Fairness: every request, once its user is known and before it is
//! handled, is classified by the FlowSchemas into a priority level and a flow, and
//! waits for one of that level's seats (`classify`, `queueset`). The configuration is
//! the FlowSchema and PriorityLevelConfiguration objects, followed through the watch
//! cache (`config`); Kubernetes' defaults are created at start (`defaults`).
//!
//! Watches hold a seat only while they start (until the response begins); other
//! long-running requests (exec, attach, port-forward, proxy, logs) are not limited,
//! as in Kubernetes. gRPC calls are classified where the gRPC service authorizes them
//! (their resource is in the message, not the URL): [`admit_grpc`].
//!
//! With `--enable-priority-and-fairness=false`, the older max-in-flight filter runs
//! instead: at most `--max-requests-inflight` reads and `--max-mutating-requests-inflight`
//! writes at once (long-running requests and `system:masters` not counted), the rest
//! answered 429 at once.

pub mod classify;
pub mod config;
pub mod defaults;
pub mod estimate;
pub mod metrics;
pub mod queueset;

use crate::authz::Attributes;
use crate::http::respond::error_response;
use crate::registry::UserInfo;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response};
use config::ConfigSink;
use keelson_apimachinery::ApiError;
use metrics::{flow, FlowLabels, RejectedLabels, WaitLabels, METRICS};
use prometheus_client::metrics::gauge::Gauge;
use queueset::Admission;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const FLOW_SCHEMA_UID_HEADER: &str = "X-Kubernetes-PF-FlowSchema-UID";
pub const PRIORITY_LEVEL_UID_HEADER: &str = "X-Kubernetes-PF-PriorityLevel-UID";
/// How long a request may wait in a queue: a quarter of the one-minute request
/// timeout, as kube-apiserver.
pub const QUEUE_WAIT: Duration = Duration::from_secs(15);
/// Subresources whose requests run for long (`BasicLongRunningRequestCheck`).
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "log", "portforward", "proxy"];

/// The limits kube-apiserver's flags give.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_requests_inflight: usize,
    pub max_mutating_requests_inflight: usize,
}

/// "Too many requests, please try again later.", 429, `Retry-After: 1`.
pub fn too_many_requests() -> ApiError {
    let mut e = ApiError::new(
        429,
        "TooManyRequests",
        "Too many requests, please try again later.",
    );
    e.retry_after_seconds = Some(1);
    e
}

/// A gauge raised while this lives.
struct Raised(Gauge);

impl Raised {
    fn new(g: Gauge) -> Raised {
        g.inc();
        Raised(g)
    }
}

impl Drop for Raised {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// A gauge raised by some amount while this lives.
struct RaisedBy(Gauge, i64);

impl RaisedBy {
    fn new(g: Gauge, by: usize) -> RaisedBy {
        let by = by as i64;
        g.inc_by(by);
        RaisedBy(g, by)
    }
}

impl Drop for RaisedBy {
    fn drop(&mut self) {
        self.0.dec_by(self.1);
    }
}

/// A request let through; dropping it frees what it held.
pub struct Admitted {
    pub flow_schema_uid: String,
    pub priority_level_uid: String,
    _seat: Option<queueset::Seat>,
    _executing: Option<Raised>,
    _executing_seats: Option<RaisedBy>,
    _in_flight: Option<InFlight>,
}

impl Admitted {
    fn add_headers(&self, r: &mut Response<Body>) {
        for (name, uid) in [
            (FLOW_SCHEMA_UID_HEADER, &self.flow_schema_uid),
            (PRIORITY_LEVEL_UID_HEADER, &self.priority_level_uid),
        ] {
            if let Ok(v) = HeaderValue::from_str(uid) {
                r.headers_mut().insert(name, v);
            }
        }
    }
}

/// A request refused, with the headers that say where it was classified.
pub struct Rejected {
    pub error: ApiError,
    flow_schema_uid: String,
    priority_level_uid: String,
}

impl Rejected {
    fn response(&self) -> Response<Body> {
        let mut r = error_response(&self.error);
        for (name, uid) in [
            (FLOW_SCHEMA_UID_HEADER, &self.flow_schema_uid),
            (PRIORITY_LEVEL_UID_HEADER, &self.priority_level_uid),
        ] {
            if let Ok(v) = HeaderValue::from_str(uid) {
                r.headers_mut().insert(name, v);
            }
        }
        r
    }
}

fn flow_hash(schema: &str, distinguisher: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    schema.hash(&mut h);
    distinguisher.hash(&mut h);
    h.finish()
}

/// The APF dispatcher.
pub struct Dispatcher {
    sink: Arc<ConfigSink>,
    /// Stored objects per resource, for the width of lists.
    counts: Arc<estimate::ObjectCounts>,
}

impl Dispatcher {
    /// A dispatcher over the built-in defaults only (tests, and before the first load).
    pub fn new(limits: Limits) -> Dispatcher {
        let server = limits.max_requests_inflight + limits.max_mutating_requests_inflight;
        Dispatcher {
            sink: Arc::new(ConfigSink::new(server.max(1), None)),
            counts: Arc::default(),
        }
    }

    /// Follow the objects in the watch cache; until loaded, the defaults apply.
    pub fn start(limits: Limits, registry: &crate::registry::Registry) -> Dispatcher {
        let server = limits.max_requests_inflight + limits.max_mutating_requests_inflight;
        let sink = Arc::new(ConfigSink::new(server.max(1), Some(registry.clone())));
        crate::authz::follow::follow(
            sink.clone(),
            registry.cache.clone(),
            registry.storage.clone(),
        );
        let counts = estimate::ObjectCounts::start(registry.storage.clone());
        Dispatcher { sink, counts }
    }

    /// Classify `a` and wait for the seats it needs at its level (`limit`: a list's
    /// `limit` parameter, when known).
    pub async fn admit(&self, a: &Attributes, limit: Option<i64>) -> Result<Admitted, Rejected> {
        let config = self.sink.config();
        let (schema, level) = config.classify(a);
        let labels = flow(&schema.name, &level.name);
        let uids = (schema.uid.clone(), level.uid.clone());
        let Some(queues) = level.queues.clone() else {
            METRICS.dispatched.get_or_create(&labels).inc();
            return Ok(Admitted {
                flow_schema_uid: uids.0,
                priority_level_uid: uids.1,
                _seat: None,
                _executing: Some(Raised::new(
                    METRICS.executing.get_or_create(&labels).clone(),
                )),
                _executing_seats: None,
                _in_flight: None,
            });
        };
        let width = self
            .counts
            .width(a, limit)
            .min(queues.config.concurrency.max(1));
        let hash = flow_hash(&schema.name, &schema.flow_of(a));
        let reject_only = queues.config.queues == 0;
        drop(config);
        let started = Instant::now();
        let seat = match queues.enqueue(hash, width) {
            Admission::Dispatched(seat) => Some(seat),
            Admission::Queued(ticket) => {
                let _waiting = Raised::new(METRICS.inqueue.get_or_create(&labels).clone());
                let seat = ticket.wait(QUEUE_WAIT).await;
                if seat.is_none() {
                    rejected(&labels, "time-out");
                }
                seat
            }
            Admission::Rejected => {
                rejected(
                    &labels,
                    if reject_only {
                        "concurrency-limit"
                    } else {
                        "queue-full"
                    },
                );
                None
            }
        };
        let executed = seat.is_some();
        METRICS
            .wait
            .get_or_create(&WaitLabels {
                flow_schema: labels.flow_schema.clone(),
                priority_level: labels.priority_level.clone(),
                execute: executed.to_string(),
            })
            .observe(started.elapsed().as_secs_f64());
        match seat {
            Some(seat) => {
                METRICS.dispatched.get_or_create(&labels).inc();
                Ok(Admitted {
                    flow_schema_uid: uids.0,
                    priority_level_uid: uids.1,
                    _seat: Some(seat),
                    _executing: Some(Raised::new(
                        METRICS.executing.get_or_create(&labels).clone(),
                    )),
                    _executing_seats: Some(RaisedBy::new(
                        METRICS.executing_seats.get_or_create(&labels).clone(),
                        width,
                    )),
                    _in_flight: None,
                })
            }
            None => Err(Rejected {
                error: too_many_requests(),
                flow_schema_uid: uids.0,
                priority_level_uid: uids.1,
            }),
        }
    }
}

fn rejected(labels: &FlowLabels, reason: &str) {
    METRICS
        .rejected
        .get_or_create(&RejectedLabels {
            flow_schema: labels.flow_schema.clone(),
            priority_level: labels.priority_level.clone(),
            reason: reason.into(),
        })
        .inc();
}

/// One slot of the max-in-flight filter.
struct InFlight(Arc<AtomicUsize>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// kube-apiserver's `WithMaxInFlightLimit`.
pub struct MaxInFlight {
    limits: Limits,
    reads: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
}

impl MaxInFlight {
    pub fn new(limits: Limits) -> MaxInFlight {
        MaxInFlight {
            limits,
            reads: Arc::default(),
            writes: Arc::default(),
        }
    }

    fn admit(&self, a: &Attributes) -> Result<Admitted, Rejected> {
        let none = || Admitted {
            flow_schema_uid: String::new(),
            priority_level_uid: String::new(),
            _seat: None,
            _executing: None,
            _executing_seats: None,
            _in_flight: None,
        };
        if a.verb == "watch" || a.user.groups.iter().any(|g| g == "system:masters") {
            return Ok(none());
        }
        let read = matches!(a.verb.as_str(), "get" | "list");
        let (count, limit) = if read {
            (&self.reads, self.limits.max_requests_inflight)
        } else {
            (&self.writes, self.limits.max_mutating_requests_inflight)
        };
        if limit == 0 {
            return Ok(none());
        }
        if count
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_err()
        {
            return Err(Rejected {
                error: too_many_requests(),
                flow_schema_uid: String::new(),
                priority_level_uid: String::new(),
            });
        }
        Ok(Admitted {
            _in_flight: Some(InFlight(count.clone())),
            ..none()
        })
    }
}

/// What runs between authentication and the handlers.
#[derive(Clone)]
pub enum Filter {
    PriorityAndFairness(Arc<Dispatcher>),
    MaxInFlight(Arc<MaxInFlight>),
}

/// A list's `limit` query parameter.
fn list_limit(query: Option<&str>) -> Option<i64> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == "limit")
        .and_then(|(_, v)| v.parse().ok())
}

/// Not limited at all: long-running requests other than watches.
fn unlimited(a: &Attributes) -> bool {
    a.verb == "proxy" || LONG_RUNNING_SUBRESOURCES.contains(&a.subresource.as_str())
}

fn anonymous() -> UserInfo {
    UserInfo {
        name: "system:anonymous".into(),
        uid: String::new(),
        groups: vec!["system:unauthenticated".into()],
    }
}

impl Filter {
    async fn admit(&self, a: &Attributes, limit: Option<i64>) -> Result<Admitted, Rejected> {
        match self {
            Filter::PriorityAndFairness(d) => d.admit(a, limit).await,
            Filter::MaxInFlight(m) => m.admit(a),
        }
    }

    /// Run a REST request through the filter, then `next`.
    pub async fn rest<F, Fut>(
        &self,
        req: Request<Body>,
        user: Option<UserInfo>,
        next: F,
    ) -> Response<Body>
    where
        F: FnOnce(Request<Body>, Option<UserInfo>) -> Fut,
        Fut: Future<Output = Response<Body>>,
    {
        let who = user.clone().unwrap_or_else(anonymous);
        let a = crate::authz::request::attributes(
            &who,
            req.method(),
            req.uri().path(),
            req.uri().query().unwrap_or(""),
        );
        if unlimited(&a) {
            return next(req, user).await;
        }
        match self.admit(&a, list_limit(req.uri().query())).await {
            Ok(admitted) => {
                let mut r = next(req, user).await;
                admitted.add_headers(&mut r);
                r
            }
            Err(rejected) => rejected.response(),
        }
    }

    /// Run a gRPC call with a slot [`admit_grpc`] fills when the call is authorized.
    pub async fn grpc<Fut>(&self, call: Fut) -> Response<Body>
    where
        Fut: Future<Output = Response<Body>>,
    {
        let slot = Arc::new(GrpcSlot {
            filter: self.clone(),
            held: Mutex::new(None),
        });
        let mut r = GRPC_SLOT.scope(slot.clone(), call).await;
        if let Some(admitted) = slot.held.lock().expect("slot").take() {
            admitted.add_headers(&mut r);
        }
        r
    }
}

struct GrpcSlot {
    filter: Filter,
    held: Mutex<Option<Admitted>>,
}

tokio::task_local! {
    static GRPC_SLOT: Arc<GrpcSlot>;
}

/// Called by the gRPC service when it knows what a call asks (before authorizing
/// it): wait for a seat, held until the call's response starts. Once per call.
pub async fn admit_grpc(a: &Attributes) -> Result<(), ApiError> {
    let Ok(slot) = GRPC_SLOT.try_with(Arc::clone) else {
        return Ok(());
    };
    if slot.held.lock().expect("slot").is_some() || unlimited(a) {
        return Ok(());
    }
    match slot.filter.admit(a, None).await {
        Ok(admitted) => {
            *slot.held.lock().expect("slot") = Some(admitted);
            Ok(())
        }
        Err(rejected) => Err(rejected.error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(name: &str, groups: &[&str]) -> UserInfo {
        UserInfo {
            name: name.into(),
            uid: String::new(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[tokio::test]
    async fn a_full_level_rejects_while_exempt_and_other_levels_pass() {
        // 3 seats: global-default gets ceil(3 * 20 / 245) = 1 seat, 6 x 50 queue places.
        let d = Dispatcher::new(Limits {
            max_requests_inflight: 2,
            max_mutating_requests_inflight: 1,
        });
        let jane = user("jane", &["system:authenticated"]);
        let list = Attributes::resource(&jane, "list", "", "pods", "", "");
        let held = d.admit(&list, None).await.ok().expect("a free seat");
        // Jane's flow fills the queues of its hand, then is refused.
        let mut waiting = Vec::new();
        let mut refused = None;
        for _ in 0..400 {
            let a = list.clone();
            let d2 = &d;
            let fut = Box::pin(async move { d2.admit(&a, None).await });
            let mut fut = fut;
            match futures::poll!(&mut fut) {
                std::task::Poll::Ready(Err(r)) => {
                    refused = Some(r);
                    break;
                }
                std::task::Poll::Ready(Ok(_)) => panic!("no seat is free"),
                std::task::Poll::Pending => waiting.push(fut),
            }
        }
        let refused = refused.expect("queues are bounded");
        assert_eq!(refused.error.code, 429);
        assert_eq!(refused.error.reason, "TooManyRequests");
        assert_eq!(refused.error.retry_after_seconds, Some(1));
        assert!(
            waiting.len() >= 50 && waiting.len() <= 300,
            "{}",
            waiting.len()
        );
        // A node's lease renewal is another level, and admins are exempt.
        let node = user("system:node:n1", &["system:nodes", "system:authenticated"]);
        let lease = Attributes::resource(
            &node,
            "update",
            "coordination.k8s.io",
            "leases",
            "kube-node-lease",
            "n1",
        );
        assert!(d.admit(&lease, None).await.is_ok());
        let admin = user("admin", &["system:masters", "system:authenticated"]);
        assert!(d
            .admit(
                &Attributes::resource(&admin, "list", "", "pods", "", ""),
                None
            )
            .await
            .is_ok());
        drop(held);
        // A waiter gets the freed seat.
        let (first, _, _) =
            tokio::time::timeout(Duration::from_secs(5), futures::future::select_all(waiting))
                .await
                .expect("a waiter is dispatched");
        assert!(first.is_ok());
    }

    #[test]
    fn max_in_flight_limits_reads_and_writes_apart() {
        let m = MaxInFlight::new(Limits {
            max_requests_inflight: 1,
            max_mutating_requests_inflight: 1,
        });
        let jane = user("jane", &[]);
        let read = Attributes::resource(&jane, "get", "", "pods", "a", "p");
        let write = Attributes::resource(&jane, "create", "", "pods", "a", "");
        let r1 = m.admit(&read).ok().expect("first read");
        assert!(m.admit(&read).is_err());
        let w1 = m.admit(&write).ok().expect("writes counted apart");
        let admin = user("root", &["system:masters"]);
        assert!(m
            .admit(&Attributes::resource(&admin, "get", "", "pods", "a", "p"))
            .is_ok());
        drop((r1, w1));
        assert!(m.admit(&read).is_ok());
    }
}
