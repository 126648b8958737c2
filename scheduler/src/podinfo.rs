//! [`PodInfo`]: what the scheduler needs of a pod, parsed once per informer event
//! (requests in integer units, compiled selectors), so filters and scores never parse.

use std::collections::HashSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{NodeSelectorTerm, Pod, PodAffinityTerm, Toleration};

use crate::labels::{Labels, Selector};
use crate::resources::{pod_non_zero_requests, pod_requests, Resource};

/// A `hostPort` a pod uses.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub protocol: String,
    /// `""` and `0.0.0.0` mean every address.
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    fn wildcard(&self) -> bool {
        self.ip.is_empty() || self.ip == "0.0.0.0"
    }

    /// Whether two ports cannot both be used on one node.
    pub fn conflicts(&self, o: &HostPort) -> bool {
        self.port == o.port
            && self.protocol == o.protocol
            && (self.ip == o.ip || self.wildcard() || o.wildcard())
    }
}

/// A pod (anti-)affinity term with its namespaces resolved against the pod it is on.
#[derive(Debug, Clone)]
pub struct AffinityTerm {
    pub selector: Selector,
    pub namespaces: HashSet<String>,
    /// Namespaces whose labels match also count (`namespaceSelector`).
    pub namespace_selector: Option<Selector>,
    pub topology_key: String,
    pub weight: i32,
}

impl AffinityTerm {
    fn new(owner: &Pod, t: &PodAffinityTerm, weight: i32) -> AffinityTerm {
        let mut namespaces: HashSet<String> = t.namespaces.iter().flatten().cloned().collect();
        if namespaces.is_empty() && t.namespace_selector.is_none() {
            namespaces.insert(owner.metadata.namespace.clone().unwrap_or_default());
        }
        let mut selector = Selector::new(t.label_selector.as_ref());
        let labels = owner.metadata.labels.as_ref();
        for key in t.match_label_keys.iter().flatten() {
            if let Some(v) = labels.and_then(|l| l.get(key)) {
                selector.require(key, v);
            }
        }
        AffinityTerm {
            selector,
            namespaces,
            namespace_selector: t
                .namespace_selector
                .as_ref()
                .map(|s| Selector::new(Some(s))),
            topology_key: t.topology_key.clone(),
            weight,
        }
    }

    /// Whether `pod` (in a namespace with `ns_labels`) is one this term selects.
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&Labels>) -> bool {
        let ns_ok = self.namespaces.contains(&pod.namespace)
            || self
                .namespace_selector
                .as_ref()
                .is_some_and(|s| s.matches(ns_labels.unwrap_or(&Labels::new())));
        ns_ok && self.selector.matches(&pod.labels)
    }
}

/// A topology spread constraint with its selector compiled.
#[derive(Debug, Clone)]
pub struct SpreadConstraint {
    pub max_skew: i32,
    pub topology_key: String,
    pub selector: Selector,
    pub min_domains: i32,
    /// `whenUnsatisfiable: DoNotSchedule` (a filter) rather than `ScheduleAnyway` (a score).
    pub hard: bool,
    /// `nodeAffinityPolicy: Honor` (default): only nodes matching the pod's node
    /// affinity and selector are domains.
    pub honor_node_affinity: bool,
}

/// A pod, parsed for scheduling.
#[derive(Debug, Clone)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub node_name: String,
    pub scheduler_name: String,
    pub priority: i32,
    pub preempt_never: bool,
    pub terminating: bool,
    pub gated: bool,
    /// Creation time in seconds since the epoch (orders the queue after priority).
    pub created: i64,
    pub nominated_node: String,
    /// The controlling ReplicaSet, ReplicationController or StatefulSet, for default
    /// spreading.
    pub owner: Option<String>,
    pub requests: Resource,
    /// CPU and memory with the scoring defaults for containers that request none.
    pub non_zero: (i64, i64),
    pub host_ports: Vec<HostPort>,
    pub tolerations: Vec<Toleration>,
    pub node_selector: Labels,
    pub required_node_terms: Option<Vec<NodeSelectorTerm>>,
    pub preferred_node_terms: Vec<(i32, NodeSelectorTerm)>,
    pub required_affinity: Vec<AffinityTerm>,
    pub required_anti_affinity: Vec<AffinityTerm>,
    pub preferred_affinity: Vec<AffinityTerm>,
    pub preferred_anti_affinity: Vec<AffinityTerm>,
    pub spread: Vec<SpreadConstraint>,
}

