//! keelson-proxy: kube-proxy's nftables mode. See docs/proxy.md.
//!
//! One loop ([`Proxier`]): informers on Services, EndpointSlices and Nodes wake it;
//! it waits out `--nftables-min-sync-period` so a burst of changes costs one sync,
//! derives the Service ports ([`model`]), renders the table ([`rules`]), applies the
//! difference to what the kernel holds in one `nft -f` transaction ([`nft`]), then
//! clears stale UDP flows ([`conntrack`]), announces LoadBalancer addresses
//! ([`announce`]) and updates the health check node ports ([`health`]).
//! NetworkPolicy is enforced by its own loop and table ([`netpol`]).

pub mod addr;
pub mod announce;
pub mod conntrack;
pub mod health;
pub mod metrics;
pub mod model;
pub mod netpol;
pub mod nft;
pub mod options;
pub mod rules;
#[cfg(test)]
pub(crate) mod test_netns;

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use keelson_client::runtime::{HandlerFuncs, SharedInformer};
use keelson_client::Client;
use prometheus_client::registry::Registry;
use tokio::sync::Notify;

pub use options::ProxyOptions;

/// Runs the proxy until `shutdown` resolves. The rules stay in the kernel when it
/// stops (kube-proxy's behaviour): Services keep working while the proxy restarts.
pub async fn run(
    client: Client,
    opts: ProxyOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    opts.validate()?;
    if opts.cleanup {
        return cleanup().await;
    }
    let node_name = opts.node_name()?;
    let mut registry = Registry::default();
    let metrics = metrics::Metrics::new(&mut registry);
    let health = health::Health::new(opts.sync_period * 2);
    let wake = Arc::new(Notify::new());

    // The caches keep only what the rules read (client-go's transforms): at a thousand
    // Services the objects' other fields would be most of the proxy's memory.
    let services = informer(&client, model::trim_service);
    let slices = informer(&client, model::trim_endpoint_slice);
    let nodes = informer(&client, announce::trim_node);
    notify_on_change(&services, &wake, &health, metrics.service_changes.clone());
    notify_on_change(&slices, &wake, &health, metrics.endpoint_changes.clone());
    notify_on_change(&nodes, &wake, &health, Default::default());
    services.wait_for_sync().await;
    slices.wait_for_sync().await;
    nodes.wait_for_sync().await;

    let healthz = health::serve_healthz(opts.healthz_bind_address, health.clone()).await?;
    let metrics_server = keelson_component::serve::serve(
        opts.metrics_bind_address,
        Arc::new(registry),
        keelson_component::serve::Health {
            leader: None,
            max_renewal_age: Duration::MAX,
            loops: Default::default(),
        },
    )
    .await?;
    let netpol = opts.enforce_network_policy.then(|| {
        let (client, node) = (client.clone(), node_name.clone());
        tokio::spawn(async move {
            if let Err(e) = netpol::run(client, node, std::future::pending()).await {
                tracing::error!(error = %e, "NetworkPolicy enforcement stopped");
            }
        })
    });
    tracing::info!(node = %node_name, "keelson-proxy started (nftables mode)");

    let mut proxier = Proxier {
        opts,
        node_name,
        services,
        slices,
        nodes,
        metrics,
        health,
        applied: None,
        applied_ports: Vec::new(),
        service_health: health::ServiceHealthServers::default(),
        route_ensured: false,
        announced: None,
    };
    let shutdown = shutdown;
    tokio::pin!(shutdown);
    let mut last_sync: Option<Instant> = None;
    let mut last_full_check = Instant::now();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            _ = wake.notified() => {}
            _ = tokio::time::sleep(proxier.opts.sync_period) => {}
        }
        if let Some(at) = last_sync {
            let since = at.elapsed();
            if since < proxier.opts.min_sync_period {
                tokio::select! {
                    _ = &mut shutdown => break,
                    _ = tokio::time::sleep(proxier.opts.min_sync_period - since) => {}
                }
            }
        }
        let verify = last_full_check.elapsed() >= proxier.opts.sync_period;
        if verify {
            last_full_check = Instant::now();
        }
        last_sync = Some(Instant::now());
        if let Err(e) = proxier.sync(verify).await {
            tracing::error!(error = %e, "sync failed; retrying with a full sync");
            proxier.metrics.sync_failures.inc();
            proxier.applied = None;
            wake.notify_one();
        }
    }
    healthz.abort();
    metrics_server.abort();
    if let Some(t) = netpol {
        t.abort();
    }
    tracing::info!("keelson-proxy stopped; its rules stay in place");
    Ok(())
}

