//! service-lb: addresses for LoadBalancer Services without a cloud.
//!
//! A Service of type LoadBalancer whose `spec.loadBalancerClass` is unset or
//! `--service-lb-class` gets `status.loadBalancer.ingress`:
//!
//! - with `--service-lb-pool`, one address of the pool (`spec.loadBalancerIP` when it
//!   is free and in the pool, else the lowest free one), never the same address for two
//!   Services; the proxy on the nodes makes it answer;
//! - without a pool, the InternalIP of every Ready node, sorted, as k3s's servicelb
//!   does: the Service's port answers on every node.
//!
//! Which address a Service holds lives in the Services' own status: at start the
//! allocator is rebuilt from the informer cache, so an address survives resyncs and
//! restarts. The controller is leader-elected, so it is the only writer; an address is
//! reserved in memory before its status is written, so two workers can never hand it
//! out twice. Services of another class are never touched.

use std::collections::{BTreeMap, HashMap};
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, Service};
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, KubeObject, ObjectKey, Patch, PatchParams};
use keelson_component::events::reference;
use keelson_component::{EventType, Queue, Requeue};
use serde_json::{json, Value};

use crate::Context;

/// IPv4 address ranges, inclusive, sorted and merged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pool {
    ranges: Vec<(u32, u32)>,
}

impl Pool {
    /// Parses `--service-lb-pool`: comma-separated IPv4 CIDRs (`192.168.1.240/28`, every
    /// address of the block), ranges (`192.168.1.240-192.168.1.250`) or single
    /// addresses. `None` when the flag is empty (node-address mode).
    pub fn parse(flag: &str) -> anyhow::Result<Option<Pool>> {
        let mut ranges = Vec::new();
        for part in flag.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            ranges.push(parse_range(part)?);
        }
        if ranges.is_empty() {
            return Ok(None);
        }
        ranges.sort();
        let mut merged: Vec<(u32, u32)> = Vec::new();
        for (start, end) in ranges {
            match merged.last_mut() {
                Some(last) if u64::from(start) <= u64::from(last.1) + 1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        Ok(Some(Pool { ranges: merged }))
    }

    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        let ip = u32::from(ip);
        self.ranges.iter().any(|&(s, e)| s <= ip && ip <= e)
    }

    /// The lowest address of the pool for which `taken` is false.
    fn lowest_free(&self, taken: impl Fn(u32) -> bool) -> Option<Ipv4Addr> {
        self.ranges
            .iter()
            .flat_map(|&(s, e)| s..=e)
            .find(|&ip| !taken(ip))
            .map(Ipv4Addr::from)
    }
}

fn parse_range(part: &str) -> anyhow::Result<(u32, u32)> {
    let ip = |s: &str| -> anyhow::Result<u32> {
        let addr: Ipv4Addr = s
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{s:?} in --service-lb-pool is not an IPv4 address"))?;
        Ok(u32::from(addr))
    };
    if let Some((addr, bits)) = part.split_once('/') {
        let prefix: u32 = bits
            .parse()
            .ok()
            .filter(|b| *b <= 32)
            .ok_or_else(|| anyhow::anyhow!("{part:?} in --service-lb-pool is not a CIDR"))?;
        let mask = if prefix == 0 {
            0
        } else {
            u32::MAX << (32 - prefix)
        };
        let base = ip(addr)? & mask;
        return Ok((base, base | !mask));
    }
    if let Some((a, b)) = part.split_once('-') {
        let (a, b) = (ip(a)?, ip(b)?);
        anyhow::ensure!(
            a <= b,
            "{part:?} in --service-lb-pool ends before it starts"
        );
        return Ok((a, b));
    }
    let a = ip(part)?;
    Ok((a, a))
}

/// Who holds which pool address.
#[derive(Debug, Default)]
struct Allocator {
    by_ip: BTreeMap<u32, ObjectKey>,
    by_service: HashMap<ObjectKey, u32>,
}

