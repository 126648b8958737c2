//! `/healthz`, `/livez`, `/readyz` and `/metrics` over plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::leader::LeaderState;

/// What the health endpoints report on.
#[derive(Clone)]
pub struct Health {
    /// `None` when leader election is off.
    pub leader: Option<LeaderState>,
    /// A leader that has not renewed for this long is unhealthy (client-go's
    /// leader-election health check uses the lease duration plus a grace period).
    pub max_renewal_age: Duration,
}

impl Health {
    fn check(&self) -> Result<(), String> {
        match self.leader.as_ref().and_then(|l| l.since_renewal()) {
            Some(age) if age > self.max_renewal_age => Err(format!(
                "[-]leaderElection failed: lease not renewed for {age:?}"
            )),
            _ => Ok(()),
        }
    }
}

/// Serve until the returned task is aborted. Fails at once if the address is taken.
pub async fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
    health: Health,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let check = move || {
        let health = health.clone();
        async move {
            match health.check() {
                Ok(()) => (StatusCode::OK, "ok".to_string()),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e),
            }
        }
    };
    let metrics = move || {
        let registry = registry.clone();
        async move {
            let mut out = String::new();
            match prometheus_client::encoding::text::encode(&mut out, &registry) {
                Ok(()) => (
                    [(
                        header::CONTENT_TYPE,
                        "text/plain; version=0.0.4; charset=utf-8",
                    )],
                    out,
                )
                    .into_response(),
                Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
            }
        }
    };
    let app = axum::Router::new()
        .route("/healthz", get(check.clone()))
        .route("/livez", get(check.clone()))
        .route("/readyz", get(check))
        .route("/metrics", get(metrics));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz and /metrics");
    Ok(tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "health and metrics server failed");
        }
    }))
}
