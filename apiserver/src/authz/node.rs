//! The Node authorizer, as Kubernetes': a node agent (user `system:node:<name>` in
//! group `system:nodes`) reads a Secret, ConfigMap, PersistentVolumeClaim or
//! PersistentVolume, or asks for a service-account token, only when a pod bound to it
//! uses that object; it touches only its own Lease. Everything else a node may do is
//! the `system:node` role's rules ([`NODE_RULES`]), which this authorizer applies
//! itself (nodes are not bound to that role). What a node may *write* to its Node and
//! its pods is NodeRestriction admission's business.
//!
//! The graph is kept from the watch cache: for every pod bound to a node, the objects
//! it references.

use super::follow::{self, Loaded, Sink};
use super::rbac::defaults::cluster::NODE_RULES;
use super::rbac::rule::Rule;
use super::{Attributes, Verdict};
use crate::registry::UserInfo;
use crate::storage::Storage;
use crate::watch_cache::WatchCache;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};

pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_USER_PREFIX: &str = "system:node:";
/// Where node Leases live.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

const PODS: &str = "/registry/pods/";
const PVCS: &str = "/registry/persistentvolumeclaims/";

/// The node a user is, if it is one (`NodeIdentifier`).
pub fn node_name(user: &UserInfo) -> Option<&str> {
    if !user.groups.iter().any(|g| g == NODES_GROUP) {
        return None;
    }
    user.name.strip_prefix(NODE_USER_PREFIX)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Secret,
    ConfigMap,
    Claim,
    ServiceAccount,
}

/// (kind, namespace, name) an object a pod uses.
type Ref = (Kind, String, String);

#[derive(Default)]
struct Graph {
    /// pod key → (node, what it uses).
    pods: HashMap<String, (String, Vec<Ref>)>,
    /// (node, used object) → how many of the node's pods use it.
    used: HashMap<(String, Ref), usize>,
    /// claim (namespace, name) → the volume bound to it.
    claims: HashMap<(String, String), String>,
}

fn str_at<'a>(v: &'a Value, path: &str) -> Option<&'a str> {
    v.pointer(path)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// What a pod uses: its volumes' secrets, config maps and claims, its containers'
/// env sources, its image pull secrets and its service account.
fn references(pod: &Value) -> Vec<Ref> {
    let ns = str_at(pod, "/metadata/namespace").unwrap_or("");
    let pod_name = str_at(pod, "/metadata/name").unwrap_or("");
    let mut out = Vec::new();
    let mut add = |kind: Kind, name: Option<&str>| {
        if let Some(n) = name {
            out.push((kind, ns.to_string(), n.to_string()));
        }
    };
    let spec = &pod["spec"];
    add(
        Kind::ServiceAccount,
        Some(str_at(spec, "/serviceAccountName").unwrap_or("default")),
    );
    for s in spec["imagePullSecrets"].as_array().into_iter().flatten() {
        add(Kind::Secret, str_at(s, "/name"));
    }
    for v in spec["volumes"].as_array().into_iter().flatten() {
        add(Kind::Secret, str_at(v, "/secret/secretName"));
        add(Kind::ConfigMap, str_at(v, "/configMap/name"));
        add(Kind::Claim, str_at(v, "/persistentVolumeClaim/claimName"));
        if v.get("ephemeral").is_some_and(|e| !e.is_null()) {
            let vol = str_at(v, "/name").unwrap_or("");
            let claim = format!("{pod_name}-{vol}");
            add(Kind::Claim, Some(&claim));
        }
        for src in v
            .pointer("/projected/sources")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            add(Kind::Secret, str_at(src, "/secret/name"));
            add(Kind::ConfigMap, str_at(src, "/configMap/name"));
        }
        for key in [
            "/cephfs/secretRef/name",
            "/rbd/secretRef/name",
            "/csi/nodePublishSecretRef/name",
        ] {
            add(Kind::Secret, str_at(v, key));
        }
    }
    for list in ["containers", "initContainers", "ephemeralContainers"] {
        for c in spec[list].as_array().into_iter().flatten() {
            for e in c["env"].as_array().into_iter().flatten() {
                add(Kind::Secret, str_at(e, "/valueFrom/secretKeyRef/name"));
                add(
                    Kind::ConfigMap,
                    str_at(e, "/valueFrom/configMapKeyRef/name"),
                );
            }
            for e in c["envFrom"].as_array().into_iter().flatten() {
                add(Kind::Secret, str_at(e, "/secretRef/name"));
                add(Kind::ConfigMap, str_at(e, "/configMapRef/name"));
            }
        }
    }
    out.sort_by(|a, b| (a.0 as u8, &a.1, &a.2).cmp(&(b.0 as u8, &b.1, &b.2)));
    out.dedup();
    out
}

