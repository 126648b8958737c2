//! The scheduler's view of the cluster: every node with the pods bound (or assumed) to
//! it, fed by the Node, Pod and Namespace informers.
//!
//! The scheduling loop owns the cache and schedules one pod at a time against it, so
//! the cache is the snapshot: nothing changes under a scheduling decision. Right after
//! a decision the pod is *assumed* on its node (its resources count at once), and the
//! binding is written in the background; the informer later confirms it, and a failed
//! binding *forgets* it. Indexes kept incrementally make the per-pod work independent
//! of the number of pods: pods per owner per node and zone (default spreading), pods
//! with required anti-affinity, pods with any affinity, nominated pods per node.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use crate::labels::Labels;
use crate::nodeinfo::{NodeDetails, NodeInfo};
use crate::podinfo::PodInfo;

struct Placed {
    node: usize,
    info: Arc<PodInfo>,
    /// Placed by the scheduler, not yet seen bound by the informer.
    assumed: bool,
}

/// Pods of one owner (ReplicaSet, ...) per node and per zone.
#[derive(Default)]
struct OwnerSpread {
    per_node: HashMap<usize, u32>,
    per_zone: HashMap<String, u32>,
}

/// What an informer's Node event changed.
#[derive(Debug, PartialEq, Eq)]
pub enum NodeChange {
    Added,
    /// Something filters or scores read changed.
    Updated,
    /// Only status noise (heartbeats, images).
    Unchanged,
}

#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Nodes whose Node object is known.
    node_count: usize,
    pods: HashMap<String, Placed>,
    namespaces: HashMap<String, Labels>,
    owners: HashMap<String, OwnerSpread>,
    /// uid -> node of pods with required anti-affinity terms.
    anti_affinity: HashMap<String, usize>,
    /// uid -> node of pods with any inter-pod affinity term.
    affinity: HashMap<String, usize>,
    /// Pending pods nominated to a node by preemption: uid -> (node, pod).
    nominated: HashMap<String, (usize, Arc<PodInfo>)>,
    nominated_by_node: HashMap<usize, HashSet<String>>,
}

impl Cache {
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn node(&self, i: usize) -> &NodeInfo {
        &self.nodes[i]
    }

    /// Nodes whose Node object exists (the "N" of "0/N nodes are available").
    pub fn node_count(&self) -> usize {
        self.node_count
    }

    pub fn node_index(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    fn entry(&mut self, name: &str) -> usize {
        if let Some(i) = self.index.get(name) {
            return *i;
        }
        let i = self.nodes.len();
        self.nodes.push(NodeInfo::new(i, name));
        self.index.insert(name.to_string(), i);
        i
    }

    pub fn namespace_labels(&self, ns: &str) -> Option<&Labels> {
        self.namespaces.get(ns)
    }

    /// Returns whether the labels changed.
    pub fn set_namespace(&mut self, name: &str, labels: Labels) -> bool {
        self.namespaces.insert(name.to_string(), labels.clone()) != Some(labels)
    }

    pub fn remove_namespace(&mut self, name: &str) {
        self.namespaces.remove(name);
    }

    pub fn upsert_node(&mut self, node: &Node) -> NodeChange {
        let name = node.metadata.name.clone().unwrap_or_default();
        let details = NodeDetails::new(node);
        let i = self.entry(&name);
        let old = self.nodes[i].node.take();
        let change = match &old {
            None => {
                self.node_count += 1;
                NodeChange::Added
            }
            Some(o) if *o == details => NodeChange::Unchanged,
            Some(_) => NodeChange::Updated,
        };
        let old_zone = old.map(|o| o.zone).unwrap_or_default();
        if old_zone != details.zone {
            self.move_zone(i, &old_zone, &details.zone);
        }
        self.nodes[i].node = Some(details);
        change
    }

    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.node_index(name) else {
            return;
        };
        if let Some(old) = self.nodes[i].node.take() {
            self.node_count -= 1;
            self.move_zone(i, &old.zone, "");
        }
    }

    /// A node's zone changed: its pods move between zone counts.
    fn move_zone(&mut self, node: usize, from: &str, to: &str) {
        for p in &self.nodes[node].pods {
            let Some(owner) = p.owner.as_ref().filter(|_| !p.terminating) else {
                continue;
            };
            let spread = self.owners.entry(owner.clone()).or_default();
            if !from.is_empty() {
                decrement(&mut spread.per_zone, from);
            }
            if !to.is_empty() {
                *spread.per_zone.entry(to.to_string()).or_default() += 1;
            }
        }
    }

