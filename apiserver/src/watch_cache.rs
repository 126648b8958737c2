//! One etcd watch shared by every client watch.
//!
//! Kubernetes' apiserver keeps a "watch cache" so that a thousand watchers cost one etcd
//! watch; Keelson does the same. A single task follows every key under `/registry/`,
//! decodes each change once, keeps a window of recent events and broadcasts each event
//! to subscribers. A client watch from resourceVersion N replays the window after N and
//! then follows the broadcast; a watch from before the window falls back to a direct
//! etcd watch, which answers 410 Gone once etcd has compacted that far. Values are
//! decrypted (encryption at rest) as they arrive, so the window holds plaintext.

use crate::storage::{Storage, StorageError};
use crate::view::View;
use bytes::Bytes;
use serde_json::Value;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, OnceLock};
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

/// One etcd change, decoded lazily: a watcher that needs neither the previous state
/// (no selector, not a deletion) nor a view nobody asked for costs nothing to decode.
#[derive(Debug)]
pub struct RawEvent {
    pub revision: i64,
    pub key: String,
    pub change: Change,
    /// The object after the change (None for deletes).
    object: Option<Stored>,
    /// The object before the change (None for creates).
    prev: Option<Stored>,
    /// `object` as JSON, one per [`View`], encoded once for every watcher of that view.
    object_json: [OnceLock<Bytes>; View::COUNT],
    /// The DELETED form (`prev` at this event's revision), made once.
    deleted: OnceLock<Option<Arc<Value>>>,
    deleted_json: [OnceLock<Bytes>; View::COUNT],
}

/// A stored value, decoded (with its resourceVersion set) on first use.
#[derive(Debug)]
struct Stored {
    bytes: Bytes,
    revision: i64,
    decoded: OnceLock<Option<Arc<Value>>>,
}

impl Stored {
    /// `known`: the decoded form when this apiserver already has it (it wrote the value).
    fn new(bytes: Bytes, revision: i64, known: Option<Arc<Value>>) -> Stored {
        Stored {
            bytes,
            revision,
            decoded: known.map_or_else(OnceLock::new, |v| OnceLock::from(Some(v))),
        }
    }

    fn get(&self) -> Option<&Arc<Value>> {
        self.decoded
            .get_or_init(|| decode(&self.bytes, self.revision).map(Arc::new))
            .as_ref()
    }
}

impl RawEvent {
    /// An event whose objects are already decoded.
    #[cfg(test)]
    pub fn decoded(
        revision: i64,
        key: String,
        change: Change,
        object: Option<Arc<Value>>,
        prev: Option<Arc<Value>>,
    ) -> RawEvent {
        let stored = |o: Arc<Value>| {
            let rev = keelson_apimachinery::meta::resource_version(&o)
                .parse()
                .unwrap_or(0);
            Stored::new(Bytes::new(), rev, Some(o))
        };
        RawEvent {
            revision,
            key,
            change,
            object: object.map(stored),
            prev: prev.map(stored),
            object_json: Default::default(),
            deleted: OnceLock::new(),
            deleted_json: Default::default(),
        }
    }

    /// The object after the change (None for deletes and undecodable values).
    pub fn object(&self) -> Option<&Arc<Value>> {
        self.object.as_ref()?.get()
    }

    /// The object before the change (None for creates).
    pub fn prev(&self) -> Option<&Arc<Value>> {
        self.prev.as_ref()?.get()
    }

    /// Whether the key existed before this change (without decoding what it held).
    pub fn had_prev(&self) -> bool {
        self.prev.is_some()
    }

    /// The new object's JSON in `view` (encoded on first use).
    pub fn object_json(&self, view: View) -> Option<Bytes> {
        let obj = self.object()?;
        Some(
            self.object_json[view.index()]
                .get_or_init(|| view.encode(obj))
                .clone(),
        )
    }

