//! Probes and lifecycle hooks (the kubelet's `prober` and `lifecycle` packages).
//!
//! Each probe of a running container is a task: it waits `initialDelaySeconds`, then
//! runs every `periodSeconds` with `timeoutSeconds`, and turns `successThreshold`
//! successes or `failureThreshold` failures in a row into a result. Readiness starts
//! false, startup starts false and holds liveness and readiness back until it passes,
//! liveness starts true. A change of result wakes the pod's worker, which reads the
//! results through [`ProbeManager::view`] (status) and [`ProbeManager::failed`] (kill
//! and restart). Handlers are the same for probes and hooks: exec (CRI `ExecSync`),
//! httpGet, tcpSocket and grpc (`grpc.health.v1.Health/Check`).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, LifecycleHandler, ObjectReference, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_component::events::{EventType, Recorder};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

use crate::cri::Runtime;
use crate::pods::status::ProbeView;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    fn word(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }
}

#[derive(Default)]
struct ContainerProbes {
    uid: String,
    ready: Option<bool>,
    started: Option<bool>,
    /// A liveness or startup probe gave up: the container must be restarted.
    failed: Option<ProbeKind>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

/// The probe tasks of every container and their latest results.
pub struct ProbeManager {
    runtime: Runtime,
    wake: mpsc::UnboundedSender<String>,
    recorder: Mutex<Option<Recorder>>,
    containers: Arc<Mutex<HashMap<String, ContainerProbes>>>,
}

/// Where a probe or hook runs: the container and the pod's address.
#[derive(Clone)]
struct Target {
    runtime: Runtime,
    container_id: String,
    pod_ip: String,
    ports: Vec<(String, i32)>,
}

impl ProbeManager {
    pub fn new(runtime: Runtime, wake: mpsc::UnboundedSender<String>) -> Self {
        ProbeManager {
            runtime,
            wake,
            recorder: Mutex::new(None),
            containers: Arc::default(),
        }
    }

