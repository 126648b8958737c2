//! Against a loopback backend written here: a hyper server that echoes what it was sent,
//! streams on demand, switches protocols for SPDY and refuses WebSocket. A front server
//! relays to it the way the apiserver and the node agent do.

use super::*;
use http_body_util::{Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use std::convert::Infallible;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

type TestBody = UnsyncBoxBody<Bytes, BoxError>;

fn full(s: impl Into<Bytes>) -> TestBody {
    Full::new(s.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// Serve `handle` on a loopback port over HTTP/1.1 with upgrades, plain or TLS.
async fn serve<F, Fut>(tls: Option<Arc<rustls::ServerConfig>>, handle: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<TestBody>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let handle = handle.clone();
            let tls = tls.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let handle = handle.clone();
                    async move { Ok::<_, Infallible>(handle(req).await) }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match tls {
                    Some(config) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await
                        else {
                            return;
                        };
                        let _ = builder
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    }
                    None => {
                        let _ = builder
                            .serve_connection(TokioIo::new(tcp), service)
                            .with_upgrades()
                            .await;
                    }
                }
            });
        }
    });
    addr
}

/// Chunks for `/stream`, sent by the test when it wants.
type Chunks = Arc<tokio::sync::Mutex<Option<mpsc::Receiver<Bytes>>>>;

async fn backend(mut req: Request<Incoming>, chunks: Chunks) -> Response<TestBody> {
    let upgrade = req
        .headers()
        .get("upgrade")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    match (req.uri().path(), upgrade.as_str()) {
        ("/stream", _) => {
            let rx = chunks.lock().await.take().expect("one /stream request");
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, BoxError>(Frame::data(b)), rx))
            });
            Response::new(StreamBody::new(stream).boxed_unsync())
        }
        (_, "SPDY/3.1") => {
            let versions: Vec<&str> = req
                .headers()
                .get_all("x-stream-protocol-version")
                .iter()
                .filter_map(|v| v.to_str().ok())
                .collect();
            let chosen = versions.first().copied().unwrap_or("").to_string();
            let on = hyper::upgrade::on(&mut req);
            tokio::spawn(async move {
                let mut io = TokioIo::new(on.await.expect("backend upgrade"));
                let mut buf = [0u8; 1024];
                loop {
                    match io.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if &buf[..n] == b"bye" {
                                // The backend ends the session, as containerd does when
                                // the process exits.
                                let _ = io.write_all(b"exited").await;
                                return;
                            }
                            let _ = io.write_all(&buf[..n]).await;
                        }
                    }
                }
            });
            Response::builder()
                .status(101)
                .header("connection", "Upgrade")
                .header("upgrade", "SPDY/3.1")
                .header("x-stream-protocol-version", chosen)
                .body(full(""))
                .unwrap()
        }
        (_, "websocket") => Response::builder()
            .status(400)
            .header("content-type", "text/plain")
            .body(full("websocket is not supported here"))
            .unwrap(),
        _ => {
            let seen = format!(
                "{} {} host={} te={} x-private={} accept={}\n",
                req.method(),
                req.uri(),
                req.headers()
                    .get("host")
                    .map(|v| v.to_str().unwrap())
                    .unwrap_or("-"),
                req.headers().contains_key("te"),
                req.headers().contains_key("x-private"),
                req.headers()
                    .get("accept")
                    .map(|v| v.to_str().unwrap())
                    .unwrap_or("-"),
            );
            let body = req.into_body().collect().await.unwrap().to_bytes();
            let mut out = seen.into_bytes();
            out.extend_from_slice(&body);
            Response::builder()
                .header("x-backend", "yes")
                .header("keep-alive", "timeout=5")
                .body(full(out))
                .unwrap()
        }
    }
}

/// A front server relaying every request to `backend_base` + the request's path.
async fn front(relay: Relay, backend_base: String) -> SocketAddr {
    serve(None, move |req: Request<Incoming>| {
        let relay = relay.clone();
        let base = backend_base.clone();
        async move {
            let pq = req.uri().path_and_query().unwrap().as_str().to_string();
            let target: Uri = format!("{base}{pq}").parse().unwrap();
            match relay.forward(req, &target).await {
                Ok(r) => r.map(|b| b.map_err(BoxError::from).boxed_unsync()),
                Err(e) => Response::builder()
                    .status(e.status_code())
                    .body(full(e.to_string()))
                    .unwrap(),
            }
        }
    })
    .await
}

