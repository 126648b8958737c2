//! One etcd watch shared by every client watch.
//!
//! Kubernetes' apiserver keeps a "watch cache" so that a thousand watchers cost one etcd
//! watch; Keelson does the same. A single task follows every key under `/registry/`,
//! decodes each change once, keeps a window of recent events and broadcasts each event
//! to subscribers. A client watch from resourceVersion N replays the window after N and
//! then follows the broadcast; a watch from before the window falls back to a direct
//! etcd watch, which answers 410 Gone once etcd has compacted that far.

use crate::storage::{Storage, StorageError};
use serde_json::Value;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

/// Events kept for replay; older ones are served from etcd directly.
const WINDOW: usize = 20_000;
/// Events a slow subscriber may fall behind before its watch is closed (the client then
/// resumes from its last resourceVersion, which the window usually still covers).
const BROADCAST_CAPACITY: usize = 16_384;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    Put,
    Delete,
}

/// One decoded etcd change.
#[derive(Debug)]
pub struct RawEvent {
    pub revision: i64,
    pub key: String,
    pub change: Change,
    /// The object after the change (None for deletes), with resourceVersion set.
    pub object: Option<Arc<Value>>,
    /// The object before the change (None for creates), with its own resourceVersion.
    pub prev: Option<Arc<Value>>,
    /// `object` as JSON, encoded once for every watcher that receives it.
    pub object_json: std::sync::OnceLock<bytes::Bytes>,
    /// The DELETED form (`prev` at this event's revision) and its JSON, made once.
    pub deleted: std::sync::OnceLock<(Arc<Value>, bytes::Bytes)>,
}

impl RawEvent {
    /// The new object's JSON (encoded on first use).
    pub fn object_json(&self) -> Option<bytes::Bytes> {
        let obj = self.object.as_ref()?;
        Some(
            self.object_json
                .get_or_init(|| bytes::Bytes::from(serde_json::to_vec(&**obj).unwrap_or_default()))
                .clone(),
        )
    }

    /// The object a watcher that sees this change as a deletion gets: the previous state
    /// at this event's revision.
    pub fn deleted_form(&self) -> Option<(Arc<Value>, bytes::Bytes)> {
        let prev = self.prev.as_ref()?;
        Some(
            self.deleted
                .get_or_init(|| {
                    let mut o = (**prev).clone();
                    keelson_apimachinery::meta::metadata_mut(&mut o).insert(
                        "resourceVersion".into(),
                        Value::String(self.revision.to_string()),
                    );
                    let json = bytes::Bytes::from(serde_json::to_vec(&o).unwrap_or_default());
                    (Arc::new(o), json)
                })
                .clone(),
        )
    }

    pub fn is_create(&self) -> bool {
        self.change == Change::Put && self.prev.is_none()
    }
}

/// Decode a stored value and set its resourceVersion.
pub fn decode(value: &[u8], revision: i64) -> Option<Value> {
    let mut obj: Value = serde_json::from_slice(value).ok()?;
    keelson_apimachinery::meta::metadata_mut(&mut obj).insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    Some(obj)
}

/// A change as the window keeps it: the stored bytes, decoded again only when a watcher
/// replays it. Parsed objects are several times larger than their JSON, and the window
/// holds thousands of events.
struct Compact {
    revision: i64,
    key: String,
    change: Change,
    value: Option<bytes::Bytes>,
    prev: Option<(bytes::Bytes, i64)>,
}

impl Compact {
    fn from_etcd(ev: &etcd_client::Event) -> Option<Compact> {
        let kv = ev.kv()?;
        let change = match ev.event_type() {
            etcd_client::EventType::Put => Change::Put,
            etcd_client::EventType::Delete => Change::Delete,
        };
        Some(Compact {
            revision: kv.mod_revision(),
            key: String::from_utf8_lossy(kv.key()).into_owned(),
            change,
            value: (change == Change::Put).then(|| bytes::Bytes::copy_from_slice(kv.value())),
            prev: ev
                .prev_kv()
                .map(|p| (bytes::Bytes::copy_from_slice(p.value()), p.mod_revision())),
        })
    }

    fn expand(&self) -> RawEvent {
        RawEvent {
            revision: self.revision,
            key: self.key.clone(),
            change: self.change,
            object: self
                .value
                .as_ref()
                .and_then(|v| decode(v, self.revision))
                .map(Arc::new),
            prev: self
                .prev
                .as_ref()
                .and_then(|(v, rev)| decode(v, *rev))
                .map(Arc::new),
            object_json: std::sync::OnceLock::new(),
            deleted: std::sync::OnceLock::new(),
        }
    }
}

fn to_raw(ev: &etcd_client::Event) -> Option<RawEvent> {
    let kv = ev.kv()?;
    let revision = kv.mod_revision();
    let prev = ev
        .prev_kv()
        .and_then(|p| decode(p.value(), p.mod_revision()))
        .map(Arc::new);
    let (change, object) = match ev.event_type() {
        etcd_client::EventType::Put => (Change::Put, decode(kv.value(), revision).map(Arc::new)),
        etcd_client::EventType::Delete => (Change::Delete, None),
    };
    Some(RawEvent {
        revision,
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        change,
        object,
        prev,
        object_json: std::sync::OnceLock::new(),
        deleted: std::sync::OnceLock::new(),
    })
}

