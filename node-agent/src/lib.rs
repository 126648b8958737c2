//! keelson-node-agent: the kubelet of Keelson. It registers its Node and keeps the
//! Node's status and Lease fresh, runs the pods bound to it on containerd through the
//! CRI, reports their status, and serves logs, exec, attach and port-forward on its
//! own HTTPS port for the apiserver to relay. See docs/node-agent.md.
//!
//! Layout, after the kubelet:
//! - [`node`]: registration, node status, the Lease heartbeat.
//! - [`pods`]: pod workers ([`pods::sync`]), the PLEG relist, status
//!   ([`pods::status`]), CRI configs ([`pods::config`]), images, probes and hooks,
//!   restart back-off, and what the runtime holds for a pod ([`pods::runtime`]).
//! - [`env`], [`volumes`], [`dns`]: what a container sees (environment, files, DNS),
//!   from the API objects [`sources`] reads.
//! - [`logs`], [`server`]: the agent's HTTPS API.
//! - [`cni`]: the pod network configuration and routes to other nodes' pods.
//! - [`static_pods`]: pods from `--pod-manifest-path` and their mirror pods.
//! - [`cri`]: the CRI client.

pub mod agent;
pub mod auth;
pub mod certificates;
pub mod cni;
pub mod cri;
pub mod dns;
pub mod env;
pub mod images_gc;
pub mod logs;
pub mod metrics;
pub mod node;
pub mod options;
pub mod pods;
pub mod server;
pub mod sources;
pub mod static_pods;
pub mod volumes;

use std::future::Future;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use keelson_client::Client;
use tokio::sync::Notify;
use tokio::task::JoinSet;

pub use options::NodeAgentOptions;

/// Run the agent until `shutdown` resolves. Pods keep running when it stops (as they
/// do when the kubelet stops); a new agent adopts them.
pub async fn run(
    client: Client,
    opts: NodeAgentOptions,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let socket = opts.runtime_socket()?;
    let mut runtime = cri::Runtime::connect(&socket, Duration::from_secs(60)).await?;
    let version = runtime.version().await?;
    let node_name = opts.node_name();
    let node_ip = match opts.node_ip {
        Some(ip) => ip,
        None => default_node_ip()?,
    };
    tracing::info!(node = %node_name, %node_ip, runtime = %format!("{} {}", version.runtime_name, version.runtime_version), "starting the node agent");
    let gc_policy = images_gc::ImageGcPolicy {
        high_threshold_percent: opts.image_gc_high_threshold,
        low_threshold_percent: opts.image_gc_low_threshold,
        min_age: opts.minimum_image_ttl_duration,
    };
    gc_policy.validate()?;
    // Images no registry could bring back: never garbage collected.
    let mut protected = vec![
        opts.pod_infra_container_image.clone(),
        keelson_containerd::PAUSE_IMAGE.to_string(),
        keelson_containerd::BUSYBOX_IMAGE.to_string(),
    ];
    if let Some(dir) = &opts.image_import_dir {
        protected.extend(import_dir(&socket, dir).await);
    }
    if runtime
        .image_status(&opts.pod_infra_container_image)
        .await?
        .is_none()
    {
        anyhow::bail!(
            "the sandbox image {} is not in containerd's k8s.io namespace: import it first (keelson images import, or --image-import-dir)",
            opts.pod_infra_container_image
        );
    }
    std::fs::create_dir_all(opts.root_dir.join("pods"))?;
    std::fs::create_dir_all(&opts.pod_logs_dir)?;
    let machine = node::Machine::read(&opts.root_dir);
    let (_, _, allocatable) = node::resources(&opts, &machine);
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);
    let (wake_tx, wake_rx) = tokio::sync::mpsc::unbounded_channel();
    let agent = agent::Agent::new(
        opts.clone(),
        node_ip,
        client.clone(),
        runtime.clone(),
        allocatable,
        metrics,
        wake_tx,
    );
    agent.probes.set_recorder(agent.recorder.clone());
    let workers = pods::PodWorkers::new(agent.clone());
    let (cert_file, key_file) = server::static_certificate(&agent)?;
    let (cert_pem, key_pem) = (std::fs::read(&cert_file)?, std::fs::read(&key_file)?);
    let (addresses_tx, addresses_rx) = tokio::sync::watch::channel(Vec::new());
    let serving = if opts.rotate_server_certificates {
        Some(Arc::new(certificates::serving::ServingCertificate::load(
            &opts.root_dir.join("pki"),
            &node_name,
            (&cert_pem, &key_pem),
        )?))
    } else {
        None
    };
    let presented: Arc<dyn rustls::server::ResolvesServerCert> = match &serving {
        Some(s) => s.current(),
        None => Arc::new(certificates::CurrentCertificate::new(&cert_pem, &key_pem)?),
    };
    let tls = server::tls_config(&opts, presented)?;
    let listener = tokio::net::TcpListener::bind((opts.address, opts.port))
        .await
        .map_err(|e| anyhow::anyhow!("listening on {}:{}: {e}", opts.address, opts.port))?;

    let mut tasks: JoinSet<()> = JoinSet::new();
    let (registered_tx, registered_rx) = tokio::sync::oneshot::channel();
    tasks.spawn(node::run(
        client.clone(),
        node::NodeStatusMaker {
            opts: opts.clone(),
            name: node_name.clone(),
            ip: node_ip,
            machine,
            runtime,
        },
        registered_tx,
        addresses_tx,
    ));
    if let Some(serving) = serving {
        tasks.spawn(serving.run(client.clone(), addresses_rx));
    }
    if !opts.cni_conf_dir.as_os_str().is_empty() {
        tasks.spawn(cni::run(
            client.clone(),
            node_name.clone(),
            node_ip,
            opts.cni_conf_dir.clone(),
            opts.cni_bridge.clone(),
            opts.root_dir.join("cni").join("networks"),
        ));
    }
    tasks.spawn(images_gc::run(agent.runtime.clone(), gc_policy, protected));
    tasks.spawn(server::Server::new(agent.clone(), workers.clone(), registry).serve(listener, tls));
    // Pods are only run once the Node exists (their status names it).
    let _ = registered_rx.await;
    let synced = Arc::new(Notify::new());
    tasks.spawn(pods::watch_pods(
        agent.clone(),
        workers.clone(),
        synced.clone(),
    ));
    tasks.spawn(pods::relist(
        agent.clone(),
        workers.clone(),
        wake_rx,
        synced,
    ));
    if let Some(dir) = opts.pod_manifest_path.clone() {
        tasks.spawn(static_pods::run(
            agent.clone(),
            workers.clone(),
            dir,
            opts.file_check_frequency,
        ));
    }
    tracing::info!(node = %node_name, port = opts.port, "node agent running");
    let result = tokio::select! {
        _ = shutdown => Ok(()),
        r = tasks.join_next() => match r {
            Some(Err(e)) if e.is_panic() => Err(anyhow::anyhow!("a node agent task panicked: {e}")),
            _ => Err(anyhow::anyhow!("a node agent task ended unexpectedly")),
        },
    };
    tasks.shutdown().await;
    result
}

