//! Audit logging, as kube-apiserver's: every request is matched against the
//! audit.k8s.io/v1 `Policy` (`--audit-policy-file`, [`policy`]) and, unless its level is
//! `None`, written as audit.k8s.io/v1 `Event`s ([`event`]), one JSON line per stage, to
//! `--audit-log-path` ([`sink`]: a rotated file or stdout, written off the request path).
//!
//! A request's [`Record`] follows it through the server: [`Record::begin`] when it
//! arrives (audit ID, source IPs, user agent), [`Record::authenticated`] (who; the policy
//! is asked here for REST, with the attributes the authorizer will see, and
//! `RequestReceived` is written), [`authorized`] (the authorizer's decision and reason as
//! annotations; for gRPC, where only the handler knows what a call names, the policy is
//! asked here), [`request_body`] (the request object), and [`Record::finish`] (the
//! response: `ResponseStarted` for long-running requests, `ResponseComplete` when the
//! body has been sent, `Panic` when the handler panicked). The handlers reach the record
//! through a task-local, so the REST and gRPC code only report what they learn.
//!
//! As in Kubernetes the policy sees the authenticated user, not the impersonated one
//! (which the event records as `impersonatedUser`); a failed authentication is logged
//! once, at `ResponseStarted`, with an empty user and a 401.

pub mod event;
pub mod policy;
pub mod sink;

pub use policy::{default_policy_yaml, Level, Policy, Stage, DEFAULT_POLICY_YAML};

use crate::authz::{Attributes, Verdict};
use crate::registry::UserInfo;
use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderValue, Method, Request, Response};
use base64::Engine as _;
use event::{Event, ObjectRef, User};
use futures::FutureExt;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use policy::Decision;
use serde_json::Value;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

/// The response header (and accepted request header) carrying the audit ID.
pub const AUDIT_ID_HEADER: &str = "audit-id";
/// Responses larger than this are not logged as `responseObject` (they stream).
const MAX_LOGGED_RESPONSE: u64 = 16 * 1024 * 1024;
/// Kubernetes' long-running subresources: their events have a `ResponseStarted` stage.
const LONG_RUNNING_SUBRESOURCES: &[&str] = &["attach", "exec", "proxy", "log", "portforward"];

/// The policy and the log: present when both `--audit-policy-file` and
/// `--audit-log-path` are given (kube-apiserver audits nothing otherwise).
pub struct Auditor {
    policy: Policy,
    sink: sink::Sink,
}

/// The `--audit-*` flags, as `Config` holds them.
pub struct Flags<'a> {
    pub policy_file: Option<&'a Path>,
    pub log_path: Option<&'a str>,
    pub log_format: &'a str,
    pub max_age_days: u64,
    pub max_backups: usize,
    pub max_size_mb: u64,
}

impl Auditor {
    pub fn new(policy: Policy, sink: sink::Sink) -> Auditor {
        Auditor { policy, sink }
    }

    /// The auditor the flags ask for, if any.
    pub fn from_flags(f: &Flags) -> anyhow::Result<Option<Arc<Auditor>>> {
        match f.log_format {
            "json" => {}
            "legacy" => {
                anyhow::bail!("--audit-log-format=legacy is not supported; use json (the default)")
            }
            other => anyhow::bail!("--audit-log-format: unknown format {other:?}"),
        }
        let (Some(policy_file), Some(path)) = (f.policy_file, f.log_path) else {
            if f.policy_file.is_some() {
                tracing::warn!("--audit-policy-file without --audit-log-path: nothing is audited");
            }
            return Ok(None);
        };
        let policy = Policy::load(policy_file)?;
        let sink = sink::Sink::open(&sink::LogOptions {
            path: path.to_string(),
            max_age_days: f.max_age_days,
            max_backups: f.max_backups,
            max_size_mb: f.max_size_mb,
        })?;
        tracing::info!(policy = %policy_file.display(), log = path, rules = policy.rules.len(), "audit logging");
        Ok(Some(Arc::new(Auditor::new(policy, sink))))
    }
}

/// Audit annotations a handler attaches to its response (Pod Security's
/// `pod-security.kubernetes.io/*`), for the request's events.
#[derive(Debug, Clone, Default)]
pub struct Annotations(pub BTreeMap<String, String>);

