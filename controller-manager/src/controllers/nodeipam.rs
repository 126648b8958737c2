//! Node IPAM (Kubernetes' range allocator): every node gets `spec.podCIDR` and
//! `spec.podCIDRs`, one `--node-cidr-mask-size` block of `--cluster-cidr` per address
//! family (IPv6 blocks are /64), never one already in use.
//!
//! What is in use is rebuilt from the nodes at start, then kept as nodes come and go.
//! A block handed to a node stays reserved for it until the node is seen with it (or
//! deleted), so a stale cache cannot give the same node, or another node, a second one.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Node;
use keelson_client::runtime::{HandlerFuncs, Store};
use keelson_client::{Api, KubeObject, ObjectKey, Patch, PatchParams};
use keelson_component::{EventType, Queue, Requeue};
use serde_json::json;

use crate::Context;

/// One cluster CIDR cut into equal blocks.
#[derive(Debug)]
struct Range {
    base: u128,
    /// 32 or 128.
    bits: u32,
    prefix: u32,
    block: u32,
    used: BTreeSet<u128>,
    next: u128,
}

impl Range {
    fn parse(cidr: &str, v4_mask: u8) -> anyhow::Result<Range> {
        let (ip, prefix) = cidr
            .trim()
            .split_once('/')
            .ok_or_else(|| anyhow::anyhow!("invalid CIDR {cidr:?}"))?;
        let ip: IpAddr = ip.parse()?;
        let prefix: u32 = prefix.parse()?;
        let (value, bits, block) = match ip {
            IpAddr::V4(v4) => (u32::from(v4) as u128, 32, v4_mask as u32),
            IpAddr::V6(v6) => (u128::from(v6), 128, 64),
        };
        anyhow::ensure!(
            prefix <= block && block <= bits,
            "--node-cidr-mask-size {block} does not fit in {cidr}"
        );
        anyhow::ensure!(block - prefix < 64, "too many node blocks in {cidr}");
        Ok(Range {
            base: value & mask(bits, prefix),
            bits,
            prefix,
            block,
            used: BTreeSet::new(),
            next: 0,
        })
    }

    fn blocks(&self) -> u128 {
        1u128 << (self.block - self.prefix)
    }

    /// The block index of `cidr`, if it is one of this range's blocks.
    fn index_of(&self, cidr: &str) -> Option<u128> {
        let (ip, len) = cidr.split_once('/')?;
        let value = match ip.parse::<IpAddr>().ok()? {
            IpAddr::V4(v4) if self.bits == 32 => u32::from(v4) as u128,
            IpAddr::V6(v6) if self.bits == 128 => u128::from(v6),
            _ => return None,
        };
        let inside = value & mask(self.bits, self.prefix) == self.base;
        (len.parse::<u32>().ok()? == self.block && inside)
            .then(|| (value - self.base) >> (self.bits - self.block))
    }

    fn cidr_of(&self, index: u128) -> String {
        let value = self.base + (index << (self.bits - self.block));
        let ip: IpAddr = if self.bits == 32 {
            std::net::Ipv4Addr::from(value as u32).into()
        } else {
            std::net::Ipv6Addr::from(value).into()
        };
        format!("{ip}/{}", self.block)
    }

    /// The next free block after the last one handed out.
    fn allocate(&mut self) -> Option<String> {
        let n = self.blocks();
        for i in 0..n {
            let candidate = (self.next + i) % n;
            if self.used.insert(candidate) {
                self.next = (candidate + 1) % n;
                return Some(self.cidr_of(candidate));
            }
        }
        None
    }

    fn occupy(&mut self, cidr: &str) {
        if let Some(i) = self.index_of(cidr) {
            self.used.insert(i);
        }
    }

    fn release(&mut self, cidr: &str) {
        if let Some(i) = self.index_of(cidr) {
            self.used.remove(&i);
        }
    }
}

fn mask(bits: u32, prefix: u32) -> u128 {
    let all = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    if prefix == 0 {
        0
    } else {
        all & !((1u128 << (bits - prefix)) - 1)
    }
}

/// The ranges, and what was handed to nodes not yet seen with it.
#[derive(Debug)]
struct Allocator {
    ranges: Vec<Range>,
    pending: HashMap<String, Vec<String>>,
}

impl Allocator {
    fn occupy_node(&mut self, node: &Node) {
        for cidr in node_cidrs(node) {
            self.ranges.iter_mut().for_each(|r| r.occupy(&cidr));
        }
    }

    fn release(&mut self, cidrs: &[String]) {
        for cidr in cidrs {
            self.ranges.iter_mut().for_each(|r| r.release(cidr));
        }
    }

    /// One block per range for `node`, or the ones it was already given.
    fn allocate_for(&mut self, node: &str) -> Option<Vec<String>> {
        if let Some(cidrs) = self.pending.get(node) {
            return Some(cidrs.clone());
        }
        let mut cidrs = Vec::new();
        for r in &mut self.ranges {
            match r.allocate() {
                Some(c) => cidrs.push(c),
                None => {
                    let taken = cidrs.clone();
                    self.release(&taken);
                    return None;
                }
            }
        }
        self.pending.insert(node.to_string(), cidrs.clone());
        Some(cidrs)
    }
}

