//! kube-proxy's HTTP health endpoints: `/healthz` and `/livez` on
//! `--healthz-bind-address` (10256), healthy while syncs keep up with changes, and
//! one server per `healthCheckNodePort` of an externalTrafficPolicy: Local Service,
//! answering 200 only while this node has a local endpoint, so an external load
//! balancer sends traffic only to nodes that can serve it without a second hop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;

/// What `/healthz` reports on.
#[derive(Default)]
pub struct SyncHealth {
    /// When the proxy last applied (or confirmed) the table.
    pub last_sync: Option<(Instant, SystemTime)>,
    /// The oldest change not yet applied.
    pub pending_since: Option<Instant>,
}

/// Shared between the sync loop and the servers.
#[derive(Clone)]
pub struct Health {
    pub sync: Arc<Mutex<SyncHealth>>,
    /// Unhealthy when a change has waited longer than this (kube-proxy: twice the
    /// sync period).
    pub timeout: Duration,
}

impl Health {
    pub fn new(timeout: Duration) -> Self {
        Health {
            sync: Arc::default(),
            timeout,
        }
    }

    pub fn changed(&self) {
        let mut s = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        s.pending_since.get_or_insert_with(Instant::now);
    }

    pub fn synced(&self, since: Instant) {
        let mut s = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        s.last_sync = Some((Instant::now(), SystemTime::now()));
        // Changes that arrived during the sync stay pending.
        if s.pending_since.is_some_and(|p| p <= since) {
            s.pending_since = None;
        }
    }

    fn report(&self) -> (StatusCode, String) {
        let s = self.sync.lock().unwrap_or_else(|e| e.into_inner());
        let healthy =
            s.last_sync.is_some() && s.pending_since.is_none_or(|p| p.elapsed() <= self.timeout);
        let last = s.last_sync.map(|(_, t)| rfc3339(t)).unwrap_or_default();
        let body = serde_json::json!({
            "lastUpdated": last,
            "currentTime": rfc3339(SystemTime::now()),
            "nodeEligible": true,
        })
        .to_string();
        let code = if healthy {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        };
        (code, body)
    }
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// Serves `/healthz` and `/livez` until the task is aborted.
pub async fn serve_healthz(
    addr: SocketAddr,
    health: Health,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let h = move || {
        let health = health.clone();
        async move {
            let (code, body) = health.report();
            (code, [(header::CONTENT_TYPE, "application/json")], body)
        }
    };
    let app = axum::Router::new()
        .route("/healthz", get(h.clone()))
        .route("/livez", get(h));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz");
    Ok(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }))
}

/// What one health check node port reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceHealth {
    pub namespace: String,
    pub name: String,
    pub local_endpoints: usize,
}

/// The servers for `healthCheckNodePort`s: started and stopped as Services come
/// and go; the counts are updated in place at every sync.
#[derive(Default)]
pub struct ServiceHealthServers {
    state: Arc<Mutex<BTreeMap<u16, ServiceHealth>>>,
    servers: BTreeMap<u16, tokio::task::JoinHandle<()>>,
}

impl ServiceHealthServers {
    pub fn update(&mut self, wanted: BTreeMap<u16, ServiceHealth>) {
        self.servers.retain(|port, task| {
            let keep = wanted.contains_key(port);
            if !keep {
                task.abort();
            }
            keep
        });
        *self.state.lock().unwrap_or_else(|e| e.into_inner()) = wanted.clone();
        for port in wanted.keys() {
            if self.servers.contains_key(port) {
                continue;
            }
            let std = match std::net::TcpListener::bind(("0.0.0.0", *port)) {
                Ok(l) => l,
                Err(e) => {
                    tracing::warn!(port, error = %e, "cannot serve a health check node port");
                    continue;
                }
            };
            let _ = std.set_nonblocking(true);
            let Ok(listener) = tokio::net::TcpListener::from_std(std) else {
                continue;
            };
            let state = self.state.clone();
            let port = *port;
            let app = axum::Router::new().fallback(move || {
                let state = state.clone();
                async move { service_health(&state, port) }
            });
            self.servers.insert(
                port,
                tokio::spawn(async move {
                    let _ = axum::serve(listener, app).await;
                }),
            );
        }
    }
}

impl Drop for ServiceHealthServers {
    fn drop(&mut self) {
        for task in self.servers.values() {
            task.abort();
        }
    }
}

fn service_health(
    state: &Mutex<BTreeMap<u16, ServiceHealth>>,
    port: u16,
) -> axum::response::Response {
    let Some(h) = state
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&port)
        .cloned()
    else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let body = serde_json::json!({
        "service": {"namespace": h.namespace, "name": h.name},
        "localEndpoints": h.local_endpoints,
        "serviceProxyHealthy": true,
    })
    .to_string();
    let code = if h.local_endpoints > 0 {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}
