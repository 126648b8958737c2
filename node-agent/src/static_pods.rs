//! Static pods: pods defined by manifest files in `--pod-manifest-path`, run by the
//! agent without the API (what a self-hosted control plane needs), each with a *mirror
//! pod* in the API so that `kubectl get pods` shows it and its status, as the kubelet's
//! file source and mirror client do.
//!
//! - A manifest (YAML or JSON, one Pod per file) becomes pod `<name>-<node>` in its
//!   namespace (default `default`), bound to this node, with a uid derived from the file
//!   and the node name (so a restarted agent finds its containers again) and the
//!   annotations `kubernetes.io/config.source: file`, `kubernetes.io/config.hash`.
//! - The directory is read every `--file-check-frequency` (20 s): new and changed manifests start or replace their
//!   pod, removed ones stop it.
//! - The mirror pod carries `kubernetes.io/config.mirror: <hash>` and is owned by the
//!   Node; deleted or stale, it is made again. The agent never runs mirror pods it sees
//!   in the API: their static pod is the one that runs.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod, Toleration};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keelson_client::{Api, DeleteParams, PostParams};

use crate::agent::Agent;
use crate::pods::PodWorkers;

pub const CONFIG_SOURCE: &str = "kubernetes.io/config.source";
pub const CONFIG_HASH: &str = "kubernetes.io/config.hash";
pub const CONFIG_MIRROR: &str = "kubernetes.io/config.mirror";

pub fn is_static(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_SOURCE))
        .is_some_and(|s| s == "file")
}

pub fn is_mirror(pod: &Pod) -> bool {
    pod.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(CONFIG_MIRROR))
}

/// A uid-shaped FNV-1a hash of the manifest and the node.
fn uid_for(content: &[u8], node: &str) -> String {
    let hash = |seed: u64| {
        let mut h = seed;
        for b in content.iter().chain(node.as_bytes()) {
            h ^= *b as u64;
            h = h.wrapping_mul(0x100000001b3);
        }
        h
    };
    let (a, b) = (hash(0xcbf29ce484222325), hash(0x84222325cbf29ce4));
    let hex = format!("{a:016x}{b:016x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// The static pod a manifest file describes on node `node`.
pub fn load(path: &Path, node: &str) -> anyhow::Result<Pod> {
    let content = std::fs::read(path)?;
    let mut pod: Pod = serde_yaml::from_slice(&content)
        .map_err(|e| anyhow::anyhow!("{}: not a Pod manifest: {e}", path.display()))?;
    let name = pod
        .metadata
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| anyhow::anyhow!("{}: the pod has no name", path.display()))?;
    let uid = uid_for(&content, node);
    pod.metadata.name = Some(format!("{name}-{node}"));
    pod.metadata.namespace = Some(
        pod.metadata
            .namespace
            .clone()
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "default".into()),
    );
    pod.metadata.uid = Some(uid.clone());
    let annotations = pod.metadata.annotations.get_or_insert_with(BTreeMap::new);
    annotations.insert(CONFIG_SOURCE.into(), "file".into());
    annotations.insert(CONFIG_HASH.into(), uid);
    let spec = pod.spec.get_or_insert_with(Default::default);
    spec.node_name = Some(node.to_string());
    // Static pods tolerate every NoExecute taint, as the kubelet makes them.
    spec.tolerations
        .get_or_insert_with(Vec::new)
        .push(Toleration {
            operator: Some("Exists".into()),
            effect: Some("NoExecute".into()),
            ..Default::default()
        });
    for c in spec
        .containers
        .iter_mut()
        .chain(spec.init_containers.iter_mut().flatten())
    {
        if c.termination_message_path.is_none() {
            c.termination_message_path = Some("/dev/termination-log".into());
        }
        if c.image_pull_policy.is_none() {
            c.image_pull_policy = Some(crate::pods::images::pull_policy(c).to_string());
        }
    }
    spec.restart_policy.get_or_insert_with(|| "Always".into());
    spec.dns_policy.get_or_insert_with(|| "ClusterFirst".into());
    spec.termination_grace_period_seconds.get_or_insert(30);
    Ok(pod)
}

fn read_dir(dir: &Path, node: &str) -> HashMap<String, Arc<Pod>> {
    let mut pods = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return pods;
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
        })
        .collect();
    files.sort();
    for f in files {
        match load(&f, node) {
            Ok(p) => {
                pods.insert(p.metadata.uid.clone().unwrap_or_default(), Arc::new(p));
            }
            Err(e) => {
                tracing::warn!(file = %f.display(), error = %format!("{e:#}"), "static pod manifest")
            }
        }
    }
    pods
}

/// The mirror pod of a static pod: the same spec, marked, owned by the Node.
pub fn mirror_of(pod: &Pod, node: &Node) -> Pod {
    let mut m = pod.clone();
    m.metadata.uid = None;
    m.metadata.resource_version = None;
    m.status = None;
    let hash = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH))
        .cloned()
        .unwrap_or_default();
    m.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(CONFIG_MIRROR.into(), hash);
    m.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "Node".into(),
        name: node.metadata.name.clone().unwrap_or_default(),
        uid: node.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        ..Default::default()
    }]);
    m
}

