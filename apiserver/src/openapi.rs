//! The OpenAPI documents served now: the built-in kinds' (built once at start) plus
//! every custom resource version served, written again when the CustomResourceDefinitions
//! change. The CRD follower ([`crate::crd`]) calls [`Published::changed`]; one task
//! waits [`DEBOUNCE`] for more changes, then rebuilds off the async threads and swaps
//! the documents in. A rebuild that would describe the same custom resources (a CRD
//! whose status changed) is skipped, so hashes and ETags change only with the schemas.

use keelson_openapi::OpenApi;
use keelson_resources::{custom, ResourceType};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::Notify;

/// How long a rebuild waits for further CRD changes (applying several CRDs at once).
pub const DEBOUNCE: Duration = Duration::from_millis(100);

pub struct Published {
    /// The documents of the built-in kinds alone.
    base: Arc<OpenApi>,
    current: RwLock<Arc<OpenApi>>,
    /// What the current documents describe of the custom resources.
    described: Mutex<Vec<Described>>,
    changed: Notify,
}

/// What a custom resource version's definitions and paths are built from.
#[derive(PartialEq)]
struct Described {
    /// The interned type's address: one per shape (names, scope, subresources).
    shape: usize,
    list_kind: String,
    schema: Option<serde_json::Value>,
}

fn describe(custom: &[&'static ResourceType]) -> Vec<Described> {
    custom
        .iter()
        .map(|rt| {
            let spec = rt.strategy.custom_spec();
            Described {
                shape: *rt as *const ResourceType as usize,
                list_kind: spec
                    .as_ref()
                    .map(|s| s.list_kind.clone())
                    .unwrap_or_default(),
                schema: spec.and_then(|s| s.openapi_schema.clone()),
            }
        })
        .collect()
}

impl Published {
    /// The documents of `builtins` (normally `keelson_resources::kinds::ALL`).
    pub fn new(builtins: &[&'static ResourceType]) -> Arc<Published> {
        let base = Arc::new(OpenApi::build(builtins));
        Arc::new(Published {
            current: RwLock::new(base.clone()),
            base,
            described: Mutex::new(Vec::new()),
            changed: Notify::new(),
        })
    }

    /// The documents to answer a request with.
    pub fn current(&self) -> Arc<OpenApi> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The custom resources served may have changed.
    pub fn changed(&self) {
        self.changed.notify_one();
    }

    /// Describe the custom resources served now, unless that is what the documents
    /// already describe.
    pub fn rebuild(&self) {
        let served = custom::served();
        let now = describe(&served);
        let mut described = self.described.lock().unwrap_or_else(|e| e.into_inner());
        if *described == now {
            return;
        }
        let started = std::time::Instant::now();
        let docs = if served.is_empty() {
            self.base.clone()
        } else {
            Arc::new(self.base.with_custom(&served))
        };
        tracing::info!(
            custom_resources = served.len(),
            took_ms = started.elapsed().as_millis() as u64,
            "OpenAPI documents rebuilt"
        );
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = docs;
        *described = now;
    }

    /// Rebuild after every change, [`DEBOUNCE`] later, for the life of the process.
    pub fn follow(self: &Arc<Self>) {
        let published = self.clone();
        tokio::spawn(async move {
            loop {
                published.changed.notified().await;
                tokio::time::sleep(DEBOUNCE).await;
                let p = published.clone();
                if let Err(e) = tokio::task::spawn_blocking(move || p.rebuild()).await {
                    tracing::error!(error = %e, "rebuilding the OpenAPI documents failed");
                }
            }
        });
    }
}
