//! [`NodeInfo`]: one node as the filters see it: its scheduling-relevant properties and
//! running totals over the pods bound (or assumed) to it, kept incrementally.

use std::sync::{Arc, LazyLock};

use k8s_openapi::api::core::v1::{Node, Taint};

use crate::labels::Labels;
use crate::podinfo::{HostPort, PodInfo};
use crate::resources::Resource;

pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// The node's `Ready` condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ready {
    True,
    /// `False`, or no `Ready` condition at all.
    False,
    Unknown,
}

/// What scheduling reads from a Node object.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeDetails {
    pub labels: Labels,
    pub taints: Vec<Taint>,
    pub unschedulable: bool,
    pub ready: Ready,
    pub allocatable: Resource,
    /// Region and zone (`utilnode.GetZoneKey`); empty when the node has neither.
    pub zone: String,
}

impl NodeDetails {
    pub fn new(node: &Node) -> NodeDetails {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        let spec = node.spec.as_ref();
        let status = node.status.as_ref();
        let ready = status
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .map_or(Ready::False, |c| match c.status.as_str() {
                "True" => Ready::True,
                "Unknown" => Ready::Unknown,
                _ => Ready::False,
            });
        let region = labels.get(REGION_LABEL).map_or("", String::as_str);
        let zone = labels.get(ZONE_LABEL).map_or("", String::as_str);
        NodeDetails {
            zone: if region.is_empty() && zone.is_empty() {
                String::new()
            } else {
                format!("{region}:\x00:{zone}")
            },
            taints: spec.and_then(|s| s.taints.clone()).unwrap_or_default(),
            unschedulable: spec.and_then(|s| s.unschedulable).unwrap_or(false),
            ready,
            allocatable: status
                .and_then(|s| s.allocatable.as_ref())
                .map(Resource::from_list)
                .unwrap_or_default(),
            labels,
        }
    }
}

static NO_DETAILS: LazyLock<NodeDetails> = LazyLock::new(|| NodeDetails {
    labels: Labels::new(),
    taints: Vec::new(),
    unschedulable: false,
    ready: Ready::False,
    allocatable: Resource::default(),
    zone: String::new(),
});

/// A node and the pods on it.
#[derive(Debug, Clone)]
pub struct NodeInfo {
    /// Stable position in the cache.
    pub index: usize,
    pub name: String,
    /// `None` while pods name a node the cache has not seen (or that was deleted).
    pub node: Option<NodeDetails>,
    /// The sum of the pods' requests.
    pub requested: Resource,
    /// CPU and memory with scoring defaults for pods that request none.
    pub non_zero_requested: (i64, i64),
    pub pods: Vec<Arc<PodInfo>>,
    pub used_ports: Vec<HostPort>,
    /// Pods with any inter-pod (anti-)affinity term.
    pub affinity_pods: usize,
}

impl NodeInfo {
    pub fn new(index: usize, name: &str) -> NodeInfo {
        NodeInfo {
            index,
            name: name.to_string(),
            node: None,
            requested: Resource::default(),
            non_zero_requested: (0, 0),
            pods: Vec::new(),
            used_ports: Vec::new(),
            affinity_pods: 0,
        }
    }

    /// The node's properties (empty ones for a node the cache has not seen).
    pub fn details(&self) -> &NodeDetails {
        self.node.as_ref().unwrap_or(&NO_DETAILS)
    }

    pub fn labels(&self) -> &Labels {
        &self.details().labels
    }

    pub fn add_pod(&mut self, p: Arc<PodInfo>) {
        self.requested.add(&p.requests);
        self.non_zero_requested.0 += p.non_zero.0;
        self.non_zero_requested.1 += p.non_zero.1;
        self.used_ports.extend(p.host_ports.iter().cloned());
        if p.has_affinity() {
            self.affinity_pods += 1;
        }
        self.pods.push(p);
    }

    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let p = self.pods.swap_remove(i);
        self.requested.sub(&p.requests);
        self.non_zero_requested.0 -= p.non_zero.0;
        self.non_zero_requested.1 -= p.non_zero.1;
        for hp in &p.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        if p.has_affinity() {
            self.affinity_pods -= 1;
        }
        Some(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::testing::pod;
    use serde_json::json;

    #[test]
    fn details_and_totals() {
        let node: Node = serde_json::from_value(json!({
            "metadata": {"name": "n1", "labels": {ZONE_LABEL: "a"}},
            "spec": {"unschedulable": true},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "110"},
                       "conditions": [{"type": "Ready", "status": "True"}]}
        }))
        .unwrap();
        let d = NodeDetails::new(&node);
        assert_eq!(d.ready, Ready::True);
        assert!(d.unschedulable);
        assert_eq!(d.zone, ":\x00:a");
        assert_eq!(d.allocatable.milli_cpu, 2000);

        let mut ni = NodeInfo::new(0, "n1");
        let p = Arc::new(pod(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": "500m"}}, "ports": [{"containerPort": 1, "hostPort": 80}]}]}}),
        ));
        ni.add_pod(p.clone());
        assert_eq!(ni.requested.milli_cpu, 500);
        assert_eq!(
            ni.non_zero_requested,
            (500, crate::resources::DEFAULT_MEMORY_REQUEST)
        );
        assert_eq!(ni.used_ports.len(), 1);
        assert!(ni.remove_pod(&p.uid).is_some());
        assert_eq!(ni.requested, Resource::default());
        assert!(ni.used_ports.is_empty());
        assert!(ni.remove_pod(&p.uid).is_none());
    }
}
