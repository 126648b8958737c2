//! The garbage collector's picture of the cluster, as Kubernetes' GraphBuilder keeps it:
//! one node per object (by uid) with its owner references and the uids of its
//! dependents. An owner reference to an object not seen yet makes a *virtual* node,
//! checked against the apiserver. Pure bookkeeping: every change returns the [`Work`]
//! it makes, and the collector's workers do the API calls.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use keelson_client::discovery::group_of;
use keelson_client::ApiResource;
use serde_json::Value;

/// Foreground deletion: the owner waits for its blocking dependents.
pub const FOREGROUND: &str = "foregroundDeletion";
/// Orphan deletion: the owner waits until its dependents no longer point at it.
pub const ORPHAN: &str = "orphan";

/// An absent-owner cache larger than this is cleared (it only saves GETs).
const ABSENT_CACHE_MAX: usize = 10_000;

/// Where an object lives: enough to GET it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectRef {
    pub api_version: String,
    pub kind: String,
    pub namespace: Option<String>,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ns = self
            .namespace
            .as_deref()
            .map(|n| format!("{n}/"))
            .unwrap_or_default();
        write!(f, "{} {ns}{} ({})", self.kind, self.name, self.uid)
    }
}

/// What a watch event tells about one object: the collector needs only metadata.
#[derive(Debug, Clone)]
pub struct Meta {
    pub identity: ObjectRef,
    pub owners: Vec<OwnerReference>,
    pub deleting: bool,
    pub finalizers: Vec<String>,
}

impl Meta {
    /// The metadata of an object of kind `r`; `None` without a uid.
    pub fn of(r: &ApiResource, obj: &Value) -> Option<Meta> {
        let m = obj.get("metadata")?;
        let s = |k: &str| m.get(k).and_then(Value::as_str).unwrap_or_default();
        if s("uid").is_empty() {
            return None;
        }
        Some(Meta {
            identity: ObjectRef {
                api_version: r.api_version(),
                kind: r.kind.clone(),
                namespace: Some(s("namespace").to_string()).filter(|n| !n.is_empty()),
                name: s("name").to_string(),
                uid: s("uid").to_string(),
            },
            owners: owner_refs(obj),
            deleting: m.get("deletionTimestamp").is_some_and(|t| !t.is_null()),
            finalizers: keelson_apimachinery::meta::path_strings(m, "finalizers"),
        })
    }

    fn waiting_for(&self, finalizer: &str) -> bool {
        self.deleting && self.finalizers.iter().any(|f| f == finalizer)
    }
}

/// `metadata.ownerReferences` of an object (malformed entries are skipped).
pub fn owner_refs(obj: &Value) -> Vec<OwnerReference> {
    obj.pointer("/metadata/ownerReferences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|r| serde_json::from_value(r.clone()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// One object in the graph.
#[derive(Debug)]
pub struct Node {
    pub identity: ObjectRef,
    pub owners: Vec<OwnerReference>,
    pub dependents: HashSet<String>,
    /// Seen in a watch; `false` for a virtual node made up from an owner reference.
    pub observed: bool,
    pub being_deleted: bool,
    /// In foreground deletion: deleting its dependents before it goes.
    pub deleting_dependents: bool,
    /// The last observed state was "deleting with the orphan / foreground finalizer";
    /// the transition into it starts the work.
    orphaning: bool,
    foreground: bool,
}

/// Objects for the collector's workers to look at.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Work {
    pub attempt_to_delete: Vec<String>,
    pub attempt_to_orphan: Vec<String>,
}

/// What a worker needs to know about a node, copied out of the graph.
#[derive(Debug, Clone)]
pub struct Item {
    pub identity: ObjectRef,
    pub observed: bool,
    pub being_deleted: bool,
    pub deleting_dependents: bool,
    pub dependents: Vec<ObjectRef>,
    /// Some dependent is itself in foreground deletion (a possible cycle).
    pub dependent_deleting_dependents: bool,
}

#[derive(Debug, Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    /// Owners known to be gone, so their other dependents need no GET.
    absent: HashSet<String>,
}

