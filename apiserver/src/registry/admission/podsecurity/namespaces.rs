//! Namespaces' labels, for Pod Security admission of every pod and workload write:
//! followed in the watch cache (Kubernetes reads them from an informer), and read from
//! etcd when the cache has not seen a namespace yet. Each entry keeps the revision it
//! was read at, so an older read never replaces a newer event.

use crate::registry::decode_kv;
use crate::storage::Storage;
use crate::watch_cache::{Change, Subscription, WatchCache};
use keelson_apimachinery::ApiError;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;

const PREFIX: &str = "/registry/namespaces/";

pub type Labels = BTreeMap<String, String>;

pub fn labels_of(obj: &Value) -> Labels {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
        .collect()
}

#[derive(Default)]
pub struct NamespaceLabels {
    /// name → (revision, labels).
    known: RwLock<HashMap<String, (i64, Arc<Labels>)>>,
}

impl NamespaceLabels {
    fn put(&self, name: &str, revision: i64, labels: Arc<Labels>) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        match known.get(name) {
            Some((rev, _)) if *rev > revision => {}
            _ => {
                known.insert(name.to_string(), (revision, labels));
            }
        }
    }

    /// The labels of namespace `name`; None when it does not exist.
    pub async fn get(
        &self,
        storage: &Storage,
        name: &str,
    ) -> Result<Option<Arc<Labels>>, ApiError> {
        if let Some((_, labels)) = self
            .known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            return Ok(Some(labels.clone()));
        }
        let kv = storage
            .get(&format!("{PREFIX}{name}"))
            .await
            .map_err(|e| ApiError::internal(format!("Internal error occurred: {e}")))?;
        let Some(kv) = kv else {
            return Ok(None);
        };
        let labels = Arc::new(labels_of(&decode_kv(&kv)?));
        self.put(name, kv.mod_revision, labels.clone());
        Ok(Some(labels))
    }

    /// Follow namespace changes in the watch cache until the process ends; after
    /// falling behind, forget everything (reads go to etcd until events come).
    pub fn follow(self: &Arc<Self>, cache: Arc<WatchCache>) {
        let this = self.clone();
        tokio::spawn(async move {
            loop {
                let after = cache.latest();
                if let Ok(Subscription::Cached { backlog, mut live }) = cache.subscribe(after).await
                {
                    for ev in &backlog {
                        this.apply(ev);
                    }
                    while let Ok(ev) = live.recv().await {
                        this.apply(&ev);
                    }
                }
                this.known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .clear();
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        });
    }

    fn apply(&self, ev: &crate::watch_cache::RawEvent) {
        let Some(name) = ev.key.strip_prefix(PREFIX) else {
            return;
        };
        match (ev.change, ev.object()) {
            (Change::Put, Some(obj)) => self.put(name, ev.revision, Arc::new(labels_of(obj))),
            _ => {
                self.known
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(name);
            }
        }
    }
}
