//! keelson-apiserver: the Kubernetes REST API and Keelson's gRPC API over etcd.
//!
//! Layout (outside in):
//! - [`server`]: the TLS port; authenticates and splits gRPC from REST.
//! - [`http`]: REST routing, discovery, OpenAPI, tables, health and metrics.
//! - [`grpc`]: the gRPC service of `proto/keelson.proto`.
//! - [`registry`]: the generic store every resource goes through (create, update,
//!   patch, delete, list, watch, subresources) plus per-kind strategies from
//!   `keelson-resources`.
//! - [`watch_cache`]: one etcd watch fanned out to every client watch.
//! - [`storage`]: the only code that talks to etcd.
//! - [`bootstrap`]: system namespaces, the `kubernetes` Service, compaction.
//! - [`crd`]: CustomResourceDefinitions followed, served, named and finalized.

mod alloc;
pub mod audit;
pub mod auth;
pub mod authz;
pub mod bootstrap;
pub mod crd;
pub mod encryption;
pub mod flowcontrol;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod offload;
pub mod openapi;
pub mod recover;
pub mod registry;
pub mod reviews;
pub mod server;
pub mod serviceaccount;
pub mod storage;
pub mod view;
pub mod watch_cache;

use anyhow::Context;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// The apiserver's configuration; flags are spelled as kube-apiserver spells them.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Port for HTTPS (REST and gRPC).
    #[arg(long = "secure-port", default_value_t = 6443)]
    pub secure_port: u16,
    /// Address to listen on.
    #[arg(long = "bind-address", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Address published in the `kubernetes` Endpoints; defaults to the bind address,
    /// or 127.0.0.1 when binding to all addresses.
    #[arg(long = "advertise-address")]
    pub advertise_address: Option<IpAddr>,
    /// etcd endpoints, comma-separated (`http://127.0.0.1:2379`).
    #[arg(
        long = "etcd-servers",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    pub etcd_servers: Vec<String>,
    #[arg(long = "tls-cert-file")]
    pub tls_cert_file: PathBuf,
    #[arg(long = "tls-private-key-file")]
    pub tls_private_key_file: PathBuf,
    /// CA that signs client certificates; without it only tokens authenticate.
    #[arg(long = "client-ca-file")]
    pub client_ca_file: Option<PathBuf>,
    /// Static bearer tokens (Kubernetes' CSV format: token,user,uid,"group1,group2").
    #[arg(long = "token-auth-file")]
    pub token_auth_file: Option<PathBuf>,
    #[arg(long = "service-cluster-ip-range", default_value = "10.96.0.0/12")]
    pub service_cluster_ip_range: String,
    #[arg(long = "service-node-port-range", default_value = "30000-32767")]
    pub service_node_port_range: String,
    /// How often to compact etcd history (0 disables), e.g. `5m`, `30s`.
    #[arg(long = "etcd-compaction-interval", default_value = "5m", value_parser = keelson_apimachinery::duration::parse)]
    pub etcd_compaction_interval: Duration,
    /// How long Events are kept after their last write (0 keeps them until deleted).
    #[arg(long = "event-ttl", default_value = "1h", value_parser = keelson_apimachinery::duration::parse)]
    pub event_ttl: Duration,
    /// apiserver.config.k8s.io/v1 EncryptionConfiguration: which resources are
    /// encrypted in etcd, and how (identity, aescbc, aesgcm, secretbox, kms v2).
    #[arg(long = "encryption-provider-config")]
    pub encryption_provider_config: Option<PathBuf>,
    /// The `iss` of service-account tokens, and the issuer of the OIDC discovery
    /// document.
    #[arg(
        long = "service-account-issuer",
        default_value = "https://kubernetes.default.svc.cluster.local"
    )]
    pub service_account_issuer: String,
    /// RSA or ECDSA (P-256, P-384) private key (PKCS#1, SEC1 or PKCS#8 PEM) that signs
    /// service-account tokens (`keelson pki` writes `sa.key`). Without it a per-process key
    /// is used, which several apiservers cannot share.
    #[arg(long = "service-account-signing-key-file")]
    pub service_account_signing_key_file: Option<PathBuf>,
    /// More keys that verify service-account tokens, e.g. the previous one during a key
    /// rotation: PEM files of public keys, certificates or private keys, several per file.
    #[arg(long = "service-account-key-file")]
    pub service_account_key_file: Vec<PathBuf>,
    /// Audiences a token must name to authenticate here; defaults to the issuer.
    #[arg(long = "api-audiences", value_delimiter = ',')]
    pub api_audiences: Vec<String>,
    /// The JWKS URL the OIDC discovery document names; defaults to this apiserver's
    /// `/openid/v1/jwks` (its bind address when that is loopback, else its advertised one).
    #[arg(long = "service-account-jwks-uri")]
    pub service_account_jwks_uri: Option<String>,
    /// The longest a requested service-account token may live (e.g. `24h`).
    #[arg(long = "service-account-max-token-expiration", value_parser = keelson_apimachinery::duration::parse)]
    pub service_account_max_token_expiration: Option<Duration>,
    /// Client certificate presented to node agents (`keelson pki` writes
    /// `apiserver-kubelet-client.crt`), for logs, exec, attach, port-forward and
    /// `nodes/proxy`.
    #[arg(long = "kubelet-client-certificate")]
    pub kubelet_client_certificate: Option<PathBuf>,
    #[arg(long = "kubelet-client-key")]
    pub kubelet_client_key: Option<PathBuf>,
    /// CA that node agents' serving certificates must chain to; without it they are not
    /// verified (as kube-apiserver).
    #[arg(long = "kubelet-certificate-authority")]
    pub kubelet_certificate_authority: Option<PathBuf>,
    /// Node address types to reach node agents at, in order of preference.
    #[arg(
        long = "kubelet-preferred-address-types",
        value_delimiter = ',',
        default_value = "InternalIP,ExternalIP,Hostname"
    )]
    pub kubelet_preferred_address_types: Vec<String>,
    /// Authorizers asked in order, as kube-apiserver's flag: `AlwaysAllow`,
    /// `AlwaysDeny`, `Node`, `RBAC` (`keelson up` and the documented installs use
    /// `Node,RBAC`). Members of `system:masters` are always allowed.
    #[arg(
        long = "authorization-mode",
        value_delimiter = ',',
        default_value = "AlwaysAllow"
    )]
    pub authorization_mode: Vec<String>,
    /// Let requests without credentials in as `system:anonymous` (group
    /// `system:unauthenticated`), to be authorized like anyone else. Ignored with
    /// `AlwaysAllow`, as kube-apiserver ignores it.
    #[arg(long = "anonymous-auth", default_value_t = true, action = clap::ArgAction::Set)]
    pub anonymous_auth: bool,
    /// apiserver.config.k8s.io/v1 AdmissionConfiguration (YAML or JSON): the `PodSecurity`
    /// plugin's cluster defaults and exemptions (a PodSecurityConfiguration, inline or by
    /// `path`).
    #[arg(long = "admission-control-config-file")]
    pub admission_control_config_file: Option<PathBuf>,
    /// audit.k8s.io/v1 Policy (YAML or JSON): which requests are logged, at which level.
    /// Nothing is audited without it and `--audit-log-path`.
    #[arg(long = "audit-policy-file")]
    pub audit_policy_file: Option<PathBuf>,
    /// The audit log (JSON lines); `-` for stdout.
    #[arg(long = "audit-log-path")]
    pub audit_log_path: Option<String>,
    /// Days to keep rotated audit logs (0: no limit).
    #[arg(long = "audit-log-maxage", default_value_t = 0)]
    pub audit_log_maxage: u64,
    /// Rotated audit logs to keep (0: all).
    #[arg(long = "audit-log-maxbackup", default_value_t = 0)]
    pub audit_log_maxbackup: usize,
    /// Megabytes the audit log may reach before it is rotated (0: 100, as lumberjack).
    #[arg(long = "audit-log-maxsize", default_value_t = 0)]
    pub audit_log_maxsize: u64,
    /// `json` (`legacy` is refused).
    #[arg(long = "audit-log-format", default_value = "json")]
    pub audit_log_format: String,
    /// API Priority and Fairness (FlowSchemas, PriorityLevelConfigurations); when off,
    /// only the max-in-flight limits apply.
    #[arg(long = "enable-priority-and-fairness", default_value_t = true, action = clap::ArgAction::Set)]
    pub enable_priority_and_fairness: bool,
    /// Non-mutating requests executing at once (with APF: shared, with the next, among
    /// the priority levels). 0: no limit.
    #[arg(long = "max-requests-inflight", default_value_t = 400)]
    pub max_requests_inflight: usize,
    /// Mutating requests executing at once (see `--max-requests-inflight`).
    #[arg(long = "max-mutating-requests-inflight", default_value_t = 200)]
    pub max_mutating_requests_inflight: usize,
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let (a, b) = s
        .split_once('-')
        .context("port range must look like 30000-32767")?;
    let (a, b): (u16, u16) = (a.trim().parse()?, b.trim().parse()?);
    anyhow::ensure!(a <= b, "port range {s} is empty");
    Ok((a, b))
}