/// Why a Service got no address.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Exhausted,
    InUse(ObjectKey),
    OutsidePool,
    NotIpv4,
}

impl Allocator {
    fn held_by(&self, key: &ObjectKey) -> Option<Ipv4Addr> {
        self.by_service.get(key).map(|&ip| Ipv4Addr::from(ip))
    }

    fn hold(&mut self, key: &ObjectKey, ip: Ipv4Addr) {
        self.release(key);
        self.by_ip.insert(u32::from(ip), key.clone());
        self.by_service.insert(key.clone(), u32::from(ip));
    }

    /// Frees what `key` holds; true when it held something.
    fn release(&mut self, key: &ObjectKey) -> bool {
        match self.by_service.remove(key) {
            Some(ip) => {
                self.by_ip.remove(&ip);
                true
            }
            None => false,
        }
    }

    /// Takes `ip` for `key` if nobody else holds it.
    fn try_take(&mut self, key: &ObjectKey, ip: Ipv4Addr) -> Result<(), ObjectKey> {
        match self.by_ip.get(&u32::from(ip)) {
            Some(owner) if owner != key => Err(owner.clone()),
            _ => {
                self.hold(key, ip);
                Ok(())
            }
        }
    }

    /// The address `key` should have: what it holds (unless it asks for another),
    /// what its status shows (after a restart), what it asks for, or the lowest free.
    fn assign(
        &mut self,
        pool: &Pool,
        key: &ObjectKey,
        requested: Option<&str>,
        in_status: &[Ipv4Addr],
    ) -> Result<Ipv4Addr, Refusal> {
        if let Some(requested) = requested {
            let ip: Ipv4Addr = requested.parse().map_err(|_| Refusal::NotIpv4)?;
            if !pool.contains(ip) {
                self.release(key);
                return Err(Refusal::OutsidePool);
            }
            return match self.try_take(key, ip) {
                Ok(()) => Ok(ip),
                Err(owner) => {
                    self.release(key);
                    Err(Refusal::InUse(owner))
                }
            };
        }
        if let Some(ip) = self.held_by(key) {
            if pool.contains(ip) {
                return Ok(ip);
            }
        }
        for &ip in in_status {
            if pool.contains(ip) && self.try_take(key, ip).is_ok() {
                return Ok(ip);
            }
        }
        let ip = pool
            .lowest_free(|ip| self.by_ip.contains_key(&ip))
            .ok_or(Refusal::Exhausted)?;
        self.hold(key, ip);
        Ok(ip)
    }
}

struct Controller {
    ctx: Context,
    services: Store<Service>,
    nodes: Store<Node>,
    pool: Option<Pool>,
    allocator: Mutex<Allocator>,
    queue: Queue<ObjectKey>,
}

pub async fn run(ctx: Context) {
    let pool = match Pool::parse(&ctx.options.service_lb_pool) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "service-lb disabled: bad --service-lb-pool");
            return;
        }
    };
    let queue: Queue<ObjectKey> = Queue::new("service_lb", &ctx.queue_metrics);
    let services = ctx.informers.get::<Service>();
    let (q1, q2, q3) = (queue.clone(), queue.clone(), queue.clone());
    services.add_handler(
        HandlerFuncs::new()
            .on_add(move |s: Arc<Service>| q1.add(s.key()))
            .on_update(move |_, s: Arc<Service>| q2.add(s.key()))
            .on_delete(move |s: Arc<Service>| q3.add(s.key())),
    );
    let nodes = ctx.informers.get::<Node>();
    let c = Arc::new(Controller {
        services: services.store(),
        nodes: nodes.store(),
        pool,
        allocator: Mutex::default(),
        queue: queue.clone(),
        ctx: ctx.clone(),
    });
    if c.pool.is_none() {
        // Node-address mode: a node that comes, goes or changes readiness or addresses
        // changes every Service's ingress.
        let on_change = {
            let c = c.clone();
            move || c.enqueue_ours(|_| true)
        };
        let (a, u, d) = (on_change.clone(), on_change.clone(), on_change);
        nodes.add_handler(
            HandlerFuncs::new()
                .on_add(move |_: Arc<Node>| a())
                .on_update(move |old: Arc<Node>, new: Arc<Node>| {
                    if node_ingress_ip(&old) != node_ingress_ip(&new) {
                        u()
                    }
                })
                .on_delete(move |_: Arc<Node>| d()),
        );
        nodes.wait_for_sync().await;
    }
    services.wait_for_sync().await;
    c.restore();
    queue
        .run(ctx.options.concurrent_syncs, move |key| {
            let c = c.clone();
            async move { c.sync(&key).await }
        })
        .await;
}