struct Window {
    events: VecDeque<Compact>,
    /// The window holds every event with a revision above this one.
    complete_after: i64,
    /// The newest revision the cache knows the store to be at.
    latest: i64,
}

/// Where a subscriber's events come from.
pub enum Subscription {
    /// From the cache: the replayed backlog, then the live broadcast.
    Cached {
        backlog: Vec<Arc<RawEvent>>,
        live: broadcast::Receiver<Arc<RawEvent>>,
    },
    /// From etcd directly: the requested revision is older than the window.
    Direct(etcd_client::WatchStream),
}

pub struct WatchCache {
    storage: Storage,
    window: Mutex<Window>,
    tx: broadcast::Sender<Arc<RawEvent>>,
}

impl WatchCache {
    /// Start following etcd from its current revision.
    pub async fn start(storage: Storage) -> anyhow::Result<Arc<Self>> {
        let start = storage.revision().await?;
        let (tx, _) = broadcast::channel(BROADCAST_CAPACITY);
        let cache = Arc::new(WatchCache {
            storage,
            window: Mutex::new(Window {
                events: VecDeque::new(),
                complete_after: start,
                latest: start,
            }),
            tx,
        });
        tokio::spawn(cache.clone().follow(start));
        Ok(cache)
    }

    /// Drop events at or below `revision` (compacted in etcd): watches from before it
    /// then go to etcd and get 410 Gone.
    pub fn forget_through(&self, revision: i64) {
        let mut w = self.window.lock().expect("window");
        while w.events.front().is_some_and(|e| e.revision <= revision) {
            w.events.pop_front();
        }
        w.complete_after = w.complete_after.max(revision.min(w.latest));
    }

    /// The newest revision the cache has seen (for bookmarks).
    pub fn latest(&self) -> i64 {
        self.window.lock().expect("window").latest
    }

    /// Subscribe to every event after `after`.
    pub async fn subscribe(&self, after: i64) -> Result<Subscription, StorageError> {
        {
            let w = self.window.lock().expect("window");
            if after >= w.complete_after {
                let backlog = w
                    .events
                    .iter()
                    .filter(|e| e.revision > after)
                    .map(|e| Arc::new(e.expand()))
                    .collect();
                // Subscribing under the lock: the follower pushes and broadcasts under
                // the same lock, so nothing falls between backlog and live.
                return Ok(Subscription::Cached {
                    backlog,
                    live: self.tx.subscribe(),
                });
            }
        }
        let stream = self.storage.watch("/registry/", after + 1).await?;
        Ok(Subscription::Direct(stream))
    }

    async fn follow(self: Arc<Self>, mut from: i64) {
        loop {
            match self.follow_once(from).await {
                Ok(last) => from = last,
                Err(e) => {
                    tracing::warn!(error = %e, "etcd watch broke; resuming");
                    from = self.latest();
                }
            }
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    }

    async fn follow_once(&self, from: i64) -> Result<i64, StorageError> {
        let mut stream = self.storage.watch("/registry/", from + 1).await?;
        let mut last = from;
        while let Some(resp) = stream.message().await.map_err(StorageError::from)? {
            if resp.compact_revision() > 0 || resp.canceled() {
                // Fell behind compaction: restart the window from now. Subscribers
                // that needed the lost events get them from etcd (410).
                let now = self.storage.revision().await?;
                let mut w = self.window.lock().expect("window");
                w.events.clear();
                w.complete_after = now;
                w.latest = now;
                return Ok(now);
            }
            let header_rev = resp.header().map_or(0, |h| h.revision());
            // Decode outside the lock; only the hand-off happens under it.
            let decoded: Vec<(Arc<RawEvent>, Compact)> = resp
                .events()
                .iter()
                .filter_map(|ev| Some((Arc::new(to_raw(ev)?), Compact::from_etcd(ev)?)))
                .collect();
            let mut w = self.window.lock().expect("window");
            for (raw, compact) in decoded {
                last = last.max(raw.revision);
                w.events.push_back(compact);
                if w.events.len() > WINDOW {
                    if let Some(old) = w.events.pop_front() {
                        w.complete_after = old.revision;
                    }
                }
                let _ = self.tx.send(raw);
            }
            // A progress notification (no events) says the store is at header_rev.
            if resp.events().is_empty() {
                last = last.max(header_rev);
            }
            w.latest = w.latest.max(last);
        }
        Err(StorageError::Unavailable("etcd watch stream ended".into()))
    }
}

/// Turn a direct etcd watch response into raw events (for [`Subscription::Direct`]).
pub fn raw_events(resp: &etcd_client::WatchResponse) -> Vec<Arc<RawEvent>> {
    resp.events()
        .iter()
        .filter_map(to_raw)
        .map(Arc::new)
        .collect()
}