/// Import every image tarball in `dir` (already imported ones cost a read, no writes);
/// returns the names of the images the tarballs hold.
async fn import_dir(socket: &std::path::Path, dir: &std::path::Path) -> Vec<String> {
    let mut names = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            tracing::warn!(dir = %dir.display(), error = %e, "reading the image import directory");
            return names;
        }
    };
    let mut files: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for file in files {
        let result = async {
            let channel = keelson_containerd::connect(socket).await?;
            keelson_containerd::import_archive(channel, keelson_containerd::CRI_NAMESPACE, &file)
                .await
        }
        .await;
        match result {
            Ok(images) => {
                for i in images.iter().filter(|i| i.changed) {
                    tracing::info!(image = %i.name, file = %file.display(), "imported image");
                }
                names.extend(images.into_iter().map(|i| i.name));
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %format!("{e:#}"), "importing images")
            }
        }
    }
    names
}

/// Unmount and remove every pod directory under `root_dir` (for an installation that
/// has just removed all its pods, such as `keelson up` on its way out).
pub fn remove_pod_dirs(root_dir: &std::path::Path) -> anyhow::Result<()> {
    let pods = root_dir.join("pods");
    let volumes = volumes::VolumeManager::new(&pods);
    let Ok(entries) = std::fs::read_dir(&pods) else {
        return Ok(());
    };
    for e in entries.flatten() {
        let uid = e.file_name().to_string_lossy().to_string();
        volumes.teardown(&uid)?;
        std::fs::remove_dir_all(e.path())?;
    }
    Ok(())
}

/// The first IPv4 address of an interface that is up and not loopback.
pub fn default_node_ip() -> anyhow::Result<IpAddr> {
    let out = std::process::Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global", "up"])
        .output()?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|cidr| cidr.split('/').next()?.parse::<IpAddr>().ok())
        .next()
        .ok_or_else(|| anyhow::anyhow!("no IPv4 address found for the node: pass --node-ip"))
}
