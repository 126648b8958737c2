//! DaemonSet history and rolling updates (Kubernetes' `daemon/update.go`).
//!
//! History: one ControllerRevision per distinct template. The revision holding the
//! current template is the newest (renumbered on a rollback) and its hash labels the
//! pods, so pods of a template that comes back are not restarted.
//!
//! Rolling update, node by node: without surge, old pods are deleted while at most
//! `maxUnavailable` nodes lack an available updated pod (the manage step then creates
//! the new one); with `maxSurge`, the new pod is created beside the old one, at most
//! `maxSurge` at a time, and the old one deleted once the new one is available.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use keelson_apimachinery::selector::LabelSelector;
use keelson_client::runtime::Store;
use keelson_client::Api;

use crate::common::intstr::scaled_value;
use crate::common::pods;
use crate::common::revisions::{self, HASH_LABEL};

pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The DaemonSet's revisions: the hash of the one holding its template (which labels
/// its pods), and the others.
pub struct History {
    pub hash: String,
    /// Every other revision, oldest first.
    pub old: Vec<Arc<ControllerRevision>>,
    pub collisions: i32,
}

/// Kubernetes' `constructHistory`.
pub async fn construct_history(
    store: &Store<ControllerRevision>,
    api: &Api<ControllerRevision>,
    ds: &DaemonSet,
    selector: &LabelSelector,
) -> anyhow::Result<History> {
    let spec = ds.spec.as_ref().ok_or_else(|| anyhow::anyhow!("no spec"))?;
    let all = revisions::claim_all(store, api, ds, selector).await?;
    let data = revisions::template_patch(&spec.template);
    let mut collisions = ds
        .status
        .as_ref()
        .and_then(|s| s.collision_count)
        .unwrap_or(0);
    let (matching, old): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| revisions::same_data(r, &data));
    let newest_old = old.iter().map(|r| r.revision).max().unwrap_or(0);
    let current = match matching.last() {
        None => {
            let labels = spec
                .template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.as_ref());
            let rev =
                revisions::create(api, ds, labels, data, newest_old + 1, &mut collisions).await?;
            Arc::new(rev)
        }
        // A rollback: the template's revision becomes the newest again.
        Some(r) if r.revision <= newest_old => {
            Arc::new(revisions::renumber(api, r, newest_old + 1).await?)
        }
        Some(r) => r.clone(),
    };
    // Duplicates of the current template (from racing writers) count as old history.
    let mut old: Vec<_> = old
        .into_iter()
        .chain(
            matching
                .into_iter()
                .filter(|r| r.metadata.name != current.metadata.name),
        )
        .collect();
    revisions::sort(&mut old);
    let owner_prefix = format!("{}-", ds.metadata.name.as_deref().unwrap_or_default());
    let hash = current
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(HASH_LABEL).cloned())
        .unwrap_or_else(|| {
            let name = current.metadata.name.as_deref().unwrap_or_default();
            name.strip_prefix(&owner_prefix).unwrap_or(name).to_string()
        });
    Ok(History {
        hash,
        old,
        collisions,
    })
}

/// Delete the oldest old revisions that no pod runs, down to `revisionHistoryLimit`.
pub async fn cleanup_history(
    api: &Api<ControllerRevision>,
    ds: &DaemonSet,
    history: &History,
    pods: &[Arc<Pod>],
) -> keelson_client::Result<()> {
    let limit = ds
        .spec
        .as_ref()
        .and_then(|s| s.revision_history_limit)
        .unwrap_or(10);
    let live_hashes: HashSet<&str> = pods
        .iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get(HASH_LABEL)
                .map(String::as_str)
        })
        .collect();
    let live: HashSet<&str> = history
        .old
        .iter()
        .filter(|r| {
            let hash = r.metadata.labels.as_ref().and_then(|l| l.get(HASH_LABEL));
            hash.is_some_and(|h| live_hashes.contains(h.as_str()))
        })
        .filter_map(|r| r.metadata.name.as_deref())
        .collect();
    revisions::truncate(api, &history.old, &live, limit).await
}

