//! One cluster, one fake kubelet and one echo server for the whole binary.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use keelson_testkit::{ok, Cluster};
use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type TestBody = UnsyncBoxBody<Bytes, BoxError>;

/// The node the fake kubelet plays.
pub const NODE: &str = "fake-node";

pub static RT: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
});

pub struct Env {
    pub cluster: Cluster,
    /// The fake kubelet's port.
    pub kubelet_port: u16,
    /// The plain HTTP echo server's port.
    pub echo_port: u16,
    /// Client certificate subjects (CN) the fake kubelet saw.
    pub kubelet_clients: Arc<Mutex<Vec<String>>>,
    /// Lets the followed log go on to its second line.
    pub follow_gate: Arc<tokio::sync::Notify>,
}

pub static ENV: LazyLock<Env> = LazyLock::new(|| setup().expect("test environment"));

fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn setup() -> anyhow::Result<Env> {
    let cluster = Cluster::start()?;
    let creds = keelson_pki::issue_node_credentials(
        &cluster.pki,
        &cluster.dir.path().join("fake-node"),
        NODE,
        &["127.0.0.1".into()],
        &cluster.server_url(),
    )?;
    // The kubelet's TLS: its serving certificate, and client certificates from the CA
    // required (no anonymous access).
    let mut roots = rustls::RootCertStore::empty();
    for c in keelson_pki::load_certs(&creds.ca_cert)? {
        roots.add(c)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()?;
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            keelson_pki::load_certs(&creds.serving.cert)?,
            keelson_pki::load_private_key(&creds.serving.key)?,
        )?;
    let kubelet_clients = Arc::new(Mutex::new(Vec::new()));
    let follow_gate = Arc::new(tokio::sync::Notify::new());
    let (kubelet_port, echo_port) = RT.block_on(async {
        let kubelet = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let echo = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let ports = (kubelet.local_addr()?.port(), echo.local_addr()?.port());
        tokio::spawn(serve_kubelet(
            kubelet,
            Arc::new(tls),
            kubelet_clients.clone(),
            follow_gate.clone(),
        ));
        tokio::spawn(serve_echo(echo));
        anyhow::Ok(ports)
    })?;
    let env = Env {
        cluster,
        kubelet_port,
        echo_port,
        kubelet_clients,
        follow_gate,
    };
    env.register_node(NODE, kubelet_port);
    Ok(env)
}

impl Env {
    /// A Node at 127.0.0.1 whose agent listens on `port`.
    pub fn register_node(&self, name: &str, port: u16) {
        self.apply(&serde_json::json!({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
        }));
        let status = serde_json::json!({"status": {
            "addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": "127.0.0.1"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": port}},
        }});
        ok(self.cluster.kubectl(&[
            "patch",
            "node",
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            &status.to_string(),
        ]));
    }

    pub fn apply(&self, obj: &serde_json::Value) {
        ok(self
            .cluster
            .kubectl_with("kubectl", &["apply", "-f", "-"], Some(&obj.to_string())));
    }

    /// A pod bound to `node` (empty: unscheduled) with these containers and init
    /// containers; `ports` are container ports of the first container.
    pub fn pod(&self, name: &str, node: &str, containers: &[&str], init: &[&str], ports: &[u16]) {
        let c = |n: &&str| serde_json::json!({"name": n, "image": "busybox"});
        let mut spec = serde_json::json!({
            "containers": containers.iter().map(c).collect::<Vec<_>>(),
            "automountServiceAccountToken": false,
        });
        if !init.is_empty() {
            spec["initContainers"] = init.iter().map(c).collect();
        }
        if !ports.is_empty() {
            spec["containers"][0]["ports"] = ports
                .iter()
                .map(|p| serde_json::json!({"containerPort": p, "name": "web"}))
                .collect();
        }
        if !node.is_empty() {
            spec["nodeName"] = serde_json::json!(node);
        }
        self.apply(&serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": spec,
        }));
    }

    /// `kubectl get --raw PATH`: (success, stdout, stderr).
    pub fn raw(&self, path: &str) -> (bool, String, String) {
        let out = self.cluster.kubectl(&["get", "--raw", path]);
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Send `request` (a raw HTTP/1.1 head, and body) to the apiserver over TLS as the
    /// admin; returns the stream and the response head (plus any bytes after it).
    pub fn raw_tls(&self, request: &str) -> (RawConn, String) {
        let kc = keelson_pki::Kubeconfig::load(&self.cluster.kubeconfig).expect("kubeconfig");
        let mut config = keelson_pki::client_config(&kc).expect("client config");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let conn =
            rustls::ClientConnection::new(Arc::new(config), "localhost".try_into().expect("name"))
                .expect("tls");
        let tcp =
            TcpStream::connect(("127.0.0.1", self.cluster.apiservers[0].port)).expect("connect");
        tcp.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream.write_all(request.as_bytes()).expect("write");
        stream.flush().expect("flush");
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        while !got.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).expect("read");
            assert!(n > 0, "closed before a response head: {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        (RawConn(stream), String::from_utf8_lossy(&got).into_owned())
    }
}