impl Controller {
    fn lock(&self) -> std::sync::MutexGuard<'_, Allocator> {
        self.allocator.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether this controller serves `svc`.
    fn is_ours(&self, svc: &Service) -> bool {
        let spec = svc.spec.as_ref();
        let lb = spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
        let class = spec.and_then(|s| s.load_balancer_class.as_deref());
        lb && class.is_none_or(|c| c == self.ctx.options.service_lb_class)
    }

    /// Rebuilds who holds what from the cached statuses (after a restart), oldest
    /// Service first, so that if two ever showed one address the older keeps it.
    fn restore(&self) {
        let Some(pool) = &self.pool else { return };
        let mut ours: Vec<Arc<Service>> = self
            .services
            .list()
            .into_iter()
            .filter(|s| self.is_ours(s))
            .collect();
        ours.sort_by_key(|s| {
            (
                s.metadata.creation_timestamp.as_ref().map(|t| t.0),
                s.key().namespace,
                s.key().name,
            )
        });
        let mut a = self.lock();
        for svc in ours {
            let key = svc.key();
            for ip in status_ips(&svc) {
                if pool.contains(ip) && a.try_take(&key, ip).is_ok() {
                    break;
                }
            }
        }
    }

    /// Queues every Service this controller serves for which `pick` holds.
    fn enqueue_ours(&self, pick: impl Fn(&Service) -> bool) {
        for svc in self.services.list() {
            if self.is_ours(&svc) && pick(&svc) {
                self.queue.add(svc.key());
            }
        }
    }

    /// An address was freed: Services still waiting for one may get it now.
    fn freed(&self) {
        let a = self.lock();
        let waiting: Vec<ObjectKey> = self
            .services
            .list()
            .into_iter()
            .filter(|s| self.is_ours(s) && !a.by_service.contains_key(&s.key()))
            .map(|s| s.key())
            .collect();
        drop(a);
        for key in waiting {
            self.queue.add(key);
        }
    }

    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(svc) = self.services.get(key) else {
            let released = self.lock().release(key);
            if released {
                self.freed();
            }
            return Ok(None);
        };
        if !self.is_ours(&svc) {
            let released = self.lock().release(key);
            if released {
                self.freed();
            }
            let is_lb = svc.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer");
            // Another class belongs to its own controller; a Service that stopped
            // being a LoadBalancer keeps no ingress.
            if !is_lb && !status_ingress(&svc).is_empty() {
                self.write_ingress(&svc, Value::Null).await?;
            }
            return Ok(None);
        }
        let want = match &self.pool {
            Some(pool) => match self.assign(pool, &svc) {
                Ok(ip) => vec![ip.to_string()],
                Err(refusal) => {
                    self.refused(&svc, refusal).await;
                    if !status_ingress(&svc).is_empty() {
                        self.write_ingress(&svc, Value::Null).await?;
                    }
                    return Ok(None);
                }
            },
            None => self.ready_node_ips(),
        };
        let have: Vec<String> = status_ingress(&svc)
            .iter()
            .map(|i| {
                i.get("ip")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        let vip_everywhere = status_ingress(&svc)
            .iter()
            .all(|i| i.get("ipMode").and_then(Value::as_str) == Some("VIP"));
        if have == want && vip_everywhere {
            return Ok(None);
        }
        let object = reference(svc.as_ref());
        let recorder = &self.ctx.recorder;
        recorder
            .record(
                &object,
                EventType::Normal,
                "EnsuringLoadBalancer",
                "Ensuring load balancer",
            )
            .await;
        let ingress: Vec<Value> = want
            .iter()
            .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
            .collect();
        let value = if ingress.is_empty() {
            Value::Null
        } else {
            json!(ingress)
        };
        self.write_ingress(&svc, value).await?;
        recorder
            .record(
                &object,
                EventType::Normal,
                "EnsuredLoadBalancer",
                "Ensured load balancer",
            )
            .await;
        Ok(None)
    }

    fn assign(&self, pool: &Pool, svc: &Service) -> Result<Ipv4Addr, Refusal> {
        let requested = svc
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.as_deref())
            .filter(|ip| !ip.is_empty());
        let key = svc.key();
        let mut a = self.lock();
        let had = a.held_by(&key);
        let result = a.assign(pool, &key, requested, &status_ips(svc));
        drop(a);
        if had.is_some() && result.as_ref().ok() != had.as_ref() {
            self.freed();
        }
        result
    }