/// Attach `annotations` to a response for the audit log.
pub fn annotate(r: &mut Response<Body>, annotations: &BTreeMap<String, String>) {
    if annotations.is_empty() {
        return;
    }
    let ext = r.extensions_mut();
    match ext.get_mut::<Annotations>() {
        Some(a) => a.0.extend(annotations.clone()),
        None => {
            ext.insert(Annotations(annotations.clone()));
        }
    }
}

tokio::task_local! {
    static CURRENT: Record;
}

/// The authorizer's answer for the current request: the
/// `authorization.k8s.io/decision` and `/reason` annotations. For gRPC this is also
/// where the policy is asked, with the call's attributes.
pub fn authorized(a: &Attributes, v: &Verdict) {
    let _ = CURRENT.try_with(|r| r.authorized(a, v));
}

/// The current request's body (REST): the `requestObject` at `Request` level and above,
/// and what the object says of itself for `objectRef` (a create's name).
pub fn request_body(method: &Method, headers: &HeaderMap, body: &Bytes) {
    let _ = CURRENT.try_with(|r| r.request_body(method, headers, body));
}

/// One request's audit trail.
#[derive(Clone)]
pub struct Record {
    audit_id: HeaderValue,
    state: Option<Arc<Mutex<State>>>,
}

struct State {
    auditor: Arc<Auditor>,
    event: Event,
    decision: Option<Decision>,
    /// Who authenticated; `None` before, or when nobody did.
    requester: Option<UserInfo>,
    authentication_failed: bool,
    /// Kubernetes' message for a failed authentication (which credentials were tried).
    auth_methods: String,
    long_running: bool,
    method: Method,
    path: String,
    query: String,
    grpc: bool,
    completed: bool,
}

impl Record {
    /// A request arrives. `has_certificate`: it presented a client certificate.
    pub fn begin<B>(
        auditor: Option<&Arc<Auditor>>,
        req: &Request<B>,
        peer: SocketAddr,
        has_certificate: bool,
        grpc: bool,
    ) -> Record {
        let given = req
            .headers()
            .get(AUDIT_ID_HEADER)
            .filter(|v| !v.is_empty() && v.len() <= 128);
        let audit_id = match given {
            Some(v) => v.clone(),
            None => HeaderValue::from_str(&uuid::Uuid::new_v4().to_string()).expect("ascii"),
        };
        let Some(auditor) = auditor else {
            return Record {
                audit_id,
                state: None,
            };
        };
        let mut event = Event::new(
            audit_id.to_str().unwrap_or_default().to_string(),
            chrono::Utc::now(),
        );
        event.request_uri = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_else(|| req.uri().path().to_string());
        event.source_ips = event::source_ips(req.headers(), peer.ip());
        event.user_agent = req
            .headers()
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        Record {
            audit_id,
            state: Some(Arc::new(Mutex::new(State {
                auditor: auditor.clone(),
                event,
                decision: None,
                requester: None,
                authentication_failed: false,
                auth_methods: auth_methods(req.headers(), has_certificate),
                long_running: false,
                method: req.method().clone(),
                path: req.uri().path().to_string(),
                query: req.uri().query().unwrap_or_default().to_string(),
                grpc,
                completed: false,
            }))),
        }
    }

    fn with(&self, f: impl FnOnce(&mut State)) {
        if let Some(s) = &self.state {
            f(&mut s.lock().unwrap_or_else(|p| p.into_inner()))
        }
    }

    /// Authentication failed (a 401 follows).
    pub fn authentication_failed(&self) {
        self.with(|s| {
            s.authentication_failed = true;
            if !s.grpc {
                let attrs = s.rest_attributes(&UserInfo::default());
                s.decide(&attrs);
            }
        });
    }

    /// Who the request is from (`None`: no credentials and no anonymous access), and
    /// whom it acts as when it impersonates.
    pub fn authenticated(&self, requester: Option<&UserInfo>, impersonated: Option<&UserInfo>) {
        self.with(|s| {
            s.requester = requester.cloned();
            if let Some(u) = requester {
                s.event.user = User::from(u);
            }
            s.event.impersonated_user = impersonated.map(User::from);
            if !s.grpc {
                let attrs = s.rest_attributes(requester.unwrap_or(&UserInfo::default()));
                s.decide(&attrs);
                if requester.is_some() {
                    s.emit(Stage::RequestReceived);
                }
            }
        });
    }