    /// Probe failures become `Unhealthy` Events through this recorder.
    pub fn set_recorder(&self, r: Recorder) {
        *self.recorder.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, ContainerProbes>> {
        self.containers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// What the probes say about a container instance.
    pub fn view(&self, container_id: &str) -> ProbeView {
        self.lock()
            .get(container_id)
            .map(|p| ProbeView {
                ready: p.ready,
                started: p.started,
            })
            .unwrap_or_default()
    }

    /// Whether the container's probes run (an entry exists, even with no probe).
    pub fn has(&self, container_id: &str) -> bool {
        self.lock().contains_key(container_id)
    }

    /// The probe that gave up on the container, once (the caller kills it).
    pub fn failed(&self, container_id: &str) -> Option<ProbeKind> {
        self.lock().get_mut(container_id)?.failed.take()
    }

    /// Start the probes of a container that has just started.
    pub fn start(
        &self,
        pod: &Pod,
        c: &Container,
        container_id: &str,
        pod_ips: &[String],
        init: bool,
    ) {
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let mut entry = ContainerProbes {
            uid: uid.clone(),
            ..Default::default()
        };
        let target = Target {
            runtime: self.runtime.clone(),
            container_id: container_id.to_string(),
            pod_ip: pod_ips
                .first()
                .cloned()
                .unwrap_or_else(|| "127.0.0.1".into()),
            ports: c
                .ports
                .iter()
                .flatten()
                .filter_map(|p| p.name.clone().map(|n| (n, p.container_port)))
                .collect(),
        };
        let mut reference = keelson_component::events::reference(pod);
        reference.field_path = crate::agent::field_path(init, &c.name);
        let has_startup = c.startup_probe.is_some();
        let probes = [
            (ProbeKind::Startup, c.startup_probe.clone()),
            (ProbeKind::Liveness, c.liveness_probe.clone()),
            (ProbeKind::Readiness, c.readiness_probe.clone()),
        ];
        if c.readiness_probe.is_some() {
            entry.ready = Some(false);
        }
        if has_startup {
            entry.started = Some(false);
        }
        self.lock().insert(container_id.to_string(), entry);
        for (kind, probe) in probes {
            let Some(probe) = probe else { continue };
            let worker = Worker {
                kind,
                probe,
                target: target.clone(),
                uid: uid.clone(),
                reference: reference.clone(),
                gated_by_startup: has_startup && kind != ProbeKind::Startup,
                containers: self.containers.clone(),
                wake: self.wake.clone(),
                recorder: self
                    .recorder
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            };
            let handle = tokio::spawn(worker.run());
            if let Some(e) = self.lock().get_mut(container_id) {
                e.tasks.push(handle);
            }
        }
    }

    /// Stop the probes of a container (it stopped or is being stopped).
    pub fn stop(&self, container_id: &str) {
        if let Some(p) = self.lock().remove(container_id) {
            for t in p.tasks {
                t.abort();
            }
        }
    }

    pub fn forget_pod(&self, uid: &str) {
        let mut all = self.lock();
        all.retain(|_, p| {
            if p.uid == uid {
                for t in &p.tasks {
                    t.abort();
                }
                false
            } else {
                true
            }
        });
    }
}

struct Worker {
    kind: ProbeKind,
    probe: Probe,
    target: Target,
    uid: String,
    reference: ObjectReference,
    gated_by_startup: bool,
    containers: Arc<Mutex<HashMap<String, ContainerProbes>>>,
    wake: mpsc::UnboundedSender<String>,
    recorder: Option<Recorder>,
}

impl Worker {
    fn started(&self) -> bool {
        self.containers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&self.target.container_id)
            .is_some_and(|p| p.started != Some(false))
    }

    async fn run(self) {
        let p = &self.probe;
        let period = Duration::from_secs(p.period_seconds.unwrap_or(10).max(1) as u64);
        let timeout = p.timeout_seconds.unwrap_or(1).max(1) as i64;
        let success_threshold = p.success_threshold.unwrap_or(1).max(1);
        let failure_threshold = p.failure_threshold.unwrap_or(3).max(1);
        tokio::time::sleep(Duration::from_secs(
            p.initial_delay_seconds.unwrap_or(0).max(0) as u64,
        ))
        .await;
        let (mut successes, mut failures) = (0, 0);
        let mut ticker = tokio::time::interval(period);
        loop {
            ticker.tick().await;
            if self.gated_by_startup && !self.started() {
                continue;
            }
            let result = run_probe(&self.target, p, timeout).await;
            match result {
                Ok(()) => {
                    failures = 0;
                    successes += 1;
                    if successes >= success_threshold
                        && self.record(true)
                        && self.kind == ProbeKind::Startup
                    {
                        return;
                    }
                }
                Err(output) => {
                    successes = 0;
                    failures += 1;
                    if let Some(r) = &self.recorder {
                        let message =
                            format!("{} probe failed: {}", self.kind.word(), output.trim_end());
                        r.record(&self.reference, EventType::Warning, "Unhealthy", &message)
                            .await;
                    }
                    if failures >= failure_threshold {
                        self.record(false);
                        if self.kind != ProbeKind::Readiness {
                            // The container gets killed; a new one gets new probes.
                            return;
                        }
                    }
                }
            }
        }
    }

    /// Store a result; true when it changed (the pod's worker is woken then).
    fn record(&self, ok: bool) -> bool {
        let changed = {
            let mut all = self.containers.lock().unwrap_or_else(|e| e.into_inner());
            let Some(entry) = all.get_mut(&self.target.container_id) else {
                return false;
            };
            match self.kind {
                ProbeKind::Readiness => {
                    let changed = entry.ready != Some(ok);
                    entry.ready = Some(ok);
                    changed
                }
                ProbeKind::Startup if ok => {
                    let changed = entry.started != Some(true);
                    entry.started = Some(true);
                    changed
                }
                _ if !ok => {
                    entry.failed = Some(self.kind);
                    true
                }
                _ => false,
            }
        };
        if changed {
            let _ = self.wake.send(self.uid.clone());
        }
        changed
    }
}

/// The grace period for a container killed by a failed probe: the probe's own
/// `terminationGracePeriodSeconds`, else the pod's.
pub fn termination_grace(pod: &Pod, c: &Container, kind: ProbeKind) -> i64 {
    let probe = match kind {
        ProbeKind::Startup => c.startup_probe.as_ref(),
        _ => c.liveness_probe.as_ref(),
    };
    probe
        .and_then(|p| p.termination_grace_period_seconds)
        .unwrap_or_else(|| crate::pods::config::grace_period(pod))
}

async fn run_probe(t: &Target, p: &Probe, timeout: i64) -> Result<(), String> {
    if let Some(e) = &p.exec {
        return exec(t, e.command.clone().unwrap_or_default(), timeout).await;
    }
    if let Some(h) = &p.http_get {
        let port = resolve_port(&h.port, &t.ports)?;
        let host = h
            .host
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| t.pod_ip.clone());
        let headers: Vec<(String, String)> = h
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        let scheme = h.scheme.as_deref().unwrap_or("HTTP");
        return http_get(
            &host,
            port,
            h.path.as_deref().unwrap_or("/"),
            scheme,
            &headers,
            timeout,
        )
        .await;
    }
    if let Some(s) = &p.tcp_socket {
        let port = resolve_port(&s.port, &t.ports)?;
        let host = s
            .host
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| t.pod_ip.clone());
        return tcp(&host, port, timeout).await;
    }
    if let Some(g) = &p.grpc {
        return grpc_health(
            &t.pod_ip,
            g.port,
            g.service.as_deref().unwrap_or(""),
            timeout,
        )
        .await;
    }
    Err("probe has no handler".into())
}

