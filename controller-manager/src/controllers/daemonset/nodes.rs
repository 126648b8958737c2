//! Which nodes a DaemonSet's pods belong on (Kubernetes' `NodeShouldRunDaemonPod`),
//! the tolerations every daemon pod gets, and how a pod is pinned to its node: a
//! required node affinity `matchFields metadata.name In [node]` that the scheduler
//! honours, rather than `nodeName`.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, Toleration,
};

use keelson_component::scheduling::{any_term_matches, tolerates};

const NAME_FIELD: &str = "metadata.name";

/// Tolerations Kubernetes adds to daemon pods, so that node conditions do not evict or
/// keep them off: (key, effect).
const DAEMON_TOLERATIONS: &[(&str, &str)] = &[
    ("node.kubernetes.io/not-ready", "NoExecute"),
    ("node.kubernetes.io/unreachable", "NoExecute"),
    ("node.kubernetes.io/disk-pressure", "NoSchedule"),
    ("node.kubernetes.io/memory-pressure", "NoSchedule"),
    ("node.kubernetes.io/pid-pressure", "NoSchedule"),
    ("node.kubernetes.io/unschedulable", "NoSchedule"),
];

/// Add (or replace an equivalent of) every daemon toleration, and
/// `network-unavailable` for host-network pods.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    let mut wanted: Vec<(&str, &str)> = DAEMON_TOLERATIONS.to_vec();
    if spec.host_network == Some(true) {
        wanted.push(("node.kubernetes.io/network-unavailable", "NoSchedule"));
    }
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    for (key, effect) in wanted {
        let t = Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(effect.into()),
            ..Default::default()
        };
        // Same key, operator, value and effect: replace (drops tolerationSeconds).
        let same = |o: &Toleration| {
            o.key == t.key
                && o.operator == t.operator
                && o.value.as_deref().unwrap_or("").is_empty()
                && o.effect == t.effect
        };
        match tolerations.iter_mut().find(|o| same(o)) {
            Some(o) => *o = t,
            None => tolerations.push(t),
        }
    }
}

/// What decides where a DaemonSet's pods run, taken once from its template.
pub struct Placement {
    node_name: Option<String>,
    node_selector: BTreeMap<String, String>,
    required: Option<Vec<NodeSelectorTerm>>,
    tolerations: Vec<Toleration>,
}

impl Placement {
    pub fn new(ds: &DaemonSet) -> Placement {
        let mut spec = ds
            .spec
            .as_ref()
            .and_then(|s| s.template.spec.clone())
            .unwrap_or_default();
        add_daemon_tolerations(&mut spec);
        Placement {
            node_name: spec.node_name.filter(|n| !n.is_empty()),
            node_selector: spec.node_selector.unwrap_or_default(),
            required: spec
                .affinity
                .and_then(|a| a.node_affinity)
                .and_then(|a| a.required_during_scheduling_ignored_during_execution)
                .map(|s| s.node_selector_terms),
            tolerations: spec.tolerations.unwrap_or_default(),
        }
    }

    /// (should a daemon pod run here, may an existing one keep running here). A node
    /// that stops matching loses its pod; one that gains an untolerated taint keeps it
    /// unless the taint is NoExecute.
    pub fn should_run(&self, node: &Node) -> (bool, bool) {
        let name = node.metadata.name.as_deref().unwrap_or_default();
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if self.node_name.as_deref().is_some_and(|n| n != name) {
            return (false, false);
        }
        let selected = self
            .node_selector
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v));
        let affine = self
            .required
            .as_ref()
            .is_none_or(|terms| any_term_matches(terms, name, &labels));
        if !selected || !affine {
            return (false, false);
        }
        let untolerated = |effects: &[&str]| {
            let taints = node.spec.as_ref().and_then(|s| s.taints.as_deref());
            taints.unwrap_or_default().iter().any(|taint| {
                effects.contains(&taint.effect.as_str())
                    && !self.tolerations.iter().any(|t| tolerates(t, taint))
            })
        };
        if untolerated(&["NoSchedule", "NoExecute"]) {
            return (false, !untolerated(&["NoExecute"]));
        }
        (true, true)
    }
}