    fn authorized(&self, a: &Attributes, v: &Verdict) {
        self.with(|s| {
            if s.decision.is_none() {
                s.decide(a);
                s.emit(Stage::RequestReceived);
            }
            let decision = if v.allowed() { "allow" } else { "forbid" };
            let ann = &mut s.event.annotations;
            ann.insert("authorization.k8s.io/decision".into(), decision.into());
            ann.insert("authorization.k8s.io/reason".into(), v.reason.clone());
        });
    }

    fn request_body(&self, method: &Method, headers: &HeaderMap, body: &Bytes) {
        self.with(|s| {
            let Some(d) = s.decision.clone() else { return };
            let names_object = *method == Method::POST || *method == Method::PUT;
            if body.is_empty()
                || d.level == Level::None
                || (d.level < Level::Request && !names_object)
            {
                return;
            }
            let Some(mut obj) = decode(headers, body) else {
                return;
            };
            if names_object {
                if let Some(r) = s.event.object_ref.as_mut() {
                    r.complete_from(&obj);
                }
            }
            if d.level >= Level::Request {
                if d.omit_managed_fields {
                    event::strip_managed_fields(&mut obj);
                }
                s.event.request_object = Some(obj);
            }
        });
    }

    /// Run a request's handler in this record's scope; a panic is logged at the `Panic`
    /// stage and goes on unwinding (to the server's recovery).
    pub async fn scope<F: Future<Output = Response<Body>>>(&self, handler: F) -> Response<Body> {
        let run = CURRENT.scope(self.clone(), AssertUnwindSafe(handler).catch_unwind());
        match run.await {
            Ok(r) => r,
            Err(panic) => {
                let text = crate::recover::panic_text(panic.as_ref());
                self.with(|s| {
                    s.event.response_status = Some(serde_json::json!({
                        "metadata": {},
                        "status": "Failure",
                        "message": format!("APIServer panic'd: {text}"),
                        "reason": "InternalError",
                        "code": 500,
                    }));
                    s.ensure_decided();
                    s.emit(Stage::Panic);
                    s.completed = true;
                });
                std::panic::resume_unwind(panic)
            }
        }
    }

    /// The response: the `Audit-Id` header, the response stages, and (at
    /// `RequestResponse`) the response object.
    pub async fn finish(self, mut resp: Response<Body>) -> Response<Body> {
        resp.headers_mut()
            .insert(AUDIT_ID_HEADER, self.audit_id.clone());
        let Some(state) = self.state.clone() else {
            return resp;
        };
        let annotations = resp.extensions().get::<Annotations>().cloned();
        let code = resp.status().as_u16();
        let grpc_status = grpc_failure(resp.headers());
        let (level, long_running, failed_auth) = {
            let mut s = state.lock().unwrap_or_else(|p| p.into_inner());
            s.ensure_decided();
            if let Some(a) = annotations {
                s.event.annotations.extend(a.0);
            }
            let failed_auth = s.authentication_failed || (s.requester.is_none() && code == 401);
            (s.level(), s.long_running, failed_auth)
        };
        let done = |s: &mut State| s.completed = true;
        if level == Level::None {
            self.with(done);
            return resp;
        }
        if failed_auth {
            // Kubernetes' failed-authentication event: one, at ResponseStarted.
            self.with(|s| {
                s.event.user = User::default();
                s.event.impersonated_user = None;
                s.event.response_status = Some(serde_json::json!({
                    "metadata": {}, "message": s.auth_methods, "code": 401,
                }));
                s.emit(Stage::ResponseStarted);
                s.completed = true;
            });
            return resp;
        }
        if let Some(status) = &grpc_status {
            self.with(|s| {
                let code = status["code"].as_u64().unwrap_or(500) as u16;
                s.event.response_status = Some(event::response_status(code, Some(status)));
            });
        } else {
            self.with(|s| s.event.response_status = Some(event::response_status(code, None)));
        }
        if long_running {
            self.with(|s| s.emit(Stage::ResponseStarted));
        }
        let exact = resp.body().size_hint().exact();
        let wants_body = !long_running
            && grpc_status.is_none()
            && (level == Level::RequestResponse || code >= 300)
            && exact.is_some_and(|n| n <= MAX_LOGGED_RESPONSE);
        if wants_body {
            let (parts, body) = resp.into_parts();
            let bytes = body
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let parsed = serde_json::from_slice::<Value>(&bytes).ok();
            self.with(|s| {
                s.event.response_status = Some(event::response_status(code, parsed.as_ref()));
                if level == Level::RequestResponse {
                    if let Some(mut obj) = parsed {
                        if s.decision.as_ref().is_some_and(|d| d.omit_managed_fields) {
                            event::strip_managed_fields(&mut obj);
                        }
                        s.event.response_object = Some(obj);
                    }
                }
                s.complete();
            });
            return Response::from_parts(parts, Body::from(bytes));
        }
        resp.map(|inner| {
            Body::new(Completing {
                inner,
                record: self,
            })
        })
    }

