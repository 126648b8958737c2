//! NodePorts: a `hostPort` (protocol, address, port) can be used by one pod per node.

use crate::framework::{Context, CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;

pub struct NodePorts;

const NAME: &str = "NodePorts";

impl FilterPlugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let taken = cx
            .pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if taken {
            Err(Status::unschedulable(
                NAME,
                "node(s) didn't have free ports for the requested pod ports",
            ))
        } else {
            Ok(())
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
    use std::sync::Arc;

    #[test]
    fn host_port_conflicts() {
        let mut c = cache(&[node("n1", "1", json!({}))]);
        let with_port = |name: &str, port: i32| {
            pod(json!({"metadata": {"name": name}, "spec": {"containers": [
                {"name": "c", "ports": [{"containerPort": 80, "hostPort": port}]}]}}))
        };
        c.assume(Arc::new(with_port("a", 8080)), 0);
        assert_eq!(
            reason(run(&NodePorts, &c, &with_port("b", 8080), 0)),
            "node(s) didn't have free ports for the requested pod ports"
        );
        assert_eq!(reason(run(&NodePorts, &c, &with_port("b", 8081), 0)), "ok");
    }
}
