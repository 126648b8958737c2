//! keelson-dns: cluster DNS. One host-network process per node (as NodeLocal
//! DNSCache), published as an endpoint of the `kube-dns` Service, whose ClusterIP the
//! proxy DNATs to those endpoints. See docs/dns.md.
//!
//! - [`options`]: the flags.
//! - [`zone`]: the index of Services and EndpointSlices ([`zone::Snapshot`]).
//! - [`answer`]: the answer function (records, NXDOMAIN versus NODATA).
//! - [`wire`]: encoding for UDP (truncation) and TCP.
//! - [`server`]: the UDP and TCP loops.
//! - [`forward`]: relaying other names to the node's resolvers.
//! - [`publish`]: the `kube-dns` Service and this instance's EndpointSlice.
//! - [`metrics`]: CoreDNS's metric names.

pub mod answer;
pub mod forward;
pub mod metrics;
pub mod options;
pub mod publish;
pub mod server;
pub mod wire;
pub mod zone;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::get;
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_client::runtime::{watcher, Notification, SharedInformer};
use keelson_client::{Api, Client};
use prometheus_client::registry::Registry;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use options::DnsOptions;

use answer::Zone;
use forward::{Forwarder, OwnAddresses};
use publish::EndpointPublisher;
use server::{Handler, SnapshotCell};
use zone::Snapshot;

/// How often the published objects are checked even without a change seen.
const RESYNC: Duration = Duration::from_secs(30);

/// Serve DNS until `shutdown` resolves; then withdraw this instance's endpoint.
pub async fn run(
    client: Client,
    opts: DnsOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let zone = Zone::new(&opts.cluster_domain, opts.service_ip)?;
    let dns_addr = SocketAddr::new(opts.bind_address, opts.port);
    let udp = UdpSocket::bind(dns_addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {dns_addr}/udp: {e}"))?;
    let tcp = TcpListener::bind(dns_addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {dns_addr}/tcp: {e}"))?;
    let health_addr = SocketAddr::new(opts.bind_address, opts.health_port);
    let health_listener = TcpListener::bind(health_addr)
        .await
        .map_err(|e| anyhow::anyhow!("listening on {health_addr} (health): {e}"))?;
    let metrics_listener = TcpListener::bind(opts.metrics_bind_address)
        .await
        .map_err(|e| {
            anyhow::anyhow!("listening on {} (metrics): {e}", opts.metrics_bind_address)
        })?;

    let mut registry = Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);
    let own = OwnAddresses {
        bind: dns_addr,
        service_ip: opts.service_ip,
        publish: opts.publish_address,
    };
    let forwarder = Forwarder::from_options(&opts.upstream, &opts.resolv_conf, &own)?
        .with_metrics(metrics.clone());
    tracing::info!(upstreams = ?forwarder.upstreams, "upstream resolvers");

    let services = SharedInformer::new(
        Api::<Service>::all(client.clone()),
        watcher::Config::default(),
    );
    let slices = SharedInformer::new(
        Api::<EndpointSlice>::all(client.clone()),
        watcher::Config::default(),
    );
    let snapshot: SnapshotCell = Arc::new(RwLock::new(Arc::new(Snapshot::default())));
    let ready = Arc::new(AtomicBool::new(false));
    let publish_wake = Arc::new(Notify::new());
    let publisher = match (opts.publish_address, opts.node_name.clone()) {
        (Some(address), Some(node_name)) => Some(EndpointPublisher {
            client: client.clone(),
            node_name,
            address,
            port: opts.port,
        }),
        (Some(_), None) => anyhow::bail!("--publish-address needs --node-name"),
        _ => None,
    };

    let handler = Arc::new(Handler {
        zone,
        snapshot: snapshot.clone(),
        forwarder,
        metrics,
    });
    let mut tasks: JoinSet<()> = JoinSet::new();
    let udp = Arc::new(udp);
    // Two receivers share the socket, so a burst is answered on both cores.
    for _ in 0..2 {
        tasks.spawn(server::serve_udp(udp.clone(), handler.clone()));
    }
    tasks.spawn(server::serve_tcp(tcp, handler.clone()));
    tasks.spawn(serve_health(health_listener, ready.clone()));
    tasks.spawn(serve_metrics(metrics_listener, Arc::new(registry)));
    tasks.spawn(index(
        opts.cluster_domain
            .trim_end_matches('.')
            .to_ascii_lowercase(),
        services,
        slices,
        snapshot,
        ready,
        publish_wake.clone(),
        publisher.as_ref().map(|p| p.slice_name()),
    ));
    // Not in `tasks`: it is stopped first on shutdown, so that it cannot put back
    // the endpoint being withdrawn.
    let keeper = tokio::spawn(keep_published(
        client.clone(),
        opts.service_ip,
        publisher.clone(),
        publish_wake,
    ));
    tracing::info!(%dns_addr, domain = %opts.cluster_domain, "keelson-dns serving");

    let result = tokio::select! {
        _ = shutdown => Ok(()),
        r = tasks.join_next() => match r {
            Some(Err(e)) if e.is_panic() => Err(anyhow::anyhow!("a keelson-dns task panicked: {e}")),
            _ => Err(anyhow::anyhow!("a keelson-dns task ended unexpectedly")),
        },
    };
    keeper.abort();
    let _ = keeper.await;
    // Queries are still answered while the endpoint is withdrawn (lame duck).
    if let Some(p) = &publisher {
        if let Err(e) = p.withdraw().await {
            tracing::warn!(error = %format!("{e:#}"), "withdrawing the kube-dns endpoint");
        }
    }
    tasks.shutdown().await;
    result
}

/// Keep the snapshot current: after every batch of changes, rebuild it from the
/// informers' stores and swap it in.
async fn index(
    domain: String,
    services: SharedInformer<Service>,
    slices: SharedInformer<EndpointSlice>,
    cell: SnapshotCell,
    ready: Arc<AtomicBool>,
    publish_wake: Arc<Notify>,
    own_slice: Option<String>,
) {
    let mut svc_changes = services.subscribe();
    let mut slice_changes = slices.subscribe();
    let svc_store = services.store();
    let slice_store = slices.store();
    let mut synced = false;
    loop {
        // Wait for one change (or the initial sync), then take whatever else is queued.
        let mut wake_publisher = false;
        let mut on_change = |svc: Option<&Notification<Service>>,
                             sl: Option<&Notification<EndpointSlice>>| {
            if let Some(Notification::Deleted(s)) = svc {
                if s.metadata.namespace.as_deref() == Some(publish::NAMESPACE)
                    && s.metadata.name.as_deref() == Some(publish::SERVICE_NAME)
                {
                    wake_publisher = true;
                }
            }
            if let Some(c) = sl {
                let obj = match c {
                    Notification::Added(o) | Notification::Deleted(o) => o,
                    Notification::Updated { new, .. } => new,
                };
                if obj.metadata.namespace.as_deref() == Some(publish::NAMESPACE)
                    && obj.metadata.name.as_deref() == own_slice.as_deref()
                    && !matches!(c, Notification::Added(_))
                {
                    wake_publisher = true;
                }
            }
        };
        if synced {
            tokio::select! {
                c = svc_changes.next() => match c {
                    Some(c) => on_change(Some(&c), None),
                    None => return,
                },
                c = slice_changes.next() => match c {
                    Some(c) => on_change(None, Some(&c)),
                    None => return,
                },
            }
        } else {
            services.wait_for_sync().await;
            slices.wait_for_sync().await;
        }
        loop {
            let mut any = false;
            while let Some(Some(c)) = svc_changes.next().now_or_never() {
                on_change(Some(&c), None);
                any = true;
            }
            while let Some(Some(c)) = slice_changes.next().now_or_never() {
                on_change(None, Some(&c));
                any = true;
            }
            if !any {
                break;
            }
        }
        if wake_publisher {
            publish_wake.notify_one();
        }
        let svcs = svc_store.list();
        let sls = slice_store.list();
        let serial = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs() as u32)
            .unwrap_or(1);
        let snap = Snapshot::build(
            &domain,
            svcs.iter().map(|s| s.as_ref()),
            sls.iter().map(|s| s.as_ref()),
            serial,
        );
        *cell.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snap);
        if !synced {
            synced = true;
            ready.store(true, Ordering::SeqCst);
            tracing::info!(services = svcs.len(), slices = sls.len(), "caches synced");
        }
    }
}