impl Graph {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn item(&self, uid: &str) -> Option<Item> {
        let n = self.nodes.get(uid)?;
        let deps: Vec<&Node> = n
            .dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .collect();
        Some(Item {
            identity: n.identity.clone(),
            observed: n.observed,
            being_deleted: n.being_deleted,
            deleting_dependents: n.deleting_dependents,
            dependent_deleting_dependents: deps.iter().any(|d| d.deleting_dependents),
            dependents: deps.into_iter().map(|d| d.identity.clone()).collect(),
        })
    }

    /// Dependents of `uid` whose reference to it has `blockOwnerDeletion: true`, with
    /// whether each is itself deleting its dependents.
    pub fn blocking_dependents(&self, uid: &str) -> Vec<(String, bool)> {
        let Some(n) = self.nodes.get(uid) else {
            return Vec::new();
        };
        n.dependents
            .iter()
            .filter_map(|d| self.nodes.get(d))
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|r| r.uid == uid && r.block_owner_deletion == Some(true))
            })
            .map(|d| (d.identity.uid.clone(), d.deleting_dependents))
            .collect()
    }

    pub fn known_absent(&self, uid: &str) -> bool {
        self.absent.contains(uid)
    }

    pub fn mark_absent(&mut self, uid: &str) {
        if self.absent.len() >= ABSENT_CACHE_MAX {
            self.absent.clear();
        }
        self.absent.insert(uid.to_string());
    }

    /// An object was added or changed.
    pub fn observe(&mut self, meta: Meta) -> Work {
        let mut work = Work::default();
        let uid = meta.identity.uid.clone();
        let (was_orphaning, was_foreground) = match self.nodes.get_mut(&uid) {
            None => {
                self.nodes.insert(
                    uid.clone(),
                    Node {
                        identity: meta.identity.clone(),
                        owners: meta.owners.clone(),
                        dependents: HashSet::new(),
                        observed: true,
                        being_deleted: meta.deleting,
                        deleting_dependents: false,
                        orphaning: false,
                        foreground: false,
                    },
                );
                self.add_to_owners(&meta.identity, &meta.owners, &mut work);
                (false, false)
            }
            Some(node) => {
                node.observed = true;
                node.identity = meta.identity.clone();
                node.being_deleted |= meta.deleting;
                let old = std::mem::replace(&mut node.owners, meta.owners.clone());
                let was = (node.orphaning, node.foreground);
                let (added, removed, unblocked) = diff(&old, &meta.owners);
                // An owner waiting for this dependent may now go.
                for owner in unblocked {
                    if self
                        .nodes
                        .get(&owner)
                        .is_some_and(|o| o.deleting_dependents)
                    {
                        work.attempt_to_delete.push(owner);
                    }
                }
                self.add_to_owners(&meta.identity, &added, &mut work);
                self.remove_from_owners(&uid, &removed);
                was
            }
        };
        let (orphaning, foreground) = (meta.waiting_for(ORPHAN), meta.waiting_for(FOREGROUND));
        let node = self.nodes.get_mut(&uid).expect("just inserted");
        node.orphaning = orphaning;
        node.foreground = foreground;
        if orphaning && !was_orphaning {
            work.attempt_to_orphan.push(uid);
        } else if foreground && !was_foreground {
            node.deleting_dependents = true;
            work.attempt_to_delete
                .extend(node.dependents.iter().cloned());
            work.attempt_to_delete.push(uid);
        }
        work
    }

    /// An object is gone: its dependents may be garbage now, and an owner in foreground
    /// deletion may be done waiting.
    pub fn observe_deletion(&mut self, uid: &str) -> Work {
        let mut work = Work::default();
        let Some(node) = self.nodes.remove(uid) else {
            return work;
        };
        self.remove_from_owners(uid, &node.owners);
        if !node.dependents.is_empty() {
            self.mark_absent(uid);
        }
        work.attempt_to_delete.extend(node.dependents);
        for r in &node.owners {
            if self
                .nodes
                .get(&r.uid)
                .is_some_and(|o| o.deleting_dependents)
            {
                work.attempt_to_delete.push(r.uid.clone());
            }
        }
        work
    }

    /// The apiserver says `identity` does not exist (404, or another uid under its
    /// name): a virtual delete. Ignored when the graph has the uid at other coordinates.
    pub fn absent(&mut self, identity: &ObjectRef) -> Work {
        match self.nodes.get(&identity.uid) {
            Some(n) if !n.observed || same_coordinates(&n.identity, identity) => {
                self.observe_deletion(&identity.uid)
            }
            _ => Work::default(),
        }
    }

    /// A relist of `group`/`kind` found exactly `present`: observed objects of that
    /// kind not in it were deleted while the watch was down. Virtual nodes of the kind
    /// are looked at again: a reference to a kind served only now (a new custom
    /// resource) could not be checked before.
    pub fn relisted(&mut self, group: &str, kind: &str, present: &HashSet<String>) -> Work {
        let of_kind = |n: &&Node| is_kind(&n.identity, group, kind);
        let gone: Vec<String> = self
            .nodes
            .values()
            .filter(of_kind)
            .filter(|n| n.observed && !present.contains(&n.identity.uid))
            .map(|n| n.identity.uid.clone())
            .collect();
        let mut work = Work::default();
        work.attempt_to_delete.extend(
            self.nodes
                .values()
                .filter(of_kind)
                .filter(|n| !n.observed)
                .map(|n| n.identity.uid.clone()),
        );
        for uid in gone {
            let w = self.observe_deletion(&uid);
            work.attempt_to_delete.extend(w.attempt_to_delete);
        }
        work
    }

    /// Record `dependent` under each owner, making virtual nodes for owners not seen.
    fn add_to_owners(&mut self, dependent: &ObjectRef, owners: &[OwnerReference], work: &mut Work) {
        for r in owners {
            if let Some(owner) = self.nodes.get_mut(&r.uid) {
                owner.dependents.insert(dependent.uid.clone());
                continue;
            }
            // An owner lives in its dependent's namespace; whether its kind is
            // namespaced at all is for discovery to say when it is looked up.
            let identity = ObjectRef {
                api_version: r.api_version.clone(),
                kind: r.kind.clone(),
                namespace: dependent.namespace.clone(),
                name: r.name.clone(),
                uid: r.uid.clone(),
            };
            self.nodes.insert(
                r.uid.clone(),
                Node {
                    identity,
                    owners: Vec::new(),
                    dependents: HashSet::from([dependent.uid.clone()]),
                    observed: false,
                    being_deleted: false,
                    deleting_dependents: false,
                    orphaning: false,
                    foreground: false,
                },
            );
            work.attempt_to_delete.push(r.uid.clone());
        }
    }

    /// Forget `dependent` under each owner; a virtual owner left with no dependents goes.
    fn remove_from_owners(&mut self, dependent: &str, owners: &[OwnerReference]) {
        for r in owners {
            let Some(owner) = self.nodes.get_mut(&r.uid) else {
                continue;
            };
            owner.dependents.remove(dependent);
            if !owner.observed && owner.dependents.is_empty() {
                self.nodes.remove(&r.uid);
            }
        }
    }
}

