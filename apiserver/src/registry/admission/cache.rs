//! Objects of one namespaced kind, by namespace, loaded from etcd and then followed in
//! the watch cache, for admission plugins that consult them on every write (as
//! Kubernetes' plugins use informers).
//!
//! A namespace the cache has nothing for is looked up in etcd as well (at most every
//! [`LIVE_TTL`] per namespace, as Kubernetes' `liveLookupCache`), so that an object
//! created a moment ago, not yet seen in the watch, still counts.

use crate::registry::decode_kv;
use crate::storage::Storage;
use crate::watch_cache::{Change, Subscription, WatchCache};
use keelson_apimachinery::ApiError;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

pub const LIVE_TTL: Duration = Duration::from_secs(30);

#[derive(Default)]
struct State {
    loaded: bool,
    /// namespace → name → object (with its resourceVersion).
    by_namespace: HashMap<String, BTreeMap<String, Arc<Value>>>,
    /// Namespaces looked up in etcd because the cache had nothing: when, and what.
    live: HashMap<String, (Instant, Vec<Arc<Value>>)>,
}

pub struct NamespacedCache {
    /// `/registry/<plural>/`.
    prefix: &'static str,
    state: RwLock<State>,
}

impl NamespacedCache {
    pub fn new(prefix: &'static str) -> Self {
        NamespacedCache {
            prefix,
            state: RwLock::default(),
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|e| e.into_inner())
    }

    /// The objects in `namespace`, in name order.
    pub async fn get(
        &self,
        storage: &Storage,
        namespace: &str,
    ) -> Result<Vec<Arc<Value>>, ApiError> {
        if !self.read().loaded {
            self.load(storage)
                .await
                .map_err(|e| ApiError::internal(format!("loading {}: {e}", self.prefix)))?;
        }
        {
            let s = self.read();
            if let Some(objs) = s.by_namespace.get(namespace).filter(|m| !m.is_empty()) {
                return Ok(objs.values().cloned().collect());
            }
            if let Some((at, objs)) = s.live.get(namespace) {
                if at.elapsed() < LIVE_TTL {
                    return Ok(objs.clone());
                }
            }
        }
        let prefix = format!("{}{namespace}/", self.prefix);
        let page = storage
            .list(&prefix, "", 0, 0)
            .await
            .map_err(|e| ApiError::internal(format!("listing {prefix}: {e}")))?;
        let objs: Vec<Arc<Value>> = page
            .kvs
            .iter()
            .filter_map(|kv| decode_kv(kv).ok().map(Arc::new))
            .collect();
        let mut s = self.write();
        // Forget expired lookups (of namespaces since deleted, say) as new ones come.
        s.live.retain(|_, (at, _)| at.elapsed() < LIVE_TTL);
        s.live
            .insert(namespace.to_string(), (Instant::now(), objs.clone()));
        Ok(objs)
    }

    /// Read every object from etcd; returns the revision read at.
    async fn load(&self, storage: &Storage) -> Result<i64, crate::storage::StorageError> {
        let page = storage.list(self.prefix, "", 0, 0).await?;
        let mut by_namespace: HashMap<String, BTreeMap<String, Arc<Value>>> = HashMap::new();
        for kv in &page.kvs {
            if let (Some((ns, name)), Ok(obj)) = (self.split(&kv.key), decode_kv(kv)) {
                by_namespace
                    .entry(ns.to_string())
                    .or_default()
                    .insert(name.to_string(), Arc::new(obj));
            }
        }
        let mut s = self.write();
        s.by_namespace = by_namespace;
        s.live.clear();
        s.loaded = true;
        Ok(page.revision)
    }

    fn split<'a>(&self, key: &'a str) -> Option<(&'a str, &'a str)> {
        key.strip_prefix(self.prefix)?.split_once('/')
    }

    /// Load, then follow changes in the watch cache; reload when falling behind. Runs
    /// until the process ends.
    pub fn follow(self: &Arc<Self>, cache: Arc<WatchCache>, storage: Storage) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let after = match this.load(&storage).await {
                    Ok(rev) => rev,
                    Err(e) => {
                        tracing::warn!(error = %e, prefix = this.prefix, "loading for admission");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        continue;
                    }
                };
                if let Ok(Subscription::Cached { backlog, mut live }) = cache.subscribe(after).await
                {
                    for ev in backlog.iter().filter(|e| e.revision > after) {
                        this.apply(ev);
                    }
                    while let Ok(ev) = live.recv().await {
                        if ev.revision > after {
                            this.apply(&ev);
                        }
                    }
                }
                // Lagged, or the cache does not reach back to the load: start over.
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    fn apply(&self, ev: &crate::watch_cache::RawEvent) {
        let Some((ns, name)) = self.split(&ev.key) else {
            return;
        };
        let mut s = self.write();
        match (ev.change, ev.object()) {
            (Change::Put, Some(obj)) => {
                s.by_namespace
                    .entry(ns.to_string())
                    .or_default()
                    .insert(name.to_string(), obj.clone());
            }
            _ => {
                if let Some(m) = s.by_namespace.get_mut(ns) {
                    m.remove(name);
                }
            }
        }
        // The watch has caught up with this namespace: no need for live results.
        s.live.remove(ns);
    }
}
