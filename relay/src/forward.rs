//! [`Relay::forward`]: one request to a backend, its response back; upgrades spliced.

use crate::dial::dial;
use crate::headers::{is_upgrade, strip_hop_by_hop};
use crate::RelayError;
use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode, Uri, Version};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};

/// The body of a relayed response: the backend's body as it arrives.
pub type RelayBody = UnsyncBoxBody<Bytes, hyper::Error>;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Whether a request asks to switch protocols (`Connection: Upgrade` and `Upgrade`).
pub fn is_upgrade_request<B>(req: &Request<B>) -> bool {
    is_upgrade(req.headers())
}

/// Forwards requests to backends; cheap to clone, one per kind of backend (its TLS
/// client configuration), shared by every request.
#[derive(Clone)]
pub struct Relay {
    tls: Option<Arc<rustls::ClientConfig>>,
    connect_timeout: Duration,
}

impl Default for Relay {
    fn default() -> Self {
        Relay::new()
    }
}

impl Relay {
    /// A relay to `http://` backends, with a 30 s connect timeout (kube-apiserver's dial
    /// timeout towards kubelets).
    pub fn new() -> Relay {
        Relay {
            tls: None,
            connect_timeout: Duration::from_secs(30),
        }
    }

    /// Also reach `https://` backends with this client configuration (see
    /// [`crate::tls::client_config`]). Its ALPN is set to `http/1.1`: upgrades need it.
    pub fn with_tls(mut self, mut config: rustls::ClientConfig) -> Relay {
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        self.tls = Some(Arc::new(config));
        self
    }

    /// How long TCP connect plus TLS handshake may take.
    pub fn with_connect_timeout(mut self, timeout: Duration) -> Relay {
        self.connect_timeout = timeout;
        self
    }

    /// Send `req` to `target` (scheme, host, port, path and query all from `target`) and
    /// return the response for the client. See the crate documentation for what is
    /// forwarded. Headers the backend must not see (credentials of the client) are the
    /// caller's to remove first.
    pub async fn forward<B>(
        &self,
        req: Request<B>,
        target: &Uri,
    ) -> Result<Response<RelayBody>, RelayError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        self.forward_via(req, target, None).await
    }

    /// As [`Relay::forward`], but connect to `via` (an address and port) instead of the
    /// URL's host, which still names the backend: the TLS server name and the `Host`
    /// header. This is how kube-apiserver reaches a Service's endpoint for a webhook
    /// (`https://<service>.<namespace>.svc` verified, a pod IP dialled).
    pub async fn forward_via<B>(
        &self,
        req: Request<B>,
        target: &Uri,
        via: Option<(&str, u16)>,
    ) -> Result<Response<RelayBody>, RelayError>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<BoxError>,
    {
        let invalid = |why| RelayError::InvalidTarget {
            url: target.to_string(),
            why,
        };
        let (tls, default_port) = match target.scheme_str() {
            Some("http") => (None, 80),
            Some("https") => (
                Some(
                    self.tls
                        .as_ref()
                        .ok_or_else(|| invalid("no TLS client configuration for https"))?,
                ),
                443,
            ),
            _ => return Err(invalid("the scheme must be http or https")),
        };
        let authority = target
            .authority()
            .ok_or_else(|| invalid("no host in the URL"))?;
        let port = authority.port_u16().unwrap_or(default_port);
        let (dial_host, dial_port) = via.unwrap_or((authority.host(), port));
        let addr = format!("{dial_host}:{dial_port}");

        let upgrade = is_upgrade_request(&req);
        let (mut parts, body) = req.into_parts();
        let client_upgrade = if upgrade {
            // hyper puts OnUpgrade on HTTP/1.1 requests of connections served with
            // upgrades; without it the client's connection cannot be taken over.
            Some(
                parts
                    .extensions
                    .remove::<OnUpgrade>()
                    .ok_or(RelayError::UpgradeUnsupported)?,
            )
        } else {
            None
        };
        strip_hop_by_hop(&mut parts.headers, upgrade);
        if let Ok(host) = HeaderValue::from_str(authority.as_str()) {
            parts.headers.insert(header::HOST, host);
        }
        let mut out = Request::new(body);
        *out.method_mut() = parts.method;
        *out.uri_mut() = target
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/")
            .parse()
            .map_err(|_| invalid("bad path"))?;
        *out.version_mut() = Version::HTTP_11;
        *out.headers_mut() = parts.headers;

        let stream = dial(
            dial_host,
            dial_port,
            authority.host(),
            tls,
            self.connect_timeout,
        )
        .await?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|source| RelayError::Http {
                addr: addr.clone(),
                source,
            })?;
        let conn_addr = addr.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(backend = %conn_addr, error = %e, "backend connection ended with an error");
            }
        });
        let mut resp = sender
            .send_request(out)
            .await
            .map_err(|source| RelayError::Http {
                addr: addr.clone(),
                source,
            })?;

        match client_upgrade {
            Some(client) if resp.status() == StatusCode::SWITCHING_PROTOCOLS => {
                let backend = hyper::upgrade::on(&mut resp);
                tokio::spawn(async move {
                    match tokio::try_join!(client, backend) {
                        Ok((client, backend)) => {
                            splice(TokioIo::new(client), TokioIo::new(backend)).await
                        }
                        Err(e) => {
                            tracing::debug!(backend = %addr, error = %e, "upgrade did not complete")
                        }
                    }
                });
                let (parts, _) = resp.into_parts();
                Ok(Response::from_parts(
                    parts,
                    Empty::new().map_err(|never| match never {}).boxed_unsync(),
                ))
            }
            _ => {
                let (mut parts, body) = resp.into_parts();
                strip_hop_by_hop(&mut parts.headers, false);
                Ok(Response::from_parts(parts, body.boxed_unsync()))
            }
        }
    }
}

/// Copy bytes both ways until one side closes (end of stream or error), then close both,
/// as Kubernetes' upgrade-aware proxy does.
async fn splice(a: impl AsyncRead + AsyncWrite, b: impl AsyncRead + AsyncWrite) {
    let (mut a_read, mut a_write) = tokio::io::split(a);
    let (mut b_read, mut b_write) = tokio::io::split(b);
    tokio::select! {
        r = tokio::io::copy(&mut a_read, &mut b_write) => {
            tracing::trace!(result = ?r, "client side of an upgraded connection closed");
        }
        r = tokio::io::copy(&mut b_read, &mut a_write) => {
            tracing::trace!(result = ?r, "backend side of an upgraded connection closed");
        }
    }
    let _ = a_write.shutdown().await;
    let _ = b_write.shutdown().await;
}

#[cfg(test)]
mod tests;
