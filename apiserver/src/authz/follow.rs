//! Objects of a few kinds kept in memory for the authorizers, as Kubernetes' authorizers
//! read informers: everything under some etcd prefixes is loaded at one revision, then
//! followed through the watch cache; falling behind reloads.

use crate::registry::decode_kv;
use crate::storage::Storage;
use crate::watch_cache::{Change, Subscription, WatchCache};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What keeps the objects: told everything on (re)load, then each change.
pub trait Sink: Send + Sync + 'static {
    /// Prefixes followed, e.g. `/registry/clusterroles/`.
    fn prefixes(&self) -> &'static [&'static str];
    /// Everything under the prefixes, by key, replacing what was held.
    fn reset(&self, objects: Vec<(String, Arc<Value>)>);
    /// One change: the object now at `key`, or `None` when it was deleted.
    fn apply(&self, key: &str, object: Option<&Arc<Value>>);
}

/// Becomes true once the first load is done.
#[derive(Clone)]
pub struct Loaded(watch::Receiver<bool>);

impl Loaded {
    /// Wait for the first load; requests authorized before it would see no policy.
    pub async fn wait(&self) {
        let mut rx = self.0.clone();
        let _ = rx.wait_for(|loaded| *loaded).await;
    }
}

async fn load(sink: &dyn Sink, storage: &Storage) -> Result<i64, crate::storage::StorageError> {
    let revision = storage.revision().await?;
    let mut objects = Vec::new();
    for prefix in sink.prefixes() {
        let page = storage.list(prefix, "", 0, revision).await?;
        for kv in &page.kvs {
            if let Ok(obj) = decode_kv(kv) {
                objects.push((kv.key.clone(), Arc::new(obj)));
            }
        }
    }
    sink.reset(objects);
    Ok(revision)
}

/// Load, then follow; runs until the process ends.
pub fn follow(sink: Arc<dyn Sink>, cache: Arc<WatchCache>, storage: Storage) -> Loaded {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        loop {
            let after = match load(sink.as_ref(), &storage).await {
                Ok(rev) => rev,
                Err(e) => {
                    tracing::warn!(error = %e, prefixes = ?sink.prefixes(), "loading for authorization");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let _ = tx.send(true);
            let wanted = |key: &str| sink.prefixes().iter().any(|p| key.starts_with(p));
            if let Ok(Subscription::Cached { backlog, mut live }) = cache.subscribe(after).await {
                let apply = |ev: &crate::watch_cache::RawEvent| {
                    if ev.revision > after && wanted(&ev.key) {
                        let obj = match ev.change {
                            Change::Put => ev.object(),
                            _ => None,
                        };
                        sink.apply(&ev.key, obj);
                    }
                };
                for ev in &backlog {
                    apply(ev);
                }
                while let Ok(ev) = live.recv().await {
                    apply(&ev);
                }
            }
            // Lagged, or the cache does not reach back to the load: start over.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    Loaded(rx)
}
