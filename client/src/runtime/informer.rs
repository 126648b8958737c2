//! One watcher and one store shared by many consumers, as client-go's SharedInformer.
//!
//! A [`SharedInformer`] runs a [`watcher`](super::watcher()) on a background task and
//! applies its events to a [`Store`]. Every change of the store is delivered to each
//! subscriber ([`SharedInformer::subscribe`], or callbacks via
//! [`SharedInformer::add_handler`]) in order, through its own unbounded queue, so a
//! slow consumer delays only itself. A subscriber that joins late first receives
//! `Added` for every object already in the store, then the changes after that.
//! A relist (after 410 Gone) is reported as the difference to the previous state:
//! `Added`, `Updated`, and `Deleted` for objects removed while the watch was down.
//! Cached objects carry no `managedFields`.

use std::sync::{Arc, Mutex};

use futures::{Stream, StreamExt};
use tokio::sync::mpsc;

use super::reflector::{store, Change, Store};
use super::watcher::{self, watcher, Event};
use crate::api::Api;
use crate::object::KubeObject;

/// One change, as delivered to subscribers.
pub type Notification<K> = Change<K>;

impl<K> Clone for Change<K> {
    fn clone(&self) -> Self {
        match self {
            Change::Added(o) => Change::Added(o.clone()),
            Change::Updated { old, new } => Change::Updated {
                old: old.clone(),
                new: new.clone(),
            },
            Change::Deleted(o) => Change::Deleted(o.clone()),
        }
    }
}

/// Callbacks for an informer's changes, run in order on a task of their own.
pub trait EventHandler<K>: Send + 'static {
    fn on_add(&mut self, _obj: Arc<K>) {}
    fn on_update(&mut self, _old: Arc<K>, _new: Arc<K>) {}
    /// The last known state of the deleted object.
    fn on_delete(&mut self, _obj: Arc<K>) {}
}

type Callback<K> = Box<dyn FnMut(Arc<K>) + Send>;
type UpdateCallback<K> = Box<dyn FnMut(Arc<K>, Arc<K>) + Send>;

/// An [`EventHandler`] from closures (client-go's `ResourceEventHandlerFuncs`).
pub struct HandlerFuncs<K> {
    add: Option<Callback<K>>,
    update: Option<UpdateCallback<K>>,
    delete: Option<Callback<K>>,
}

impl<K> Default for HandlerFuncs<K> {
    fn default() -> Self {
        HandlerFuncs {
            add: None,
            update: None,
            delete: None,
        }
    }
}

impl<K> HandlerFuncs<K> {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn on_add(mut self, f: impl FnMut(Arc<K>) + Send + 'static) -> Self {
        self.add = Some(Box::new(f));
        self
    }
    pub fn on_update(mut self, f: impl FnMut(Arc<K>, Arc<K>) + Send + 'static) -> Self {
        self.update = Some(Box::new(f));
        self
    }
    pub fn on_delete(mut self, f: impl FnMut(Arc<K>) + Send + 'static) -> Self {
        self.delete = Some(Box::new(f));
        self
    }
}

impl<K: Send + Sync + 'static> EventHandler<K> for HandlerFuncs<K> {
    fn on_add(&mut self, obj: Arc<K>) {
        if let Some(f) = &mut self.add {
            f(obj)
        }
    }
    fn on_update(&mut self, old: Arc<K>, new: Arc<K>) {
        if let Some(f) = &mut self.update {
            f(old, new)
        }
    }
    fn on_delete(&mut self, obj: Arc<K>) {
        if let Some(f) = &mut self.delete {
            f(obj)
        }
    }
}

/// Counters of the informer's watcher.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InformerStats {
    /// Lists started (1 after the initial list; more after relists).
    pub lists: u64,
    /// Errors the watcher reported (each followed by a retry).
    pub errors: u64,
    pub last_error: Option<String>,
}

