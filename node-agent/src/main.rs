//! `keelson-node-agent`: see the library's documentation and docs/node-agent.md.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "keelson-node-agent",
    version,
    about = "The Keelson node agent (kubelet)"
)]
struct Cli {
    #[command(flatten)]
    opts: keelson_node_agent::NodeAgentOptions,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    keelson_component::init_logging();
    let cli = Cli::parse();
    let kubeconfig = cli
        .opts
        .kubeconfig
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--kubeconfig is required"))?;
    let client = keelson_node_agent::certificates::client::client_for(&kubeconfig, &cli.opts)?;
    keelson_node_agent::run(client, cli.opts, keelson_component::shutdown_signal()).await
}