    /// The object a watcher that sees this change as a deletion gets: the previous state
    /// at this event's revision, and its JSON in `view`.
    pub fn deleted_form(&self, view: View) -> Option<(Arc<Value>, Bytes)> {
        let obj = self
            .deleted
            .get_or_init(|| {
                let mut o = (**self.prev()?).clone();
                keelson_apimachinery::meta::metadata_mut(&mut o).insert(
                    "resourceVersion".into(),
                    Value::String(self.revision.to_string()),
                );
                Some(Arc::new(o))
            })
            .as_ref()?;
        let json = self.deleted_json[view.index()].get_or_init(|| view.encode(obj));
        Some((obj.clone(), json.clone()))
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
    value: Option<Bytes>,
    prev: Option<(Bytes, i64)>,
}

impl Compact {
    /// The change with its values decrypted. A value that does not decrypt is kept
    /// empty, so it decodes to nothing (as an undecodable value does) and is logged.
    async fn from_etcd(ev: &etcd_client::Event, storage: &Storage) -> Option<Compact> {
        let kv = ev.kv()?;
        let change = match ev.event_type() {
            etcd_client::EventType::Put => Change::Put,
            etcd_client::EventType::Delete => Change::Delete,
        };
        let key = String::from_utf8_lossy(kv.key()).into_owned();
        let open = |value: &[u8], revision: i64| {
            let key = &key;
            let value = Bytes::copy_from_slice(value);
            async move {
                match storage.open(key, value).await {
                    Ok((plain, _)) => plain,
                    Err(e) => {
                        tracing::warn!(revision, error = %e, "watched value does not decrypt");
                        Bytes::new()
                    }
                }
            }
        };
        let value = match change {
            Change::Put => Some(open(kv.value(), kv.mod_revision()).await),
            Change::Delete => None,
        };
        let prev = match ev.prev_kv() {
            Some(p) => Some((open(p.value(), p.mod_revision()).await, p.mod_revision())),
            None => None,
        };
        Some(Compact {
            revision: kv.mod_revision(),
            key,
            change,
            value,
            prev,
        })
    }

    /// The event as watchers see it; shares the bytes, decodes nothing yet (or nothing
    /// at all for what `write` says this apiserver wrote).
    fn expand(&self, write: Option<LocalWrite>) -> RawEvent {
        let (object, prev) = match write {
            Some(w) => (Some(w.object), w.prev),
            None => (None, None),
        };
        RawEvent {
            revision: self.revision,
            key: self.key.clone(),
            change: self.change,
            object: self
                .value
                .as_ref()
                .map(|v| Stored::new(v.clone(), self.revision, object)),
            prev: self
                .prev
                .as_ref()
                .map(|(v, rev)| Stored::new(v.clone(), *rev, prev)),
            object_json: Default::default(),
            deleted: OnceLock::new(),
            deleted_json: Default::default(),
        }
    }
}

/// An object this apiserver has just written, in its decoded form: the cache uses it
/// instead of decoding the same bytes again when the change arrives from etcd.
struct LocalWrite {
    key: String,
    /// The object as stored, with its resourceVersion set to the write's revision.
    object: Arc<Value>,
    /// The object it replaced, with its own resourceVersion.
    prev: Option<Arc<Value>>,
}

/// Local writes whose change has not come through the etcd watch yet.
#[derive(Default)]
struct LocalWrites {
    /// Every change up to this revision has been through the cache.
    through: i64,
    by_revision: HashMap<i64, LocalWrite>,
}

/// More pending local writes than this means the etcd watch is stuck; stop recording.
const MAX_LOCAL_WRITES: usize = 10_000;

impl LocalWrites {
    /// Keep `write` until its change comes through; a revision the cache has already
    /// passed (the watch raced ahead of the writer) is not kept.
    fn record(&mut self, revision: i64, write: LocalWrite) {
        if revision > self.through && self.by_revision.len() < MAX_LOCAL_WRITES {
            self.by_revision.insert(revision, write);
        }
    }

    /// The write behind `change`, if this apiserver made it (same revision and key).
    fn claim(&mut self, change: &Compact) -> Option<LocalWrite> {
        let write = self.by_revision.remove(&change.revision)?;
        (write.key == change.key && change.change == Change::Put).then_some(write)
    }

    /// Every change up to `revision` has been through the cache: forget the rest.
    fn advance(&mut self, revision: i64) {
        if revision > self.through {
            self.through = revision;
            self.by_revision.retain(|rev, _| *rev > revision);
        }
    }
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
    local: Mutex<LocalWrites>,
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
            local: Mutex::new(LocalWrites {
                through: start,
                ..Default::default()
            }),
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

