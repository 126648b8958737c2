//! The agent's own HTTPS API on `--port`, the paths the kubelet serves and the
//! apiserver relays to: `/containerLogs/{ns}/{pod}/{container}`, `/exec/...`,
//! `/attach/...` and `/portForward/{ns}/{pod}` (relayed byte for byte to containerd's
//! CRI streaming server, so SPDY and WebSocket both work), `/pods`, `/healthz`,
//! `/metrics`, `/stats/summary`.
//!
//! Every request is authenticated and authorized first ([`crate::auth`]): a client
//! certificate signed by `--client-ca-file` or a bearer token, then
//! `--authorization-mode` (a SubjectAccessReview per request in `Webhook` mode).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{combinators::UnsyncBoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use k8s_cri::v1 as cri;
use k8s_openapi::api::core::v1::Pod;
use prometheus_client::registry::Registry;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::agent::Agent;
use crate::auth::{ApiReviewer, Auth};
use crate::logs::{self, LogOptions};
use crate::pods::config::{pod_name, pod_namespace, pod_uid};
use crate::pods::PodWorkers;

type Body = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub struct Server {
    agent: Arc<Agent>,
    workers: Arc<PodWorkers>,
    registry: Arc<Registry>,
    relay: keelson_relay::Relay,
    auth: Auth,
}

fn text(code: StatusCode, body: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(
        Full::new(Bytes::from(body.into()))
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *r.status_mut() = code;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("valid"),
    );
    r
}

fn json_response(v: &serde_json::Value) -> Response<Body> {
    let mut r = text(StatusCode::OK, v.to_string());
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        "application/json".parse().expect("valid"),
    );
    r
}

