//! Client watches: a filtered view of the shared watch cache.
//!
//! Semantics follow Kubernetes: a watch from resourceVersion N delivers every change
//! after N in order; from "" or "0" (or with `sendInitialEvents`) it first delivers the
//! current state as ADDED events. An object that stops matching the selector is
//! delivered as DELETED, one that starts matching as ADDED. Bookmarks carry only a
//! resourceVersion. A resourceVersion etcd has compacted ends the watch with an ERROR
//! event carrying a 410 Status.

use super::list::Filter;
use super::{collection_prefix, ListOptions, Registry};
use crate::view::View;
use crate::watch_cache::{Change, RawEvent, Subscription};
use futures::FutureExt;
use keelson_apimachinery::ApiError;
use keelson_resources::ResourceType;
use serde_json::{json, Value};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

/// How often an idle watch with bookmarks enabled gets one.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(10);

#[derive(Debug, Clone)]
pub struct WatchEvent {
    /// ADDED, MODIFIED, DELETED, BOOKMARK or ERROR.
    pub kind: &'static str,
    pub object: Arc<Value>,
    /// How much of the object the watcher asked for.
    view: View,
    /// The object's JSON when already encoded (shared by every watcher of the change).
    json: Option<bytes::Bytes>,
}

impl WatchEvent {
    pub fn new(kind: &'static str, object: Value) -> Self {
        WatchEvent {
            kind,
            object: Arc::new(object),
            view: View::FULL,
            json: None,
        }
    }

    /// The object as JSON (in the watcher's view), encoding it only if no watcher has yet.
    pub fn object_json(&self) -> bytes::Bytes {
        match &self.json {
            Some(b) => b.clone(),
            None => self.view.encode(&self.object),
        }
    }

    /// `{"type":...,"object":...}` followed by a newline, as a REST watch streams it.
    pub fn to_line(&self) -> bytes::Bytes {
        let obj = self.object_json();
        let mut line = Vec::with_capacity(obj.len() + 32);
        line.extend_from_slice(b"{\"type\":\"");
        line.extend_from_slice(self.kind.as_bytes());
        line.extend_from_slice(b"\",\"object\":");
        line.extend_from_slice(&obj);
        line.extend_from_slice(b"}\n");
        bytes::Bytes::from(line)
    }
}

/// Translate one raw change into what this watcher sees, if anything.
fn translate(
    rt: &ResourceType,
    ev: &RawEvent,
    prefix: &str,
    filter: &Filter,
    view: View,
) -> Option<WatchEvent> {
    if !ev.key.starts_with(prefix) {
        return None;
    }
    if rt.is_shared() {
        return translate_converted(rt, ev, filter, view);
    }
    let now = ev.object().filter(|o| filter.matches(o));
    // Without a selector every earlier state under the prefix matched: no need to decode it.
    let before =
        ev.had_prev() && (filter.is_everything() || ev.prev().is_some_and(|o| filter.matches(o)));
    match (ev.change, now, before) {
        (Change::Put, Some(o), was) => Some(WatchEvent {
            kind: if was { "MODIFIED" } else { "ADDED" },
            object: o.clone(),
            view,
            json: ev.object_json(view),
        }),
        (_, None, true) => {
            // Deleted, or no longer matching: the last state, at the event's revision.
            let (o, json) = ev.deleted_form(view)?;
            Some(WatchEvent {
                kind: "DELETED",
                object: o,
                view,
                json: Some(json),
            })
        }
        _ => None,
    }
}

/// [`translate`] for a kind stored in another's shape: every state is converted
/// before the selectors see it, and encoded for this watcher alone.
fn translate_converted(
    rt: &ResourceType,
    ev: &RawEvent,
    filter: &Filter,
    view: View,
) -> Option<WatchEvent> {
    let convert = |o: &Arc<Value>| rt.from_stored((**o).clone());
    let now = ev.object().map(convert).filter(|o| filter.matches(o));
    let before = ev.had_prev()
        && (filter.is_everything() || ev.prev().is_some_and(|o| filter.matches(&convert(o))));
    let (kind, object) = match (ev.change, now, before) {
        (Change::Put, Some(o), was) => (if was { "MODIFIED" } else { "ADDED" }, o),
        (_, None, true) => ("DELETED", convert(&ev.deleted_form(view)?.0)),
        _ => return None,
    };
    Some(WatchEvent {
        kind,
        object: Arc::new(object),
        view,
        json: None,
    })
}