    /// Record that this apiserver wrote `object` (resourceVersion set) at `key` in the
    /// transaction of `revision`, replacing `prev`. Purely an optimisation: a change not
    /// recorded here (another apiserver's, or one that raced ahead) is decoded as usual.
    pub fn wrote(&self, revision: i64, key: &str, object: Arc<Value>, prev: Option<Arc<Value>>) {
        self.local.lock().expect("local writes").record(
            revision,
            LocalWrite {
                key: key.to_string(),
                object,
                prev,
            },
        );
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
                    .map(|e| Arc::new(e.expand(None)))
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
                self.local.lock().expect("local writes").advance(now);
                return Ok(now);
            }
            let header_rev = resp.header().map_or(0, |h| h.revision());
            let mut changes = Vec::with_capacity(resp.events().len());
            for ev in resp.events() {
                changes.extend(Compact::from_etcd(ev, &self.storage).await);
            }
            let decoded: Vec<(Arc<RawEvent>, Compact)> = {
                let mut local = self.local.lock().expect("local writes");
                let events = changes
                    .into_iter()
                    .map(|c| (Arc::new(c.expand(local.claim(&c))), c))
                    .collect::<Vec<_>>();
                local.advance(events.iter().map(|(r, _)| r.revision).max().unwrap_or(0));
                events
            };
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

    /// Turn a direct etcd watch response into raw events (for [`Subscription::Direct`]).
    pub async fn raw_events(&self, resp: &etcd_client::WatchResponse) -> Vec<Arc<RawEvent>> {
        let mut out = Vec::with_capacity(resp.events().len());
        for ev in resp.events() {
            if let Some(c) = Compact::from_etcd(ev, &self.storage).await {
                out.push(Arc::new(c.expand(None)));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn put(revision: i64, key: &str, value: &Value, prev: Option<(&Value, i64)>) -> Compact {
        Compact {
            revision,
            key: key.into(),
            change: Change::Put,
            value: Some(Bytes::from(serde_json::to_vec(value).unwrap())),
            prev: prev.map(|(v, r)| (Bytes::from(serde_json::to_vec(v).unwrap()), r)),
        }
    }

    fn local(key: &str, object: &Arc<Value>) -> LocalWrite {
        LocalWrite {
            key: key.into(),
            object: object.clone(),
            prev: None,
        }
    }

    #[test]
    fn events_decode_lazily_with_their_revisions() {
        let c = put(
            9,
            "/registry/configmaps/ns/a",
            &json!({"metadata": {"name": "a"}, "data": {"n": "2"}}),
            Some((&json!({"metadata": {"name": "a"}, "data": {"n": "1"}}), 7)),
        );
        let ev = c.expand(None);
        assert!(ev.had_prev());
        assert_eq!(ev.object().unwrap()["metadata"]["resourceVersion"], "9");
        assert_eq!(ev.prev().unwrap()["metadata"]["resourceVersion"], "7");
        assert_eq!(ev.prev().unwrap()["data"]["n"], "1");
        let (gone, json) = ev.deleted_form(View::FULL).unwrap();
        assert_eq!(
            gone["metadata"]["resourceVersion"], "9",
            "a deletion is seen at its own revision"
        );
        assert_eq!(serde_json::from_slice::<Value>(&json).unwrap(), *gone);
    }

    #[test]
    fn a_local_write_is_used_instead_of_decoding() {
        let key = "/registry/configmaps/ns/a";
        let written = Arc::new(json!({"metadata": {"name": "a", "resourceVersion": "5"}}));
        let mut writes = LocalWrites::default();
        writes.record(5, local(key, &written));
        let change = put(5, key, &json!({"metadata": {"name": "a"}}), None);
        let ev = change.expand(writes.claim(&change));
        assert!(Arc::ptr_eq(ev.object().unwrap(), &written));
        assert!(writes.by_revision.is_empty());
    }

    #[test]
    fn only_the_same_key_and_a_put_claim_a_write() {
        let written = Arc::new(json!({}));
        let mut writes = LocalWrites::default();
        writes.record(5, local("/registry/a", &written));
        // Same revision, another key of the transaction (an allocation claim).
        assert!(writes
            .claim(&put(5, "/registry/b", &json!({}), None))
            .is_none());
        writes.record(6, local("/registry/a", &written));
        let mut delete = put(6, "/registry/a", &json!({}), None);
        delete.change = Change::Delete;
        delete.value = None;
        assert!(writes.claim(&delete).is_none());
    }

    #[test]
    fn writes_the_cache_has_passed_are_not_kept() {
        let written = Arc::new(json!({}));
        let mut writes = LocalWrites::default();
        writes.record(3, local("/registry/a", &written));
        writes.record(8, local("/registry/b", &written));
        writes.advance(5);
        assert_eq!(writes.by_revision.keys().collect::<Vec<_>>(), [&8]);
        // Recorded after its change went by (the watch raced ahead of the writer).
        writes.record(4, local("/registry/c", &written));
        assert!(!writes.by_revision.contains_key(&4));
    }
}
