//! `keelson-scheduler`: schedules pods while it holds the
//! `kube-system/keelson-scheduler` Lease.

use clap::Parser;
use keelson_component::ComponentOptions;
use keelson_scheduler::{Scheduler, SchedulerConfig};

/// The Lease name and health/metrics port (kube-scheduler's 10259).
const COMPONENT: keelson_component::Component = keelson_component::Component {
    name: "keelson-scheduler",
    default_port: 10259,
};

#[derive(Parser)]
#[command(name = "keelson-scheduler", version, about)]
struct Cli {
    #[command(flatten)]
    component: ComponentOptions,
    /// Pods whose spec.schedulerName is this are scheduled by this instance.
    #[arg(long = "scheduler-name", default_value = "default-scheduler")]
    scheduler_name: String,
    /// Share of nodes to find feasible before scoring (0: adapt to the cluster size).
    #[arg(long = "percentage-of-nodes-to-score", default_value_t = 0)]
    percentage_of_nodes_to_score: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    keelson_component::init_logging();
    let cli = Cli::parse();
    let client = cli.component.client()?;
    let mut registry = prometheus_client::registry::Registry::default();
    let config = SchedulerConfig {
        scheduler_name: cli.scheduler_name,
        percentage_of_nodes_to_score: cli.percentage_of_nodes_to_score,
        ..Default::default()
    };
    let scheduler = Scheduler::new(client.clone(), config, &mut registry);
    COMPONENT
        .run(
            &cli.component,
            client,
            registry,
            scheduler.run(),
            keelson_component::shutdown_signal(),
        )
        .await
}