/// The mirror pod of `pod` in the API, when there is a current one.
pub async fn mirror(agent: &Agent, pod: &Pod) -> Option<Pod> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    api.get_opt(pod.metadata.name.as_deref().unwrap_or_default())
        .await
        .ok()
        .flatten()
        .filter(is_mirror)
}

/// Make the mirror pod match the static pod: create it, or replace a stale one.
async fn ensure_mirror(agent: &Agent, pod: &Pod) -> anyhow::Result<()> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    let hash = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONFIG_HASH))
        .cloned();
    if let Some(existing) = api.get_opt(&name).await? {
        let current = existing
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_MIRROR))
            .cloned();
        if current.is_some() && current == hash && existing.metadata.deletion_timestamp.is_none() {
            return Ok(());
        }
        // Stale, or not a mirror at all: the static pod wins, as on Kubernetes.
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let _ = api.delete(&name, &dp).await;
    }
    let nodes: Api<Node> = Api::all(agent.client.clone());
    let node = nodes.get(&agent.node_name).await?;
    match api
        .create(&PostParams::default(), &mirror_of(pod, &node))
        .await
    {
        Ok(_) => {
            tracing::info!(pod = %format!("{ns}/{name}"), "created the mirror pod");
            Ok(())
        }
        Err(e) if e.is_already_exists() => Ok(()),
        Err(e) => Err(e.into()),
    }
}

async fn delete_mirror(agent: &Agent, pod: &Pod) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let api: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
    if mirror(agent, pod).await.is_some() {
        let dp = DeleteParams {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        let _ = api
            .delete(pod.metadata.name.as_deref().unwrap_or_default(), &dp)
            .await;
    }
}

/// Read the manifests every `period`, hand their pods to the workers and keep their
/// mirror pods in the API (deleting mirrors whose static pod is gone). Runs until
/// aborted.
pub async fn run(agent: Arc<Agent>, workers: Arc<PodWorkers>, dir: PathBuf, period: Duration) {
    let mut known: HashMap<String, Arc<Pod>> = HashMap::new();
    let mut ticker = tokio::time::interval(period);
    loop {
        ticker.tick().await;
        let current = read_dir(&dir, &agent.node_name);
        for (uid, pod) in &current {
            if !known.contains_key(uid) {
                tracing::info!(pod = %pod.metadata.name.as_deref().unwrap_or_default(), "static pod");
                workers.update(uid, Some(pod.clone()));
            }
            if let Err(e) = ensure_mirror(&agent, pod).await {
                tracing::warn!(error = %format!("{e:#}"), "mirror pod");
            }
        }
        for (uid, pod) in &known {
            if !current.contains_key(uid) {
                tracing::info!(pod = %pod.metadata.name.as_deref().unwrap_or_default(), "static pod removed");
                workers.update(uid, None);
                delete_mirror(&agent, pod).await;
            }
        }
        delete_orphaned_mirrors(&agent, &current).await;
        known = current;
    }
}

/// Mirror pods on this node whose static pod is no more (removed while the agent was
/// down, say).
async fn delete_orphaned_mirrors(agent: &Agent, current: &HashMap<String, Arc<Pod>>) {
    let api: Api<Pod> = Api::all(agent.client.clone());
    let lp =
        keelson_client::ListParams::default().fields(&format!("spec.nodeName={}", agent.node_name));
    let Ok(list) = api.list(&lp).await else {
        return;
    };
    for m in list.items.iter().filter(|p| is_mirror(p)) {
        let hash = m
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CONFIG_MIRROR))
            .cloned()
            .unwrap_or_default();
        if !current.contains_key(&hash) {
            let ns = m.metadata.namespace.clone().unwrap_or_default();
            let pods: Api<Pod> = Api::namespaced(agent.client.clone(), &ns);
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                ..Default::default()
            };
            let _ = pods
                .delete(m.metadata.name.as_deref().unwrap_or_default(), &dp)
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_become_node_bound_pods_with_stable_uids() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("web.yaml");
        std::fs::write(
            &f,
            "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: kube-system}\nspec:\n  containers: [{name: c, image: busybox:1}]\n",
        )
        .unwrap();
        let p = load(&f, "node-a").unwrap();
        assert_eq!(p.metadata.name.as_deref(), Some("web-node-a"));
        assert_eq!(p.metadata.namespace.as_deref(), Some("kube-system"));
        assert_eq!(
            p.spec.as_ref().unwrap().node_name.as_deref(),
            Some("node-a")
        );
        assert!(is_static(&p));
        let uid = p.metadata.uid.clone().unwrap();
        assert_eq!(uid.len(), 36);
        assert_eq!(
            load(&f, "node-a").unwrap().metadata.uid.unwrap(),
            uid,
            "stable"
        );
        assert_ne!(
            load(&f, "node-b").unwrap().metadata.uid.unwrap(),
            uid,
            "per node"
        );
        let node: Node = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "node-a", "uid": "n1"}}),
        )
        .unwrap();
        let m = mirror_of(&p, &node);
        assert!(is_mirror(&m));
        assert_eq!(m.metadata.uid, None);
        assert_eq!(m.metadata.owner_references.unwrap()[0].kind, "Node");
        std::fs::write(dir.path().join("bad.yaml"), "kind: Pod\nmetadata: {}\n").unwrap();
        assert_eq!(
            read_dir(dir.path(), "node-a").len(),
            1,
            "the nameless manifest is skipped"
        );
    }
}
