//! `keelson`: the Keelson components in one binary.
//!
//! - `keelson up`: a single-node cluster: starts etcd (a child process), creates the PKI
//!   and an admin kubeconfig, and runs the apiserver in this process.
//! - `keelson pki`: create the CA, the serving certificate and the admin kubeconfig.
//! - `keelson apiserver ...`: the same as `keelson-apiserver ...`.
//! - `keelson hollow-nodes --kubeconfig FILE --count N`: simulated nodes (like kwok).

mod etcd;
mod hollow;
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
    /// Create (when missing) the cluster CA, apiserver serving certificate, admin client
    /// certificate, and an admin kubeconfig.
    Pki {
        /// Where certificates live.
        #[arg(long, default_value = "/var/lib/keelson/pki")]
        dir: PathBuf,
        /// Extra subject alternative names for the serving certificate (DNS names or IPs).
        #[arg(long = "san", value_delimiter = ',')]
        sans: Vec<String>,
        /// Write an admin kubeconfig here, pointing at `--server`.
        #[arg(long)]
        kubeconfig: Option<PathBuf>,
        #[arg(long, default_value = "https://127.0.0.1:6443")]
        server: String,
    },
    /// Run the apiserver (same flags as keelson-apiserver).
    Apiserver {
        #[command(flatten)]
        config: keelson_apiserver::Config,
    },
    /// Register simulated nodes, renew their Leases and play a minimal kubelet for the
    /// pods bound to them, until interrupted.
    HollowNodes(hollow::HollowArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    keelson_apiserver::init_logging();
    match Cli::parse().command {
        Command::Up(args) => up::run(args).await,
        Command::Pki {
            dir,
            sans,
            kubeconfig,
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
            println!("PKI in {}", dir.display());
            Ok(())
        }
        Command::Apiserver { config } => {
            let running =
                keelson_apiserver::start(config, keelson_apiserver::shutdown_signal()).await?;
            running.task.await?
        }
        Command::HollowNodes(args) => hollow::run(args).await,
    }
}
