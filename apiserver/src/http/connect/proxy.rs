//! `pods/proxy`, `services/proxy`, `nodes/proxy`: where `/…/NAME[:PORT]/proxy/PATH` goes.
//! Pods are reached at their IP (not through the node agent), services at a ready
//! address of their Endpoints, nodes at their agent (or another port on the node).

use super::node;
use super::{backend_uri, host_port, ApiState, Backend};
use crate::http::route::ResourceTarget;
use axum::http::Uri;
use keelson_apimachinery::ApiError;
use serde_json::Value;

/// `[scheme:]name[:port]`, as Kubernetes' `SplitSchemeNamePort`.
#[derive(Debug, PartialEq, Eq)]
pub struct ProxyName<'a> {
    pub scheme: &'a str,
    pub name: &'a str,
    pub port: &'a str,
}

pub fn split_scheme_name_port(id: &str) -> Option<ProxyName<'_>> {
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return None,
    };
    if name.is_empty() || !matches!(scheme, "" | "http" | "https") {
        return None;
    }
    Some(ProxyName { scheme, name, port })
}

/// The part of the raw request path after `.../NAME/proxy` (`/api/v1/namespaces/NS/pods/
/// NAME/proxy/...` or `/api/v1/nodes/NAME/proxy/...`), and the query: the path on the
/// backend, `/` when nothing follows. Counted in segments, so that a namespace or a pod
/// called `proxy` does not confuse it.
fn proxied_path(uri: &Uri, namespaced: bool) -> String {
    let proxy_segment = if namespaced { 6 } else { 4 };
    let raw = uri.path().trim_start_matches('/');
    let parts: Vec<&str> = raw.splitn(proxy_segment + 2, '/').collect();
    let rest = match parts.get(proxy_segment) {
        Some(&"proxy") => parts.get(proxy_segment + 1).copied().unwrap_or(""),
        _ => "",
    };
    let rest = format!("/{rest}");
    match uri.query() {
        Some(q) => format!("{rest}?{q}"),
        None => rest,
    }
}

fn bad_name(t: &ResourceTarget) -> ApiError {
    ApiError::bad_request(format!(
        "invalid {} proxy name {:?}: expected [scheme:]name[:port]",
        t.rt.singular, t.name
    ))
}

pub async fn backend(state: &ApiState, t: &ResourceTarget, uri: &Uri) -> Result<Backend, ApiError> {
    let id = split_scheme_name_port(&t.name).ok_or_else(|| bad_name(t))?;
    let path = proxied_path(uri, t.rt.namespaced);
    match t.rt.plural {
        "pods" => pod(state, t, &id, &path).await,
        "services" => service(state, t, &id, &path).await,
        "nodes" => node(state, &id, &path).await,
        _ => Err(ApiError::not_found(t.rt.group, t.rt.plural, &t.name)),
    }
}

fn container_ports(pod: &Value) -> impl Iterator<Item = &Value> {
    pod.pointer("/spec/containers")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("ports").and_then(Value::as_array))
        .flatten()
}

async fn pod(
    state: &ApiState,
    t: &ResourceTarget,
    id: &ProxyName<'_>,
    path: &str,
) -> Result<Backend, ApiError> {
    let pod = state.registry.get(t.rt, &t.namespace, id.name).await?;
    let ip = pod
        .pointer("/status/podIP")
        .and_then(Value::as_str)
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .ok_or_else(|| {
            ApiError::unavailable(format!("pod \"{}\" has no IP address yet", id.name))
        })?;
    let scheme = if id.scheme.is_empty() {
        "http"
    } else {
        id.scheme
    };
    // A port number, a named container port, or the first declared one.
    let port: u16 = if id.port.is_empty() {
        container_ports(&pod)
            .find_map(|p| p.get("containerPort")?.as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(if scheme == "https" { 443 } else { 80 })
    } else if let Ok(p) = id.port.parse::<u16>() {
        p
    } else {
        container_ports(&pod)
            .find(|p| p.get("name").and_then(Value::as_str) == Some(id.port))
            .and_then(|p| p.get("containerPort")?.as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "pod \"{}\" has no container port named {:?}",
                    id.name, id.port
                ))
            })?
    };
    Ok(Backend {
        uri: backend_uri(scheme, &host_port(ip, port), path)?,
        what: format!("pod \"{}\"", id.name),
        via_kubelet: false,
    })
}

async fn service(
    state: &ApiState,
    t: &ResourceTarget,
    id: &ProxyName<'_>,
    path: &str,
) -> Result<Backend, ApiError> {
    let candidates = crate::registry::endpoints::service_backends(
        &state.registry.storage,
        &t.namespace,
        id.name,
        id.port,
    )
    .await?;
    let (ip, port) = &candidates[rand::random_range(0..candidates.len())];
    let scheme = if id.scheme.is_empty() {
        "http"
    } else {
        id.scheme
    };
    Ok(Backend {
        uri: backend_uri(scheme, &host_port(ip, *port), path)?,
        what: format!("service \"{}\"", id.name),
        via_kubelet: false,
    })
}

async fn node(state: &ApiState, id: &ProxyName<'_>, path: &str) -> Result<Backend, ApiError> {
    let addr = node::resolve(state, id.name).await?;
    let what = format!("node \"{}\"", id.name);
    // The agent's own port: its HTTPS API with the kubelet client certificate.
    if id.port.is_empty() || id.port == addr.kubelet_port.to_string() {
        return Ok(Backend {
            uri: backend_uri("https", &host_port(&addr.host, addr.kubelet_port), path)?,
            what,
            via_kubelet: true,
        });
    }
    let port: u16 = id
        .port
        .parse()
        .map_err(|_| ApiError::bad_request(format!("invalid node proxy port {:?}", id.port)))?;
    let scheme = if id.scheme.is_empty() {
        "http"
    } else {
        id.scheme
    };
    Ok(Backend {
        uri: backend_uri(scheme, &host_port(&addr.host, port), path)?,
        what,
        via_kubelet: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_like_kubernetes() {
        let p = |s| split_scheme_name_port(s);
        assert_eq!(
            p("web").unwrap(),
            ProxyName {
                scheme: "",
                name: "web",
                port: ""
            }
        );
        assert_eq!(p("web:8080").unwrap().port, "8080");
        let full = p("https:web:metrics").unwrap();
        assert_eq!(
            (full.scheme, full.name, full.port),
            ("https", "web", "metrics")
        );
        assert!(p("ftp:web:21").is_none());
        assert!(p(":80").is_none());
        assert!(p("a:b:c:d").is_none());
    }

    #[test]
    fn proxied_path_keeps_the_rest_and_the_query() {
        let r = |uri: &str| {
            let namespaced = uri.contains("/namespaces/");
            proxied_path(&uri.parse().unwrap(), namespaced)
        };
        assert_eq!(r("/api/v1/namespaces/d/pods/web/proxy"), "/");
        assert_eq!(
            r("/api/v1/namespaces/proxy/pods/proxy/proxy/proxy"),
            "/proxy"
        );
        assert_eq!(r("/api/v1/namespaces/d/pods/web/proxy/"), "/");
        assert_eq!(
            r("/api/v1/namespaces/d/pods/web:80/proxy/a/b/?x=1&y=%20"),
            "/a/b/?x=1&y=%20"
        );
        assert_eq!(r("/api/v1/nodes/n1/proxy/metrics"), "/metrics");
        assert_eq!(
            r("/api/v1/namespaces/d/services/web/proxy/proxy/x"),
            "/proxy/x"
        );
    }
}