struct Shared<K> {
    subscribers: Mutex<Vec<mpsc::UnboundedSender<Notification<K>>>>,
    stats: Mutex<InformerStats>,
}

/// A watcher, a store, and any number of subscribers. Dropping it stops the watch and
/// ends every subscription.
pub struct SharedInformer<K> {
    store: Store<K>,
    shared: Arc<Shared<K>>,
    task: tokio::task::JoinHandle<()>,
}

impl<K> Drop for SharedInformer<K> {
    fn drop(&mut self) {
        self.task.abort();
        self.shared
            .subscribers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

impl<K: KubeObject> SharedInformer<K> {
    /// Start listing and watching `api` on a background task (needs a Tokio runtime).
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        Self::with_transform(api, config, |_| {})
    }

    /// [`SharedInformer::new`], with `transform` applied to every object before it is
    /// cached (client-go's `SetTransform`): a component that reads a few fields of many
    /// objects drops the rest and keeps its cache small.
    pub fn with_transform(
        api: Api<K>,
        config: watcher::Config,
        transform: impl Fn(&mut K) + Send + 'static,
    ) -> Self {
        // The cache drops managedFields (below); a current server does not send them.
        let config = config.without_managed_fields();
        let (store, mut writer) = store::<K>();
        let shared = Arc::new(Shared {
            subscribers: Mutex::new(Vec::new()),
            stats: Mutex::new(InformerStats::default()),
        });
        let task_shared = shared.clone();
        let stream = watcher(api, config);
        let task = tokio::spawn(async move {
            futures::pin_mut!(stream);
            while let Some(item) = stream.next().await {
                match item {
                    Ok(mut ev) => {
                        if let Event::InitApply(o) | Event::Apply(o) | Event::Delete(o) = &mut ev {
                            o.strip_managed_fields();
                            transform(o);
                        }
                        if matches!(ev, Event::Init) {
                            task_shared
                                .stats
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .lists += 1;
                        }
                        // Apply and fan out under the subscriber lock, so that a new
                        // subscriber's snapshot and its first notification never overlap.
                        let mut subs = task_shared
                            .subscribers
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        for change in writer.apply(ev) {
                            subs.retain(|tx| tx.send(change.clone()).is_ok());
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "informer watch failed; retrying");
                        let mut s = task_shared.stats.lock().unwrap_or_else(|e| e.into_inner());
                        s.errors += 1;
                        s.last_error = Some(e.to_string());
                    }
                }
            }
        });
        SharedInformer {
            store,
            shared,
            task,
        }
    }

    /// The informer's cache.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    /// Whether the initial list has been applied to the store.
    pub fn has_synced(&self) -> bool {
        self.store.has_synced()
    }

    /// Wait for the initial list.
    pub async fn wait_for_sync(&self) {
        self.store.wait_until_synced().await
    }

    pub fn stats(&self) -> InformerStats {
        self.shared
            .stats
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A stream of every change from now on, starting with `Added` for each object
    /// already in the store. Ends when the informer is dropped.
    pub fn subscribe(&self) -> impl Stream<Item = Notification<K>> + Send + Unpin + 'static {
        let (tx, mut rx) = mpsc::unbounded_channel();
        {
            let mut subs = self
                .shared
                .subscribers
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            for obj in self.store.list() {
                let _ = tx.send(Change::Added(obj));
            }
            subs.push(tx);
        }
        futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
    }

    /// Run `handler`'s callbacks for every change (see [`SharedInformer::subscribe`]) on
    /// a task of its own.
    pub fn add_handler(&self, mut handler: impl EventHandler<K>) {
        let mut changes = self.subscribe();
        tokio::spawn(async move {
            while let Some(change) = changes.next().await {
                match change {
                    Change::Added(o) => handler.on_add(o),
                    Change::Updated { old, new } => handler.on_update(old, new),
                    Change::Deleted(o) => handler.on_delete(o),
                }
            }
        });
    }
}