/// Run a lifecycle hook (postStart, preStop) in or against the container.
pub async fn run_handler(
    agent: &crate::agent::Agent,
    pod: &Pod,
    pod_ips: &[String],
    container_id: &str,
    h: &LifecycleHandler,
    timeout: i64,
) -> Result<(), String> {
    let t = Target {
        runtime: agent.runtime.clone(),
        container_id: container_id.to_string(),
        pod_ip: pod_ips
            .first()
            .cloned()
            .or_else(|| pod.status.as_ref().and_then(|s| s.pod_ip.clone()))
            .unwrap_or_else(|| "127.0.0.1".into()),
        ports: vec![],
    };
    if let Some(e) = &h.exec {
        return exec(&t, e.command.clone().unwrap_or_default(), timeout).await;
    }
    if let Some(g) = &h.http_get {
        let port = resolve_port(&g.port, &t.ports)?;
        let host = g
            .host
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| t.pod_ip.clone());
        let headers: Vec<(String, String)> = g
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        return http_get(
            &host,
            port,
            g.path.as_deref().unwrap_or("/"),
            g.scheme.as_deref().unwrap_or("HTTP"),
            &headers,
            timeout,
        )
        .await;
    }
    if let Some(s) = &h.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    Err("lifecycle hook has no handler".into())
}

fn resolve_port(p: &IntOrString, named: &[(String, i32)]) -> Result<u16, String> {
    match p {
        IntOrString::Int(n) if (1..=65535).contains(n) => Ok(*n as u16),
        IntOrString::Int(n) => Err(format!("invalid port number: {n}")),
        IntOrString::String(s) => match s.parse::<u16>() {
            Ok(n) => Ok(n),
            Err(_) => named
                .iter()
                .find(|(n, _)| n == s)
                .map(|(_, p)| *p as u16)
                .ok_or_else(|| format!("couldn't find port: {s}")),
        },
    }
}

async fn exec(t: &Target, cmd: Vec<String>, timeout: i64) -> Result<(), String> {
    let mut rt = t.runtime.clone();
    match rt.exec_sync(&t.container_id, cmd, timeout).await {
        Ok(r) if r.exit_code == 0 => Ok(()),
        Ok(r) => {
            let mut out = String::from_utf8_lossy(&r.stdout).to_string();
            out.push_str(&String::from_utf8_lossy(&r.stderr));
            if out.trim().is_empty() {
                Err(format!("command exited with {}", r.exit_code))
            } else {
                Err(out)
            }
        }
        Err(e) => Err(format!("{e:#}")),
    }
}

