//! `keelson up`: a single-node cluster in one process (plus etcd).

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
}

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
    let pki_dir = args.data_dir.join("pki");
    let paths = keelson_pki::ensure_pki(&pki_dir, &keelson_pki::PkiOptions::default())?;
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
    let config = keelson_apiserver::Config {
        secure_port: args.port,
        bind_address: args.bind_address,
        advertise_address: None,
        etcd_servers: vec![etcd.client_url.clone()],
        tls_cert_file: paths.apiserver_cert.clone(),
        tls_private_key_file: paths.apiserver_key.clone(),
        client_ca_file: Some(paths.ca_cert.clone()),
        token_auth_file: None,
        service_cluster_ip_range: "10.96.0.0/12".into(),
        service_node_port_range: "30000-32767".into(),
        etcd_compaction_interval: Duration::from_secs(300),
        event_ttl: Duration::from_secs(3600),
        service_account_issuer: "https://kubernetes.default.svc.cluster.local".into(),
        service_account_signing_key_file: Some(paths.sa_key.clone()),
        service_account_key_file: vec![paths.sa_pub.clone()],
        api_audiences: vec![],
        service_account_max_token_expiration: None,
        service_account_jwks_uri: None,
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
            etcd.stop().await;
            return Err(e);
        }
    };
    let control_plane = tokio::spawn(run_control_plane(
        kubeconfig.clone(),
        paths.sa_key.clone(),
        args.hollow_nodes,
    ));
    println!("Keelson is up at {server}");
    println!("  export KUBECONFIG={}", kubeconfig.display());
    println!("  kubectl get namespaces");
    let mut apiserver = running.task;
    let result = tokio::select! {
        r = &mut apiserver => r,
        _ = keelson_apiserver::shutdown_signal() => {
            control_plane.abort();
            let _ = control_plane.await;
            let _ = stop_apiserver.send(());
            apiserver.await
        }
    };
    etcd.stop().await;
    result?
}

/// The scheduler and the controller-manager in this process (a single instance each,
/// so no leader election), and optionally hollow nodes. Runs until aborted.
async fn run_control_plane(kubeconfig: PathBuf, sa_key: PathBuf, hollow_nodes: usize) {
    let result: anyhow::Result<()> = async {
        let client = keelson_client::Client::from_kubeconfig(&kubeconfig)?;
        let opts = keelson_component::ComponentOptions::single(kubeconfig.clone());

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
        let ctx = keelson_controller_manager::Context::new(
            client.clone(),
            keelson_controller_manager::ControllerManagerOptions {
                service_account_private_key_file: Some(sa_key),
                ..Default::default()
            },
            &mut registry,
        );
        let manager = keelson_controller_manager::COMPONENT.run(
            &opts,
            client.clone(),
            registry,
            keelson_controller_manager::run(ctx),
            std::future::pending(),
        );

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