/// Ensure the `kube-dns` Service and this instance's EndpointSlice: at start, when
/// either changes or goes, and every [`RESYNC`]; failures are retried after a second.
async fn keep_published(
    client: Client,
    service_ip: std::net::IpAddr,
    publisher: Option<EndpointPublisher>,
    wake: Arc<Notify>,
) {
    loop {
        let mut ok = true;
        if let Err(e) = publish::ensure_service(&client, service_ip).await {
            tracing::warn!(error = %format!("{e:#}"), "ensuring the kube-dns Service");
            ok = false;
        }
        if let Some(p) = &publisher {
            if let Err(e) = p.reconcile(true).await {
                tracing::warn!(error = %format!("{e:#}"), "publishing the kube-dns endpoint");
                ok = false;
            }
        }
        let wait = if ok { RESYNC } else { Duration::from_secs(1) };
        let _ = tokio::time::timeout(wait, wake.notified()).await;
    }
}

/// `/health` (always "OK" while the process serves) and `/ready` (once the caches
/// have synced).
async fn serve_health(listener: TcpListener, ready: Arc<AtomicBool>) {
    let app = axum::Router::new()
        .route("/health", get(|| async { "OK" }))
        .route(
            "/ready",
            get(move || {
                let ready = ready.clone();
                async move {
                    if ready.load(Ordering::SeqCst) {
                        (StatusCode::OK, "OK")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
                    }
                }
            }),
        );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "health server failed");
    }
}

async fn serve_metrics(listener: TcpListener, registry: Arc<Registry>) {
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move {
                let mut out = String::new();
                match prometheus_client::encoding::text::encode(&mut out, &registry) {
                    Ok(()) => (
                        StatusCode::OK,
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        out,
                    ),
                    Err(e) => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        [(axum::http::header::CONTENT_TYPE, "text/plain")],
                        e.to_string(),
                    ),
                }
            }
        }),
    );
    if let Err(e) = axum::serve(listener, app).await {
        tracing::error!(error = %e, "metrics server failed");
    }
}