/// The node a daemon pod is for: its `nodeName` once bound, else the node its
/// `matchFields` affinity names.
pub fn target_node(pod: &Pod) -> Option<&str> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_deref().filter(|n| !n.is_empty()) {
        return Some(n);
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms
        .iter()
        .flat_map(|t| t.match_fields.iter().flatten())
        .find(|f| f.key == NAME_FIELD && f.operator == "In")
        .and_then(|f| match f.values.as_deref() {
            Some([one]) => Some(one.as_str()),
            _ => None,
        })
}

/// Pin the pod to `node`: its required node affinity becomes the one term
/// `metadata.name In [node]` (the controller has already checked the rest).
pub fn pin_to_node(spec: &mut PodSpec, node: &str) {
    let term = NodeSelectorTerm {
        match_expressions: None,
        match_fields: Some(vec![NodeSelectorRequirement {
            key: NAME_FIELD.into(),
            operator: "In".into(),
            values: Some(vec![node.to_string()]),
        }]),
    };
    let affinity = spec.affinity.get_or_insert_with(Affinity::default);
    let node_affinity = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    node_affinity.required_during_scheduling_ignored_during_execution = Some(NodeSelector {
        node_selector_terms: vec![term],
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({"metadata": {"name": "d"}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": spec}}}))
        .unwrap()
    }

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(json!({"metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints}}))
        .unwrap()
    }

    #[test]
    fn selectors_affinity_and_taints() {
        let p = Placement::new(&ds(
            json!({"containers": [], "nodeSelector": {"role": "worker"},
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["z9"]}]}]}}}}),
        ));
        let worker = |taints| node("n1", json!({"role": "worker", "zone": "z1"}), taints);
        assert_eq!(p.should_run(&worker(json!([]))), (true, true));
        assert_eq!(
            p.should_run(&node("n2", json!({"role": "db"}), json!([]))),
            (false, false)
        );
        assert_eq!(
            p.should_run(&node(
                "n3",
                json!({"role": "worker", "zone": "z9"}),
                json!([])
            )),
            (false, false)
        );
        let no_schedule = json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]);
        assert_eq!(p.should_run(&worker(no_schedule)), (false, true));
        let no_execute = json!([{"key": "dedicated", "effect": "NoExecute"}]);
        assert_eq!(p.should_run(&worker(no_execute)), (false, false));
        // Node conditions' taints are tolerated by every daemon pod.
        let not_ready = json!([{"key": "node.kubernetes.io/not-ready", "effect": "NoExecute"},
            {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]);
        assert_eq!(p.should_run(&worker(not_ready)), (true, true));
        // A matching toleration.
        let p = Placement::new(&ds(json!({"containers": [], "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]})));
        let tainted = node(
            "n1",
            json!({}),
            json!([{"key": "dedicated", "value": "x", "effect": "NoSchedule"}]),
        );
        assert_eq!(p.should_run(&tainted), (true, true));
    }

    #[test]
    fn pinning_and_target_node() {
        let mut spec: PodSpec = serde_json::from_value(json!({"containers": [], "hostNetwork": true,
            "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                "nodeSelectorTerms": [{"matchExpressions": [{"key": "x", "operator": "Exists"}]}]}}},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                "effect": "NoExecute", "tolerationSeconds": 300}]}))
        .unwrap();
        pin_to_node(&mut spec, "n7");
        add_daemon_tolerations(&mut spec);
        let v = serde_json::to_value(&spec).unwrap();
        assert_eq!(
            v["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["n7"]}]}]})
        );
        let tolerations = v["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 7);
        assert!(tolerations[0].get("tolerationSeconds").is_none());
        assert!(tolerations
            .iter()
            .any(|t| t["key"] == "node.kubernetes.io/network-unavailable"));
        let pod = Pod {
            spec: Some(spec),
            ..Default::default()
        };
        assert_eq!(target_node(&pod), Some("n7"));
    }
}
