//! TaintToleration: a node's `NoSchedule` and `NoExecute` taints keep off every pod that
//! does not tolerate them.

use crate::framework::{Context, CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use keelson_component::scheduling::tolerated;

pub struct TaintToleration;

const NAME: &str = "TaintToleration";

impl FilterPlugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let untolerated = node.details().taints.iter().find(|t| {
            (t.effect == "NoSchedule" || t.effect == "NoExecute")
                && !tolerated(&cx.pod.tolerations, t)
        });
        match untolerated {
            None => Ok(()),
            Some(t) => Err(Status::unresolvable(
                NAME,
                format!(
                    "node(s) had untolerated taint {{{}: {}}}",
                    t.key,
                    t.value.as_deref().unwrap_or("")
                ),
            )),
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
    fn untolerated_taints() {
        let mut n = node("n1", "1", json!({}));
        n.spec = Some(
            serde_json::from_value(json!({"taints": [
            {"key": "soft", "effect": "PreferNoSchedule"},
            {"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"},
            {"key": "gpu", "value": "yes", "effect": "NoExecute"}]}))
            .unwrap(),
        );
        let c = cache(&[n]);
        assert_eq!(
            reason(run(&TaintToleration, &c, &pod(json!({})), 0)),
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"
        );
        let some = pod(json!({"spec": {"containers": [], "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists", "effect": "NoSchedule"}]}}));
        assert_eq!(
            reason(run(&TaintToleration, &c, &some, 0)),
            "node(s) had untolerated taint {gpu: yes}"
        );
        let all = pod(json!({"spec": {"containers": [], "tolerations": [
            {"key": "node-role.kubernetes.io/control-plane", "operator": "Exists"},
            {"key": "gpu", "operator": "Equal", "value": "yes"}]}}));
        assert_eq!(reason(run(&TaintToleration, &c, &all, 0)), "ok");
    }
}