impl Graph {
    fn remove_pod(&mut self, key: &str) {
        if let Some((node, refs)) = self.pods.remove(key) {
            for r in refs {
                let k = (node.clone(), r);
                if let Some(n) = self.used.get_mut(&k) {
                    *n -= 1;
                    if *n == 0 {
                        self.used.remove(&k);
                    }
                }
            }
        }
    }

    fn put(&mut self, key: &str, obj: Option<&Arc<Value>>) {
        if key.starts_with(PODS) {
            self.remove_pod(key);
            let Some(pod) = obj else { return };
            let Some(node) = str_at(pod, "/spec/nodeName") else {
                return;
            };
            let refs = references(pod);
            for r in &refs {
                *self.used.entry((node.to_string(), r.clone())).or_default() += 1;
            }
            self.pods.insert(key.to_string(), (node.to_string(), refs));
        } else if let Some(rest) = key.strip_prefix(PVCS) {
            let Some((ns, name)) = rest.split_once('/') else {
                return;
            };
            let id = (ns.to_string(), name.to_string());
            match obj.and_then(|o| str_at(o, "/spec/volumeName")) {
                Some(pv) => {
                    self.claims.insert(id, pv.to_string());
                }
                None => {
                    self.claims.remove(&id);
                }
            }
        }
    }

    fn uses(&self, node: &str, kind: Kind, ns: &str, name: &str) -> bool {
        self.used
            .contains_key(&(node.to_string(), (kind, ns.to_string(), name.to_string())))
    }

    /// Whether a claim used by one of the node's pods is bound to volume `pv`.
    fn uses_volume(&self, node: &str, pv: &str) -> bool {
        self.claims
            .iter()
            .any(|((ns, claim), volume)| volume == pv && self.uses(node, Kind::Claim, ns, claim))
    }
}

pub struct NodeAuthorizer {
    graph: RwLock<Graph>,
    loaded: OnceLock<Loaded>,
    rules: Vec<Rule>,
}

impl Sink for NodeAuthorizer {
    fn prefixes(&self) -> &'static [&'static str] {
        &[PODS, PVCS]
    }

    fn reset(&self, objects: Vec<(String, Arc<Value>)>) {
        let mut g = Graph::default();
        for (k, o) in &objects {
            g.put(k, Some(o));
        }
        *self.graph.write().unwrap_or_else(|e| e.into_inner()) = g;
    }

    fn apply(&self, key: &str, object: Option<&Arc<Value>>) {
        self.graph
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .put(key, object);
    }
}

impl NodeAuthorizer {
    fn new() -> NodeAuthorizer {
        NodeAuthorizer {
            graph: RwLock::default(),
            loaded: OnceLock::new(),
            rules: NODE_RULES.iter().map(|r| r.to_rule()).collect(),
        }
    }

    pub fn start(cache: Arc<WatchCache>, storage: Storage) -> Arc<NodeAuthorizer> {
        let n = Arc::new(NodeAuthorizer::new());
        let loaded = follow::follow(n.clone(), cache, storage);
        let _ = n.loaded.set(loaded);
        n
    }

    /// Whether `node` runs a pod that uses this secret (for NodeRestriction and tests).
    pub fn node_uses_pod_object(&self, node: &str, resource: &str, ns: &str, name: &str) -> bool {
        let kind = match resource {
            "secrets" => Kind::Secret,
            "configmaps" => Kind::ConfigMap,
            "persistentvolumeclaims" => Kind::Claim,
            "serviceaccounts" => Kind::ServiceAccount,
            _ => return false,
        };
        let g = self.graph.read().unwrap_or_else(|e| e.into_inner());
        g.uses(node, kind, ns, name)
    }

