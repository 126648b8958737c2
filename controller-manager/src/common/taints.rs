//! Changing a node's taints without clobbering a concurrent writer (which toleration
//! tolerates which taint is `keelson_component::scheduling`'s).

use k8s_openapi::api::core::v1::{Node, Taint};
use keelson_client::{Api, Patch, PatchParams};
use serde_json::json;

/// Same key and effect (what identifies a taint on a node).
pub fn same_taint(a: &Taint, b: &Taint) -> bool {
    a.key == b.key && a.effect == b.effect
}

/// Change a node's taints with `change` (which returns whether it changed anything),
/// as a patch conditioned on the resourceVersion it was computed from; on a conflict the
/// node is read again and `change` applied again.
pub async fn update_node_taints(
    api: &Api<Node>,
    node: &Node,
    mut change: impl FnMut(&mut Vec<Taint>) -> bool,
) -> keelson_client::Result<()> {
    let name = node.metadata.name.clone().unwrap_or_default();
    let mut current = node.clone();
    for attempt in 0..5 {
        let mut taints = current
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if !change(&mut taints) {
            return Ok(());
        }
        let patch = json!({
            "metadata": {"resourceVersion": current.metadata.resource_version},
            "spec": {"taints": if taints.is_empty() { json!(null) } else { json!(taints) }},
        });
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.is_conflict() && attempt < 4 => current = api.get(&name).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
