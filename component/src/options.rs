//! Flags shared by the scheduler and the controller-manager, spelled as Kubernetes'
//! components spell them.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use keelson_apimachinery::duration;

#[derive(clap::Args, Debug, Clone)]
pub struct LeaderElectionOptions {
    /// Elect a leader among the running instances before doing any work.
    #[arg(long = "leader-elect", default_value_t = true, action = clap::ArgAction::Set)]
    pub enabled: bool,
    /// How long a non-leader waits after the last observed renewal before taking over.
    #[arg(long = "leader-elect-lease-duration", default_value = "15s", value_parser = duration::parse)]
    pub lease_duration: Duration,
    /// How long the leader keeps retrying to renew before it stops acting.
    #[arg(long = "leader-elect-renew-deadline", default_value = "10s", value_parser = duration::parse)]
    pub renew_deadline: Duration,
    /// How often to try to acquire or renew.
    #[arg(long = "leader-elect-retry-period", default_value = "2s", value_parser = duration::parse)]
    pub retry_period: Duration,
    /// Namespace of the Lease.
    #[arg(
        long = "leader-elect-resource-namespace",
        default_value = "kube-system"
    )]
    pub namespace: String,
    /// Name of the Lease (defaults to the component's name).
    #[arg(long = "leader-elect-resource-name")]
    pub name: Option<String>,
}

impl Default for LeaderElectionOptions {
    /// Kubernetes' defaults, enabled.
    fn default() -> Self {
        LeaderElectionOptions {
            enabled: true,
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
            namespace: "kube-system".into(),
            name: None,
        }
    }
}

impl LeaderElectionOptions {
    /// Checks client-go's constraints: lease duration > renew deadline > retry period.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.lease_duration > self.renew_deadline,
            "--leader-elect-lease-duration must be greater than --leader-elect-renew-deadline"
        );
        anyhow::ensure!(
            self.renew_deadline > self.retry_period,
            "--leader-elect-renew-deadline must be greater than --leader-elect-retry-period"
        );
        anyhow::ensure!(
            !self.retry_period.is_zero(),
            "--leader-elect-retry-period must be positive"
        );
        Ok(())
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ComponentOptions {
    /// Kubeconfig with the apiserver's address and credentials (gRPC on the same port).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Address for /healthz and /metrics (plain HTTP).
    #[arg(long = "bind-address", default_value = "127.0.0.1")]
    pub bind_address: IpAddr,
    /// Port for /healthz and /metrics; 0 turns the endpoint off. Defaults to the
    /// component's usual port (scheduler 10259, controller-manager 10257).
    #[arg(long)]
    pub port: Option<u16>,
    #[command(flatten)]
    pub leader_election: LeaderElectionOptions,
}

impl ComponentOptions {
    /// A single-instance component (as `keelson up` runs them): no leader election,
    /// health and metrics on loopback at the component's usual port.
    pub fn single(kubeconfig: PathBuf) -> Self {
        ComponentOptions {
            kubeconfig: Some(kubeconfig),
            bind_address: IpAddr::from([127, 0, 0, 1]),
            port: None,
            leader_election: LeaderElectionOptions {
                enabled: false,
                ..Default::default()
            },
        }
    }

    /// The client for this component: `--kubeconfig`, else `$KUBECONFIG` or
    /// `~/.kube/config`.
    pub fn client(&self) -> anyhow::Result<keelson_client::Client> {
        Ok(match &self.kubeconfig {
            Some(path) => keelson_client::Client::from_kubeconfig(path)?,
            None => keelson_client::Client::from_kubeconfig_default()?,
        })
    }
}
