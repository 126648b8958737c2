//! `keelson up`: a single-node cluster in one process (plus etcd).

use crate::containerd::Containerd;
use crate::etcd::Etcd;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// State directory: etcd data, PKI, kubeconfig.
    #[arg(long, default_value = "/var/lib/keelson")]
    pub data_dir: PathBuf,
    /// Where to write the admin kubeconfig (default: <data-dir>/admin.kubeconfig).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    #[arg(long, default_value_t = 6443)]
    pub port: u16,
    #[arg(long, default_value = "127.0.0.1")]
    pub bind_address: std::net::IpAddr,
    #[arg(long, default_value_t = 2379)]
    pub etcd_port: u16,
    /// The etcd binary to run.
    #[arg(long, default_value = "etcd")]
    pub etcd_binary: String,
    /// Also run this many simulated nodes (`keelson hollow-nodes`), so that workloads
    /// are scheduled and reported Running without a container runtime.
    #[arg(long, default_value_t = 0)]
    pub hollow_nodes: usize,
    /// Run only the control plane: no containerd and no node agent on this machine.
    #[arg(long)]
    pub disable_agent: bool,
    /// The name of this machine's Node (default: the host name).
    #[arg(long)]
    pub node_name: Option<String>,
    /// This machine's Node address (default: the first address of an interface that is
    /// up and not loopback).
    #[arg(long)]
    pub node_ip: Option<std::net::IpAddr>,
    /// The node agent's HTTPS port (logs, exec, port-forward).
    #[arg(long, default_value_t = 10250)]
    pub kubelet_port: u16,
    /// The containerd binary to run (with its own root, state and socket under
    /// `<data-dir>/containerd`).
    #[arg(long, default_value = "containerd")]
    pub containerd_binary: String,
    /// Leave the pods' containers running when `keelson up` stops (by default every pod
    /// sandbox is stopped and removed; the pods run again at the next `keelson up`).
    #[arg(long)]
    pub keep_pods: bool,
    /// Registry mirrors and credentials per registry host, as k3s's `registries.yaml`
    /// (`mirrors: {docker.io: {endpoint: [...]}}`, `configs: {HOST: {auth, tls}}`).
    #[arg(long)]
    pub registry_config: Option<PathBuf>,
    /// The pod network; each node gets a /24 of it.
    #[arg(long, default_value = "10.244.0.0/16")]
    pub cluster_cidr: String,
    /// Addresses for LoadBalancer Services (comma-separated CIDRs or `A-B` ranges of
    /// free addresses on this machine's network). Empty: each LoadBalancer Service's
    /// EXTERNAL-IP is this machine's own address, as k3s's servicelb does.
    #[arg(long, default_value = "")]
    pub service_lb_pool: String,
    /// Run no keelson-proxy (Services then lead nowhere from this machine).
    #[arg(long)]
    pub disable_proxy: bool,
    /// Run no cluster DNS (keelson-dns on port 53 of the node address).
    #[arg(long)]
    pub disable_dns: bool,
}

/// The kube-dns Service's address: the tenth of the Service range, as Kubernetes.
const CLUSTER_DNS: &str = "10.96.0.10";
const SERVICE_CIDR: &str = "10.96.0.0/12";

pub fn write_admin_kubeconfig(
    paths: &keelson_pki::PkiPaths,
    out: &Path,
    server: &str,
) -> anyhow::Result<()> {
    let ca = std::fs::read(&paths.ca_cert)?;
    let cert = std::fs::read(&paths.admin_cert)?;
    let key = std::fs::read(&paths.admin_key)?;
    keelson_pki::write_kubeconfig(out, server, &ca, &cert, &key, "kubernetes-admin", "keelson")
}

pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    // Read before anything starts: a bad file stops `keelson up` at once.
    let registries = args
        .registry_config
        .as_deref()
        .map(keelson_containerd::registries::Registries::load)
        .transpose()?;
    let pki_dir = args.data_dir.join("pki");
    // The apiserver's certificate names the address clients and the node use.
    let mut extra_sans = Vec::new();
    if !args.bind_address.is_loopback() && !args.bind_address.is_unspecified() {
        extra_sans.push(args.bind_address.to_string());
    }
    extra_sans.extend(args.node_ip.map(|ip| ip.to_string()));
    let paths = keelson_pki::ensure_pki(
        &pki_dir,
        &keelson_pki::PkiOptions {
            extra_sans,
            ..Default::default()
        },
    )?;
    let kubeconfig = args
        .kubeconfig
        .clone()
        .unwrap_or_else(|| args.data_dir.join("admin.kubeconfig"));
    let server = format!("https://{}:{}", args.bind_address, args.port);
    write_admin_kubeconfig(&paths, &kubeconfig, &server)?;

    let etcd = Etcd::start(
        &args.etcd_binary,
        &args.data_dir.join("etcd"),
        args.etcd_port,
        args.etcd_port + 1,
    )
    .await?;
    let containerd = if args.disable_agent {
        None
    } else {
        let started = async {
            let c = Containerd::start(
                &args.containerd_binary,
                &args.data_dir.join("containerd"),
                registries.as_ref(),
            )
            .await?;
            c.import_images(&args.data_dir.join("images")).await?;
            anyhow::Ok(c)
        }
        .await;
        match started {
            Ok(c) => Some(c),
            Err(e) => {
                etcd.stop().await;
                return Err(e);
            }
        }
    };
    let config = keelson_apiserver::Config {
        secure_port: args.port,
        bind_address: args.bind_address,
        advertise_address: None,
        etcd_servers: vec![etcd.client_url.clone()],
        tls_cert_file: paths.apiserver_cert.clone(),
        tls_private_key_file: paths.apiserver_key.clone(),
        client_ca_file: Some(paths.ca_cert.clone()),
        token_auth_file: None,
        service_cluster_ip_range: SERVICE_CIDR.into(),
        service_node_port_range: "30000-32767".into(),
        etcd_compaction_interval: Duration::from_secs(300),
        event_ttl: Duration::from_secs(3600),
        service_account_issuer: "https://kubernetes.default.svc.cluster.local".into(),
        service_account_signing_key_file: Some(paths.sa_key.clone()),
        service_account_key_file: vec![paths.sa_pub.clone()],
        api_audiences: vec![],
        service_account_max_token_expiration: None,
        service_account_jwks_uri: None,
        kubelet_client_certificate: Some(paths.apiserver_kubelet_client_cert.clone()),
        kubelet_client_key: Some(paths.apiserver_kubelet_client_key.clone()),
        // The agent's serving certificates come from the cluster CA: its first from
        // `issue_node_credentials`, then the ones it requests.
        kubelet_certificate_authority: Some(paths.ca_cert.clone()),
        kubelet_preferred_address_types: vec![
            "InternalIP".into(),
            "ExternalIP".into(),
            "Hostname".into(),
        ],
        authorization_mode: vec!["Node".into(), "RBAC".into()],
        anonymous_auth: true,
        admission_control_config_file: None,
        // Who did what, with Secrets never logged above Metadata.
        audit_policy_file: Some(ensure_audit_policy(&args.data_dir)?),
        audit_log_path: Some(args.data_dir.join("audit.log").display().to_string()),
        audit_log_maxage: 7,
        audit_log_maxbackup: 3,
        audit_log_maxsize: 100,
        audit_log_format: "json".into(),
        enable_priority_and_fairness: true,
        max_requests_inflight: 400,
        max_mutating_requests_inflight: 200,
        encryption_provider_config: Some(ensure_encryption_config(&paths.dir)?),
    };
    // On SIGTERM/SIGINT the control plane stops first, so that the apiserver is not
    // kept waiting by its watches.
    let (stop_apiserver, apiserver_stopped) = tokio::sync::oneshot::channel::<()>();
    let running = keelson_apiserver::start(config, async {
        let _ = apiserver_stopped.await;
    })
    .await;
    let running = match running {
        Ok(r) => r,
        Err(e) => {
            if let Some(c) = containerd {
                c.stop(!args.keep_pods).await;
            }
            etcd.stop().await;
            return Err(e);
        }
    };
    // One identity per component (kubeadm's /etc/kubernetes/*.conf); only the
    // operator and hollow nodes use the admin kubeconfig.
    let identities = keelson_pki::write_component_kubeconfigs(
        &paths,
        &args.data_dir.join("components"),
        &server,
    )?;
    let mut node_tasks = Vec::new();
    if let Some(c) = &containerd {
        let agent = node_agent_options(&args, &paths, &server, c)?;
        let node = NodeIdentity {
            proxy_kubeconfig: identities.proxy.clone(),
            dns_kubeconfig: identities.dns.clone(),
            name: agent.node_name(),
            ip: agent.node_ip.context("node address")?,
        };
        node_tasks.push(tokio::spawn(run_node_agent(agent)));
        if !args.disable_proxy {
            node_tasks.push(tokio::spawn(run_proxy(proxy_options(&args, &node))));
        }
        if !args.disable_dns {
            node_tasks.push(tokio::spawn(run_dns(dns_options(&node))));
        }
    }
    let control_plane = tokio::spawn(run_control_plane(
        ControlPlaneIdentities {
            scheduler: identities.scheduler.clone(),
            controller_manager: identities.controller_manager.clone(),
            hollow_nodes: kubeconfig.clone(),
        },
        args.hollow_nodes,
        keelson_controller_manager::ControllerManagerOptions {
            service_account_private_key_file: Some(paths.sa_key.clone()),
            // The kubernetes.io/* CSR signers issue with the cluster CA.
            cluster_signing_cert_file: Some(paths.ca_cert.clone()),
            cluster_signing_key_file: Some(paths.ca_key.clone()),
            cluster_cidr: args.cluster_cidr.clone(),
            service_lb_pool: args.service_lb_pool.clone(),
            use_service_account_credentials: true,
            // The node agent's serving certificate requests name its Node's addresses.
            approve_kubelet_serving_certificates: true,
            ..Default::default()
        },
    ));
    println!("Keelson is up at {server}");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get namespaces");
    let mut apiserver = running.task;
    let result = tokio::select! {
        r = &mut apiserver => r,
        _ = keelson_apiserver::shutdown_signal() => {
            for t in &node_tasks {
                t.abort();
            }
            control_plane.abort();
            let _ = control_plane.await;
            let _ = stop_apiserver.send(());
            apiserver.await
        }
    };
    for t in node_tasks {
        t.abort();
        let _ = t.await;
    }
    if let Some(c) = containerd {
        c.stop(!args.keep_pods).await;
        if !args.keep_pods {
            // The pods are gone: so are the Services' rules and addresses.
            if !args.disable_proxy {
                if let Err(e) = keelson_proxy::cleanup().await {
                    tracing::warn!(error = %format!("{e:#}"), "removing the proxy's rules");
                }
            }
            if let Err(e) = keelson_node_agent::remove_pod_dirs(&args.data_dir.join("agent")) {
                tracing::warn!(error = %format!("{e:#}"), "removing pod directories");
            }
        }
    }
    etcd.stop().await;
    result?
}