impl PodInfo {
    pub fn new(pod: Arc<Pod>) -> PodInfo {
        let meta = &pod.metadata;
        let no_spec;
        let spec = match &pod.spec {
            Some(s) => s,
            None => {
                no_spec = k8s_openapi::api::core::v1::PodSpec::default();
                &no_spec
            }
        };
        let labels = meta.labels.clone().unwrap_or_default();
        let mut host_ports = Vec::new();
        for c in spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
        {
            for p in c.ports.iter().flatten() {
                if let Some(port) = p.host_port.filter(|p| *p > 0) {
                    host_ports.push(HostPort {
                        protocol: p.protocol.clone().unwrap_or_else(|| "TCP".into()),
                        ip: p.host_ip.clone().unwrap_or_default(),
                        port,
                    });
                }
            }
        }
        let affinity = spec.affinity.as_ref();
        let node_affinity = affinity.and_then(|a| a.node_affinity.as_ref());
        let pod_affinity = affinity.and_then(|a| a.pod_affinity.as_ref());
        let anti = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let terms = |ts: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            ts.into_iter()
                .flatten()
                .map(|t| AffinityTerm::new(&pod, t, 1))
                .collect()
        };
        let weighted = |ts: Option<&Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>>| {
            ts.into_iter()
                .flatten()
                .map(|w| AffinityTerm::new(&pod, &w.pod_affinity_term, w.weight))
                .collect::<Vec<_>>()
        };
        let spread = spec
            .topology_spread_constraints
            .iter()
            .flatten()
            .map(|c| {
                let mut selector = Selector::new(c.label_selector.as_ref());
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = labels.get(key) {
                        selector.require(key, v);
                    }
                }
                SpreadConstraint {
                    max_skew: c.max_skew.max(1),
                    topology_key: c.topology_key.clone(),
                    selector,
                    min_domains: c.min_domains.unwrap_or(1).max(1),
                    hard: c.when_unsatisfiable == "DoNotSchedule",
                    honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                }
            })
            .collect();
        let owner = meta
            .owner_references
            .iter()
            .flatten()
            .find(|o| {
                o.controller == Some(true)
                    && matches!(
                        o.kind.as_str(),
                        "ReplicaSet" | "ReplicationController" | "StatefulSet"
                    )
            })
            .map(|o| o.uid.clone());
        let status = pod.status.as_ref();
        PodInfo {
            uid: meta.uid.clone().unwrap_or_default(),
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            node_name: spec.node_name.clone().unwrap_or_default(),
            scheduler_name: spec
                .scheduler_name
                .clone()
                .unwrap_or_else(|| "default-scheduler".into()),
            priority: spec.priority.unwrap_or(0),
            preempt_never: spec.preemption_policy.as_deref() == Some("Never"),
            terminating: meta.deletion_timestamp.is_some(),
            gated: spec
                .scheduling_gates
                .as_ref()
                .is_some_and(|g| !g.is_empty()),
            created: meta
                .creation_timestamp
                .as_ref()
                .map_or(0, |t| t.0.as_second()),
            nominated_node: status
                .and_then(|s| s.nominated_node_name.clone())
                .unwrap_or_default(),
            owner,
            requests: pod_requests(spec),
            non_zero: pod_non_zero_requests(spec),
            host_ports,
            tolerations: spec.tolerations.clone().unwrap_or_default(),
            node_selector: spec.node_selector.clone().unwrap_or_default(),
            required_node_terms: node_affinity
                .and_then(|n| {
                    n.required_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .map(|s| s.node_selector_terms.clone()),
            preferred_node_terms: node_affinity
                .and_then(|n| {
                    n.preferred_during_scheduling_ignored_during_execution
                        .as_ref()
                })
                .into_iter()
                .flatten()
                .map(|p| (p.weight, p.preference.clone()))
                .collect(),
            required_affinity: terms(pod_affinity.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity: terms(anti.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity: weighted(pod_affinity.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity: weighted(anti.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            spread,
            labels,
            pod,
        }
    }

    /// Whether the pod has any inter-pod affinity or anti-affinity term.
    pub fn has_affinity(&self) -> bool {
        !self.required_affinity.is_empty()
            || !self.required_anti_affinity.is_empty()
            || !self.preferred_affinity.is_empty()
            || !self.preferred_anti_affinity.is_empty()
    }

    /// `namespace/name`, for logs and messages.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[cfg(test)]
pub(crate) mod testing {
    //! Small builders for unit tests.
    use super::*;
    use serde_json::{json, Value};

    pub fn pod(v: Value) -> PodInfo {
        let mut v = v;
        let meta = v
            .as_object_mut()
            .unwrap()
            .entry("metadata")
            .or_insert(json!({}));
        let m = meta.as_object_mut().unwrap();
        m.entry("namespace").or_insert(json!("default"));
        m.entry("name").or_insert(json!("p"));
        if !m.contains_key("uid") {
            let uid = format!("uid-{}", m["name"].as_str().unwrap());
            m.insert("uid".into(), json!(uid));
        }
        v.as_object_mut()
            .unwrap()
            .entry("spec")
            .or_insert(json!({"containers": []}));
        PodInfo::new(Arc::new(serde_json::from_value(v).unwrap()))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::pod;
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_ports_owner_and_terms() {
        let p = pod(json!({
            "metadata": {"name": "a", "labels": {"app": "web"},
                         "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]},
            "spec": {
                "containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}],
                "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                    {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}]}},
                "priority": 10
            }
        }));
        assert_eq!(
            p.host_ports,
            vec![HostPort {
                protocol: "TCP".into(),
                ip: String::new(),
                port: 8080
            }]
        );
        assert_eq!(p.owner.as_deref(), Some("rs-1"));
        assert_eq!(p.priority, 10);
        assert_eq!(p.required_anti_affinity.len(), 1);
        assert!(p.required_anti_affinity[0].matches(&p, None));
        assert!(p.has_affinity());
        let other_ns = pod(json!({"metadata": {"namespace": "x", "labels": {"app": "web"}}}));
        assert!(!p.required_anti_affinity[0].matches(&other_ns, None));
    }

    #[test]
    fn host_port_conflicts() {
        let hp = |ip: &str, port| HostPort {
            protocol: "TCP".into(),
            ip: ip.into(),
            port,
        };
        assert!(hp("", 80).conflicts(&hp("10.0.0.1", 80)));
        assert!(!hp("10.0.0.2", 80).conflicts(&hp("10.0.0.1", 80)));
        assert!(!hp("", 80).conflicts(&hp("", 81)));
    }
}