    pub async fn authorize(&self, a: &Attributes) -> Verdict {
        let Some(node) = node_name(&a.user) else {
            return Verdict::no_opinion("");
        };
        if node.is_empty() {
            return Verdict::no_opinion(format!("unknown node for user {:?}", a.user.name));
        }
        if let Some(l) = self.loaded.get() {
            l.wait().await;
        }
        if a.resource_request && a.api_group.is_empty() {
            match a.resource.as_str() {
                "secrets" => return self.read_used(node, Kind::Secret, a),
                "configmaps" => return self.read_used(node, Kind::ConfigMap, a),
                "persistentvolumeclaims" if a.subresource == "status" => {
                    return self.claim_status(node, a)
                }
                "persistentvolumeclaims" => return self.get_used(node, Kind::Claim, a),
                "persistentvolumes" => return self.get_volume(node, a),
                "serviceaccounts" => return self.create_token(node, a),
                _ => {}
            }
        }
        if a.resource_request && a.api_group == "coordination.k8s.io" && a.resource == "leases" {
            return lease(node, a);
        }
        if self.rules.iter().any(|r| r.allows(a)) {
            return Verdict::allow("");
        }
        Verdict::no_opinion("")
    }

    fn related(&self, node: &str, kind: Kind, a: &Attributes) -> Verdict {
        if a.name.is_empty() {
            return Verdict::no_opinion("No Object name found");
        }
        let g = self.graph.read().unwrap_or_else(|e| e.into_inner());
        if g.uses(node, kind, &a.namespace, &a.name) {
            Verdict::allow("")
        } else {
            no_relationship(node)
        }
    }

    /// `authorizeReadNamespacedObject`: get, or a list/watch of one object by name.
    fn read_used(&self, node: &str, kind: Kind, a: &Attributes) -> Verdict {
        if !matches!(a.verb.as_str(), "get" | "list" | "watch") {
            return Verdict::no_opinion("can only read resources of this type");
        }
        if !a.subresource.is_empty() {
            return Verdict::no_opinion("cannot read subresource");
        }
        if a.namespace.is_empty() {
            return Verdict::no_opinion("can only read namespaced object of this type");
        }
        self.related(node, kind, a)
    }

    /// `authorizeGet`.
    fn get_used(&self, node: &str, kind: Kind, a: &Attributes) -> Verdict {
        if a.verb != "get" {
            return Verdict::no_opinion("can only get individual resources of this type");
        }
        if !a.subresource.is_empty() {
            return Verdict::no_opinion("cannot get subresource");
        }
        self.related(node, kind, a)
    }

    fn claim_status(&self, node: &str, a: &Attributes) -> Verdict {
        if !matches!(a.verb.as_str(), "get" | "update" | "patch") {
            return Verdict::no_opinion(
                "can only get, update or patch persistentvolumeclaim status",
            );
        }
        self.related(node, Kind::Claim, a)
    }

    fn get_volume(&self, node: &str, a: &Attributes) -> Verdict {
        if a.verb != "get" {
            return Verdict::no_opinion("can only get individual resources of this type");
        }
        if a.name.is_empty() {
            return Verdict::no_opinion("No Object name found");
        }
        let g = self.graph.read().unwrap_or_else(|e| e.into_inner());
        if g.uses_volume(node, &a.name) {
            Verdict::allow("")
        } else {
            no_relationship(node)
        }
    }

    /// `authorizeCreateToken`.
    fn create_token(&self, node: &str, a: &Attributes) -> Verdict {
        if a.verb != "create" || a.name.is_empty() {
            return Verdict::no_opinion("can only create tokens for individual service accounts");
        }
        if a.subresource != "token" {
            return Verdict::no_opinion("can only create token subresource of serviceaccount");
        }
        self.related(node, Kind::ServiceAccount, a)
    }
}