    fn complete(&self) {
        self.with(State::complete);
    }

    /// gRPC trailers: a failure reported after the response started.
    fn trailers(&self, t: &HeaderMap) {
        if let Some(status) = grpc_failure(t) {
            self.with(|s| {
                let code = status["code"].as_u64().unwrap_or(500) as u16;
                s.event.response_status = Some(event::response_status(code, Some(&status)));
            });
        }
    }
}

impl State {
    fn level(&self) -> Level {
        self.decision.as_ref().map_or(Level::None, |d| d.level)
    }

    fn rest_attributes(&self, user: &UserInfo) -> Attributes {
        crate::authz::request::attributes(user, &self.method, &self.path, &self.query)
    }

    /// A call nothing described (a gRPC call refused before its handler knew what it
    /// names): judged by its path.
    fn ensure_decided(&mut self) {
        if self.decision.is_none() {
            let attrs = Attributes {
                verb: self.method.as_str().to_ascii_lowercase(),
                path: self.path.clone(),
                ..Default::default()
            };
            self.decide(&attrs);
        }
    }

    /// Ask the policy, and describe the request as `a` says.
    fn decide(&mut self, a: &Attributes) {
        let d = self.auditor.policy.evaluate(self.requester.as_ref(), a);
        self.event.level = d.level;
        self.decision = Some(d);
        self.event.verb = a.verb.clone();
        self.long_running = a.verb == "watch"
            || a.verb == "proxy"
            || LONG_RUNNING_SUBRESOURCES.contains(&a.subresource.as_str());
        self.event.object_ref = a.resource_request.then(|| ObjectRef {
            resource: a.resource.clone(),
            namespace: a.namespace.clone(),
            name: a.name.clone(),
            api_group: a.api_group.clone(),
            api_version: a.api_version.clone(),
            subresource: a.subresource.clone(),
            ..Default::default()
        });
    }

    /// Write the event at `stage`, unless the level is None or the stage is omitted.
    fn emit(&mut self, stage: Stage) {
        let Some(d) = &self.decision else { return };
        if d.level == Level::None || d.omits(stage) {
            return;
        }
        self.event.stage = stage;
        self.event.stage_timestamp = if stage == Stage::RequestReceived {
            self.event.request_received_timestamp
        } else {
            chrono::Utc::now()
        };
        // Bodies belong to the last stages only, as in Kubernetes (they are not known
        // earlier); RequestReceived never carries them.
        let line = if stage == Stage::RequestReceived {
            let mut e = self.event.clone();
            e.request_object = None;
            e.response_object = None;
            e.to_line()
        } else {
            self.event.to_line()
        };
        self.auditor.sink.write(line);
    }

    /// The response is over: ResponseComplete, once.
    fn complete(&mut self) {
        if self.completed {
            return;
        }
        self.completed = true;
        if self.event.response_status.is_none() {
            self.event.response_status = Some(serde_json::json!({
                "metadata": {}, "status": "Success", "message": "Connection closed early", "code": 200,
            }));
        }
        self.emit(Stage::ResponseComplete);
    }
}

