//! NetworkPolicy enforcement with nftables for the pods of this node. See
//! docs/network-policy.md.
//!
//! `model` computes what each local pod may send and receive from the cached Pods,
//! Namespaces and NetworkPolicies; `render` prints it as one nft table; this module
//! keeps the caches, and replaces the table in one atomic `nft -f -` transaction when
//! the text changes, at most once per [`MIN_SYNC_PERIOD`] (changes coalesce).

pub mod model;
pub mod render;

use std::borrow::Borrow;
use std::future::Future;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use keelson_client::runtime::{watcher, Backoff, SharedInformer};
use keelson_client::{Api, Client};
use tokio::io::AsyncWriteExt;

pub use render::TABLE;

/// Changes within this period after a sync wait for the next one.
pub const MIN_SYNC_PERIOD: Duration = Duration::from_secs(1);

/// The nft table text for the pods of `node_name` (without the replace transaction
/// around it); for tests and for `run`.
pub fn render<P, N, Q>(node_name: &str, pods: &[P], namespaces: &[N], policies: &[Q]) -> String
where
    P: Borrow<Pod>,
    N: Borrow<Namespace>,
    Q: Borrow<NetworkPolicy>,
{
    render::table(&model::compute(node_name, pods, namespaces, policies))
}

/// Load `text` with `nft -f -`; `nft` is the command and its leading arguments
/// (`["nft"]`, or `["ip", "netns", "exec", NS, "nft"]` in tests). The whole input is one
/// transaction: on error nothing changed.
async fn apply(nft: &[String], text: &str) -> anyhow::Result<()> {
    let (program, args) = nft
        .split_first()
        .ok_or_else(|| anyhow::anyhow!("no nft command"))?;
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(text.as_bytes()).await?;
        // Dropping stdin closes it, so nft sees the end of its input.
    }
    let out = child.wait_with_output().await?;
    anyhow::ensure!(
        out.status.success(),
        "nft -f - ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(())
}

/// Bridged pod-to-pod traffic reaches the inet `forward` hook only with these on
/// (br_netfilter); without the module the files are missing and only routed traffic
/// is filtered, which is logged.
fn enable_bridge_netfilter() {
    for f in [
        "/proc/sys/net/bridge/bridge-nf-call-iptables",
        "/proc/sys/net/bridge/bridge-nf-call-ip6tables",
    ] {
        if let Err(e) = std::fs::write(f, "1") {
            tracing::warn!(file = f, error = %e, "cannot enable br_netfilter; traffic between pods on one bridge is not filtered");
        }
    }
}

/// Enforce NetworkPolicy for the pods of `node_name` until `shutdown` resolves. The
/// table stays in place afterwards: pods stay isolated while the proxy restarts, and a
/// restarted proxy renders the same text from the same objects.
pub async fn run(
    client: Client,
    node_name: String,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    enable_bridge_netfilter();
    sync_loop(client, node_name, vec!["nft".into()], shutdown).await
}

/// [`run`] without the sysctls, loading tables with the `nft` command given.
pub(crate) async fn sync_loop(
    client: Client,
    node_name: String,
    nft: Vec<String>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pods = SharedInformer::new(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let namespaces = SharedInformer::new(
        Api::<Namespace>::all(client.clone()),
        watcher::Config::default(),
    );
    let policies = SharedInformer::new(
        Api::<NetworkPolicy>::all(client),
        watcher::Config::default(),
    );
    // Any change to any of the three wakes the loop; what changed does not matter, the
    // whole table is recomputed from the caches.
    let mut changes = futures::stream::select_all([
        pods.subscribe().map(|_| ()).boxed(),
        namespaces.subscribe().map(|_| ()).boxed(),
        policies.subscribe().map(|_| ()).boxed(),
    ]);
    let shutdown = shutdown.shared();
    tokio::select! {
        _ = shutdown.clone() => return Ok(()),
        _ = async {
            pods.wait_for_sync().await;
            namespaces.wait_for_sync().await;
            policies.wait_for_sync().await;
        } => {}
    }
    tracing::info!(node = %node_name, "network policy caches synced");

    let mut applied: Option<String> = None;
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(30));
    loop {
        // Take every change already queued: they are all in the caches by now.
        while let Some(Some(())) = changes.next().now_or_never() {}
        let started = Instant::now();
        let text = render(
            &node_name,
            &pods.store().list(),
            &namespaces.store().list(),
            &policies.store().list(),
        );
        let mut retry = None;
        if applied.as_deref() != Some(text.as_str()) {
            match apply(&nft, &render::transaction(&text)).await {
                Ok(()) => {
                    tracing::debug!(
                        bytes = text.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "network policy table replaced"
                    );
                    applied = Some(text);
                    backoff.reset();
                }
                Err(e) => {
                    let delay = backoff.next_delay();
                    tracing::warn!(error = %format!("{e:#}"), retry_in = ?delay, "loading the network policy table");
                    retry = Some(delay);
                }
            }
        }
        tokio::select! {
            _ = shutdown.clone() => return Ok(()),
            more = changes.next() => {
                if more.is_none() {
                    anyhow::bail!("network policy informers stopped");
                }
            }
            _ = tokio::time::sleep(retry.unwrap_or(Duration::from_secs(3600))), if retry.is_some() => {}
        }
        let next = started + MIN_SYNC_PERIOD;
        tokio::select! {
            _ = shutdown.clone() => return Ok(()),
            _ = tokio::time::sleep_until(next.into()) => {}
        }
    }
}

#[cfg(test)]
mod tests;