fn no_relationship(node: &str) -> Verdict {
    Verdict::no_opinion(format!(
        "no relationship found between node '{node}' and this object"
    ))
}

/// `authorizeLease`: the node's own Lease in kube-node-lease.
fn lease(node: &str, a: &Attributes) -> Verdict {
    if !matches!(
        a.verb.as_str(),
        "get" | "create" | "update" | "patch" | "delete"
    ) {
        return Verdict::no_opinion("can only get, create, update, patch, or delete a node lease");
    }
    if a.namespace != NODE_LEASE_NAMESPACE {
        return Verdict::no_opinion(format!(
            "can only access leases in the {NODE_LEASE_NAMESPACE:?} system namespace"
        ));
    }
    // The name of a create is NodeRestriction admission's to check.
    if a.verb != "create" && a.name != node {
        return Verdict::no_opinion(
            "can only access node lease with the same name as the requesting node",
        );
    }
    Verdict::allow("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node_user(name: &str) -> UserInfo {
        UserInfo {
            name: format!("system:node:{name}"),
            uid: String::new(),
            groups: vec![NODES_GROUP.into(), "system:authenticated".into()],
        }
    }

    #[tokio::test]
    async fn a_node_reads_only_what_its_pods_use() {
        let n = NodeAuthorizer::new();
        n.reset(vec![
            (
                "/registry/pods/default/a".into(),
                Arc::new(json!({
                    "metadata": {"namespace": "default", "name": "a"},
                    "spec": {"nodeName": "n1",
                             "volumes": [{"name": "s", "secret": {"secretName": "mine"}},
                                         {"name": "c", "persistentVolumeClaim": {"claimName": "data"}}],
                             "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}
                })),
            ),
            (
                "/registry/pods/default/b".into(),
                Arc::new(json!({
                    "metadata": {"namespace": "default", "name": "b"},
                    "spec": {"nodeName": "n2", "volumes": [{"name": "s", "secret": {"secretName": "theirs"}}]}
                })),
            ),
            (
                "/registry/persistentvolumeclaims/default/data".into(),
                Arc::new(json!({"spec": {"volumeName": "pv1"}})),
            ),
        ]);
        let n1 = node_user("n1");
        let get =
            |res: &str, ns: &str, name: &str| Attributes::resource(&n1, "get", "", res, ns, name);
        assert!(n
            .authorize(&get("secrets", "default", "mine"))
            .await
            .allowed());
        assert!(n
            .authorize(&get("configmaps", "default", "cfg"))
            .await
            .allowed());
        assert!(n
            .authorize(&get("persistentvolumes", "", "pv1"))
            .await
            .allowed());
        let theirs = n.authorize(&get("secrets", "default", "theirs")).await;
        assert!(!theirs.allowed());
        assert_eq!(
            theirs.reason,
            "no relationship found between node 'n1' and this object"
        );
        let list = Attributes::resource(&n1, "list", "", "secrets", "default", "");
        assert!(!n.authorize(&list).await.allowed());
        // Its own lease only.
        let lease = |name: &str| {
            Attributes::resource(
                &n1,
                "update",
                "coordination.k8s.io",
                "leases",
                NODE_LEASE_NAMESPACE,
                name,
            )
        };
        assert!(n.authorize(&lease("n1")).await.allowed());
        assert!(!n.authorize(&lease("n2")).await.allowed());
        // The node rules: pods are listed, nodes read.
        let pods = Attributes::resource(&n1, "list", "", "pods", "", "");
        assert!(n.authorize(&pods).await.allowed());
        // The pod moving away takes its secret with it.
        n.apply("/registry/pods/default/a", None);
        assert!(!n
            .authorize(&get("secrets", "default", "mine"))
            .await
            .allowed());
        // Not a node: no opinion.
        let jane = UserInfo {
            name: "jane".into(),
            ..Default::default()
        };
        let v = n
            .authorize(&Attributes::resource(
                &jane, "get", "", "secrets", "default", "mine",
            ))
            .await;
        assert_eq!(v.decision, crate::authz::Decision::NoOpinion);
    }
}