async fn setup() -> (SocketAddr, mpsc::Sender<Bytes>) {
    let (tx, rx) = mpsc::channel(4);
    let chunks: Chunks = Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let backend_addr = serve(None, move |req| backend(req, chunks.clone())).await;
    let front_addr = front(Relay::new(), format!("http://{backend_addr}")).await;
    (front_addr, tx)
}

/// Send raw bytes, read the response head (and what came with it).
async fn raw(addr: SocketAddr, request: &str) -> (TcpStream, String) {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(n > 0, "connection closed before a response head: {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    (tcp, String::from_utf8_lossy(&got).into_owned())
}

async fn read_n(tcp: &mut TcpStream, n: usize) -> String {
    let mut buf = vec![0u8; n];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut buf))
        .await
        .expect("bytes in time")
        .unwrap();
    String::from_utf8(buf).unwrap()
}

async fn client(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<TestBody> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

#[tokio::test]
async fn plain_request_goes_through_without_hop_by_hop_headers() {
    let (front_addr, _tx) = setup().await;
    let mut c = client(front_addr).await;
    let req = Request::post("/echo?a=1&a=2")
        .header("host", "front.example")
        .header("connection", "x-private")
        .header("x-private", "secret")
        .header("te", "trailers")
        .header("accept", "text/plain")
        .body(full("the body"))
        .unwrap();
    let resp = c.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers().get("x-backend").unwrap(), "yes");
    assert!(!resp.headers().contains_key("keep-alive"));
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let body = String::from_utf8_lossy(&body);
    let backend_port = body.split("host=127.0.0.1:").nth(1).unwrap_or("");
    assert!(
        body.starts_with("POST /echo?a=1&a=2 host=127.0.0.1:")
            && backend_port
                .split(' ')
                .next()
                .unwrap()
                .parse::<u16>()
                .is_ok(),
        "{body}"
    );
    assert!(
        body.contains("te=false x-private=false accept=text/plain\nthe body"),
        "{body}"
    );
}

#[tokio::test]
async fn response_body_streams() {
    let (front_addr, tx) = setup().await;
    let mut c = client(front_addr).await;
    let resp = c
        .send_request(Request::get("/stream").body(full("")).unwrap())
        .await
        .unwrap();
    tx.send(Bytes::from("line 1\n")).await.unwrap();
    let mut body = resp.into_body();
    let first = tokio::time::timeout(Duration::from_secs(5), body.frame())
        .await
        .expect("the first chunk arrives before the stream ends")
        .unwrap()
        .unwrap();
    assert_eq!(first.into_data().unwrap(), "line 1\n");
    tx.send(Bytes::from("line 2\n")).await.unwrap();
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert_eq!(rest, "line 2\n");
}