    fn place(&mut self, info: Arc<PodInfo>, node: usize, assumed: bool) {
        let uid = info.uid.clone();
        if let Some(owner) = info.owner.as_ref().filter(|_| !info.terminating) {
            let spread = self.owners.entry(owner.clone()).or_default();
            *spread.per_node.entry(node).or_default() += 1;
            let zone = &self.nodes[node].details().zone;
            if !zone.is_empty() {
                *spread.per_zone.entry(zone.clone()).or_default() += 1;
            }
        }
        if !info.required_anti_affinity.is_empty() {
            self.anti_affinity.insert(uid.clone(), node);
        }
        if info.has_affinity() {
            self.affinity.insert(uid.clone(), node);
        }
        self.nodes[node].add_pod(info.clone());
        self.pods.insert(
            uid,
            Placed {
                node,
                info,
                assumed,
            },
        );
    }

    fn unplace(&mut self, uid: &str) -> Option<Placed> {
        let placed = self.pods.remove(uid)?;
        let info = &placed.info;
        if let Some(owner) = info.owner.as_ref().filter(|_| !info.terminating) {
            if let Some(spread) = self.owners.get_mut(owner) {
                decrement(&mut spread.per_node, &placed.node);
                let zone = &self.nodes[placed.node].details().zone;
                if !zone.is_empty() {
                    decrement(&mut spread.per_zone, zone);
                }
                if spread.per_node.is_empty() {
                    self.owners.remove(owner);
                }
            }
        }
        self.anti_affinity.remove(uid);
        self.affinity.remove(uid);
        self.nodes[placed.node].remove_pod(uid);
        Some(placed)
    }

    /// A pod the informer shows bound to a node (new, changed, or confirming an
    /// assumed pod).
    pub fn add_pod(&mut self, info: Arc<PodInfo>) {
        let node = self.entry(&info.node_name);
        self.unplace(&info.uid);
        self.remove_nomination(&info.uid);
        self.place(info, node, false);
    }

    /// A pod is gone (deleted, or no longer bound). Returns whether it was counted.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        self.remove_nomination(uid);
        self.unplace(uid).is_some()
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// Count `info` on `node` before its binding is written.
    pub fn assume(&mut self, info: Arc<PodInfo>, node: usize) {
        self.remove_nomination(&info.uid);
        self.unplace(&info.uid);
        self.place(info, node, true);
    }

    /// The binding failed: the assumed pod no longer counts.
    pub fn forget(&mut self, uid: &str) {
        if self.is_assumed(uid) {
            self.unplace(uid);
        }
    }

    /// Pods of `owner` on node `i`.
    pub fn owner_on_node(&self, owner: &str, i: usize) -> u32 {
        self.owners
            .get(owner)
            .and_then(|s| s.per_node.get(&i))
            .copied()
            .unwrap_or(0)
    }

    /// Pods of `owner` in `zone`.
    pub fn owner_in_zone(&self, owner: &str, zone: &str) -> u32 {
        self.owners
            .get(owner)
            .and_then(|s| s.per_zone.get(zone))
            .copied()
            .unwrap_or(0)
    }

    /// Placed pods with required anti-affinity terms, with their node.
    pub fn anti_affinity_pods(&self) -> impl Iterator<Item = (&NodeInfo, &Arc<PodInfo>)> {
        self.indexed(&self.anti_affinity)
    }

    /// Placed pods with any inter-pod affinity term, with their node.
    pub fn affinity_pods(&self) -> impl Iterator<Item = (&NodeInfo, &Arc<PodInfo>)> {
        self.indexed(&self.affinity)
    }

    fn indexed<'a>(
        &'a self,
        set: &'a HashMap<String, usize>,
    ) -> impl Iterator<Item = (&'a NodeInfo, &'a Arc<PodInfo>)> {
        set.iter().filter_map(|(uid, node)| {
            let n = &self.nodes[*node];
            Some((n, &self.pods.get(uid)?.info))
        })
    }

    /// Record that a pending pod waits for room on `node` (preemption).
    pub fn nominate(&mut self, info: Arc<PodInfo>, node: usize) {
        self.remove_nomination(&info.uid);
        self.nominated_by_node
            .entry(node)
            .or_default()
            .insert(info.uid.clone());
        self.nominated.insert(info.uid.clone(), (node, info));
    }

    pub fn remove_nomination(&mut self, uid: &str) {
        if let Some((node, _)) = self.nominated.remove(uid) {
            if let Some(set) = self.nominated_by_node.get_mut(&node) {
                set.remove(uid);
                if set.is_empty() {
                    self.nominated_by_node.remove(&node);
                }
            }
        }
    }

    /// Pods nominated to node `i`.
    pub fn nominated_on(&self, i: usize) -> impl Iterator<Item = &Arc<PodInfo>> {
        let none = self.nominated_by_node.is_empty();
        (!none)
            .then(|| self.nominated_by_node.get(&i))
            .flatten()
            .into_iter()
            .flatten()
            .filter_map(|uid| self.nominated.get(uid).map(|(_, p)| p))
    }
}

