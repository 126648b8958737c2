//! `keelson`: the Keelson components in one binary.
//!
//! - `keelson up`: a single-node cluster: starts etcd (a child process), creates the PKI
//!   and an admin kubeconfig, and runs the apiserver in this process.
//! - `keelson pki`: create the CA, the serving certificate, the components' certificates
//!   and kubeconfigs, and the admin kubeconfig.
//! - `keelson apiserver ...`: the same as `keelson-apiserver ...`.
//! - `keelson hollow-nodes --kubeconfig FILE --count N`: simulated nodes (like kwok).
//! - `keelson images import FILE...`: image tarballs into a node's containerd (air gap).

mod containerd;
mod etcd;
mod hollow;
mod images;
mod up;

use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "keelson",
    version,
    about = "A Kubernetes-compatible control plane in Rust"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a single-node cluster until interrupted.
    Up(up::UpArgs),
    /// Create (when missing) the cluster CA, the apiserver serving certificate, the admin
    /// client certificate, one client certificate and kubeconfig per component
    /// (`scheduler.conf`, `controller-manager.conf`, `proxy.conf`, `dns.conf`) and
    /// optionally an admin kubeconfig; `keelson pki node ...` issues a node's credentials
    /// from that CA.
    Pki {
        #[command(subcommand)]
        action: Option<PkiAction>,
        /// Where certificates live.
        #[arg(long, default_value = "/var/lib/keelson/pki")]
        dir: PathBuf,
        /// Extra subject alternative names for the serving certificate (DNS names or IPs).
        #[arg(long = "san", value_delimiter = ',')]
        sans: Vec<String>,
        /// Write an admin kubeconfig here, pointing at `--server`.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        /// Where the components' kubeconfigs go (default: the parent of `--dir`, as
        /// kubeadm keeps `/etc/kubernetes/*.conf` next to `/etc/kubernetes/pki`).
        #[arg(long)]
        kubeconfig_dir: Option<PathBuf>,
        /// The apiserver URL written into the kubeconfigs.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
    },
    /// Run the apiserver (same flags as keelson-apiserver).
    Apiserver {
        // Boxed: the apiserver's flags are most of this enum's size.
        #[command(flatten)]
        config: Box<keelson_apiserver::Config>,
    },
    /// Register simulated nodes, renew their Leases and play a minimal kubelet for the
    /// pods bound to them, until interrupted.
    HollowNodes(hollow::HollowArgs),
    /// Images without a registry: import tarballs into containerd, build the project's
    /// own images as archives.
    Images {
        #[command(subcommand)]
        command: images::ImagesCommand,
    },
}

#[derive(Subcommand)]
enum PkiAction {
    /// Issue a node agent's credentials from the CA in `--dir`: a client certificate
    /// (`system:node:NAME`) in a kubeconfig, a serving certificate and a copy of the CA.
    Node {
        /// The node's name.
        #[arg(long)]
        name: String,
        /// Subject alternative names of its serving certificate (its IPs, DNS names).
        #[arg(long = "san", value_delimiter = ',')]
        sans: Vec<String>,
        /// The apiserver URL written into the node's kubeconfig.
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
        /// Directory for the node's files.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    keelson_apiserver::runtime()?.block_on(run())
}

async fn run() -> anyhow::Result<()> {
    keelson_apiserver::init_logging();
    match Cli::parse().command {
        Command::Up(args) => up::run(args).await,
        Command::Pki {
            action:
                Some(PkiAction::Node {
                    name,
                    sans,
                    server,
                    out,
                }),
            dir,
            ..
        } => {
            let paths = keelson_pki::ensure_pki(&dir, &keelson_pki::PkiOptions::default())?;
            let creds = keelson_pki::issue_node_credentials(&paths, &out, &name, &sans, &server)?;
            println!("wrote {}", creds.kubeconfig.display());
            println!(
                "  --tls-cert-file={} --tls-private-key-file={} --client-ca-file={}",
                creds.serving.cert.display(),
                creds.serving.key.display(),
                creds.ca_cert.display()
            );
            Ok(())
        }
        Command::Pki {
            action: None,
            dir,
            sans,
            kubeconfig,
            kubeconfig_dir,
            server,
        } => {
            let paths = keelson_pki::ensure_pki(
                &dir,
                &keelson_pki::PkiOptions {
                    extra_sans: sans,
                    ..Default::default()
                },
            )?;
            if let Some(kc) = kubeconfig {
                up::write_admin_kubeconfig(&paths, &kc, &server)?;
                println!("wrote {}", kc.display());
            }
            let conf_dir = kubeconfig_dir.unwrap_or_else(|| match dir.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent.to_path_buf(),
                _ => PathBuf::from("."),
            });
            let confs = keelson_pki::write_component_kubeconfigs(&paths, &conf_dir, &server)?;
            for conf in [
                &confs.scheduler,
                &confs.controller_manager,
                &confs.proxy,
                &confs.dns,
            ] {
                println!("kubeconfig {}", conf.display());
            }
            println!("PKI in {}", dir.display());
            Ok(())
        }
        Command::Apiserver { config } => {
            let running =
                keelson_apiserver::start(*config, keelson_apiserver::shutdown_signal()).await?;
            running.task.await?
        }
        Command::HollowNodes(args) => hollow::run(args).await,
        Command::Images { command } => images::run(command).await,
    }
}