    async fn refused(&self, svc: &Service, refusal: Refusal) {
        let requested = svc
            .spec
            .as_ref()
            .and_then(|s| s.load_balancer_ip.clone())
            .unwrap_or_default();
        let why = match refusal {
            Refusal::Exhausted => "no address left in the pool (--service-lb-pool)".to_string(),
            Refusal::InUse(owner) => format!(
                "loadBalancerIP {requested} is in use by Service {}/{}",
                owner.namespace.unwrap_or_default(),
                owner.name
            ),
            Refusal::OutsidePool => {
                format!("loadBalancerIP {requested} is outside the pool (--service-lb-pool)")
            }
            Refusal::NotIpv4 => format!("loadBalancerIP {requested} is not an IPv4 address"),
        };
        self.ctx
            .recorder
            .record(
                &reference(svc),
                EventType::Warning,
                "AllocationFailed",
                &format!("Failed to allocate an address: {why}"),
            )
            .await;
    }

    /// The InternalIP of every Ready node, sorted and without repeats.
    fn ready_node_ips(&self) -> Vec<String> {
        let mut ips: Vec<String> = self
            .nodes
            .list()
            .iter()
            .filter_map(|n| node_ingress_ip(n))
            .collect();
        ips.sort();
        ips.dedup();
        ips
    }

    /// Sets (or with null, clears) `status.loadBalancer.ingress` through the status
    /// subresource. A Service deleted meanwhile is nothing to do.
    async fn write_ingress(&self, svc: &Service, ingress: Value) -> anyhow::Result<()> {
        let key = svc.key();
        let api: Api<Service> = Api::namespaced(
            self.ctx.client.clone(),
            key.namespace.as_deref().unwrap_or_default(),
        );
        let patch = json!({"status": {"loadBalancer": {"ingress": ingress}}});
        match api
            .patch_status(&key.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Err(e) if e.is_not_found() => Ok(()),
            Err(e) => Err(e.into()),
            Ok(_) => Ok(()),
        }
    }
}

/// The node's InternalIP when the node is Ready.
fn node_ingress_ip(node: &Node) -> Option<String> {
    let status = node.status.as_ref()?;
    let ready = status
        .conditions
        .iter()
        .flatten()
        .any(|c| c.type_ == "Ready" && c.status == "True");
    if !ready {
        return None;
    }
    status
        .addresses
        .iter()
        .flatten()
        .find(|a| a.type_ == "InternalIP")
        .map(|a| a.address.clone())
}