/// Whether the pod runs the current template: its hash, or (older pods) the
/// DaemonSet's generation.
pub fn is_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let labels = pod.metadata.labels.as_ref();
    let label = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
    (!hash.is_empty() && label(HASH_LABEL) == Some(hash))
        || generation.is_some_and(|g| label(TEMPLATE_GENERATION_LABEL) == Some(&g.to_string()))
}

/// (maxSurge, maxUnavailable) as numbers of nodes out of `desired`; both zero means
/// maxUnavailable 1.
pub fn surge_and_unavailable(ds: &DaemonSet, desired: i32) -> (i32, i32) {
    let ru = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .filter(|s| s.type_.as_deref().unwrap_or("RollingUpdate") == "RollingUpdate")
        .and_then(|s| s.rolling_update.as_ref());
    let scaled = |v: Option<&IntOrString>| {
        v.and_then(|v| scaled_value(v, desired, true).ok())
            .unwrap_or(0)
    };
    let surge = scaled(ru.and_then(|r| r.max_surge.as_ref()));
    let unavailable = scaled(ru.and_then(|r| r.max_unavailable.as_ref()));
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

/// A node's (updated pod, old pod).
type NodePods<'a> = (Option<&'a Arc<Pod>>, Option<&'a Arc<Pod>>);

/// The updated and the old pod on one node, ignoring terminating ones; `None` when
/// there are two of either (the manage step sorts that out first).
fn updated_and_old<'a>(
    pods: &'a [Arc<Pod>],
    hash: &str,
    generation: Option<i64>,
) -> Option<NodePods<'a>> {
    let (mut new, mut old) = (None, None);
    for pod in pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
    {
        let slot = if is_updated(pod, hash, generation) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// What one rolling-update step does.
#[derive(Default)]
pub struct Plan {
    pub delete: Vec<Arc<Pod>>,
    /// Nodes that get a new pod beside their old one (surge).
    pub create: Vec<String>,
}

/// One step of a rolling update. `node_pods`: the pods of each node; `eligible`: the
/// nodes that should run a daemon pod.
pub fn rolling_update(
    ds: &DaemonSet,
    node_pods: &BTreeMap<String, Vec<Arc<Pod>>>,
    eligible: &[String],
    hash: &str,
    now: jiff::Timestamp,
) -> Plan {
    let min_ready = ds
        .spec
        .as_ref()
        .and_then(|s| s.min_ready_seconds)
        .unwrap_or(0);
    let generation = ds.metadata.generation;
    let available = |p: &Pod| pods::is_available(p, min_ready, now);
    let (max_surge, max_unavailable) = surge_and_unavailable(ds, eligible.len() as i32);
    let none = Vec::new();
    let mut nodes: Vec<&String> = node_pods.keys().collect();
    nodes.extend(eligible.iter().filter(|n| !node_pods.contains_key(*n)));
    nodes.sort();
    let mut plan = Plan::default();

    if max_surge == 0 {
        let mut unavailable = 0;
        let mut candidates = Vec::new();
        for node in nodes {
            let pods = node_pods.get(node).unwrap_or(&none);
            match updated_and_old(pods, hash, generation) {
                None | Some((None, None)) | Some((Some(_), Some(_))) => unavailable += 1,
                Some((Some(new), None)) => unavailable += i32::from(!available(new)),
                // An unavailable old pod costs nothing to replace.
                Some((None, Some(old))) if !available(old) => plan.delete.push(old.clone()),
                Some((None, Some(old))) => {
                    if unavailable < max_unavailable {
                        candidates.push(old.clone());
                    }
                }
            }
        }
        let room = (max_unavailable - unavailable).max(0) as usize;
        plan.delete.extend(candidates.into_iter().take(room));
        return plan;
    }

    let mut surging = 0;
    let mut candidates = Vec::new();
    for node in nodes {
        let pods = node_pods.get(node).unwrap_or(&none);
        match updated_and_old(pods, hash, generation) {
            None => surging += 1,
            Some((_, None)) => {}
            Some((None, Some(old))) => {
                if !available(old) {
                    if eligible.contains(node) {
                        plan.create.push(node.clone());
                    }
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            // Already surged here: the old pod goes once the new one is available.
            Some((Some(new), Some(old))) => {
                if available(new) {
                    plan.delete.push(old.clone());
                } else {
                    surging += 1;
                }
            }
        }
    }
    let room = (max_surge - surging).max(0) as usize;
    plan.create.extend(candidates.into_iter().take(room));
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ds(rolling: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({"metadata": {"name": "d", "generation": 2}, "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": []}}}}))
        .unwrap()
    }

    fn pod(name: &str, hash: &str, ready: bool) -> Arc<Pod> {
        Arc::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "labels": {HASH_LABEL: hash, TEMPLATE_GENERATION_LABEL: "1"}},
                "status": {"phase": "Running", "conditions": [{"type": "Ready",
                    "status": if ready { "True" } else { "False" },
                    "lastTransitionTime": "2024-01-01T00:00:00Z"}]}
            }))
            .unwrap(),
        )
    }

    fn names(pods: &[Arc<Pod>]) -> Vec<&str> {
        pods.iter()
            .map(|p| p.metadata.name.as_deref().unwrap())
            .collect()
    }

    #[test]
    fn max_unavailable_limits_deletions() {
        let now = jiff::Timestamp::now();
        let mut node_pods = BTreeMap::new();
        node_pods.insert("n1".to_string(), vec![pod("a", "old", true)]);
        node_pods.insert("n2".to_string(), vec![pod("b", "old", true)]);
        node_pods.insert("n3".to_string(), vec![pod("c", "old", false)]);
        let eligible: Vec<String> = ["n1", "n2", "n3"].map(String::from).to_vec();
        let plan = rolling_update(
            &ds(json!({"maxUnavailable": 1})),
            &node_pods,
            &eligible,
            "new",
            now,
        );
        // The unready old pod is replaced for free, plus one available one.
        assert_eq!(names(&plan.delete), ["c", "a"]);
        // A node without its updated pod yet counts as unavailable.
        node_pods.insert("n3".to_string(), vec![]);
        let plan = rolling_update(
            &ds(json!({"maxUnavailable": 1})),
            &node_pods,
            &eligible,
            "new",
            now,
        );
        assert!(plan.delete.is_empty());
        node_pods.insert("n3".to_string(), vec![pod("c2", "new", true)]);
        let plan = rolling_update(
            &ds(json!({"maxUnavailable": "50%"})),
            &node_pods,
            &eligible,
            "new",
            now,
        );
        assert_eq!(names(&plan.delete), ["a", "b"]);
    }

    #[test]
    fn surge_creates_first_then_deletes() {
        let now = jiff::Timestamp::now();
        let mut node_pods = BTreeMap::new();
        node_pods.insert("n1".to_string(), vec![pod("a", "old", true)]);
        node_pods.insert("n2".to_string(), vec![pod("b", "old", true)]);
        let eligible: Vec<String> = ["n1", "n2"].map(String::from).to_vec();
        let surge = ds(json!({"maxSurge": 1, "maxUnavailable": 0}));
        let plan = rolling_update(&surge, &node_pods, &eligible, "new", now);
        assert_eq!(
            (plan.create, plan.delete.len()),
            (vec!["n1".to_string()], 0)
        );
        node_pods
            .get_mut("n1")
            .unwrap()
            .push(pod("a2", "new", false));
        let plan = rolling_update(&surge, &node_pods, &eligible, "new", now);
        assert!(plan.create.is_empty() && plan.delete.is_empty());
        node_pods.get_mut("n1").unwrap()[1] = pod("a2", "new", true);
        let plan = rolling_update(&surge, &node_pods, &eligible, "new", now);
        assert_eq!(names(&plan.delete), ["a"]);
        assert_eq!(plan.create, ["n2"]);
    }
}