pub struct RawConn(rustls::StreamOwned<rustls::ClientConnection, TcpStream>);

impl RawConn {
    pub fn send(&mut self, bytes: &[u8]) {
        self.0.write_all(bytes).expect("write");
        self.0.flush().expect("flush");
    }
    pub fn read_exact(&mut self, n: usize) -> Vec<u8> {
        let mut buf = vec![0u8; n];
        self.0.read_exact(&mut buf).expect("read");
        buf
    }
    /// Read until `want` has arrived (with what came with the head first).
    pub fn read_until(&mut self, mut have: String, want: &str) -> String {
        let mut buf = [0u8; 1024];
        while !have.contains(want) {
            let n = self.0.read(&mut buf).expect("read");
            assert!(n > 0, "closed before {want:?}: {have:?}");
            have.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        have
    }
}

fn header<'a>(req: &'a Request<Incoming>, name: &str) -> &'a str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn serve_kubelet(
    listener: tokio::net::TcpListener,
    tls: Arc<rustls::ServerConfig>,
    clients: Arc<Mutex<Vec<String>>>,
    gate: Arc<tokio::sync::Notify>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    while let Ok((tcp, _)) = listener.accept().await {
        let (acceptor, clients, gate) = (acceptor.clone(), clients.clone(), gate.clone());
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            if let Some(id) = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|c| keelson_pki::identity_from_cert_der(c))
            {
                clients.lock().unwrap().push(id.user);
            }
            let service = hyper::service::service_fn(move |req| {
                let gate = gate.clone();
                async move { Ok::<_, Infallible>(kubelet(req, gate).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await;
        });
    }
}

/// What the node agent answers, reduced to what the apiserver's side must carry.
async fn kubelet(mut req: Request<Incoming>, gate: Arc<tokio::sync::Notify>) -> Response<TestBody> {
    let path = req.uri().path().to_string();
    let query = req.uri().query().unwrap_or("").to_string();
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segs.as_slice() {
        ["containerLogs", _, "follower", _] => {
            let stream = futures::stream::unfold(0, move |step| {
                let gate = gate.clone();
                async move {
                    match step {
                        0 => Some((
                            Ok::<_, BoxError>(Frame::data(Bytes::from("first line\n"))),
                            1,
                        )),
                        1 => {
                            gate.notified().await;
                            Some((Ok(Frame::data(Bytes::from("second line\n"))), 2))
                        }
                        _ => None,
                    }
                }
            });
            Response::new(StreamBody::new(stream).boxed_unsync())
        }
        ["containerLogs", _, pod, "waiting"] => Response::builder()
            .status(400)
            .body(full(format!(
                "container \"waiting\" in pod \"{pod}\" is waiting to start: ContainerCreating"
            )))
            .unwrap(),
        ["containerLogs", ns, pod, container] => Response::builder()
            .header("content-type", "text/plain")
            .body(full(format!("log of {ns}/{pod}/{container} ?{query}\n")))
            .unwrap(),
        ["exec" | "attach" | "portForward", ..] => match header(&req, "upgrade") {
            "SPDY/3.1" => {
                let version = header(&req, "x-stream-protocol-version").to_string();
                let on = hyper::upgrade::on(&mut req);
                tokio::spawn(async move {
                    let Ok(upgraded) = on.await else { return };
                    let mut io = TokioIo::new(upgraded);
                    let mut buf = [0u8; 1024];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            return;
                        }
                    }
                });
                Response::builder()
                    .status(101)
                    .header("connection", "Upgrade")
                    .header("upgrade", "SPDY/3.1")
                    .header("x-stream-protocol-version", version)
                    .header("x-fake-path", format!("{path}?{query}"))
                    .body(full(""))
                    .unwrap()
            }
            "websocket" => Response::builder()
                .status(400)
                .body(full("websocket refused by the fake kubelet"))
                .unwrap(),
            _ => Response::builder()
                .status(400)
                .body(full("Upgrade request required"))
                .unwrap(),
        },
        ["healthz"] => Response::new(full("ok")),
        _ => Response::new(full(format!("kubelet {} {path}?{query}", req.method()))),
    }
}

async fn serve_echo(listener: tokio::net::TcpListener) {
    while let Ok((tcp, _)) = listener.accept().await {
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let line = format!(
                    "{} {} auth={}",
                    req.method(),
                    req.uri(),
                    if req.headers().contains_key("authorization") {
                        "present"
                    } else {
                        "absent"
                    }
                );
                let body = req
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Ok::<_, Infallible>(Response::new(full(format!(
                    "{line} body={}",
                    String::from_utf8_lossy(&body)
                ))))
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), service)
                .await;
        });
    }
}