fn bookmark(rt: &ResourceType, rv: i64, initial_end: bool) -> WatchEvent {
    let mut m = json!({"resourceVersion": rv.to_string()});
    if initial_end {
        m["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    WatchEvent::new(
        "BOOKMARK",
        json!({"kind": rt.kind, "apiVersion": rt.api_version(), "metadata": m}),
    )
}

impl Registry {
    /// Start a watch; the stream ends on timeout, on a compacted resourceVersion (after an
    /// ERROR event), when the watcher falls too far behind, or when dropped.
    pub async fn watch(
        &self,
        rt: &'static ResourceType,
        ns: &str,
        opts: &ListOptions,
    ) -> Result<ReceiverStream<WatchEvent>, ApiError> {
        let filter = Filter::new(rt, ns, opts)?;
        let prefix = collection_prefix(rt, ns);
        let initial = opts
            .send_initial_events
            .unwrap_or(opts.resource_version.is_empty() || opts.resource_version == "0");
        opts.validate(true)?;
        if opts.send_initial_events == Some(true) && !opts.allow_bookmarks {
            return Err(ApiError::invalid(
                "",
                "ListOptions",
                "",
                vec![keelson_apimachinery::Cause::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                )],
            ));
        }
        let (tx, rx) = mpsc::channel(256);
        let mut after = if initial {
            0
        } else if opts.resource_version.is_empty() || opts.resource_version == "0" {
            // sendInitialEvents=false without a resourceVersion: from now on.
            self.storage
                .revision()
                .await
                .map_err(|e| super::storage_error(e, rt, ""))?
        } else {
            super::options::parse_resource_version(&opts.resource_version)?
        };
        let mut initial_events = Vec::new();
        if initial {
            let all = self
                .list(
                    rt,
                    ns,
                    &ListOptions {
                        label_selector: opts.label_selector.clone(),
                        field_selector: opts.field_selector.clone(),
                        ..Default::default()
                    },
                )
                .await?;
            after = all.resource_version;
            initial_events = all.items;
        }
        let subscription = match self.cache.subscribe(after).await {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(error = %e, "watch could not start");
                None
            }
        };
        let this = self.clone();
        let send_initial_end = opts.send_initial_events == Some(true);
        let view = opts.view;
        let bookmarks = opts.allow_bookmarks;
        let timeout = opts
            .timeout_seconds
            .map(Duration::from_secs)
            .unwrap_or(Duration::from_secs(30 * 60));
        this.storage_metrics_watcher(true);
        tokio::spawn(async move {
            // A huge timeoutSeconds is "no timeout", not an overflow.
            let now = tokio::time::Instant::now();
            let deadline = now
                .checked_add(timeout)
                .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
            let run = async {
                for obj in initial_events {
                    let mut ev = WatchEvent::new("ADDED", obj);
                    ev.view = view;
                    tx.send(ev).await.ok()?;
                }
                if send_initial_end {
                    tx.send(bookmark(rt, after, true)).await.ok()?;
                }
                let Some(sub) = subscription else {
                    let status =
                        ApiError::gone(format!("too old resource version: {after}")).to_status();
                    tx.send(WatchEvent::new("ERROR", status)).await.ok()?;
                    return None;
                };
                let mut last = after;
                match sub {
                    Subscription::Cached { backlog, live } => {
                        // The backlog holds only events after `after`.
                        for ev in backlog {
                            last = last.max(ev.revision);
                            if let Some(we) = translate(rt, &ev, &prefix, &filter, view) {
                                tx.send(we).await.ok()?;
                            }
                        }
                        follow_live(
                            live,
                            &tx,
                            (&prefix, &filter, view),
                            last,
                            rt,
                            bookmarks,
                            &this,
                        )
                        .await
                    }
                    Subscription::Direct(mut stream) => loop {
                        let msg = tokio::time::timeout(BOOKMARK_INTERVAL, stream.message()).await;
                        match msg {
                            Err(_) => {
                                if bookmarks {
                                    tx.send(bookmark(rt, last, false)).await.ok()?;
                                }
                            }
                            Ok(Ok(Some(resp))) => {
                                if resp.compact_revision() > 0 {
                                    let status = ApiError::gone(format!(
                                        "too old resource version: {after} ({})",
                                        resp.compact_revision()
                                    ))
                                    .to_status();
                                    tx.send(WatchEvent::new("ERROR", status)).await.ok()?;
                                    return None;
                                }
                                for ev in this.cache.raw_events(&resp).await {
                                    last = last.max(ev.revision);
                                    if let Some(we) = translate(rt, &ev, &prefix, &filter, view) {
                                        tx.send(we).await.ok()?;
                                    }
                                }
                            }
                            _ => return None,
                        }
                    },
                }
            };
            let guarded = AssertUnwindSafe(tokio::time::timeout_at(deadline, run)).catch_unwind();
            if let Err(panic) = guarded.await {
                // The client sees an ERROR event and the end of the stream, as for any
                // failure of a watch.
                tracing::error!(
                    resource = rt.plural,
                    panic = %crate::recover::panic_text(panic.as_ref()),
                    "watch panicked; ending it"
                );
                let status = ApiError::internal(crate::recover::PANIC_MESSAGE).to_status();
                let _ = tx.send(WatchEvent::new("ERROR", status)).await;
            }
            this.storage_metrics_watcher(false);
        });
        Ok(ReceiverStream::new(rx))
    }

    fn storage_metrics_watcher(&self, started: bool) {
        if let Some(m) = crate::metrics::global() {
            if started {
                m.watcher_started()
            } else {
                m.watcher_stopped()
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn follow_live(
    mut live: broadcast::Receiver<Arc<RawEvent>>,
    tx: &mpsc::Sender<WatchEvent>,
    (prefix, filter, view): (&str, &Filter, View),
    mut last: i64,
    rt: &'static ResourceType,
    bookmarks: bool,
    registry: &Registry,
) -> Option<()> {
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    loop {
        tokio::select! {
            ev = live.recv() => match ev {
                Ok(ev) => {
                    // Several events can share a revision (one transaction changing
                    // several keys, or etcd deleting every key of an expired lease):
                    // only older ones are stale.
                    if ev.revision < last {
                        continue;
                    }
                    last = ev.revision;
                    if let Some(we) = translate(rt, &ev, prefix, filter, view) {
                        tx.send(we).await.ok()?;
                    }
                }
                // Fell behind, or the cache restarted: end the watch; the client resumes
                // from its last resourceVersion.
                Err(_) => return None,
            },
            _ = ticker.tick() => {
                if bookmarks {
                    // Only claim the cache's newest revision when every event up to it
                    // has reached this watcher; otherwise a client resuming from the
                    // bookmark could skip events still queued here.
                    let rv = if live.is_empty() { registry.cache.latest().max(last) } else { last };
                    tx.send(bookmark(rt, rv, false)).await.ok()?;
                }
            }
            _ = tx.closed() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rv_of(obj: &Value) -> i64 {
        keelson_apimachinery::meta::resource_version(obj)
            .parse()
            .unwrap_or(0)
    }

    fn configmaps() -> &'static ResourceType {
        keelson_resources::find("", "configmaps").unwrap()
    }

    #[test]
    fn events_k8s_io_watchers_see_core_events_converted() {
        let v1 = keelson_resources::find("events.k8s.io", "events").unwrap();
        let f = Filter::new(
            v1,
            "default",
            &ListOptions {
                field_selector: "regarding.name=web".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let core = |name: &str, rv: i64| {
            Arc::new(json!({"apiVersion": "v1", "kind": "Event",
                "metadata": {"name": "e", "namespace": "default", "resourceVersion": rv.to_string()},
                "involvedObject": {"kind": "Pod", "name": name}, "message": "hi"}))
        };
        let p = "/registry/events/default/";
        let created = raw(3, format!("{p}e"), Some(core("web", 3)), None);
        let we = translate(v1, &created, p, &f, View::FULL).unwrap();
        assert_eq!(we.kind, "ADDED");
        assert_eq!(we.object["apiVersion"], "events.k8s.io/v1");
        assert_eq!(we.object["note"], "hi");
        assert_eq!(we.object["regarding"]["name"], "web");
        let moved = raw(
            4,
            format!("{p}e"),
            Some(core("db", 4)),
            Some(core("web", 3)),
        );
        let we = translate(v1, &moved, p, &f, View::FULL).unwrap();
        assert_eq!(
            (we.kind, we.object["regarding"]["name"].as_str()),
            ("DELETED", Some("web"))
        );
        assert_eq!(rv_of(&we.object), 4);
    }

    fn filter(sel: &str) -> Filter {
        let rt = keelson_resources::find("", "configmaps").unwrap();
        Filter::new(
            rt,
            "default",
            &ListOptions {
                label_selector: sel.into(),
                ..Default::default()
            },
        )
        .unwrap()
    }

    fn raw(
        revision: i64,
        key: String,
        object: Option<Arc<Value>>,
        prev: Option<Arc<Value>>,
    ) -> RawEvent {
        RawEvent::decoded(revision, key, Change::Put, object, prev)
    }

    fn cm(labels: Value, rv: i64) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": "a", "namespace": "default", "labels": labels, "resourceVersion": rv.to_string()}}),
        )
    }

    #[test]
    fn selector_changes_become_added_and_deleted() {
        let f = filter("app=web");
        let p = "/registry/configmaps/default/";
        let leave = raw(
            7,
            format!("{p}a"),
            Some(cm(json!({"app": "db"}), 7)),
            Some(cm(json!({"app": "web"}), 5)),
        );
        let we = translate(configmaps(), &leave, p, &f, View::FULL).unwrap();
        assert_eq!(we.kind, "DELETED");
        assert_eq!(rv_of(&we.object), 7);
        let enter = raw(
            8,
            format!("{p}a"),
            Some(cm(json!({"app": "web"}), 8)),
            Some(cm(json!({"app": "db"}), 7)),
        );
        assert_eq!(
            translate(configmaps(), &enter, p, &f, View::FULL)
                .unwrap()
                .kind,
            "ADDED"
        );
        let other_ns = raw(
            9,
            "/registry/configmaps/other/a".into(),
            Some(cm(json!({"app": "web"}), 9)),
            None,
        );
        assert!(translate(configmaps(), &other_ns, p, &f, View::FULL).is_none());
    }
}
