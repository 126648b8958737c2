//! `keelson-controller-manager`: runs the controllers while it holds the
//! `kube-system/keelson-controller-manager` Lease.

use clap::Parser;
use keelson_component::ComponentOptions;
use keelson_controller_manager::{Context, ControllerManagerOptions};

#[derive(Parser)]
#[command(name = "keelson-controller-manager", version, about)]
struct Cli {
    #[command(flatten)]
    component: ComponentOptions,
    #[command(flatten)]
    options: ControllerManagerOptions,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    keelson_component::init_logging();
    let cli = Cli::parse();
    let client = cli.component.client()?;
    let mut registry = prometheus_client::registry::Registry::default();
    let ctx = Context::new(client.clone(), cli.options, &mut registry);
    keelson_controller_manager::COMPONENT
        .run(
            &cli.component,
            client,
            registry,
            keelson_controller_manager::run(ctx),
            keelson_component::shutdown_signal(),
        )
        .await
}