/// A request dropped before it was answered (the client went away) still ends its
/// trail, as Kubernetes' "Connection closed early".
impl Drop for State {
    fn drop(&mut self) {
        if !self.completed && self.decision.is_some() && !self.authentication_failed {
            self.complete();
        }
    }
}

/// The response body, which writes ResponseComplete when it ends or is dropped.
struct Completing {
    inner: Body,
    record: Record,
}

impl HttpBody for Completing {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(t) = frame.trailers_ref() {
                    self.record.trailers(t);
                }
            }
            Poll::Ready(None) => self.record.complete(),
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for Completing {
    fn drop(&mut self) {
        self.record.complete();
    }
}

/// Kubernetes' `getAuthMethods`: which credentials a failed authentication tried.
fn auth_methods(headers: &HeaderMap, has_certificate: bool) -> String {
    let mut methods = Vec::new();
    let auth = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim();
    let mut parts = auth.split(' ');
    match parts.next() {
        Some(s) if s.eq_ignore_ascii_case("basic") => methods.push("basic"),
        Some(s) if s.eq_ignore_ascii_case("bearer") && parts.next().is_some() => {
            methods.push("bearer")
        }
        _ => {}
    }
    if has_certificate {
        methods.push("x509");
    }
    if methods.is_empty() {
        "Authentication failed, no credentials provided".into()
    } else {
        format!("Authentication failed, attempted: {}", methods.join(", "))
    }
}

/// A gRPC failure in headers or trailers: the `metav1.Status` our errors carry in
/// `grpc-status-details-bin`, or one made from the gRPC code.
fn grpc_failure(h: &HeaderMap) -> Option<Value> {
    let code = h.get("grpc-status")?.to_str().ok()?.parse::<i32>().ok()?;
    if code == 0 {
        return None;
    }
    let details = h
        .get("grpc-status-details-bin")
        .and_then(|v| {
            // tonic leaves the padding out; others may not.
            let unpadded = v.to_str().ok()?.trim_end_matches('=');
            base64::engine::general_purpose::STANDARD_NO_PAD
                .decode(unpadded)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .filter(|s| s["kind"] == "Status");
    Some(details.unwrap_or_else(|| {
        let message = h
            .get("grpc-message")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        serde_json::json!({
            "kind": "Status", "metadata": {}, "status": "Failure",
            "message": percent_encoding::percent_decode_str(message).decode_utf8_lossy(),
            "code": 500,
        })
    }))
}

/// A request body as JSON, whatever it was sent as (JSON, YAML, protobuf, a patch).
fn decode(headers: &HeaderMap, body: &[u8]) -> Option<Value> {
    crate::http::respond::decode_body(headers, body)
        .ok()
        .or_else(|| serde_json::from_slice(body).ok())
        .or_else(|| serde_yaml::from_slice(body).ok())
        .filter(|v: &Value| v.is_object() || v.is_array())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_authentication_names_what_was_tried() {
        let mut h = HeaderMap::new();
        assert_eq!(
            auth_methods(&h, false),
            "Authentication failed, no credentials provided"
        );
        h.insert("authorization", "Bearer nope".parse().unwrap());
        assert_eq!(
            auth_methods(&h, false),
            "Authentication failed, attempted: bearer"
        );
        assert_eq!(
            auth_methods(&h, true),
            "Authentication failed, attempted: bearer, x509"
        );
    }

    #[test]
    fn grpc_failures_carry_their_status() {
        let e = keelson_apimachinery::ApiError::new(404, "NotFound", "pods \"p\" not found");
        let status = crate::grpc::to_status(&e);
        let (parts, _) = status.into_http::<tonic::body::Body>().into_parts();
        let s = grpc_failure(&parts.headers).expect("a failure");
        assert_eq!(
            (s["code"].as_u64(), s["reason"].as_str()),
            (Some(404), Some("NotFound"))
        );
        let mut ok = HeaderMap::new();
        ok.insert("grpc-status", "0".parse().unwrap());
        assert!(grpc_failure(&ok).is_none() && grpc_failure(&HeaderMap::new()).is_none());
    }
}