/// An informer on every `K`, trimmed by `transform` before caching.
fn informer<K>(client: &Client, transform: fn(&mut K)) -> Arc<SharedInformer<K>>
where
    K: keelson_client::KubeObject + k8s_openapi::Resource,
{
    Arc::new(SharedInformer::with_transform(
        keelson_client::Api::all(client.clone()),
        keelson_client::runtime::watcher::Config::default(),
        transform,
    ))
}

/// Counts a change, marks the health as pending and wakes the loop.
fn notify_on_change<K>(
    informer: &SharedInformer<K>,
    wake: &Arc<Notify>,
    health: &health::Health,
    counter: prometheus_client::metrics::counter::Counter,
) where
    K: keelson_client::KubeObject + Send + Sync + 'static,
{
    let poke = {
        let (wake, health) = (wake.clone(), health.clone());
        move || {
            counter.inc();
            health.changed();
            wake.notify_one();
        }
    };
    let (p1, p2, p3) = (poke.clone(), poke.clone(), poke);
    informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |_| p1())
            .on_update(move |_, _| p2())
            .on_delete(move |_| p3()),
    );
}

/// Removes everything the proxy put in the kernel (`--cleanup`).
pub async fn cleanup() -> anyhow::Result<()> {
    nft::delete_table("ip", rules::TABLE).await?;
    nft::delete_table("inet", "keelson-netpol").await?;
    addr::delete_lb_interface().await?;
    tracing::info!("removed the proxy's tables and addresses");
    Ok(())
}

/// The sync loop's state: what the kernel holds, so the next sync sends only the
/// difference.
struct Proxier {
    opts: ProxyOptions,
    node_name: String,
    services: Arc<SharedInformer<Service>>,
    slices: Arc<SharedInformer<EndpointSlice>>,
    nodes: Arc<SharedInformer<Node>>,
    metrics: metrics::Metrics,
    health: health::Health,
    /// What the kernel holds; `None` forces a full replace.
    applied: Option<rules::Applied>,
    applied_ports: Vec<model::ServicePort>,
    service_health: health::ServiceHealthServers,
    route_ensured: bool,
    /// The LoadBalancer addresses this node announces; `None` until first read.
    announced: Option<BTreeSet<Ipv4Addr>>,
}

impl Proxier {
    async fn sync(&mut self, verify: bool) -> anyhow::Result<()> {
        let started = Instant::now();
        let services = self.services.store().list();
        let slices = self.slices.store().list();
        let nodes = self.nodes.store().list();
        let ports = model::service_ports(&services, &slices, &self.node_name);
        let me = nodes
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some(self.node_name.as_str()));
        let node_ips = me.map(|n| announce::internal_ips(n)).unwrap_or_default();
        let node = rules::NodeContext {
            cluster_cidrs: self.opts.cluster_cidr.clone(),
            nodeport_ips: self.nodeport_ips(&node_ips).await?,
        };
        if !self.route_ensured {
            if let (Some(range), Some(ip)) = (&self.opts.service_cluster_ip_range, node_ips.first())
            {
                addr::ensure_service_route(range, *ip).await?;
                self.route_ensured = true;
            }
        }

        let ruleset = rules::render(&ports, &node);
        // A table someone deleted (or a first sync) needs the whole thing.
        if verify && !nft::table_exists("ip", rules::TABLE).await? {
            self.applied = None;
        }
        let (transaction, full) = match &self.applied {
            None => (Some(ruleset.full()), true),
            Some(old) => (ruleset.diff(old), false),
        };
        let applied_something = transaction.is_some();
        if let Some(tx) = transaction {
            nft::apply_owned(tx).await?;
            let (chains, rule_count) = ruleset.size();
            self.metrics.nftables_chains.set(chains as i64);
            self.metrics.nftables_rules.set(rule_count as i64);
            tracing::debug!(
                full,
                chains,
                rules = rule_count,
                "applied nftables transaction"
            );
        }
        self.applied = Some(ruleset.applied());