fn node_cidrs(node: &Node) -> Vec<String> {
    let spec = node.spec.as_ref();
    let mut cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if let Some(c) = spec.and_then(|s| s.pod_cidr.clone()) {
        if !c.is_empty() && !cidrs.contains(&c) {
            cidrs.push(c);
        }
    }
    cidrs
}

struct Controller {
    ctx: Context,
    nodes: Store<Node>,
    allocator: Arc<Mutex<Allocator>>,
}

pub async fn run(ctx: Context) {
    let mut ranges = Vec::new();
    for cidr in ctx.options.cluster_cidr.split(',') {
        match Range::parse(cidr, ctx.options.node_cidr_mask_size) {
            Ok(r) => ranges.push(r),
            Err(e) => {
                tracing::error!(error = %e, "node IPAM disabled: bad --cluster-cidr");
                return;
            }
        }
    }
    let allocator = Arc::new(Mutex::new(Allocator {
        ranges,
        pending: HashMap::new(),
    }));
    let informer = ctx.informers.get::<Node>();
    let queue: Queue<ObjectKey> = Queue::new("node_ipam", &ctx.queue_metrics);
    let (q1, q2) = (queue.clone(), queue.clone());
    let a = allocator.clone();
    informer.add_handler(
        HandlerFuncs::new()
            .on_add(move |n: Arc<Node>| q1.add(n.key()))
            .on_update(move |_, n: Arc<Node>| q2.add(n.key()))
            .on_delete(move |n: Arc<Node>| {
                let mut a = a.lock().unwrap_or_else(|e| e.into_inner());
                let mut cidrs = node_cidrs(&n);
                cidrs.extend(a.pending.remove(n.name()).unwrap_or_default());
                a.release(&cidrs);
            }),
    );
    informer.wait_for_sync().await;
    let nodes = informer.store();
    {
        let mut a = allocator.lock().unwrap_or_else(|e| e.into_inner());
        for n in nodes.list() {
            a.occupy_node(&n);
        }
    }
    let c = Arc::new(Controller {
        ctx: ctx.clone(),
        nodes,
        allocator,
    });
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

    async fn sync(&self, key: &ObjectKey) -> anyhow::Result<Requeue> {
        let Some(node) = self.nodes.get(key) else {
            return Ok(None);
        };
        if !node_cidrs(&node).is_empty() {
            let mut a = self.lock();
            a.occupy_node(&node);
            a.pending.remove(&key.name);
            return Ok(None);
        }
        let Some(cidrs) = self.lock().allocate_for(&key.name) else {
            self.ctx
                .recorder
                .record(
                    &keelson_component::events::reference(node.as_ref()),
                    EventType::Normal,
                    "CIDRNotAvailable",
                    &format!("Node {} status is now: CIDRNotAvailable", key.name),
                )
                .await;
            return Ok(Some(std::time::Duration::from_secs(30)));
        };
        let api: Api<Node> = Api::all(self.ctx.client.clone());
        let patch = json!({"spec": {"podCIDR": cidrs[0], "podCIDRs": cidrs}});
        match api
            .patch(&key.name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => Ok(None),
            Err(e) if e.is_not_found() => {
                let mut a = self.lock();
                if let Some(cidrs) = a.pending.remove(&key.name) {
                    a.release(&cidrs);
                }
                Ok(None)
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_handed_out_once_and_reused_after_release() {
        let mut r = Range::parse("10.244.0.0/22", 24).unwrap();
        r.occupy("10.244.1.0/24");
        r.occupy("192.168.0.0/24");
        let got: Vec<_> = (0..3).map(|_| r.allocate().unwrap()).collect();
        assert_eq!(got, ["10.244.0.0/24", "10.244.2.0/24", "10.244.3.0/24"]);
        assert_eq!(r.allocate(), None);
        r.release("10.244.2.0/24");
        assert_eq!(r.allocate().as_deref(), Some("10.244.2.0/24"));

        let mut v6 = Range::parse("fd00:10:244::/56", 24).unwrap();
        assert_eq!(v6.allocate().as_deref(), Some("fd00:10:244::/64"));
        assert_eq!(v6.allocate().as_deref(), Some("fd00:10:244:1::/64"));
        assert!(Range::parse("10.0.0.0/24", 16).is_err());
    }

    #[test]
    fn a_node_keeps_its_pending_blocks() {
        let mut a = Allocator {
            ranges: vec![Range::parse("10.0.0.0/16", 24).unwrap()],
            pending: HashMap::new(),
        };
        let first = a.allocate_for("n1").unwrap();
        assert_eq!(a.allocate_for("n1").unwrap(), first);
        assert_ne!(a.allocate_for("n2").unwrap(), first);
    }
}
