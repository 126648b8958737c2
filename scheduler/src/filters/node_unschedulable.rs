//! NodeUnschedulable: no new pods on a cordoned node (`spec.unschedulable`), unless the
//! pod tolerates `node.kubernetes.io/unschedulable:NoSchedule`.

use crate::framework::{Context, CycleState, FilterPlugin, Status};
use crate::labels::taint;
use crate::nodeinfo::NodeInfo;
use keelson_component::scheduling::tolerated;

pub struct NodeUnschedulable;

const NAME: &str = "NodeUnschedulable";
pub const TAINT: &str = "node.kubernetes.io/unschedulable";

impl FilterPlugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        if node.details().unschedulable
            && !tolerated(&cx.pod.tolerations, &taint(TAINT, "", "NoSchedule"))
        {
            return Err(Status::unresolvable(NAME, "node(s) were unschedulable"));
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
    fn cordoned_nodes_unless_tolerated() {
        let mut n = node("n1", "1", json!({}));
        n.spec = Some(serde_json::from_value(json!({"unschedulable": true})).unwrap());
        let c = cache(&[n]);
        assert_eq!(
            reason(run(&NodeUnschedulable, &c, &pod(json!({})), 0)),
            "node(s) were unschedulable"
        );
        let tolerant = pod(json!({"spec": {"containers": [], "tolerations": [
            {"key": TAINT, "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert_eq!(reason(run(&NodeUnschedulable, &c, &tolerant, 0)), "ok");
    }
}