/// A running apiserver's address, for callers that start it in-process.
pub struct Running {
    pub addr: SocketAddr,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// The Tokio runtime the apiserver binaries run on: multi-threaded, with 8 MiB worker
/// stacks. A request's handler future lives on its worker's stack while it is polled,
/// and in debug builds the REST handler's futures come close to Tokio's 2 MiB default
/// (one more etcd client held by value in `Storage` overflowed it); goroutine stacks
/// grow, Tokio's do not, so the margin is set here once.
pub fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(8 << 20)
        .build()
}

/// Start the apiserver; it runs until `shutdown` resolves.
pub async fn start(
    config: Config,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<Running> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let metrics = metrics::install(metrics::Metrics::new()).clone();
    let storage = storage::Storage::connect(&config.etcd_servers, metrics.clone())
        .await
        .with_context(|| format!("connecting to etcd at {:?}", config.etcd_servers))?;
    let storage = match &config.encryption_provider_config {
        Some(path) => {
            let encryption = encryption::Encryption::load(path).await?;
            for (resource, writer) in encryption.summary() {
                tracing::info!(resource, writer, "encrypting at rest");
            }
            storage.with_encryption(Arc::new(encryption))
        }
        None => storage,
    };
    let services = registry::allocation::ServiceAllocator::new(
        &config.service_cluster_ip_range,
        parse_port_range(&config.service_node_port_range)?,
    )?;
    let pod_security = registry::admission::podsecurity::config::load(
        config.admission_control_config_file.as_deref(),
    )?;
    let mut registry = registry::Registry::new(storage.clone(), services)
        .await?
        .with_event_ttl(config.event_ttl)
        .with_pod_security(pod_security);
    bootstrap::system_objects(&registry, config.secure_port).await?;
    let authorizer = Arc::new(authorizer(&config.authorization_mode, &registry)?);
    if authorizer.rbac().is_some() {
        reconcile_rbac(&registry).await?;
    }
    registry.authorizer = Some(authorizer.clone());
    // Custom resources are served (and described) from the first request on.
    let openapi = openapi::Published::new(keelson_resources::kinds::ALL);
    crd::start(registry.clone(), openapi.clone()).await;
    openapi.rebuild();
    openapi.follow();
    let flowcontrol = flowcontrol_filter(&config, &registry).await?;

    let tls = keelson_pki::server_config(
        &config.tls_cert_file,
        &config.tls_private_key_file,
        config.client_ca_file.as_deref(),
    )
    .context("loading TLS certificates")?;
    let tokens = match &config.token_auth_file {
        Some(p) => Some(
            keelson_pki::TokenFile::load(p).with_context(|| format!("loading {}", p.display()))?,
        ),
        None => None,
    };
    let listener =
        tokio::net::TcpListener::bind(SocketAddr::new(config.bind_address, config.secure_port))
            .await
            .with_context(|| format!("binding {}:{}", config.bind_address, config.secure_port))?;
    let addr = listener.local_addr()?;
    let advertise = config
        .advertise_address
        .unwrap_or_else(|| default_advertise_address(config.bind_address));
    let issuer = Arc::new(serviceaccount::Issuer::load(
        &serviceaccount::IssuerConfig {
            issuer: config.service_account_issuer.clone(),
            signing_key_file: config.service_account_signing_key_file.clone(),
            key_files: config.service_account_key_file.clone(),
            api_audiences: config.api_audiences.clone(),
            jwks_uri: config.service_account_jwks_uri.clone().unwrap_or_else(|| {
                let host = if config.bind_address.is_loopback() {
                    config.bind_address
                } else {
                    advertise
                };
                format!(
                    "https://{}/openid/v1/jwks",
                    SocketAddr::new(host, addr.port())
                )
            }),
        },
    )?);
    registry.token_issuer = Some(issuer.clone());
    registry.max_token_expiration = config.service_account_max_token_expiration;

    let auth = Arc::new(auth::Authenticator {
        tokens,
        service_accounts: Some(auth::ServiceAccountTokens::new(issuer, registry.clone())),
        // kube-apiserver turns anonymous requests off under AlwaysAllow.
        anonymous: config.anonymous_auth && !authorizer.has_always_allow(),
        authorizer: authorizer.clone(),
    });
    let connect = http::connect::Connector::new(&http::connect::KubeletClientConfig {
        client_certificate: config.kubelet_client_certificate.clone(),
        client_key: config.kubelet_client_key.clone(),
        certificate_authority: config.kubelet_certificate_authority.clone(),
        preferred_address_types: config.kubelet_preferred_address_types.clone(),
    })
    .context("kubelet client configuration")?;
    let state = Arc::new(http::ApiState {
        auth: auth.clone(),
        registry: registry.clone(),
        openapi,
        metrics,
        advertise: SocketAddr::new(advertise, addr.port()).to_string(),
        connect,
    });
    let grpc = tonic::service::Routes::new(
        keelson_proto::api_server::ApiServer::new(grpc::GrpcApi {
            registry: registry.clone(),
            auth: auth.clone(),
        })
        .max_decoding_message_size(http::MAX_BODY_BYTES + 4096)
        .max_encoding_message_size(usize::MAX),
    );
    let server = server::Server {
        state,
        auth,
        grpc,
        tls: Arc::new(tls),
        flowcontrol,
        audit: audit::Auditor::from_flags(&audit::Flags {
            policy_file: config.audit_policy_file.as_deref(),
            log_path: config.audit_log_path.as_deref(),
            log_format: &config.audit_log_format,
            max_age_days: config.audit_log_maxage,
            max_backups: config.audit_log_maxbackup,
            max_size_mb: config.audit_log_maxsize,
        })?,
    };

    tokio::spawn(bootstrap::endpoints_reconciler(
        registry.clone(),
        storage.clone(),
        advertise,
        addr.port(),
    ));
    tokio::spawn(bootstrap::compactor(
        storage,
        registry.cache.clone(),
        config.etcd_compaction_interval,
    ));
    tracing::info!(%addr, "keelson-apiserver serving");
    let task = tokio::spawn(server.serve(listener, shutdown));
    Ok(Running { addr, task })
}

