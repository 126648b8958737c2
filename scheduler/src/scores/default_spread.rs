//! Default spreading: pods of one ReplicaSet, ReplicationController or StatefulSet
//! spread over nodes and zones, as Kubernetes' PodTopologySpread does with its system
//! default constraints (`kubernetes.io/hostname` maxSkew 3 and
//! `topology.kubernetes.io/zone` maxSkew 5, both ScheduleAnyway) for pods that declare
//! no constraints of their own. Pods are grouped by their controller (the owner's
//! selector selects exactly its pods); the cache keeps the counts per node and zone, so
//! scoring a node is O(1).

use std::collections::HashSet;

use crate::framework::{Context, CycleState, ScorePlugin};
use crate::nodeinfo::NodeInfo;
use crate::scores::pod_topology_spread::{normalize_spread, score_for_count, topology_weight};

pub struct DefaultSpread;

const HOSTNAME_MAX_SKEW: i32 = 3;
const ZONE_MAX_SKEW: i32 = 5;

#[derive(Clone)]
struct Weights {
    hostname: f64,
    zone: f64,
}

impl ScorePlugin for DefaultSpread {
    fn name(&self) -> &'static str {
        "PodTopologySpread"
    }

    fn weight(&self) -> i64 {
        2
    }

    fn pre_score(&self, cx: Context, state: &mut CycleState, nodes: &[&NodeInfo]) -> bool {
        if !cx.pod.spread.is_empty() || cx.pod.owner.is_none() {
            return false;
        }
        let zones: HashSet<&str> = nodes
            .iter()
            .map(|n| n.details().zone.as_str())
            .filter(|z| !z.is_empty())
            .collect();
        state.insert(Weights {
            hostname: topology_weight(nodes.len()),
            zone: topology_weight(zones.len()),
        });
        true
    }

    fn score(&self, cx: Context, state: &CycleState, node: &NodeInfo) -> i64 {
        let (Some(w), Some(owner)) = (state.get::<Weights>(), cx.pod.owner.as_deref()) else {
            return 0;
        };
        let on_node = cx.cache.owner_on_node(owner, node.index);
        let mut score = score_for_count(i64::from(on_node), HOSTNAME_MAX_SKEW, w.hostname);
        let zone = &node.details().zone;
        if !zone.is_empty() {
            let in_zone = cx.cache.owner_in_zone(owner, zone);
            score += score_for_count(i64::from(in_zone), ZONE_MAX_SKEW, w.zone);
        }
        score.round() as i64
    }

    fn normalize(&self, _: &CycleState, scores: &mut [i64]) {
        normalize_spread(scores);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, node};
    use crate::nodeinfo::ZONE_LABEL;
    use crate::podinfo::testing::pod;
    use crate::scores::testing::scores;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn spreads_an_owner_over_nodes_and_zones() {
        let mut c = cache(&[
            node("a1", "4", json!({ZONE_LABEL: "a"})),
            node("a2", "4", json!({ZONE_LABEL: "a"})),
            node("b1", "4", json!({ZONE_LABEL: "b"})),
        ]);
        let owned = |n: &str| {
            pod(json!({"metadata": {"name": n, "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "rs-1", "controller": true}]}}))
        };
        c.assume(Arc::new(owned("r1")), 0);
        let s = scores(&DefaultSpread, &c, &owned("r2")).unwrap();
        // b1 (empty zone) beats a2 (empty node, busy zone) beats a1.
        assert!(s[2] > s[1] && s[1] > s[0], "{s:?}");
        assert_eq!(s[2], 100);
        assert!(
            scores(&DefaultSpread, &c, &pod(json!({}))).is_none(),
            "no owner"
        );
    }
}