/// The node agent's options for this machine: its credentials from the cluster CA, its
/// containerd, and its directories under the data directory.
fn node_agent_options(
    args: &UpArgs,
    paths: &keelson_pki::PkiPaths,
    server: &str,
    containerd: &Containerd,
) -> anyhow::Result<keelson_node_agent::NodeAgentOptions> {
    let mut opts = keelson_node_agent::NodeAgentOptions {
        hostname_override: args.node_name.clone(),
        node_ip: args.node_ip,
        port: args.kubelet_port,
        root_dir: args.data_dir.join("agent"),
        pod_logs_dir: args.data_dir.join("pod-logs"),
        cni_conf_dir: containerd.config.cni_conf_dir.clone(),
        // Air-gapped images: tarballs dropped here are imported at every start.
        image_import_dir: Some(args.data_dir.join("images")),
        container_runtime_endpoint: format!("unix://{}", containerd.config.socket.display()),
        // Callers of the agent's API are authorized by the apiserver, as kubeadm sets
        // up kubelets.
        authentication_token_webhook: true,
        rotate_certificates: true,
        rotate_server_certificates: true,
        authorization_mode: keelson_node_agent::options::AuthorizationMode::Webhook,
        cluster_dns: if args.disable_dns {
            Vec::new()
        } else {
            vec![CLUSTER_DNS.parse().expect("literal")]
        },
        ..Default::default()
    };
    let node_name = opts.node_name();
    let node_ip = match opts.node_ip {
        Some(ip) => ip,
        None => keelson_node_agent::default_node_ip()?,
    };
    opts.node_ip = Some(node_ip);
    let creds = keelson_pki::issue_node_credentials(
        paths,
        &args.data_dir.join("agent").join("pki"),
        &node_name,
        &[node_ip.to_string(), node_name.clone()],
        server,
    )?;
    opts.kubeconfig = Some(creds.kubeconfig);
    opts.tls_cert_file = Some(creds.serving.cert);
    opts.tls_private_key_file = Some(creds.serving.key);
    opts.client_ca_file = Some(creds.ca_cert);
    Ok(opts)
}