fn query_pairs(uri: &http::Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or_default().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn flag(q: &[(String, String)], names: &[&str]) -> bool {
    q.iter()
        .any(|(k, v)| names.contains(&k.as_str()) && matches!(v.as_str(), "1" | "true" | "True"))
}

/// The certificate (and key) files the agent serves when it rotates none, and until
/// the first rotated one: `--tls-cert-file`/`--tls-private-key-file`, or a self-signed
/// certificate for the node's name and IP (as the kubelet makes one when given none).
pub fn static_certificate(agent: &Agent) -> anyhow::Result<(PathBuf, PathBuf)> {
    match (&agent.opts.tls_cert_file, &agent.opts.tls_private_key_file) {
        (Some(c), Some(k)) => Ok((c.clone(), k.clone())),
        (None, None) => self_signed(agent),
        _ => anyhow::bail!("--tls-cert-file and --tls-private-key-file go together"),
    }
}

/// A TLS server config presenting what `certificate` holds at each handshake (so a
/// rotated certificate is served without a new listener), verifying client
/// certificates against `--client-ca-file`.
pub fn tls_config(
    opts: &crate::NodeAgentOptions,
    certificate: Arc<dyn rustls::server::ResolvesServerCert>,
) -> anyhow::Result<rustls::ServerConfig> {
    let mut config =
        keelson_pki::server_config_with_resolver(certificate, opts.client_ca_file.as_deref())?;
    // Streams (exec, attach, port-forward) are HTTP/1.1 upgrades.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn self_signed(agent: &Agent) -> anyhow::Result<(PathBuf, PathBuf)> {
    let dir = agent.opts.root_dir.join("pki");
    std::fs::create_dir_all(&dir)?;
    let cert_path = dir.join("kubelet.crt");
    let key_path = dir.join("kubelet.key");
    if cert_path.exists() && key_path.exists() {
        return Ok((cert_path, key_path));
    }
    let mut params = rcgen::CertificateParams::new(vec![agent.node_name.clone()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(agent.node_ip));
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("{}@keelson", agent.node_name),
    );
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    std::fs::write(&cert_path, cert.pem())?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    Ok((cert_path, key_path))
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}

impl Server {
    pub fn new(agent: Arc<Agent>, workers: Arc<PodWorkers>, registry: Registry) -> Self {
        let auth = Auth::new(
            Arc::new(ApiReviewer::new(agent.client.clone())),
            &agent.node_name,
            &agent.opts,
        );
        Server {
            auth,
            agent,
            workers,
            registry: Arc::new(registry),
            relay: keelson_relay::Relay::new().with_connect_timeout(Duration::from_secs(10)),
        }
    }

    /// Serve on `listener` until the task is aborted.
    pub async fn serve(self, listener: TcpListener, tls: rustls::ServerConfig) {
        let acceptor = TlsAcceptor::from(Arc::new(tls));
        let this = Arc::new(self);
        loop {
            let (tcp, peer) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let this = this.clone();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    _ => return,
                };
                // Only a certificate that chained to --client-ca-file got this far.
                let identity = Arc::new(keelson_pki::peer_identity(tls.get_ref().1));
                let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                    let this = this.clone();
                    let identity = identity.clone();
                    async move {
                        let (method, path) = (req.method().clone(), req.uri().path().to_string());
                        let checked = this
                            .auth
                            .check((*identity).as_ref(), &method, &path, req.headers_mut())
                            .await;
                        if let Err(refusal) = checked {
                            return Ok::<_, Infallible>(text(refusal.status(), refusal.message()));
                        }
                        Ok(this.handle(req, peer).await)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                if let Err(e) = conn.await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
    }

    async fn handle(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        let path = req.uri().path().to_string();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let result = match (req.method(), segments.as_slice()) {
            (&Method::GET, ["healthz"]) => Ok(text(StatusCode::OK, "ok")),
            (&Method::GET, ["metrics"]) => Ok(self.metrics()),
            (&Method::GET, ["pods"]) => Ok(self.pods()),
            (&Method::GET, ["stats", "summary"]) => self.summary().await,
            (&Method::GET, ["containerLogs", ns, pod, container]) => {
                self.logs(ns, pod, container, &req).await
            }
            (_, ["exec", ns, pod, container]) | (_, ["exec", ns, pod, _, container]) => {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                self.exec(req, &ns, &pod, &container, false).await
            }
            (_, ["attach", ns, pod, container]) | (_, ["attach", ns, pod, _, container]) => {
                let (ns, pod, container) = (ns.to_string(), pod.to_string(), container.to_string());
                self.exec(req, &ns, &pod, &container, true).await
            }
            (_, ["portForward", ns, pod]) | (_, ["portForward", ns, pod, _]) => {
                let (ns, pod) = (ns.to_string(), pod.to_string());
                self.port_forward(req, &ns, &pod).await
            }
            _ => Err((StatusCode::NOT_FOUND, format!("404 page not found: {path}"))),
        };
        result.unwrap_or_else(|(code, msg)| text(code, msg))
    }

    fn metrics(&self) -> Response<Body> {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            return text(StatusCode::INTERNAL_SERVER_ERROR, e.to_string());
        }
        let mut r = text(StatusCode::OK, out);
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
                .parse()
                .expect("valid"),
        );
        r
    }

    fn pods(&self) -> Response<Body> {
        let items: Vec<serde_json::Value> = self
            .workers
            .pods()
            .iter()
            .map(|p| serde_json::to_value(p.as_ref()).unwrap_or_default())
            .collect();
        json_response(
            &json!({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}),
        )
    }

    fn find_pod(&self, ns: &str, name: &str) -> Result<Arc<Pod>, (StatusCode, String)> {
        self.workers
            .pods()
            .into_iter()
            .find(|p| pod_namespace(p) == ns && pod_name(p) == name)
            .ok_or_else(|| {
                (
                    StatusCode::NOT_FOUND,
                    format!("pod {ns}/{name} not found on this node"),
                )
            })
    }

    /// The pod (from the API's copy) and what the runtime holds for it.
    async fn pod_and_runtime(
        &self,
        ns: &str,
        name: &str,
    ) -> Result<(Arc<Pod>, crate::pods::runtime::PodRuntime), (StatusCode, String)> {
        let pod = self.find_pod(ns, name)?;
        let rt = self
            .agent
            .reader
            .pod(pod_uid(&pod))
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        Ok((pod, rt))
    }

    async fn logs(
        &self,
        ns: &str,
        name: &str,
        container: &str,
        req: &Request<Incoming>,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let q = query_pairs(req.uri());
        let opts = LogOptions::from_query(&q).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let previous = flag(&q, &["previous"]);
        let (pod, rt) = self.pod_and_runtime(ns, name).await?;
        let uid = pod_uid(&pod).to_string();
        let instance = if previous {
            rt.previous(container).cloned().ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!(
                        "previous terminated container \"{container}\" in pod \"{name}\" not found"
                    ),
                )
            })?
        } else {
            rt.latest(container).cloned().ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("container \"{container}\" in pod \"{name}\" is waiting to start: ContainerCreating"),
                )
            })?
        };
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let reader = self.agent.reader.clone();
        let id = instance.id.clone();
        let still_running = move || -> futures::future::BoxFuture<'static, bool> {
            let reader = reader.clone();
            let uid = uid.clone();
            let id = id.clone();
            Box::pin(async move {
                reader
                    .pod(&uid)
                    .await
                    .map(|rt| rt.containers.iter().any(|c| c.id == id && c.running()))
                    .unwrap_or(false)
            })
        };
        tokio::spawn(logs::stream(
            instance.log_path.into(),
            opts,
            tx,
            still_running,
        ));
        let stream = tokio_stream::wrappers::ReceiverStream::new(rx);
        let body = StreamBody::new(futures::StreamExt::map(stream, |r| {
            r.map(Frame::data)
                .map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
        }));
        let mut r = Response::new(BodyExt::boxed_unsync(body));
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            "text/plain".parse().expect("valid"),
        );
        Ok(r)
    }

    /// Exec or attach: ask the runtime for a streaming URL, then relay the client's
    /// upgrade to it.
    async fn exec(
        &self,
        req: Request<Incoming>,
        ns: &str,
        name: &str,
        container: &str,
        attach: bool,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let q = query_pairs(req.uri());
        let (_, rt) = self.pod_and_runtime(ns, name).await?;
        let instance = rt
            .latest(container)
            .filter(|c| c.running())
            .ok_or_else(|| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("container {container} is not running in pod {ns}/{name}"),
                )
            })?;
        let tty = flag(&q, &["tty"]);
        let stdin = flag(&q, &["stdin", "input"]);
        let stdout = flag(&q, &["stdout", "output"]);
        let stderr = flag(&q, &["stderr", "error"]) && !tty;
        let mut runtime = self.agent.runtime.clone();
        let url = if attach {
            runtime
                .attach(cri::AttachRequest {
                    container_id: instance.id.clone(),
                    stdin,
                    tty,
                    stdout,
                    stderr,
                })
                .await
        } else {
            let cmd: Vec<String> = q
                .iter()
                .filter(|(k, _)| k == "command")
                .map(|(_, v)| v.clone())
                .collect();
            if cmd.is_empty() {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "you must specify at least 1 command".into(),
                ));
            }
            runtime
                .exec(cri::ExecRequest {
                    container_id: instance.id.clone(),
                    cmd,
                    tty,
                    stdin,
                    stdout,
                    stderr,
                })
                .await
        }
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        self.relay_to(req, &url).await
    }

    async fn port_forward(
        &self,
        req: Request<Incoming>,
        ns: &str,
        name: &str,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let (_, rt) = self.pod_and_runtime(ns, name).await?;
        let sandbox = rt.sandbox().filter(|s| s.ready).ok_or_else(|| {
            (
                StatusCode::BAD_REQUEST,
                format!("pod {ns}/{name} has no running sandbox"),
            )
        })?;
        let url = self
            .agent
            .runtime
            .clone()
            .port_forward(&sandbox.id, vec![])
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        self.relay_to(req, &url).await
    }

    async fn relay_to(
        &self,
        req: Request<Incoming>,
        url: &str,
    ) -> Result<Response<Body>, (StatusCode, String)> {
        let target: http::Uri = url.parse().map_err(|e| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("runtime streaming URL {url:?}: {e}"),
            )
        })?;
        // The runtime's URL carries its own path; the client's query (ports for
        // port-forward) goes along.
        let target = match (req.uri().query(), target.query()) {
            (Some(q), None) => format!("{url}?{q}").parse().unwrap_or(target),
            _ => target,
        };
        match self.relay.forward(req, &target).await {
            Ok(resp) => Ok(resp.map(|b| {
                b.map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)
                    .boxed_unsync()
            })),
            Err(e) => Err((
                StatusCode::from_u16(e.status_code()).unwrap_or(StatusCode::BAD_GATEWAY),
                e.to_string(),
            )),
        }
    }

    /// A subset of the kubelet's Summary API: node and per-pod CPU and memory from the
    /// runtime's container stats.
    async fn summary(&self) -> Result<Response<Body>, (StatusCode, String)> {
        let stats = self
            .agent
            .runtime
            .clone()
            .list_container_stats()
            .await
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")))?;
        let now = crate::pods::status::now().to_string();
        let mut pods: std::collections::BTreeMap<(String, String, String), Vec<serde_json::Value>> =
            Default::default();
        let (mut node_cpu, mut node_mem) = (0u64, 0u64);
        for s in stats {
            let attrs = s.attributes.unwrap_or_default();
            let label = |k: &str| attrs.labels.get(k).cloned().unwrap_or_default();
            let cpu = s
                .cpu
                .and_then(|c| c.usage_core_nano_seconds)
                .map(|v| v.value)
                .unwrap_or(0);
            let mem = s
                .memory
                .and_then(|m| m.working_set_bytes)
                .map(|v| v.value)
                .unwrap_or(0);
            node_cpu += cpu;
            node_mem += mem;
            pods.entry((
                label(crate::cri::labels::POD_NAMESPACE),
                label(crate::cri::labels::POD_NAME),
                label(crate::cri::labels::POD_UID),
            ))
            .or_default()
            .push(json!({
                "name": attrs.metadata.map(|m| m.name).unwrap_or_default(),
                "startTime": now,
                "cpu": {"time": now, "usageCoreNanoSeconds": cpu},
                "memory": {"time": now, "workingSetBytes": mem},
            }));
        }
        let pods: Vec<serde_json::Value> = pods
            .into_iter()
            .map(|((ns, name, uid), containers)| {
                json!({"podRef": {"namespace": ns, "name": name, "uid": uid}, "startTime": now, "containers": containers})
            })
            .collect();
        Ok(json_response(&json!({
            "node": {
                "nodeName": self.agent.node_name,
                "startTime": now,
                "cpu": {"time": now, "usageCoreNanoSeconds": node_cpu},
                "memory": {"time": now, "workingSetBytes": node_mem},
            },
            "pods": pods,
        })))
    }
}
