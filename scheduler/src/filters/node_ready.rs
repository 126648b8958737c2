//! NodeReady: a node whose `Ready` condition is not `True` takes no new pods.
//!
//! Kubernetes gets this from the node lifecycle controller, which taints such nodes
//! `node.kubernetes.io/not-ready:NoSchedule` (or `unreachable` when the condition is
//! `Unknown`) for TaintToleration to act on. This filter applies the same taint
//! before the controller has (or without one), so the message is the same either way
//! and a pod that tolerates the taint may still go there.

use crate::framework::{Context, CycleState, FilterPlugin, Status};
use crate::labels::taint;
use crate::nodeinfo::{NodeInfo, Ready};
use keelson_component::scheduling::tolerated;

pub struct NodeReady;

const NAME: &str = "NodeReady";
pub const NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

impl FilterPlugin for NodeReady {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let key = match node.details().ready {
            Ready::True => return Ok(()),
            Ready::False => NOT_READY,
            Ready::Unknown => UNREACHABLE,
        };
        if tolerated(&cx.pod.tolerations, &taint(key, "", "NoSchedule")) {
            return Ok(());
        }
        Err(Status::unresolvable(
            NAME,
            format!("node(s) had untolerated taint {{{key}: }}"),
        ))
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
    fn not_ready_nodes_as_if_tainted() {
        let mut n = node("n1", "1", json!({}));
        n.status.as_mut().unwrap().conditions = None;
        let mut u = node("n2", "1", json!({}));
        u.status.as_mut().unwrap().conditions =
            Some(serde_json::from_value(json!([{"type": "Ready", "status": "Unknown"}])).unwrap());
        let c = cache(&[n, u, node("n3", "1", json!({}))]);
        let p = pod(json!({}));
        assert_eq!(
            reason(run(&NodeReady, &c, &p, 0)),
            "node(s) had untolerated taint {node.kubernetes.io/not-ready: }"
        );
        assert_eq!(
            reason(run(&NodeReady, &c, &p, 1)),
            "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
        );
        assert_eq!(reason(run(&NodeReady, &c, &p, 2)), "ok");
        let tolerant =
            pod(json!({"spec": {"containers": [], "tolerations": [{"operator": "Exists"}]}}));
        assert_eq!(reason(run(&NodeReady, &c, &tolerant, 0)), "ok");
    }
}
