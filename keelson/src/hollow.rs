//! `keelson hollow-nodes`: simulated nodes (see `keelson-hollow-node`).

use std::path::PathBuf;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct HollowArgs {
    /// Kubeconfig of the cluster to join (its current context).
    #[arg(long)]
    pub kubeconfig: PathBuf,
    #[command(flatten)]
    pub options: keelson_hollow_node::HollowOptions,
}

/// Run the hollow nodes until SIGINT or SIGTERM.
pub async fn run(args: HollowArgs) -> anyhow::Result<()> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = keelson_client::Client::from_kubeconfig(&args.kubeconfig)
        .with_context(|| format!("loading {}", args.kubeconfig.display()))?;
    tracing::info!(
        count = args.options.count,
        prefix = %args.options.name_prefix,
        "starting hollow nodes"
    );
    keelson_hollow_node::run(client, args.options, keelson_apiserver::shutdown_signal()).await
}
