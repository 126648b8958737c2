//! The secure port: TLS, authentication, and the split between gRPC and REST.
//!
//! Both protocols share one port so that a kubeconfig is all any client needs. A request
//! whose content type is `application/grpc` goes to the tonic service, everything else to
//! the REST handlers. HTTP/1.1 and HTTP/2 are negotiated by ALPN. Every request runs
//! under [`recover::guard`]: a handler that panics answers 500, the connection stays.

use crate::audit::Record;
use crate::auth::Authenticator;
use crate::http::respond::error_response;
use crate::http::ApiState;
use crate::recover::{self, Protocol};
use axum::body::Body;
use axum::http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use keelson_pki::Identity;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

pub struct Server {
    pub state: Arc<ApiState>,
    pub auth: Arc<Authenticator>,
    pub grpc: tonic::service::Routes,
    pub tls: Arc<rustls::ServerConfig>,
    /// `--audit-policy-file` and `--audit-log-path`, when given.
    pub audit: Option<Arc<crate::audit::Auditor>>,
    /// Priority and fairness (or max-in-flight) between authentication and handlers.
    pub flowcontrol: crate::flowcontrol::Filter,
}

fn is_grpc(req: &Request<hyper::body::Incoming>) -> bool {
    req.headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/grpc"))
}

impl Server {
    /// Accept connections until `shutdown` resolves, then let open requests finish (up to
    /// a few seconds; watches are cut).
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let acceptor = TlsAcceptor::from(self.tls.clone());
        let this = Arc::new(self);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                r = listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) => { tracing::warn!(error = %e, "accept failed"); continue; }
                },
                _ = &mut shutdown => break,
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let this = this.clone();
            let watcher = graceful.watcher();
            tokio::spawn(async move {
                let tls = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                    .await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => return,
                };
                let identity = keelson_pki::peer_identity(tls.get_ref().1);
                let service = hyper::service::service_fn(move |req| {
                    let this = this.clone();
                    let identity = identity.clone();
                    // A panicking handler fails its request, not the connection.
                    let protocol = if is_grpc(&req) {
                        Protocol::Grpc
                    } else {
                        Protocol::Rest
                    };
                    let what = format!("{} {} from {peer}", req.method(), req.uri().path());
                    async move {
                        let handler = this.handle(req, identity.as_ref(), peer);
                        Ok::<_, Infallible>(recover::guard(protocol, what, handler).await)
                    }
                });
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let conn = builder.serve_connection_with_upgrades(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
            });
        }
        tracing::info!("shutting down: waiting for open requests");
        let _ = tokio::time::timeout(Duration::from_secs(5), graceful.shutdown()).await;
        Ok(())
    }

    async fn handle(
        &self,
        req: Request<hyper::body::Incoming>,
        identity: Option<&Identity>,
        peer: SocketAddr,
    ) -> Response<Body> {
        let grpc = is_grpc(&req);
        let audit = Record::begin(self.audit.as_ref(), &req, peer, identity.is_some(), grpc);
        let response = audit
            .scope(self.authenticated(req, identity, grpc, &audit))
            .await;
        audit.finish(response).await
    }

    async fn authenticated(
        &self,
        req: Request<hyper::body::Incoming>,
        identity: Option<&Identity>,
        grpc: bool,
        audit: &Record,
    ) -> Response<Body> {
        let fail = |e: &keelson_apimachinery::ApiError| {
            if grpc {
                grpc_error(e)
            } else {
                error_response(e)
            }
        };
        let requester = match self
            .auth
            .authenticate_requester(req.headers(), identity)
            .await
        {
            Ok(u) => u,
            Err(e) => {
                audit.authentication_failed();
                return fail(&e);
            }
        };
        let user = match requester.clone() {
            Some(r) => match self.auth.act_as(req.headers(), r).await {
                Ok(u) => Some(u),
                Err(e) => {
                    audit.authenticated(requester.as_ref(), None);
                    return fail(&e);
                }
            },
            None => None,
        };
        let impersonated = user
            .as_ref()
            .filter(|_| req.headers().contains_key("impersonate-user"));
        audit.authenticated(requester.as_ref(), impersonated);
        if grpc {
            let Some(user) = user else {
                audit.authentication_failed();
                return grpc_error(&keelson_apimachinery::ApiError::unauthorized());
            };
            let mut req = req;
            req.extensions_mut().insert(user);
            let call = async {
                match self.grpc.clone().oneshot(req).await {
                    Ok(resp) => resp.map(Body::new),
                    Err(never) => match never {},
                }
            };
            return self.flowcontrol.grpc(call).await;
        }
        let req = req.map(Body::new);
        let state = self.state.clone();
        self.flowcontrol
            .rest(req, user, |req, user| crate::http::serve(state, req, user))
            .await
    }
}

fn grpc_error(e: &keelson_apimachinery::ApiError) -> Response<Body> {
    let status = crate::grpc::to_status(e);
    let (parts, body) = status.into_http::<tonic::body::Body>().into_parts();
    Response::from_parts(parts, Body::new(body))
}