async fn tcp(host: &str, port: u16, timeout: i64) -> Result<(), String> {
    let addr = format!("{host}:{port}");
    match tokio::time::timeout(
        Duration::from_secs(timeout as u64),
        tokio::net::TcpStream::connect(&addr),
    )
    .await
    {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("dial tcp {addr}: connect: {e}")),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// An HTTP GET as the kubelet's prober makes it: success for 200-399.
async fn http_get(
    host: &str,
    port: u16,
    path: &str,
    scheme: &str,
    headers: &[(String, String)],
    timeout: i64,
) -> Result<(), String> {
    let url = format!("{}://{host}:{port}{path}", scheme.to_lowercase());
    let work = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("Get \"{url}\": dial tcp {host}:{port}: connect: {e}"))?;
        let mut req = format!("GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUser-Agent: kube-probe/1.33\r\nAccept: */*\r\nConnection: close\r\n");
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        let mut head = Vec::new();
        if scheme.eq_ignore_ascii_case("HTTPS") {
            let config = keelson_relay::tls::insecure_client_config().map_err(|e| e.to_string())?;
            let name = rustls::pki_types::ServerName::try_from(host.to_string())
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, stream)
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            tls.write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let _ = tls.take(4096).read_to_end(&mut head).await;
        } else {
            let mut stream = stream;
            stream
                .write_all(req.as_bytes())
                .await
                .map_err(|e| e.to_string())?;
            let _ = stream.take(4096).read_to_end(&mut head).await;
        }
        let text = String::from_utf8_lossy(&head);
        let code: u16 = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
        if (200..400).contains(&code) {
            Ok(())
        } else {
            Err(format!("HTTP probe failed with statuscode: {code}"))
        }
    };
    match tokio::time::timeout(Duration::from_secs(timeout as u64), work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
        )),
    }
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    service: String,
}

#[derive(Clone, PartialEq, prost::Message)]
struct HealthCheckResponse {
    #[prost(int32, tag = "1")]
    status: i32,
}

/// `grpc.health.v1.Health/Check`: SERVING (1) passes.
async fn grpc_health(host: &str, port: i32, service: &str, timeout: i64) -> Result<(), String> {
    let addr = format!("http://{host}:{port}");
    let work = async {
        let channel = tonic::transport::Endpoint::from_shared(addr.clone())
            .map_err(|e| e.to_string())?
            .connect()
            .await
            .map_err(|e| {
                format!("failed to connect service \"{host}:{port}\" within {timeout}s: {e}")
            })?;
        let mut grpc = tonic::client::Grpc::new(channel);
        grpc.ready().await.map_err(|e| e.to_string())?;
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let path = http::uri::PathAndQuery::from_static("/grpc.health.v1.Health/Check");
        let r = grpc
            .unary(
                tonic::Request::new(HealthCheckRequest {
                    service: service.to_string(),
                }),
                path,
                codec,
            )
            .await
            .map_err(|s| format!("rpc error: code = {:?} desc = {}", s.code(), s.message()))?;
        match r.into_inner().status {
            1 => Ok(()),
            s => Err(format!(
                "service unhealthy (responded with \"{}\")",
                match s {
                    2 => "NOT_SERVING",
                    3 => "SERVICE_UNKNOWN",
                    _ => "UNKNOWN",
                }
            )),
        }
    };
    match tokio::time::timeout(Duration::from_secs(timeout as u64), work).await {
        Ok(r) => r,
        Err(_) => Err(format!(
            "timeout: health rpc did not complete within {timeout}s"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_by_number_or_name() {
        let named = vec![("http".to_string(), 8080)];
        assert_eq!(resolve_port(&IntOrString::Int(80), &named), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &named),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("81".into()), &named),
            Ok(81)
        );
        assert!(resolve_port(&IntOrString::String("nope".into()), &named).is_err());
        assert!(resolve_port(&IntOrString::Int(0), &named).is_err());
    }

    #[tokio::test]
    async fn http_probes_read_the_status_code() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            for code in [200, 500] {
                let (mut s, _) = listener.accept().await.unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(format!("HTTP/1.1 {code} X\r\nContent-Length: 0\r\n\r\n").as_bytes())
                    .await;
            }
        });
        assert_eq!(
            http_get("127.0.0.1", port, "/", "HTTP", &[], 2).await,
            Ok(())
        );
        assert_eq!(
            http_get("127.0.0.1", port, "/", "HTTP", &[], 2).await,
            Err("HTTP probe failed with statuscode: 500".into())
        );
        assert!(tcp("127.0.0.1", port, 1).await.is_err(), "listener is gone");
    }
}
