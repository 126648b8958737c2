//! NodeResourcesFit: the pod's requests fit in what the node has left (allocatable minus
//! the requests of the pods already there): the pod count, cpu, memory,
//! ephemeral-storage and extended resources. A request larger than the whole node is
//! unresolvable (preemption cannot help).

use crate::framework::{Code, Context, CycleState, FilterPlugin, Status};
use crate::nodeinfo::NodeInfo;
use crate::podinfo::PodInfo;

pub struct NodeResourcesFit;

const NAME: &str = "NodeResourcesFit";

/// Each shortage: its reason and whether the node could never hold the request.
pub fn insufficient(pod: &PodInfo, node: &NodeInfo) -> Vec<(String, bool)> {
    let alloc = &node.details().allocatable;
    let used = &node.requested;
    let mut out = Vec::new();
    if node.pods.len() as i64 + 1 > alloc.allowed_pods {
        out.push(("Too many pods".to_string(), false));
    }
    let want = &pod.requests;
    if want.is_zero() {
        return out;
    }
    let mut check = |name: &str, want: i64, alloc: i64, used: i64| {
        if want > 0 && want > alloc - used {
            out.push((format!("Insufficient {name}"), want > alloc));
        }
    };
    check("cpu", want.milli_cpu, alloc.milli_cpu, used.milli_cpu);
    check("memory", want.memory, alloc.memory, used.memory);
    check(
        "ephemeral-storage",
        want.ephemeral_storage,
        alloc.ephemeral_storage,
        used.ephemeral_storage,
    );
    for (name, q) in &want.scalar {
        check(name, *q, alloc.scalar(name), used.scalar(name));
    }
    out
}

impl FilterPlugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }

    fn filter(&self, cx: Context, _: &CycleState, node: &NodeInfo) -> Result<(), Status> {
        let short = insufficient(cx.pod, node);
        if short.is_empty() {
            return Ok(());
        }
        let code = if short.iter().any(|(_, never)| *never) {
            Code::UnschedulableAndUnresolvable
        } else {
            Code::Unschedulable
        };
        Err(Status {
            code,
            reasons: short.into_iter().map(|(r, _)| r).collect(),
            plugin: NAME,
        })
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

    fn asking(name: &str, cpu: &str, mem: &str) -> crate::podinfo::PodInfo {
        pod(json!({"metadata": {"name": name}, "spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": mem, "example.com/gpu": "1"}}}]}}))
    }

    #[test]
    fn requests_against_what_is_left() {
        let mut gpu = node("n1", "2", json!({}));
        gpu.status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "example.com/gpu".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        let mut c = cache(&[gpu, node("n2", "2", json!({}))]);
        assert_eq!(
            reason(run(&NodeResourcesFit, &c, &asking("a", "1500m", "1Gi"), 0)),
            "ok"
        );
        c.assume(Arc::new(asking("a", "1500m", "1Gi")), 0);
        let r = run(&NodeResourcesFit, &c, &asking("b", "1", "20Gi"), 0).unwrap_err();
        assert_eq!(
            r.reasons,
            [
                "Insufficient cpu",
                "Insufficient memory",
                "Insufficient example.com/gpu"
            ]
        );
        assert_eq!(
            r.code,
            Code::UnschedulableAndUnresolvable,
            "20Gi exceeds the node"
        );
        let r = run(&NodeResourcesFit, &c, &asking("b", "1", "1Gi"), 0).unwrap_err();
        assert_eq!(r.code, Code::Unschedulable);
        assert_eq!(
            reason(run(&NodeResourcesFit, &c, &asking("b", "1", "1Gi"), 1)),
            "Insufficient example.com/gpu"
        );
    }

    #[test]
    fn too_many_pods() {
        let mut small = node("n1", "2", json!({}));
        small
            .status
            .as_mut()
            .unwrap()
            .allocatable
            .as_mut()
            .unwrap()
            .insert(
                "pods".into(),
                k8s_openapi::apimachinery::pkg::api::resource::Quantity("1".into()),
            );
        let mut c = cache(&[small]);
        let empty = pod(json!({"metadata": {"name": "x"}}));
        assert_eq!(reason(run(&NodeResourcesFit, &c, &empty, 0)), "ok");
        c.assume(Arc::new(empty), 0);
        assert_eq!(
            reason(run(
                &NodeResourcesFit,
                &c,
                &pod(json!({"metadata": {"name": "y"}})),
                0
            )),
            "Too many pods"
        );
    }
}