/// API Priority and Fairness with its default objects, or the max-in-flight filter.
async fn flowcontrol_filter(
    config: &Config,
    registry: &registry::Registry,
) -> anyhow::Result<flowcontrol::Filter> {
    let limits = flowcontrol::Limits {
        max_requests_inflight: config.max_requests_inflight,
        max_mutating_requests_inflight: config.max_mutating_requests_inflight,
    };
    if !config.enable_priority_and_fairness {
        return Ok(flowcontrol::Filter::MaxInFlight(Arc::new(
            flowcontrol::MaxInFlight::new(limits),
        )));
    }
    flowcontrol::defaults::ensure(registry).await?;
    Ok(flowcontrol::Filter::PriorityAndFairness(Arc::new(
        flowcontrol::Dispatcher::start(limits, registry),
    )))
}

/// The chain `--authorization-mode` names.
fn authorizer(
    modes: &[String],
    registry: &registry::Registry,
) -> anyhow::Result<authz::Authorizer> {
    let mut chain = Vec::new();
    for m in modes.iter().map(|m| m.trim()).filter(|m| !m.is_empty()) {
        let mode = match m {
            "AlwaysAllow" => authz::Mode::AlwaysAllow,
            "AlwaysDeny" => authz::Mode::AlwaysDeny,
            "RBAC" => authz::Mode::Rbac(authz::rbac::Rbac::start(
                registry.cache.clone(),
                registry.storage.clone(),
            )),
            "Node" => authz::Mode::Node(authz::node::NodeAuthorizer::start(
                registry.cache.clone(),
                registry.storage.clone(),
            )),
            other => anyhow::bail!(
                "--authorization-mode: unknown mode {other:?} (supported: {})",
                authz::MODES.join(", ")
            ),
        };
        if chain.iter().any(|c: &authz::Mode| c.name() == mode.name()) {
            anyhow::bail!("--authorization-mode: {m} given twice");
        }
        chain.push(mode);
    }
    anyhow::ensure!(
        !chain.is_empty(),
        "--authorization-mode: at least one mode is required"
    );
    Ok(authz::Authorizer::new(chain))
}

