//! A minimal HTTPS/HTTP2 client for the benchmark: a few TLS connections with
//! multiplexed streams, the admin client certificate, no other overhead.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http2::SendRequest;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keelson_testkit::Cluster;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

#[derive(Clone)]
pub struct Https {
    conns: Arc<Vec<SendRequest<Full<Bytes>>>>,
    next: Arc<AtomicUsize>,
    host: String,
}

pub struct LineStream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl LineStream {
    /// The next newline-terminated chunk of the response.
    pub async fn next_line(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let rest = self.buf.split_off(pos + 1);
                let line = std::mem::replace(&mut self.buf, rest);
                return Ok(Some(line));
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                None => return Ok(None),
            }
        }
    }
}

impl Https {
    pub async fn connect(cluster: &Cluster, connections: usize) -> anyhow::Result<Https> {
        let kc = keelson_pki::Kubeconfig::load(&cluster.kubeconfig)?;
        let ctx = kc.current()?;
        let tls = Arc::new(keelson_pki::client_config_for(&ctx)?);
        let port = cluster.apiservers[0].port;
        let mut conns = Vec::new();
        for _ in 0..connections {
            let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
            tcp.set_nodelay(true)?;
            let name = rustls::pki_types::ServerName::try_from("localhost")?.to_owned();
            let stream = tokio_rustls::TlsConnector::from(tls.clone())
                .connect(name, tcp)
                .await?;
            let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                .max_concurrent_reset_streams(10_000)
                .initial_stream_window_size(4 << 20)
                .initial_connection_window_size(16 << 20)
                .handshake(TokioIo::new(stream))
                .await?;
            tokio::spawn(conn);
            conns.push(send);
        }
        Ok(Https {
            conns: Arc::new(conns),
            next: Arc::new(AtomicUsize::new(0)),
            host: format!("127.0.0.1:{port}"),
        })
    }

    fn pick(&self) -> SendRequest<Full<Bytes>> {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.conns.len();
        self.conns[i].clone()
    }

    async fn send(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let req = http::Request::builder()
            .method(method)
            .uri(format!("https://{}{path}", self.host))
            .header("content-type", "application/json")
            .header("accept", "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let mut conn = self.pick();
        conn.ready().await?;
        Ok(conn.send_request(req).await?)
    }

    pub async fn request(
        &self,
        method: &str,
        path: &str,
        body: Vec<u8>,
    ) -> anyhow::Result<(u16, Bytes)> {
        let resp = self.send(method, path, body).await?;
        let status = resp.status().as_u16();
        Ok((status, resp.into_body().collect().await?.to_bytes()))
    }

    pub async fn stream(&self, path: &str) -> anyhow::Result<LineStream> {
        let resp = self.send("GET", path, Vec::new()).await?;
        anyhow::ensure!(resp.status() == 200, "watch returned {}", resp.status());
        Ok(LineStream {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }

    pub async fn ensure_namespace(&self, ns: &str) -> anyhow::Result<()> {
        let body = serde_json::to_vec(
            &serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        )?;
        let (status, text) = self.request("POST", "/api/v1/namespaces", body).await?;
        anyhow::ensure!(
            status == 201 || status == 409,
            "creating namespace {ns}: {status} {}",
            String::from_utf8_lossy(&text)
        );
        Ok(())
    }
}
