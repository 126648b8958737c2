//! List-then-watch, as client-go's reflector does it.
//!
//! [`watcher()`] lists (in pages), then watches from the list's resourceVersion,
//! following the resourceVersion of every event and bookmark. When a watch ends (server
//! timeout, connection lost) it resumes from the last resourceVersion; when the server
//! says that version is gone (410 Expired, after compaction) it lists again. Errors are
//! yielded as items and followed by a backoff; the stream itself never ends.

use std::collections::VecDeque;
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt};

use crate::api::{Api, WatchEvent};
use crate::error::{Error, Result};
use crate::object::KubeObject;
use crate::params::{ListParams, ObjectView, WatchParams};
use crate::runtime::Backoff;

/// What a watcher reports.
///
/// A (re)list is `Init`, one `InitApply` per object, then `InitDone`: a consumer
/// keeping a cache builds the new state from those and swaps it in at `InitDone` (objects
/// missing from the new list were deleted while the watcher was not watching). After
/// that, `Apply` and `Delete` follow the watch.
#[derive(Debug, Clone)]
pub enum Event<K> {
    Init,
    InitApply(K),
    InitDone,
    /// Added or modified.
    Apply(K),
    /// Deleted; the object's last state.
    Delete(K),
}

/// Options of a [`watcher()`].
#[derive(Debug, Clone)]
pub struct Config {
    pub label_selector: Option<String>,
    pub field_selector: Option<String>,
    /// List page size (default 500; 0 lists in one page).
    pub page_size: u32,
    /// Ask for bookmarks, so that a resumed watch starts from a recent resourceVersion.
    pub bookmarks: bool,
    /// Server-side watch timeout in seconds (`None`: the server's default).
    pub timeout: Option<u32>,
    /// Backoff after errors: first delay and cap (default 800ms, 30s, as client-go).
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How much of each object to fetch.
    pub view: ObjectView,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            label_selector: None,
            field_selector: None,
            page_size: 500,
            bookmarks: true,
            timeout: None,
            backoff_initial: Duration::from_millis(800),
            backoff_max: Duration::from_secs(30),
            view: ObjectView::default(),
        }
    }
}

impl Config {
    pub fn labels(mut self, selector: &str) -> Self {
        self.label_selector = Some(selector.to_string());
        self
    }
    pub fn fields(mut self, selector: &str) -> Self {
        self.field_selector = Some(selector.to_string());
        self
    }
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = n;
        self
    }
    pub fn timeout(mut self, seconds: u32) -> Self {
        self.timeout = Some(seconds);
        self
    }
    pub fn backoff(mut self, initial: Duration, max: Duration) -> Self {
        self.backoff_initial = initial;
        self.backoff_max = max;
        self
    }
    /// Fetch only metadata (`PartialObjectMetadata`).
    pub fn metadata_only(mut self) -> Self {
        self.view.metadata_only = true;
        self
    }
    /// Have the server leave out `metadata.managedFields`.
    pub fn without_managed_fields(mut self) -> Self {
        self.view.omit_managed_fields = true;
        self
    }
    fn list_params(&self) -> ListParams {
        ListParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            limit: Some(self.page_size).filter(|n| *n > 0),
            view: self.view,
            ..Default::default()
        }
    }
    fn watch_params(&self) -> WatchParams {
        WatchParams {
            label_selector: self.label_selector.clone(),
            field_selector: self.field_selector.clone(),
            bookmarks: self.bookmarks,
            send_initial_events: false,
            timeout: self.timeout,
            view: self.view,
        }
    }
}

enum Phase<K> {
    /// Start a list: emit `Init`.
    Relist,
    /// List the next page.
    Listing { continue_token: Option<String> },
    /// Open a watch from `rv`.
    StartWatch { rv: String },
    Watching {
        rv: String,
        stream: BoxStream<'static, Result<WatchEvent<K>>>,
        started: tokio::time::Instant,
        events: u64,
    },
}

struct State<K> {
    api: Api<K>,
    config: Config,
    phase: Phase<K>,
    pending: VecDeque<Event<K>>,
    delay: Option<Duration>,
    backoff: Backoff,
    /// 410s in a row without a watch event in between.
    gone_streak: u32,
}

/// A watch that ended this quickly without events counts as a failure (backoff).
const SHORT_WATCH: Duration = Duration::from_secs(1);

impl<K: KubeObject> State<K> {
    fn set_delay(&mut self) {
        self.delay = Some(self.backoff.next_delay());
    }

