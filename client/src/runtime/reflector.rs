//! A local cache of objects kept up to date from [`watcher`](super::watcher()) events.
//!
//! [`store()`] gives a read handle ([`Store`], cheap to clone) and the [`Writer`] that
//! applies events. [`reflector()`] wraps a watcher stream so that every event passes
//! through the writer.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use futures::{Stream, StreamExt};
use keelson_apimachinery::selector::LabelSelector;

use super::watcher::Event;
use crate::error::Result;
use crate::object::{KubeObject, ObjectKey};

type Map<K> = BTreeMap<ObjectKey, Arc<K>>;

struct Inner<K> {
    objects: RwLock<Map<K>>,
    synced: tokio::sync::watch::Sender<bool>,
}

/// Read access to the cache: objects by namespace/name, by namespace, by label selector.
pub struct Store<K> {
    inner: Arc<Inner<K>>,
}

impl<K> Clone for Store<K> {
    fn clone(&self) -> Self {
        Store {
            inner: self.inner.clone(),
        }
    }
}

impl<K> std::fmt::Debug for Store<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("len", &self.len())
            .field("synced", &self.has_synced())
            .finish()
    }
}

impl<K> Store<K> {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Map<K>> {
        self.inner.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the first list has been applied.
    pub fn has_synced(&self) -> bool {
        *self.inner.synced.borrow()
    }

    /// Wait until the first list has been applied.
    pub async fn wait_until_synced(&self) {
        let mut rx = self.inner.synced.subscribe();
        let _ = rx.wait_for(|s| *s).await;
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.read().is_empty()
    }

    pub fn get(&self, key: &ObjectKey) -> Option<Arc<K>> {
        self.read().get(key).cloned()
    }

    /// `namespace` is `None` for cluster-scoped objects.
    pub fn get_by_name(&self, namespace: Option<&str>, name: &str) -> Option<Arc<K>> {
        self.get(&ObjectKey::new(namespace, name))
    }

    pub fn keys(&self) -> Vec<ObjectKey> {
        self.read().keys().cloned().collect()
    }

    /// Every object, ordered by namespace and name.
    pub fn list(&self) -> Vec<Arc<K>> {
        self.read().values().cloned().collect()
    }

    /// The objects of one namespace.
    pub fn list_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        let start = ObjectKey::new(Some(namespace), "");
        self.read()
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(|(k, _)| k.namespace.as_deref() == Some(namespace))
            .map(|(_, v)| v.clone())
            .collect()
    }
}

impl<K: KubeObject> Store<K> {
    /// The objects whose labels match `selector`.
    pub fn list_selected(&self, selector: &LabelSelector) -> Vec<Arc<K>> {
        self.read()
            .values()
            .filter(|o| selector.matches_with(|k| o.label(k)))
            .cloned()
            .collect()
    }

    /// The objects of one namespace whose labels match `selector`.
    pub fn list_namespace_selected(
        &self,
        namespace: &str,
        selector: &LabelSelector,
    ) -> Vec<Arc<K>> {
        self.list_namespace(namespace)
            .into_iter()
            .filter(|o| selector.matches_with(|k| o.label(k)))
            .collect()
    }
}

/// A change the writer made to the store.
#[derive(Debug)]
pub enum Change<K> {
    Added(Arc<K>),
    Updated { old: Arc<K>, new: Arc<K> },
    Deleted(Arc<K>),
}

/// Applies watcher events to its [`Store`].
pub struct Writer<K> {
    store: Store<K>,
    /// The state being built by a (re)list, swapped in at `InitDone`.
    buffer: Option<Map<K>>,
}

/// A new empty store and its writer.
pub fn store<K>() -> (Store<K>, Writer<K>) {
    let (synced, _) = tokio::sync::watch::channel(false);
    let store = Store {
        inner: Arc::new(Inner {
            objects: RwLock::new(BTreeMap::new()),
            synced,
        }),
    };
    (
        store.clone(),
        Writer {
            store,
            buffer: None,
        },
    )
}