/// Create or update the default roles and bindings (kube-apiserver's
/// `rbac/bootstrap-roles` post-start hook); several apiservers starting at once may
/// conflict, so a few attempts.
async fn reconcile_rbac(registry: &registry::Registry) -> anyhow::Result<()> {
    let mut last = None;
    for _ in 0..5 {
        match authz::rbac::defaults::reconcile(registry).await {
            Ok(()) => return Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, "reconciling the default RBAC policy");
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    Err(last.expect("an attempt failed"))
}

/// Like kube-apiserver: the bind address when it is a real one, else the host's first
/// global IPv4 address, else loopback (then the `kubernetes` Endpoints are left out,
/// since Endpoints may not name loopback addresses).
fn default_advertise_address(bind: IpAddr) -> IpAddr {
    if !bind.is_unspecified() && !bind.is_loopback() {
        return bind;
    }
    host_ipv4()
        .map(IpAddr::V4)
        .unwrap_or(IpAddr::from([127, 0, 0, 1]))
}

/// The first non-loopback, non-link-local IPv4 address of an up interface.
fn host_ipv4() -> Option<std::net::Ipv4Addr> {
    let mut addrs: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free with freeifaddrs; we only read it.
    unsafe {
        if libc::getifaddrs(&mut addrs) != 0 {
            return None;
        }
        let mut found = None;
        let mut cur = addrs;
        while !cur.is_null() {
            let ifa = &*cur;
            let up = ifa.ifa_flags & (libc::IFF_UP as u32) != 0;
            if up
                && !ifa.ifa_addr.is_null()
                && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET
            {
                let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                let ip = std::net::Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
                if !ip.is_loopback() && !ip.is_link_local() && !ip.is_unspecified() {
                    found = Some(ip);
                    break;
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(addrs);
        found
    }
}

pub use keelson_component::{init_logging, shutdown_signal};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_port_range("30000-32767").unwrap(), (30000, 32767));
    }
}
