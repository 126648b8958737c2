//! NodeName: a pod that names its node (`spec.nodeName`) fits only there. The scheduler
//! only places pods without one, so this matters for preemption's dry runs and for
//! completeness.

use crate::framework::{Context, CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;

pub struct NodeName;

const NAME: &str = "NodeName";

impl FilterPlugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        if !cx.pod.node_name.is_empty() && cx.pod.node_name != node.name {
            return Err(Status::unresolvable(
                NAME,
                "node(s) didn't match the requested node name",
            ));
        }
        Ok(())
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
    fn only_the_named_node() {
        let c = cache(&[node("n1", "1", json!({})), node("n2", "1", json!({}))]);
        let p = pod(json!({"spec": {"containers": [], "nodeName": "n2"}}));
        assert_eq!(
            reason(run(&NodeName, &c, &p, 0)),
            "node(s) didn't match the requested node name"
        );
        assert_eq!(reason(run(&NodeName, &c, &p, 1)), "ok");
    }
}
