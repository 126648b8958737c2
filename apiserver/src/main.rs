//! `keelson-apiserver`: see the crate docs.

use clap::Parser;

#[derive(Parser)]
#[command(
    name = "keelson-apiserver",
    version,
    about = "Kubernetes REST and gRPC API server over etcd"
)]
struct Cli {
    #[command(flatten)]
    config: keelson_apiserver::Config,
}

fn main() -> anyhow::Result<()> {
    keelson_apiserver::init_logging();
    let cli = Cli::parse();
    keelson_apiserver::runtime()?.block_on(async {
        let running =
            keelson_apiserver::start(cli.config, keelson_apiserver::shutdown_signal()).await?;
        running.task.await??;
        Ok(())
    })
}