    async fn next(&mut self) -> Result<Event<K>> {
        loop {
            if let Some(ev) = self.pending.pop_front() {
                return Ok(ev);
            }
            if let Some(d) = self.delay.take() {
                tokio::time::sleep(d).await;
            }
            match std::mem::replace(&mut self.phase, Phase::Relist) {
                Phase::Relist => {
                    self.phase = Phase::Listing {
                        continue_token: None,
                    };
                    return Ok(Event::Init);
                }
                Phase::Listing { continue_token } => {
                    let mut lp = self.config.list_params();
                    lp.continue_token = continue_token;
                    match self.api.list(&lp).await {
                        Ok(list) => {
                            self.pending
                                .extend(list.items.into_iter().map(Event::InitApply));
                            self.phase = match list.metadata.continue_token {
                                Some(token) => Phase::Listing {
                                    continue_token: Some(token),
                                },
                                None => {
                                    self.pending.push_back(Event::InitDone);
                                    Phase::StartWatch {
                                        rv: list.metadata.resource_version,
                                    }
                                }
                            };
                        }
                        Err(e) => {
                            // Start over (a continue token may have expired).
                            self.phase = Phase::Relist;
                            self.set_delay();
                            return Err(e);
                        }
                    }
                }
                Phase::StartWatch { rv } => {
                    match self.api.watch(&self.config.watch_params(), &rv).await {
                        Ok(stream) => {
                            self.phase = Phase::Watching {
                                rv,
                                stream,
                                started: tokio::time::Instant::now(),
                                events: 0,
                            };
                        }
                        Err(e) if e.is_gone() => return Err(self.gone(e)),
                        Err(e) => {
                            self.phase = Phase::StartWatch { rv };
                            self.set_delay();
                            return Err(e);
                        }
                    }
                }
                Phase::Watching {
                    mut rv,
                    mut stream,
                    started,
                    events,
                } => {
                    let item = stream.next().await;
                    let follow = |rv: &mut String, obj: &K| {
                        if let Some(v) = obj.resource_version().filter(|v| !v.is_empty()) {
                            *rv = v.to_string();
                        }
                    };
                    let out = match item {
                        Some(Ok(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                            follow(&mut rv, &o);
                            Some(Event::Apply(o))
                        }
                        Some(Ok(WatchEvent::Deleted(o))) => {
                            follow(&mut rv, &o);
                            Some(Event::Delete(o))
                        }
                        Some(Ok(WatchEvent::Bookmark(b))) => {
                            if !b.resource_version.is_empty() {
                                rv = b.resource_version;
                            }
                            None
                        }
                        Some(Ok(WatchEvent::Error(e))) if e.code == 410 => {
                            return Err(self.gone(Error::from(e)));
                        }
                        Some(Ok(WatchEvent::Error(e))) => {
                            self.phase = Phase::StartWatch { rv };
                            self.set_delay();
                            return Err(Error::from(e));
                        }
                        Some(Err(e)) => {
                            self.phase = Phase::StartWatch { rv };
                            self.set_delay();
                            return Err(e);
                        }
                        None => {
                            // Ended (timeout, connection lost): resume from rv.
                            if events == 0 && started.elapsed() < SHORT_WATCH {
                                self.set_delay();
                            }
                            self.phase = Phase::StartWatch { rv };
                            continue;
                        }
                    };
                    self.gone_streak = 0;
                    self.backoff.reset();
                    self.phase = Phase::Watching {
                        rv,
                        stream,
                        started,
                        events: events + 1,
                    };
                    if let Some(ev) = out {
                        return Ok(ev);
                    }
                }
            }
        }
    }

    /// 410: list again; at once the first time, with backoff if it keeps happening.
    fn gone(&mut self, e: Error) -> Error {
        self.phase = Phase::Relist;
        self.gone_streak += 1;
        if self.gone_streak > 1 {
            self.set_delay();
        }
        e
    }
}

/// List and watch `api` forever; see the [module docs](self).
///
/// The stream is not `Unpin`: pin it (`futures::pin_mut!`, `Box::pin`, `.boxed()`).
pub fn watcher<K: KubeObject>(
    api: Api<K>,
    config: Config,
) -> impl Stream<Item = Result<Event<K>>> + Send + 'static {
    let state = State {
        api,
        backoff: Backoff::new(config.backoff_initial, config.backoff_max),
        config,
        phase: Phase::Relist,
        pending: VecDeque::new(),
        delay: None,
        gone_streak: 0,
    };
    futures::stream::unfold(state, |mut s| async move {
        let item = s.next().await;
        Some((item, s))
    })
}
