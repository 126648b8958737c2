//! Subresources that the apiserver answers by connecting elsewhere, as kube-apiserver's
//! "connect" verbs do: `pods/log`, `pods/exec`, `pods/attach`, `pods/portforward` (to the
//! pod's node agent), `pods/proxy` and `services/proxy` (to a pod IP), `nodes/proxy` (to
//! the node agent, or another port on the node). The bytes go through
//! [`keelson_relay::Relay`]: streamed bodies, upgraded connections spliced.
//!
//! These requests skip the body buffering of [`super::serve`]: proxied bodies stream, and
//! an upgrade needs the request itself (hyper's `OnUpgrade`).

mod node;
mod pod;
mod proxy;

use super::respond::error_response;
use super::route::ResourceTarget;
use super::ApiState;
use anyhow::Context as _;
use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, Uri};
use keelson_apimachinery::ApiError;
use keelson_relay::{Relay, RelayError};
use std::path::PathBuf;

/// Whether a subresource is answered by connecting to a node agent or a pod.
pub fn is_connect(subresource: &str) -> bool {
    matches!(
        subresource,
        "log" | "exec" | "attach" | "portforward" | "proxy"
    )
}

/// How to reach node agents, from kube-apiserver's `--kubelet-*` flags.
#[derive(Debug, Clone, Default)]
pub struct KubeletClientConfig {
    /// Client certificate and key presented to node agents; without them the apiserver
    /// connects anonymously (and an agent that requires a certificate refuses it).
    pub client_certificate: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// CA that node agents' serving certificates must chain to; without it they are
    /// not verified.
    pub certificate_authority: Option<PathBuf>,
    /// Node address types to try, in order (`InternalIP`, `ExternalIP`, `Hostname`, ...).
    pub preferred_address_types: Vec<String>,
}

/// The relays the connect subresources use.
pub struct Connector {
    /// To node agents' HTTPS API, with the kubelet client certificate.
    kubelet: Relay,
    /// To pods, services and other node ports: `http://`, or `https://` without
    /// verification or client certificate (as kube-apiserver's proxy transport).
    direct: Relay,
    preferred_address_types: Vec<String>,
}

impl Connector {
    pub fn new(config: &KubeletClientConfig) -> anyhow::Result<Connector> {
        let client_auth = match (&config.client_certificate, &config.client_key) {
            (Some(cert), Some(key)) => Some((
                keelson_pki::load_certs(cert)
                    .with_context(|| format!("--kubelet-client-certificate {}", cert.display()))?,
                keelson_pki::load_private_key(key)
                    .with_context(|| format!("--kubelet-client-key {}", key.display()))?,
            )),
            (None, None) => None,
            _ => anyhow::bail!("--kubelet-client-certificate and --kubelet-client-key go together"),
        };
        let roots = match &config.certificate_authority {
            Some(ca) => {
                let mut roots = rustls::RootCertStore::empty();
                for cert in keelson_pki::load_certs(ca)
                    .with_context(|| format!("--kubelet-certificate-authority {}", ca.display()))?
                {
                    roots
                        .add(cert)
                        .with_context(|| format!("CA certificate in {}", ca.display()))?;
                }
                Some(roots)
            }
            None => None,
        };
        let kubelet_tls = keelson_relay::tls::client_config(client_auth, roots)?;
        let direct_tls = keelson_relay::tls::client_config(None, None)?;
        Ok(Connector {
            kubelet: Relay::new().with_tls(kubelet_tls),
            direct: Relay::new().with_tls(direct_tls),
            preferred_address_types: if config.preferred_address_types.is_empty() {
                vec!["InternalIP".into(), "ExternalIP".into(), "Hostname".into()]
            } else {
                config.preferred_address_types.clone()
            },
        })
    }
}

/// Where a request goes and what to call the backend in error messages.
struct Backend {
    uri: Uri,
    /// `node "n1"`, `pod "web"`, `service "web"`.
    what: String,
    via_kubelet: bool,
}

/// Answer a connect subresource request.
pub async fn handle(state: &ApiState, t: &ResourceTarget, req: Request<Body>) -> Response<Body> {
    match handle_inner(state, t, req).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    }
}

async fn handle_inner(
    state: &ApiState,
    t: &ResourceTarget,
    req: Request<Body>,
) -> Result<Response<Body>, ApiError> {
    if t.name.is_empty() || (t.rt.namespaced && t.namespace.is_empty()) {
        return Err(ApiError::not_found(t.rt.group, t.rt.plural, &t.name));
    }
    match (t.rt.plural, t.subresource.as_str()) {
        ("pods", "log") => pod::log(state, t, req).await,
        ("pods", "exec" | "attach" | "portforward") => {
            let (method, uri) = (req.method().clone(), req.uri().clone());
            let backend = pod::stream_backend(state, t, &method, &uri).await?;
            forward(state, req, backend).await
        }
        (_, "proxy") => {
            let uri = req.uri().clone();
            let backend = proxy::backend(state, t, &uri).await?;
            forward(state, req, backend).await
        }
        _ => Err(ApiError::not_found(t.rt.group, t.rt.plural, &t.name)),
    }
}

/// Relay `req` to `backend`, without the client's credentials (they were for this
/// apiserver, as kube-apiserver drops them once authenticated).
async fn forward(
    state: &ApiState,
    mut req: Request<Body>,
    backend: Backend,
) -> Result<Response<Body>, ApiError> {
    let headers = req.headers_mut();
    headers.remove(header::AUTHORIZATION);
    let impersonation: Vec<_> = headers
        .keys()
        .filter(|k| k.as_str().starts_with("impersonate-"))
        .cloned()
        .collect();
    for k in impersonation {
        headers.remove(k);
    }
    let relay = if backend.via_kubelet {
        &state.connect.kubelet
    } else {
        &state.connect.direct
    };
    match relay.forward(req, &backend.uri).await {
        Ok(resp) => Ok(resp.map(Body::new)),
        Err(e) => Err(relay_error(&backend, e)),
    }
}

/// A `metav1.Status` naming the backend: 503 when it cannot be reached, 502 when it
/// answered badly, 400 for a request that cannot be relayed.
fn relay_error(backend: &Backend, e: RelayError) -> ApiError {
    let code = e.status_code();
    let message = format!(
        "error trying to reach {} at {}: {e}",
        backend.what,
        backend
            .uri
            .authority()
            .map(|a| a.as_str())
            .unwrap_or_default()
    );
    match code {
        400 => ApiError::bad_request(message),
        503 => ApiError::unavailable(message),
        _ => ApiError::new(code, "InternalError", message),
    }
}

/// `host:port` for a URL authority (brackets around IPv6 addresses).
fn host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Build a backend URL; the parts come from objects and the request, so a bad one is
/// the client's (or the object's) fault, not a panic.
fn backend_uri(scheme: &str, authority: &str, path_and_query: &str) -> Result<Uri, ApiError> {
    format!("{scheme}://{authority}{path_and_query}")
        .parse()
        .map_err(|e| ApiError::bad_request(format!("invalid backend URL: {e}")))
}

fn text_plain(resp: &mut Response<Body>) {
    if !resp.headers().contains_key(header::CONTENT_TYPE) {
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
}
