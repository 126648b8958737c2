//! `/healthz`, `/livez`, `/readyz` and `/metrics` over plain HTTP.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;

use crate::leader::LeaderState;
use crate::loops::Loops;

/// What the health endpoints report on.
#[derive(Clone)]
pub struct Health {
    /// `None` when leader election is off.
    pub leader: Option<LeaderState>,
    /// A leader that has not renewed for this long is unhealthy (client-go's
    /// leader-election health check uses the lease duration plus a grace period).
    pub max_renewal_age: Duration,
    /// The process's controller loops: one that panicked fails every check.
    pub loops: Loops,
}

impl Health {
    fn check(&self) -> Result<(), String> {
        let mut failed = Vec::new();
        match self.leader.as_ref().and_then(|l| l.since_renewal()) {
            Some(age) if age > self.max_renewal_age => failed.push(format!(
                "[-]leaderElection failed: lease not renewed for {age:?}"
            )),
            _ => {}
        }
        if let Err(e) = self.loops.check() {
            failed.push(e);
        }
        if failed.is_empty() {
            Ok(())
        } else {
            failed.push("healthz check failed".to_string());
            Err(failed.join("\n"))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let req = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_dead_controller_loop_fails_healthz_naming_it() {
        let loops = Loops::default();
        let health = Health {
            leader: None,
            max_renewal_age: Duration::from_secs(60),
            loops: loops.clone(),
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let server = serve(addr, Arc::new(Registry::default()), health)
            .await
            .unwrap();
        let ok = get(addr, "/healthz").await;
        assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
        // The controller's task dies; the process goes on without it.
        let dead = tokio::spawn({
            let loops = loops.clone();
            async move {
                loops
                    .supervise("cronjob", async { panic!("schedule parser bug") })
                    .await
            }
        });
        dead.await.expect("supervise itself does not panic");
        for path in ["/healthz", "/livez", "/readyz"] {
            let failed = get(addr, path).await;
            assert!(failed.starts_with("HTTP/1.1 500"), "{path}: {failed}");
            assert!(
                failed.contains("[-]controller cronjob failed: panicked: schedule parser bug"),
                "{failed}"
            );
            assert!(failed.contains("healthz check failed"), "{failed}");
        }
        server.abort();
    }
}