fn decrement<K, Q>(map: &mut HashMap<K, u32>, key: &Q)
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    if let Some(n) = map.get_mut(key) {
        *n -= 1;
        if *n == 0 {
            map.remove(key);
        }
    }
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use serde_json::{json, Value};

    /// A ready node with `cpu` cores, 16Gi and 110 pods, plus extra labels.
    pub fn node(name: &str, cpu: &str, labels: Value) -> Node {
        let mut l = json!({"kubernetes.io/hostname": name});
        for (k, v) in labels.as_object().cloned().unwrap_or_default() {
            l[k] = v;
        }
        serde_json::from_value(json!({
            "metadata": {"name": name, "labels": l},
            "status": {"allocatable": {"cpu": cpu, "memory": "16Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap()
    }

    pub fn cache(nodes: &[Node]) -> Cache {
        let mut c = Cache::default();
        for n in nodes {
            c.upsert_node(n);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{cache, node};
    use super::*;
    use crate::nodeinfo::ZONE_LABEL;
    use crate::podinfo::testing::pod;
    use serde_json::json;

    fn owned(name: &str, node: &str) -> Arc<PodInfo> {
        Arc::new(pod(json!({
            "metadata": {"name": name, "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "1"}}}]}
        })))
    }

    #[test]
    fn assume_confirm_forget() {
        let mut c = cache(&[
            node("n1", "4", json!({ZONE_LABEL: "a"})),
            node("n2", "4", json!({ZONE_LABEL: "a"})),
        ]);
        assert_eq!(c.node_count(), 2);
        let p = owned("a", "");
        c.assume(p.clone(), 0);
        assert!(c.is_assumed(&p.uid));
        assert_eq!(c.node(0).requested.milli_cpu, 1000);
        assert_eq!(c.owner_on_node("rs-1", 0), 1);
        assert_eq!(c.owner_in_zone("rs-1", ":\x00:a"), 1);
        // The informer shows it bound: confirmed, counted once.
        c.add_pod(owned("a", "n1"));
        assert!(!c.is_assumed(&p.uid));
        assert_eq!(c.node(0).requested.milli_cpu, 1000);
        assert_eq!(c.owner_in_zone("rs-1", ":\x00:a"), 1);
        // A second one forgotten after a failed binding.
        let q = owned("b", "");
        c.assume(q.clone(), 1);
        c.forget(&q.uid);
        assert_eq!(c.node(1).requested.milli_cpu, 0);
        assert_eq!(c.owner_in_zone("rs-1", ":\x00:a"), 1);
        assert!(c.remove_pod(&p.uid));
        assert_eq!(c.owner_on_node("rs-1", 0), 0);
        assert!(c.owners.is_empty());
    }

    #[test]
    fn pods_on_unknown_nodes_and_zone_changes() {
        let mut c = cache(&[]);
        c.add_pod(owned("a", "later"));
        assert_eq!(c.node_count(), 0);
        assert_eq!(c.node(0).requested.milli_cpu, 1000);
        assert_eq!(
            c.upsert_node(&node("later", "4", json!({ZONE_LABEL: "z1"}))),
            NodeChange::Added
        );
        assert_eq!(c.owner_in_zone("rs-1", ":\x00:z1"), 1);
        assert_eq!(
            c.upsert_node(&node("later", "4", json!({ZONE_LABEL: "z1"}))),
            NodeChange::Unchanged
        );
        assert_eq!(
            c.upsert_node(&node("later", "4", json!({ZONE_LABEL: "z2"}))),
            NodeChange::Updated
        );
        assert_eq!(c.owner_in_zone("rs-1", ":\x00:z1"), 0);
        assert_eq!(c.owner_in_zone("rs-1", ":\x00:z2"), 1);
        c.remove_node("later");
        assert_eq!(c.node_count(), 0);
        assert_eq!(c.owner_in_zone("rs-1", ":\x00:z2"), 0);
    }
}