#[tokio::test]
async fn upgrade_is_spliced_after_101() {
    let (front_addr, _tx) = setup().await;
    let (mut tcp, head) = raw(
        front_addr,
        "POST /exec/ns/pod/c?command=sh HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\n\
         Upgrade: SPDY/3.1\r\nX-Stream-Protocol-Version: v4.channel.k8s.io\r\n\
         X-Stream-Protocol-Version: v3.channel.k8s.io\r\nContent-Length: 0\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(lower.contains("upgrade: spdy/3.1"), "{head}");
    assert!(
        lower.contains("x-stream-protocol-version: v4.channel.k8s.io"),
        "{head}"
    );
    assert!(
        head.ends_with("\r\n\r\n"),
        "no bytes before the client sends: {head:?}"
    );
    tcp.write_all(b"ping").await.unwrap();
    assert_eq!(read_n(&mut tcp, 4).await, "ping");
    tcp.write_all(&[0u8, 1, 2, 255]).await.unwrap();
    let mut binary = [0u8; 4];
    tcp.read_exact(&mut binary).await.unwrap();
    assert_eq!(binary, [0u8, 1, 2, 255]);
    // The backend ends the session: the client sees its last bytes, then the close.
    tcp.write_all(b"bye").await.unwrap();
    assert_eq!(read_n(&mut tcp, 6).await, "exited");
    let mut rest = Vec::new();
    let n = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .expect("the client connection closes with the backend's")
        .unwrap();
    assert_eq!(n, 0);
}

#[tokio::test]
async fn refused_upgrade_is_relayed_as_is() {
    let (front_addr, _tx) = setup().await;
    let (mut tcp, head) = raw(
        front_addr,
        "GET /exec/ns/pod/c HTTP/1.1\r\nHost: front\r\nConnection: Upgrade\r\n\
         Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Protocol: v5.channel.k8s.io\r\n\r\n",
    )
    .await;
    assert!(head.starts_with("HTTP/1.1 400"), "{head}");
    let body_start = head.find("\r\n\r\n").unwrap() + 4;
    let mut body = head[body_start..].to_string();
    while body.len() < "websocket is not supported here".len() {
        body.push_str(&read_n(&mut tcp, 1).await);
    }
    assert_eq!(body, "websocket is not supported here");
}

#[tokio::test]
async fn unreachable_backend_is_an_error_not_a_hang() {
    let unused = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = unused.local_addr().unwrap().port();
    drop(unused);
    let target: Uri = format!("http://127.0.0.1:{port}/x").parse().unwrap();
    let err = Relay::new()
        .forward(Request::get("/x").body(full("")).unwrap(), &target)
        .await
        .unwrap_err();
    assert_eq!(err.status_code(), 503, "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );

    let err = Relay::new()
        .forward(
            Request::get("/x").body(full("")).unwrap(),
            &"https://127.0.0.1:1/x".parse().unwrap(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.status_code(),
        400,
        "https without TLS configuration: {err}"
    );
}

#[tokio::test]
async fn connect_timeout_applies() {
    // A listener that never accepts still completes TCP handshakes (backlog), so use one
    // that accepts and never speaks TLS: the handshake must time out.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let _hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((tcp, _)) = listener.accept().await {
            held.push(tcp);
        }
    });
    let relay = Relay::new()
        .with_tls(test_client_config(None))
        .with_connect_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let err = relay
        .forward(
            Request::get("/").body(full("")).unwrap(),
            &format!("https://{addr}/").parse().unwrap(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

fn self_signed(
    name: &str,
) -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let ck = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
    (
        ck.cert.der().clone(),
        rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into()),
    )
}

fn test_client_config(roots: Option<rustls::RootCertStore>) -> rustls::ClientConfig {
    let (cert, key) = self_signed("client");
    crate::tls::client_config(Some((vec![cert], key)), roots).unwrap()
}

#[tokio::test]
async fn tls_backend_without_and_with_verification() {
    let (cert, key) = self_signed("localhost");
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(vec![cert.clone()], key)
    .unwrap();
    let chunks: Chunks = Arc::new(tokio::sync::Mutex::new(None));
    let addr = serve(Some(Arc::new(server)), move |req| {
        backend(req, chunks.clone())
    })
    .await;

    // No CA configured: the certificate is not verified (kube-apiserver's default).
    let relay = Relay::new().with_tls(test_client_config(None));
    let target: Uri = format!("https://localhost:{}/hello", addr.port())
        .parse()
        .unwrap();
    let resp = relay
        .forward(Request::get("/").body(full("")).unwrap(), &target)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"GET /hello host=localhost:"), "{body:?}");

    // Its own certificate as CA: verified.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let relay = Relay::new().with_tls(test_client_config(Some(roots)));
    let resp = relay
        .forward(Request::get("/").body(full("")).unwrap(), &target)
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Another CA: refused, 502.
    let (other, _) = self_signed("localhost");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(other).unwrap();
    let relay = Relay::new().with_tls(test_client_config(Some(roots)));
    let err = relay
        .forward(Request::get("/").body(full("")).unwrap(), &target)
        .await
        .unwrap_err();
    assert!(matches!(err, RelayError::Tls { .. }), "{err}");
    assert_eq!(err.status_code(), 502);
}

#[test]
fn plain_requests_do_not_count_as_upgrades() {
    let req = Request::get("/")
        .header("upgrade", "websocket")
        .body(())
        .unwrap();
    assert!(!is_upgrade_request(&req));
    let req = Request::get("/")
        .header("connection", "keep-alive, Upgrade")
        .header("upgrade", "websocket")
        .body(())
        .unwrap();
    assert!(is_upgrade_request(&req));
}