/// `status.loadBalancer.ingress` as JSON.
fn status_ingress(svc: &Service) -> Vec<Value> {
    svc.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .map(|i| {
            i.iter()
                .filter_map(|x| serde_json::to_value(x).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// The IPv4 addresses in `status.loadBalancer.ingress`.
fn status_ips(svc: &Service) -> Vec<Ipv4Addr> {
    status_ingress(svc)
        .iter()
        .filter_map(|i| i.get("ip")?.as_str()?.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Some("default"), name)
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn pools_parse_cidrs_ranges_and_single_addresses() {
        assert_eq!(Pool::parse("").unwrap(), None);
        assert_eq!(Pool::parse(" , ").unwrap(), None);
        let p = Pool::parse("10.0.0.8/30, 10.0.0.20-10.0.0.21,10.0.0.12")
            .unwrap()
            .unwrap();
        assert_eq!(
            p.ranges,
            vec![
                (u32::from(ip("10.0.0.8")), u32::from(ip("10.0.0.12"))),
                (u32::from(ip("10.0.0.20")), u32::from(ip("10.0.0.21")))
            ]
        );
        assert!(p.contains(ip("10.0.0.8")) && p.contains(ip("10.0.0.11")));
        assert!(!p.contains(ip("10.0.0.13")) && !p.contains(ip("10.0.0.22")));
        // A CIDR's address is masked, as net.ParseCIDR does.
        assert!(Pool::parse("192.168.1.77/24")
            .unwrap()
            .unwrap()
            .contains(ip("192.168.1.0")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.5-10.0.0.1",
            "fd00::1",
            "host",
            "10.0.0.0/x",
            "1-2",
        ] {
            assert!(Pool::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lowest_free_requested_and_refusals() {
        let pool = Pool::parse("10.0.0.1-10.0.0.3").unwrap().unwrap();
        let mut a = Allocator::default();
        assert_eq!(a.assign(&pool, &key("a"), None, &[]), Ok(ip("10.0.0.1")));
        // Stable: asking again gives the same.
        assert_eq!(a.assign(&pool, &key("a"), None, &[]), Ok(ip("10.0.0.1")));
        assert_eq!(
            a.assign(&pool, &key("b"), Some("10.0.0.3"), &[]),
            Ok(ip("10.0.0.3"))
        );
        assert_eq!(
            a.assign(&pool, &key("c"), Some("10.0.0.3"), &[]),
            Err(Refusal::InUse(key("b")))
        );
        assert_eq!(
            a.assign(&pool, &key("c"), Some("10.0.0.9"), &[]),
            Err(Refusal::OutsidePool)
        );
        assert_eq!(
            a.assign(&pool, &key("c"), Some("nope"), &[]),
            Err(Refusal::NotIpv4)
        );
        assert_eq!(a.assign(&pool, &key("c"), None, &[]), Ok(ip("10.0.0.2")));
        assert_eq!(
            a.assign(&pool, &key("d"), None, &[]),
            Err(Refusal::Exhausted)
        );
        assert!(a.release(&key("a")));
        assert!(!a.release(&key("a")));
        assert_eq!(a.assign(&pool, &key("d"), None, &[]), Ok(ip("10.0.0.1")));
        // A changed loadBalancerIP moves the Service and frees the old address.
        a.release(&key("b"));
        assert_eq!(
            a.assign(&pool, &key("c"), Some("10.0.0.3"), &[]),
            Ok(ip("10.0.0.3"))
        );
        assert_eq!(a.held_by(&key("c")), Some(ip("10.0.0.3")));
        assert!(!a.by_ip.contains_key(&u32::from(ip("10.0.0.2"))));
    }

    #[test]
    fn the_status_is_kept_after_a_restart_unless_taken() {
        let pool = Pool::parse("10.0.0.0/29").unwrap().unwrap();
        let mut a = Allocator::default();
        assert_eq!(
            a.assign(&pool, &key("a"), None, &[ip("10.0.0.5")]),
            Ok(ip("10.0.0.5"))
        );
        // Taken by another, or outside the pool: a fresh one.
        assert_eq!(
            a.assign(&pool, &key("b"), None, &[ip("10.0.0.5")]),
            Ok(ip("10.0.0.0"))
        );
        assert_eq!(
            a.assign(&pool, &key("c"), None, &[ip("192.168.0.1")]),
            Ok(ip("10.0.0.1"))
        );
    }
}
