//! Sending one AdmissionReview: to the hook's URL, or to a ready endpoint of its Service
//! (resolved by the apiserver from the Service and its Endpoints, as kube-apiserver's
//! service resolver does, with `<service>.<namespace>.svc` as the TLS server name), within
//! `timeoutSeconds`, through the relay client the apiserver uses towards node agents.

use super::config::{Hook, Target};
use crate::registry::endpoints::service_backends;
use crate::storage::Storage;
use bytes::Bytes;
use http::{header, Method, Request};
use http_body_util::{BodyExt, Full, Limited};
use serde_json::Value;

/// The most of a webhook's answer read (an AdmissionReview is small; this only bounds
/// what a broken webhook can make the apiserver hold).
const MAX_RESPONSE: usize = 16 << 20;

/// `Post "<url>"`, Go's wording of a failed request, which Kubernetes' messages quote.
fn post_error(url: &str, why: impl std::fmt::Display) -> String {
    format!("failed to call webhook: Post \"{url}\": {why}")
}

/// A ready endpoint (address, port) of the Service behind `port`.
async fn resolve(
    storage: &Storage,
    namespace: &str,
    name: &str,
    port: u16,
) -> Result<(String, u16), String> {
    let mut backends = service_backends(storage, namespace, name, &port.to_string())
        .await
        .map_err(|e| e.message)?;
    // Spread calls over the endpoints, as Kubernetes picks one at random.
    Ok(backends.swap_remove(rand::random_range(0..backends.len())))
}

/// POST `review` to the hook; the response body, or why the call failed (the text after
/// `failed calling webhook "<name>": `).
pub async fn post(storage: &Storage, hook: &Hook, review: &Value) -> Result<Bytes, String> {
    let relay = hook
        .relay
        .as_ref()
        .map_err(|e| format!("could not get REST client: {e}"))?;
    let secs = hook.timeout.as_secs();
    let (base, via) = match &hook.target {
        Target::Url(url) => (url.clone(), None),
        Target::Service {
            namespace,
            name,
            port,
            path,
        } => {
            let url = format!("https://{name}.{namespace}.svc:{port}{path}");
            match resolve(storage, namespace, name, *port).await {
                Ok(endpoint) => (url, Some(endpoint)),
                Err(why) => return Err(post_error(&url, why)),
            }
        }
    };
    // Kubernetes tells the webhook its deadline in the query.
    let url = format!("{base}?timeout={secs}s");
    let uri: http::Uri = url
        .parse()
        .map_err(|e| post_error(&url, format!("invalid URL: {e}")))?;
    let body = serde_json::to_vec(review).expect("JSON values always serialize");
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri.clone())
        .header(header::CONTENT_TYPE, "application/json")
        .header(header::ACCEPT, "application/json, */*")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| post_error(&url, e))?;
    let work = async {
        let via = via.as_ref().map(|(h, p)| (h.as_str(), *p));
        let resp = relay
            .forward_via(req, &uri, via)
            .await
            .map_err(|e| post_error(&url, e))?;
        let status = resp.status();
        let body = Limited::new(resp.into_body(), MAX_RESPONSE)
            .collect()
            .await
            .map_err(|e| post_error(&url, format!("reading the response: {e}")))?
            .to_bytes();
        if !status.is_success() {
            let shown = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
            return Err(post_error(
                &url,
                format!(
                    "the server responded with the status code {} ({shown:?})",
                    status.as_u16()
                ),
            ));
        }
        Ok(body)
    };
    match tokio::time::timeout(hook.timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(post_error(&url, "context deadline exceeded")),
    }
}
