//! `keelson-dns`: see the library's documentation and docs/dns.md.

use clap::Parser;

#[derive(Parser)]
#[command(name = "keelson-dns", version, about = "Keelson cluster DNS")]
struct Cli {
    #[command(flatten)]
    opts: keelson_dns::DnsOptions,
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
    let client = keelson_client::Client::from_kubeconfig(&kubeconfig)?;
    keelson_dns::run(client, cli.opts, keelson_component::shutdown_signal()).await
}