/// Who this machine is as a node (its name and address), and the proxy's and DNS
/// server's own credentials.
struct NodeIdentity {
    proxy_kubeconfig: PathBuf,
    dns_kubeconfig: PathBuf,
    name: String,
    ip: std::net::IpAddr,
}

/// The audit policy `keelson up` installs (kept if an operator edited it).
fn ensure_audit_policy(data_dir: &Path) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("audit-policy.yaml");
    if !path.exists() {
        std::fs::write(&path, keelson_apiserver::audit::default_policy_yaml())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(path)
}

/// The name of the Secrets encryption configuration in the PKI directory.
const ENCRYPTION_CONFIG: &str = "encryption-config.yaml";

/// Secrets are encrypted at rest (secretbox: authenticated, unlike aescbc): the
/// first start writes a configuration with a random key, mode 0600, next to the CA;
/// later starts keep it (a new key would make the stored Secrets unreadable).
fn ensure_encryption_config(pki_dir: &Path) -> anyhow::Result<PathBuf> {
    use base64::Engine as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let path = pki_dir.join(ENCRYPTION_CONFIG);
    if path.exists() {
        return Ok(path);
    }
    let mut key = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut key))
        .context("reading a key from /dev/urandom")?;
    let secret = base64::engine::general_purpose::STANDARD.encode(key);
    let yaml = format!(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n  - secretbox:\n      keys:\n      - name: key1\n        secret: {secret}\n  - identity: {{}}\n"
    );
    let tmp = pki_dir.join(format!("{ENCRYPTION_CONFIG}.tmp"));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::io::Write::write_all(&mut f, yaml.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

fn proxy_options(args: &UpArgs, node: &NodeIdentity) -> keelson_proxy::ProxyOptions {
    keelson_proxy::ProxyOptions {
        kubeconfig: Some(node.proxy_kubeconfig.clone()),
        hostname_override: Some(node.name.clone()),
        cluster_cidr: vec![args.cluster_cidr.clone()],
        service_cluster_ip_range: Some(SERVICE_CIDR.into()),
        ..Default::default()
    }
}

fn dns_options(node: &NodeIdentity) -> keelson_dns::DnsOptions {
    keelson_dns::DnsOptions {
        kubeconfig: Some(node.dns_kubeconfig.clone()),
        bind_address: node.ip,
        publish_address: Some(node.ip),
        node_name: Some(node.name.clone()),
        metrics_bind_address: std::net::SocketAddr::new(node.ip, 9153),
        service_ip: CLUSTER_DNS.parse().expect("literal"),
        ..Default::default()
    }
}

/// keelson-proxy in this process; runs until aborted.
async fn run_proxy(opts: keelson_proxy::ProxyOptions) {
    let result = async {
        let kubeconfig = opts.kubeconfig.clone().context("proxy kubeconfig")?;
        let client = keelson_client::Client::from_kubeconfig(&kubeconfig)?;
        keelson_proxy::run(client, opts, std::future::pending()).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), "keelson-proxy stopped");
    }
}

