//! `keelson-proxy`: see the library's documentation and docs/proxy.md.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "keelson-proxy",
    version,
    about = "The Keelson network proxy (kube-proxy, nftables mode)"
)]
struct Cli {
    #[command(flatten)]
    opts: keelson_proxy::ProxyOptions,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    keelson_component::init_logging();
    let cli = Cli::parse();
    if cli.opts.cleanup {
        return keelson_proxy::cleanup().await;
    }
    let kubeconfig = cli
        .opts
        .kubeconfig
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--kubeconfig is required"))?;
    let client = keelson_client::Client::from_kubeconfig(&kubeconfig)?;
    keelson_proxy::run(client, cli.opts, keelson_component::shutdown_signal()).await
}
