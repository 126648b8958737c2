//! NodeAffinity: `spec.nodeSelector` and
//! `requiredDuringSchedulingIgnoredDuringExecution` node affinity (In, NotIn, Exists,
//! DoesNotExist, Gt, Lt on labels; `matchFields` on `metadata.name`).

use crate::framework::{Context, CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;
use keelson_component::scheduling::any_term_matches;

pub struct NodeAffinity;

const NAME: &str = "NodeAffinity";

/// Whether the node satisfies the pod's node selector and required node affinity.
pub fn matches_node_selector_and_affinity(pod: &PodInfo, node: &NodeInfo) -> bool {
    let labels = node.labels();
    pod.node_selector
        .iter()
        .all(|(k, v)| labels.get(k) == Some(v))
        && pod
            .required_node_terms
            .as_ref()
            .is_none_or(|terms| any_term_matches(terms, &node.name, labels))
}

impl FilterPlugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        if matches_node_selector_and_affinity(cx.pod, node) {
            Ok(())
        } else {
            Err(Status::unresolvable(
                NAME,
                "node(s) didn't match Pod's node affinity/selector",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testing::{cache, node};
    use crate::filters::testing::{reason, run};
    use crate::podinfo::testing::pod;
    use serde_json::json;

    #[test]
    fn selector_and_required_terms() {
        let c = cache(&[
            node("n1", "1", json!({"disk": "ssd", "cores": "8"})),
            node("n2", "1", json!({"disk": "hdd", "cores": "2"})),
        ]);
        let sel = pod(json!({"spec": {"containers": [], "nodeSelector": {"disk": "ssd"}}}));
        assert_eq!(reason(run(&NodeAffinity, &c, &sel, 0)), "ok");
        assert_eq!(
            reason(run(&NodeAffinity, &c, &sel, 1)),
            "node(s) didn't match Pod's node affinity/selector"
        );
        let aff = pod(
            json!({"spec": {"containers": [], "affinity": {"nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "cores", "operator": "Lt", "values": ["4"]}]},
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["nX"]}]}]}}}}}),
        );
        assert_eq!(
            reason(run(&NodeAffinity, &c, &aff, 0)),
            "node(s) didn't match Pod's node affinity/selector"
        );
        assert_eq!(reason(run(&NodeAffinity, &c, &aff, 1)), "ok");
    }
}