        let stale = conntrack::stale_flows(&self.applied_ports, &ports);
        if !stale.is_empty() {
            self.metrics.conntrack_deletions.inc_by(stale.len() as u64);
            if let Err(e) = conntrack::delete(&stale).await {
                tracing::warn!(error = %e, "could not clear stale UDP flows");
            }
        }
        self.service_health.update(health_check_ports(&ports));
        if self.opts.announce_load_balancer_ips {
            let owned =
                announce::owned_addresses(&ports, &announce::candidates(&nodes), &self.node_name);
            // The kernel is asked only when ownership changed (and once at start,
            // when `announced` is unknown): most syncs move no address.
            if self.announced.as_ref() != Some(&owned) {
                announce_addresses(&owned, node_ips.first().copied()).await?;
                self.announced = Some(owned);
            }
        }
        self.applied_ports = ports;

        let elapsed = started.elapsed().as_secs_f64();
        if applied_something {
            self.metrics.sync_duration.observe(elapsed);
            if full {
                self.metrics.full_sync_duration.observe(elapsed);
            } else {
                self.metrics.partial_sync_duration.observe(elapsed);
            }
        }
        self.metrics.last_sync_timestamp.set(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs_f64())
                .unwrap_or_default(),
        );
        self.health.synced(started);
        Ok(())
    }

    /// The addresses NodePorts answer on: the Node's InternalIPs (`primary`), or the
    /// node's own addresses inside the given CIDRs.
    async fn nodeport_ips(&self, node_ips: &[Ipv4Addr]) -> anyhow::Result<Vec<Ipv4Addr>> {
        let mut out = BTreeSet::new();
        let cidrs: Vec<addr::Cidr> = self
            .opts
            .nodeport_addresses
            .iter()
            .filter(|c| *c != "primary")
            .filter_map(|c| addr::parse_cidr(c).ok())
            .collect();
        if self.opts.nodeport_addresses.iter().any(|c| c == "primary") {
            out.extend(node_ips.iter().copied());
        }
        if !cidrs.is_empty() {
            for a in addr::local_addresses().await? {
                if a.interface != addr::LB_INTERFACE && cidrs.iter().any(|c| c.contains(a.ip)) {
                    out.insert(a.ip);
                }
            }
        }
        Ok(out.into_iter().collect())
    }
}

fn health_check_ports(ports: &[model::ServicePort]) -> BTreeMap<u16, health::ServiceHealth> {
    let mut out = BTreeMap::new();
    for sp in ports {
        if let Some(port) = sp.health_check_node_port {
            let e = out.entry(port).or_insert_with(|| health::ServiceHealth {
                namespace: sp.id.namespace.clone(),
                name: sp.id.name.clone(),
                local_endpoints: 0,
            });
            e.local_endpoints = e.local_endpoints.max(sp.local_endpoints.len());
        }
    }
    out
}

/// Makes the announce interface hold exactly `owned`, and tells the link about each
/// address it takes (a gratuitous ARP from the interface of `node_ip`).
async fn announce_addresses(
    owned: &BTreeSet<Ipv4Addr>,
    node_ip: Option<Ipv4Addr>,
) -> anyhow::Result<()> {
    let current: BTreeSet<Ipv4Addr> = if owned.is_empty() {
        match addr::lb_addresses().await {
            Ok(a) => a.into_iter().collect(),
            Err(_) => return Ok(()),
        }
    } else {
        addr::ensure_lb_interface().await?;
        addr::lb_addresses().await?.into_iter().collect()
    };
    let link = match node_ip {
        Some(ip) => addr::interface_of(ip).await.ok(),
        None => None,
    };
    for ip in owned.difference(&current) {
        addr::add_lb_address(*ip).await?;
        tracing::info!(%ip, "announcing LoadBalancer address from this node");
        if let Some(link) = &link {
            if let Err(e) = addr::send_gratuitous_arp(link, *ip) {
                tracing::warn!(%ip, %link, error = %e, "gratuitous ARP failed");
            }
        }
    }
    for ip in current.difference(owned) {
        addr::remove_lb_address(*ip).await?;
        tracing::info!(%ip, "no longer announcing LoadBalancer address");
    }
    Ok(())
}
