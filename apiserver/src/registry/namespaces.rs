//! What NamespaceLifecycle admission needs to know about namespaces, kept from the watch
//! cache so that a create does not read its namespace from etcd every time (Kubernetes
//! answers this from an informer too).

use crate::watch_cache::{Change, Subscription, WatchCache};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

const PREFIX: &str = "/registry/namespaces/";

/// A namespace's state as admission sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamespaceState {
    Active,
    Terminating,
}

fn state_of(obj: &serde_json::Value) -> NamespaceState {
    let deleting = obj
        .pointer("/metadata/deletionTimestamp")
        .is_some_and(|v| !v.is_null());
    let phase = obj.pointer("/status/phase").and_then(|v| v.as_str());
    if deleting || phase == Some("Terminating") {
        NamespaceState::Terminating
    } else {
        NamespaceState::Active
    }
}

/// Namespaces seen in the watch stream. Absence means "not known yet", never "missing":
/// callers fall back to etcd, so a namespace created a moment ago is still found.
#[derive(Clone, Default)]
pub struct NamespaceCache {
    known: Arc<RwLock<HashMap<String, NamespaceState>>>,
}

impl NamespaceCache {
    pub fn get(&self, name: &str) -> Option<NamespaceState> {
        self.known.read().expect("namespaces").get(name).copied()
    }

    /// Record what a read from etcd found.
    pub fn observe(&self, name: &str, obj: &serde_json::Value) {
        self.known
            .write()
            .expect("namespaces")
            .insert(name.to_string(), state_of(obj));
    }

    /// Follow namespace changes from `after` on; runs until the cache restarts it.
    pub fn follow(&self, cache: Arc<WatchCache>, after: i64) {
        let known = self.known.clone();
        tokio::spawn(async move {
            let mut after = after;
            loop {
                let Ok(Subscription::Cached { backlog, mut live }) = cache.subscribe(after).await
                else {
                    // Too far behind: forget everything (callers fall back to etcd).
                    known.write().expect("namespaces").clear();
                    after = cache.latest();
                    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                    continue;
                };
                let apply = |ev: &crate::watch_cache::RawEvent| {
                    let Some(name) = ev.key.strip_prefix(PREFIX) else {
                        return;
                    };
                    let mut map = known.write().expect("namespaces");
                    match (ev.change, ev.object()) {
                        (Change::Put, Some(obj)) => {
                            map.insert(name.to_string(), state_of(obj));
                        }
                        _ => {
                            map.remove(name);
                        }
                    }
                };
                for ev in &backlog {
                    apply(ev);
                    after = after.max(ev.revision);
                }
                loop {
                    match live.recv().await {
                        Ok(ev) => {
                            after = after.max(ev.revision);
                            apply(&ev);
                        }
                        Err(_) => {
                            // Lagged or restarted: start over from scratch.
                            known.write().expect("namespaces").clear();
                            after = cache.latest();
                            break;
                        }
                    }
                }
            }
        });
    }
}