/// Owner references added and removed (by uid), and the owners no longer blocked by
/// this dependent (removed, or `blockOwnerDeletion` turned off).
fn diff(
    old: &[OwnerReference],
    new: &[OwnerReference],
) -> (Vec<OwnerReference>, Vec<OwnerReference>, Vec<String>) {
    let blocks = |r: &OwnerReference| r.block_owner_deletion == Some(true);
    let added = new
        .iter()
        .filter(|n| !old.iter().any(|o| o.uid == n.uid))
        .cloned()
        .collect();
    let mut unblocked = Vec::new();
    let mut removed = Vec::new();
    for o in old {
        match new.iter().find(|n| n.uid == o.uid) {
            None => {
                removed.push(o.clone());
                if blocks(o) {
                    unblocked.push(o.uid.clone());
                }
            }
            Some(n) if blocks(o) && !blocks(n) => unblocked.push(o.uid.clone()),
            Some(_) => {}
        }
    }
    (added, removed, unblocked)
}

fn is_kind(r: &ObjectRef, group: &str, kind: &str) -> bool {
    r.kind == kind && group_of(&r.api_version) == group
}

fn same_coordinates(a: &ObjectRef, b: &ObjectRef) -> bool {
    a.kind == b.kind
        && group_of(&a.api_version) == group_of(&b.api_version)
        && a.namespace == b.namespace
        && a.name == b.name
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rt(plural: &str) -> ApiResource {
        let (group, kind) = match plural {
            "configmaps" => ("", "ConfigMap"),
            "pods" => ("", "Pod"),
            "deployments" => ("apps", "Deployment"),
            "replicasets" => ("apps", "ReplicaSet"),
            _ => ("example.com", "Widget"),
        };
        ApiResource::new(group, "v1", kind, plural, true)
    }

    fn obj(plural: &str, uid: &str, owners: Value, extra: Value) -> Meta {
        let mut o = json!({"metadata": {"name": uid, "namespace": "ns", "uid": uid, "ownerReferences": owners}});
        if let Some(m) = extra.as_object() {
            for (k, v) in m {
                o["metadata"][k] = v.clone();
            }
        }
        Meta::of(&rt(plural), &o).unwrap()
    }

    fn owner(kind: &str, uid: &str, block: bool) -> Value {
        let av = if kind == "ConfigMap" || kind == "Pod" {
            "v1"
        } else {
            "apps/v1"
        };
        json!({"apiVersion": av, "kind": kind, "name": uid, "uid": uid, "blockOwnerDeletion": block})
    }

    #[test]
    fn unseen_owner_becomes_a_virtual_node_to_check() {
        let mut g = Graph::default();
        let w = g.observe(obj(
            "configmaps",
            "dep",
            json!([owner("ConfigMap", "own", false)]),
            json!({}),
        ));
        assert_eq!(w.attempt_to_delete, ["own"]);
        let own = g.item("own").unwrap();
        assert!(!own.observed);
        assert_eq!(own.identity.namespace.as_deref(), Some("ns"));
        // Observing it makes it real; nothing to do.
        let w = g.observe(obj("configmaps", "own", json!([]), json!({})));
        assert_eq!(w, Work::default());
        assert!(g.item("own").unwrap().observed);
        // Its deletion sends the dependent to be checked and remembers it is gone.
        let w = g.observe_deletion("own");
        assert_eq!(w.attempt_to_delete, ["dep"]);
        assert!(g.known_absent("own"));
    }

    #[test]
    fn virtual_owner_absent_or_left_without_dependents_goes() {
        let mut g = Graph::default();
        g.observe(obj(
            "configmaps",
            "dep",
            json!([owner("ConfigMap", "own", false)]),
            json!({}),
        ));
        let identity = g.item("own").unwrap().identity;
        assert_eq!(g.absent(&identity).attempt_to_delete, ["dep"]);
        assert!(g.item("own").is_none());
        g.observe(obj(
            "configmaps",
            "dep2",
            json!([owner("ConfigMap", "own2", false)]),
            json!({}),
        ));
        g.observe(obj("configmaps", "dep2", json!([]), json!({})));
        assert!(g.item("own2").is_none());
    }

    #[test]
    fn foreground_deletion_sends_dependents_and_waits_for_blocking_ones() {
        let mut g = Graph::default();
        g.observe(obj("deployments", "d", json!([]), json!({})));
        g.observe(obj(
            "replicasets",
            "rs",
            json!([owner("Deployment", "d", true)]),
            json!({}),
        ));
        g.observe(obj(
            "pods",
            "p",
            json!([owner("ReplicaSet", "rs", true)]),
            json!({}),
        ));
        let w = g.observe(obj(
            "deployments",
            "d",
            json!([]),
            json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [FOREGROUND]}),
        ));
        assert_eq!(w.attempt_to_delete, ["rs", "d"]);
        assert!(g.item("d").unwrap().deleting_dependents);
        assert_eq!(g.blocking_dependents("d"), [("rs".to_string(), false)]);
        // The same state again is no new transition.
        let w = g.observe(obj(
            "deployments",
            "d",
            json!([]),
            json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [FOREGROUND]}),
        ));
        assert_eq!(w, Work::default());
        // A dependent dropping its blocking reference unblocks the owner.
        let w = g.observe(obj(
            "replicasets",
            "rs",
            json!([owner("Deployment", "d", false)]),
            json!({}),
        ));
        assert_eq!(w.attempt_to_delete, ["d"]);
        assert!(g.blocking_dependents("d").is_empty());
        // A dependent's deletion re-checks an owner deleting its dependents.
        g.observe(obj(
            "replicasets",
            "rs",
            json!([owner("Deployment", "d", true)]),
            json!({}),
        ));
        assert_eq!(g.observe_deletion("rs").attempt_to_delete, ["p", "d"]);
    }

    #[test]
    fn orphan_finalizer_sends_owner_to_orphan_queue_once() {
        let mut g = Graph::default();
        g.observe(obj("replicasets", "rs", json!([]), json!({})));
        let deleting = json!({"deletionTimestamp": "2026-01-01T00:00:00Z", "finalizers": [ORPHAN]});
        assert_eq!(
            g.observe(obj("replicasets", "rs", json!([]), deleting.clone()))
                .attempt_to_orphan,
            ["rs"]
        );
        assert_eq!(
            g.observe(obj("replicasets", "rs", json!([]), deleting)),
            Work::default()
        );
        assert!(g.item("rs").unwrap().being_deleted);
    }

    #[test]
    fn relist_deletes_what_it_no_longer_finds() {
        let mut g = Graph::default();
        g.observe(obj("configmaps", "a", json!([]), json!({})));
        g.observe(obj(
            "configmaps",
            "b",
            json!([owner("ConfigMap", "a", false)]),
            json!({}),
        ));
        g.observe(obj("pods", "p", json!([]), json!({})));
        let w = g.relisted("", "ConfigMap", &HashSet::from(["b".to_string()]));
        assert_eq!(w.attempt_to_delete, ["b"]);
        assert!(g.item("a").is_none());
        assert!(g.item("p").is_some(), "other kinds untouched");
    }

    #[test]
    fn references_to_a_kind_served_later_are_checked_at_its_first_list() {
        let mut g = Graph::default();
        let widget =
            json!({"apiVersion": "example.com/v1", "kind": "Widget", "name": "w", "uid": "w"});
        g.observe(obj("configmaps", "dep", json!([widget]), json!({})));
        // Its kind's monitor lists it for the first time: not there, so the virtual
        // owner is looked at (and found absent by the worker).
        let w = g.relisted("example.com", "Widget", &HashSet::new());
        assert_eq!(w.attempt_to_delete, ["w"]);
        assert_eq!(
            g.item("w").unwrap().identity.namespace.as_deref(),
            Some("ns")
        );
        // Listed and there: it is a real node, nothing to check.
        g.observe(obj("widgets", "w", json!([]), json!({})));
        let w = g.relisted("example.com", "Widget", &HashSet::from(["w".to_string()]));
        assert_eq!(w, Work::default());
        assert!(g.item("w").unwrap().observed);
    }
}