/// keelson-dns in this process; runs until aborted.
async fn run_dns(opts: keelson_dns::DnsOptions) {
    let result = async {
        let kubeconfig = opts.kubeconfig.clone().context("dns kubeconfig")?;
        let client = keelson_client::Client::from_kubeconfig(&kubeconfig)?;
        keelson_dns::run(client, opts, std::future::pending()).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), "keelson-dns stopped");
    }
}

/// The node agent in this process; runs until aborted.
async fn run_node_agent(opts: keelson_node_agent::NodeAgentOptions) {
    let result = async {
        let kubeconfig = opts.kubeconfig.clone().context("node kubeconfig")?;
        let client = keelson_node_agent::certificates::client::client_for(&kubeconfig, &opts)?;
        keelson_node_agent::run(client, opts, std::future::pending()).await
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), "node agent stopped");
    }
}

/// The kubeconfigs of the control-plane components `keelson up` runs in-process.
struct ControlPlaneIdentities {
    scheduler: PathBuf,
    controller_manager: PathBuf,
    hollow_nodes: PathBuf,
}

/// The scheduler and the controller-manager in this process (a single instance each,
/// so no leader election), and optionally hollow nodes. Runs until aborted.
async fn run_control_plane(
    identities: ControlPlaneIdentities,
    hollow_nodes: usize,
    manager_options: keelson_controller_manager::ControllerManagerOptions,
) {
    let result: anyhow::Result<()> = async {
        let client = keelson_client::Client::from_kubeconfig(&identities.scheduler)?;
        let opts = keelson_component::ComponentOptions::single(identities.scheduler.clone());

        let mut registry = prometheus_client::registry::Registry::default();
        let scheduler = keelson_scheduler::Scheduler::new(
            client.clone(),
            keelson_scheduler::SchedulerConfig::default(),
            &mut registry,
        );
        let component = keelson_component::Component {
            name: "keelson-scheduler",
            default_port: 10259,
        };
        let scheduler = component.run(
            &opts,
            client.clone(),
            registry,
            scheduler.run(),
            std::future::pending(),
        );

        let mut registry = prometheus_client::registry::Registry::default();
        let manager_client =
            keelson_client::Client::from_kubeconfig(&identities.controller_manager)?;
        let manager_opts =
            keelson_component::ComponentOptions::single(identities.controller_manager.clone());
        let ctx = keelson_controller_manager::Context::new(
            manager_client.clone(),
            manager_options,
            &mut registry,
        );
        let manager = keelson_controller_manager::COMPONENT.run(
            &manager_opts,
            manager_client,
            registry,
            keelson_controller_manager::run(ctx),
            std::future::pending(),
        );
        // Hollow nodes simulate many nodes at once: they use the admin's credentials.
        let client = keelson_client::Client::from_kubeconfig(&identities.hollow_nodes)?;

        let hollow = async {
            if hollow_nodes == 0 {
                return std::future::pending().await;
            }
            let options = keelson_hollow_node::HollowOptions {
                count: hollow_nodes,
                ..Default::default()
            };
            keelson_hollow_node::run(client.clone(), options, std::future::pending()).await
        };
        tokio::try_join!(scheduler, manager, hollow)?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::error!(error = %format!("{e:#}"), "control plane stopped");
    }
}
