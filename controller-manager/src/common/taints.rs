//! Taints and tolerations: which toleration tolerates which taint, and changing a node's
//! taints without clobbering a concurrent writer.

use k8s_openapi::api::core::v1::{Node, Taint, Toleration};
use keelson_client::{Api, Patch, PatchParams};
use serde_json::json;

/// Kubernetes' `Toleration.ToleratesTaint`.
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    let effect = t.effect.as_deref().unwrap_or("");
    if !effect.is_empty() && effect != taint.effect {
        return false;
    }
    let key = t.key.as_deref().unwrap_or("");
    if !key.is_empty() && key != taint.key {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// For each taint the first toleration that tolerates it; `None` when one is not
/// tolerated at all (client-go's `GetMatchingTolerations`).
pub fn matching_tolerations<'a>(
    taints: &[&Taint],
    tolerations: &'a [Toleration],
) -> Option<Vec<&'a Toleration>> {
    taints
        .iter()
        .map(|taint| tolerations.iter().find(|t| tolerates(t, taint)))
        .collect()
}

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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn taint(key: &str, value: Option<&str>, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: value.map(Into::into),
            effect: effect.into(),
            time_added: None,
        }
    }

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn toleration_matching_follows_kubernetes() {
        let t = taint("k", Some("v"), "NoExecute");
        assert!(tolerates(
            &toleration(json!({"key": "k", "value": "v"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "k", "value": "w"})),
            &t
        ));
        assert!(tolerates(
            &toleration(json!({"key": "k", "operator": "Exists", "effect": "NoExecute"})),
            &t
        ));
        assert!(!tolerates(
            &toleration(json!({"key": "k", "operator": "Exists", "effect": "NoSchedule"})),
            &t
        ));
        assert!(tolerates(&toleration(json!({"operator": "Exists"})), &t));
        let tols = [toleration(json!({"key": "k", "operator": "Exists"}))];
        let other = taint("x", None, "NoExecute");
        assert!(matching_tolerations(&[&t], &tols).is_some());
        assert!(matching_tolerations(&[&t, &other], &tols).is_none());
    }
}
