//! The main loop every component shares: serve health and metrics, get elected (unless
//! `--leader-elect=false`), do the work while leading, and on SIGTERM give the Lease up
//! so that a standby takes over at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use keelson_client::Client;
use prometheus_client::registry::Registry;

use crate::leader::LeaderElection;
use crate::options::ComponentOptions;
use crate::serve::{serve, Health};

/// A component's identity: its Lease name and its usual health/metrics port.
pub struct Component {
    pub name: &'static str,
    pub default_port: u16,
}

impl Component {
    /// Run `work` (while leading) until `shutdown` resolves. Returns an error when
    /// leadership is lost: the process should exit and be restarted, as Kubernetes'
    /// components do, rather than act on state from a term that ended.
    pub async fn run(
        &self,
        opts: &ComponentOptions,
        client: Client,
        mut registry: Registry,
        work: impl Future<Output = ()>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        let le = &opts.leader_election;
        let election = if le.enabled {
            le.validate()?;
            Some(LeaderElection::new(
                client,
                self.name,
                le.clone(),
                &mut registry,
            ))
        } else {
            None
        };
        let port = opts.port.unwrap_or(self.default_port);
        let server = if port != 0 {
            let health = Health {
                leader: election.as_ref().map(|e| e.state()),
                max_renewal_age: le.lease_duration + std::time::Duration::from_secs(20),
                loops: crate::loops::Loops::process(),
            };
            let addr = SocketAddr::new(opts.bind_address, port);
            Some(serve(addr, Arc::new(registry), health).await?)
        } else {
            None
        };
        let result = match &election {
            None => {
                tokio::select! {
                    _ = work => Ok(()),
                    _ = shutdown => Ok(()),
                }
            }
            Some(election) => {
                tokio::select! {
                    why = election.run(work) => Err(anyhow::anyhow!("{}: {why}", self.name)),
                    _ = shutdown => {
                        election.release().await;
                        Ok(())
                    }
                }
            }
        };
        if let Some(server) = server {
            server.abort();
        }
        result
    }
}