impl<K: KubeObject> Writer<K> {
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Apply one event; returns what changed in the store. A relist reports, at
    /// `InitDone`, objects that appeared (`Added`), changed resourceVersion
    /// (`Updated`) or vanished (`Deleted`, with their last known state).
    pub fn apply(&mut self, event: Event<K>) -> Vec<Change<K>> {
        match event {
            Event::Init => {
                self.buffer = Some(BTreeMap::new());
                Vec::new()
            }
            Event::InitApply(obj) => {
                let buf = self.buffer.get_or_insert_with(BTreeMap::new);
                buf.insert(obj.key(), Arc::new(obj));
                Vec::new()
            }
            Event::InitDone => {
                let new = self.buffer.take().unwrap_or_default();
                let mut changes = Vec::new();
                {
                    let mut map = self
                        .store
                        .inner
                        .objects
                        .write()
                        .unwrap_or_else(|e| e.into_inner());
                    for (k, old) in map.iter() {
                        if !new.contains_key(k) {
                            changes.push(Change::Deleted(old.clone()));
                        }
                    }
                    for (k, obj) in &new {
                        match map.get(k) {
                            None => changes.push(Change::Added(obj.clone())),
                            Some(old) if old.resource_version() != obj.resource_version() => {
                                changes.push(Change::Updated {
                                    old: old.clone(),
                                    new: obj.clone(),
                                })
                            }
                            Some(_) => {}
                        }
                    }
                    *map = new;
                }
                self.store.inner.synced.send_replace(true);
                changes
            }
            Event::Apply(obj) => {
                let key = obj.key();
                let obj = Arc::new(obj);
                if let Some(buf) = &mut self.buffer {
                    buf.insert(key, obj);
                    return Vec::new();
                }
                let mut map = self
                    .store
                    .inner
                    .objects
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                match map.insert(key, obj.clone()) {
                    Some(old) => vec![Change::Updated { old, new: obj }],
                    None => vec![Change::Added(obj)],
                }
            }
            Event::Delete(obj) => {
                let key = obj.key();
                if let Some(buf) = &mut self.buffer {
                    buf.remove(&key);
                    return Vec::new();
                }
                let mut map = self
                    .store
                    .inner
                    .objects
                    .write()
                    .unwrap_or_else(|e| e.into_inner());
                match map.remove(&key) {
                    Some(_) => vec![Change::Deleted(Arc::new(obj))],
                    None => Vec::new(),
                }
            }
        }
    }
}

/// Pass a watcher stream through `writer`, so that the store follows it.
pub fn reflector<K: KubeObject, S>(
    mut writer: Writer<K>,
    stream: S,
) -> impl Stream<Item = Result<Event<K>>>
where
    S: Stream<Item = Result<Event<K>>>,
{
    stream.map(move |ev| {
        if let Ok(ev) = &ev {
            writer.apply(ev.clone());
        }
        ev
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;
    use serde_json::json;

    fn cm(ns: &str, name: &str, rv: &str, app: &str) -> ConfigMap {
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": rv, "labels": {"app": app}}
        }))
        .unwrap()
    }

    fn names(v: &[Arc<ConfigMap>]) -> Vec<String> {
        v.iter().map(|o| o.key().to_string()).collect()
    }

    #[test]
    fn relist_swaps_and_reports_differences() {
        let (store, mut w) = store::<ConfigMap>();
        assert!(!store.has_synced());
        w.apply(Event::Init);
        w.apply(Event::InitApply(cm("a", "x", "1", "web")));
        w.apply(Event::InitApply(cm("b", "y", "2", "db")));
        assert!(store.is_empty(), "nothing visible before InitDone");
        let changes = w.apply(Event::InitDone);
        assert_eq!(changes.len(), 2);
        assert!(store.has_synced());
        assert_eq!(names(&store.list()), ["a/x", "b/y"]);

        // A relist where a/x changed, b/y vanished and c/z appeared.
        w.apply(Event::Init);
        w.apply(Event::InitApply(cm("a", "x", "5", "web")));
        w.apply(Event::InitApply(cm("c", "z", "6", "web")));
        assert_eq!(store.len(), 2, "old state stays visible during a relist");
        let changes = w.apply(Event::InitDone);
        let mut kinds: Vec<String> = changes
            .iter()
            .map(|c| match c {
                Change::Added(o) => format!("added {}", o.key()),
                Change::Updated { old, new } => format!(
                    "updated {} {}->{}",
                    new.key(),
                    old.metadata.resource_version.as_deref().unwrap(),
                    new.metadata.resource_version.as_deref().unwrap()
                ),
                Change::Deleted(o) => format!("deleted {}", o.key()),
            })
            .collect();
        kinds.sort();
        assert_eq!(kinds, ["added c/z", "deleted b/y", "updated a/x 1->5"]);
    }

    #[test]
    fn queries_by_namespace_and_selector() {
        let (store, mut w) = store::<ConfigMap>();
        w.apply(Event::Init);
        for (ns, n, app) in [
            ("a", "1", "web"),
            ("a", "2", "db"),
            ("ab", "3", "web"),
            ("b", "4", "web"),
        ] {
            w.apply(Event::InitApply(cm(ns, n, "1", app)));
        }
        w.apply(Event::InitDone);
        assert_eq!(names(&store.list_namespace("a")), ["a/1", "a/2"]);
        let web = LabelSelector::parse("app=web").unwrap();
        assert_eq!(names(&store.list_selected(&web)), ["a/1", "ab/3", "b/4"]);
        assert_eq!(names(&store.list_namespace_selected("a", &web)), ["a/1"]);
        let not_web = LabelSelector::parse("app!=web").unwrap();
        assert_eq!(names(&store.list_selected(&not_web)), ["a/2"]);

        let ch = w.apply(Event::Apply(cm("a", "2", "9", "web")));
        assert!(matches!(&ch[..], [Change::Updated { .. }]));
        assert_eq!(store.list_namespace_selected("a", &web).len(), 2);
        let ch = w.apply(Event::Delete(cm("a", "1", "10", "web")));
        assert!(matches!(&ch[..], [Change::Deleted(_)]));
        assert!(store.get_by_name(Some("a"), "1").is_none());
        assert!(w.apply(Event::Delete(cm("a", "1", "11", "web"))).is_empty());
    }
}
