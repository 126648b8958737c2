//! The scheduling queue, as kube-scheduler's: pods waiting to be scheduled live in one
//! of three places.
//!
//! - **active**: ready to try, highest `spec.priority` first, then oldest;
//! - **backoff**: failed recently; back to active when their backoff ends (1s doubling
//!   per attempt up to 10s);
//! - **unschedulable**: fit nowhere; moved back (to active, or to backoff while their
//!   backoff lasts) by a cluster event that may help (a node added or changed, a pod
//!   deleted, ...: [`SchedulingQueue::move_all`]) or after a minute anyway.
//!
//! A popped pod is *in flight* until the attempt (and its binding) ends. Heaps hold
//! entries lazily: an entry whose sequence number no longer matches the pod's is stale.

use std::cmp::{Ordering, Reverse};
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::framework::{PluginSet, ALL_PLUGINS};
use crate::podinfo::PodInfo;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    Active,
    Backoff(Instant),
    Unschedulable(Instant),
    InFlight,
}

struct Queued {
    info: Arc<PodInfo>,
    place: Place,
    /// Identifies the live heap entry.
    seq: u64,
    attempts: u32,
    /// When the last attempt failed.
    failed_at: Option<Instant>,
    /// The filters that rejected the pod last time.
    plugins: PluginSet,
}

struct ActiveEntry {
    priority: i32,
    created: i64,
    seq: u64,
    uid: String,
}

impl Ord for ActiveEntry {
    fn cmp(&self, o: &Self) -> Ordering {
        // Max-heap: higher priority, then older, then earlier arrival.
        self.priority
            .cmp(&o.priority)
            .then(o.created.cmp(&self.created))
            .then(o.seq.cmp(&self.seq))
    }
}
impl PartialOrd for ActiveEntry {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl PartialEq for ActiveEntry {
    fn eq(&self, o: &Self) -> bool {
        self.seq == o.seq
    }
}
impl Eq for ActiveEntry {}

/// Queue timings.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Unschedulable pods go back to active after this long without an event.
    pub max_unschedulable: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(10),
            max_unschedulable: Duration::from_secs(60),
        }
    }
}

pub struct SchedulingQueue {
    cfg: QueueConfig,
    pods: HashMap<String, Queued>,
    active: BinaryHeap<ActiveEntry>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String)>>,
    /// When unschedulable pods are due for a retry without an event.
    timeouts: BinaryHeap<Reverse<(Instant, u64, String)>>,
    seq: u64,
    counts: [usize; 3],
    /// Unschedulable pods per rejecting plugin bit; the last slot counts pods with no
    /// known plugin. Lets [`SchedulingQueue::move_all`] skip events no pod waits for.
    rejected: [u32; 65],
}

impl SchedulingQueue {
    pub fn new(cfg: QueueConfig) -> SchedulingQueue {
        SchedulingQueue {
            cfg,
            pods: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            timeouts: BinaryHeap::new(),
            seq: 0,
            counts: [0; 3],
            rejected: [0; 65],
        }
    }

    /// Pods in active, backoff and unschedulable.
    pub fn lengths(&self) -> (usize, usize, usize) {
        (self.counts[0], self.counts[1], self.counts[2])
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    fn tally(&mut self, plugins: PluginSet, delta: i32) {
        if plugins == 0 {
            self.rejected[64] = self.rejected[64].wrapping_add_signed(delta);
            return;
        }
        for bit in 0..64 {
            if plugins & (1 << bit) != 0 {
                self.rejected[bit] = self.rejected[bit].wrapping_add_signed(delta);
            }
        }
    }

    /// Whether some unschedulable pod was rejected by one of `plugins`.
    fn may_help(&self, plugins: PluginSet) -> bool {
        self.rejected[64] > 0 || (0..64).any(|b| plugins & (1 << b) != 0 && self.rejected[b] > 0)
    }

    fn count(&mut self, place: Place, delta: isize) {
        let i = match place {
            Place::Active => 0,
            Place::Backoff(_) => 1,
            Place::Unschedulable(_) => 2,
            Place::InFlight => return,
        };
        self.counts[i] = self.counts[i].wrapping_add_signed(delta);
    }

    /// Put a known pod at `place`, pushing the heap entry it needs.
    fn set_place(&mut self, uid: &str, place: Place) {
        self.seq += 1;
        let seq = self.seq;
        let Some(q) = self.pods.get_mut(uid) else {
            return;
        };
        let old = std::mem::replace(&mut q.place, place);
        q.seq = seq;
        let (priority, created, plugins) = (q.info.priority, q.info.created, q.plugins);
        self.count(old, -1);
        self.count(place, 1);
        if matches!(old, Place::Unschedulable(_)) {
            self.tally(plugins, -1);
        }
        if matches!(place, Place::Unschedulable(_)) {
            self.tally(plugins, 1);
        }
        match place {
            Place::Active => self.active.push(ActiveEntry {
                priority,
                created,
                seq,
                uid: uid.to_string(),
            }),
            Place::Backoff(until) => self.backoff.push(Reverse((until, seq, uid.to_string()))),
            Place::Unschedulable(since) => self.timeouts.push(Reverse((
                since + self.cfg.max_unschedulable,
                seq,
                uid.to_string(),
            ))),
            Place::InFlight => {}
        }
    }

    fn backoff_duration(&self, attempts: u32) -> Duration {
        let mut d = self.cfg.initial_backoff;
        for _ in 1..attempts {
            d = d.saturating_mul(2);
            if d >= self.cfg.max_backoff {
                return self.cfg.max_backoff;
            }
        }
        d.min(self.cfg.max_backoff)
    }

    fn backoff_until(&self, q: &Queued) -> Option<Instant> {
        let until = q.failed_at? + self.backoff_duration(q.attempts);
        (until > Instant::now()).then_some(until)
    }

    /// A pending pod appeared (to active) or changed. A change to what scheduling
    /// reads (`spec_changed`) gives an unschedulable pod another try.
    pub fn add_or_update(&mut self, info: Arc<PodInfo>, spec_changed: bool) {
        let uid = info.uid.clone();
        match self.pods.get_mut(&uid) {
            None => {
                self.pods.insert(
                    uid.clone(),
                    Queued {
                        info,
                        place: Place::InFlight,
                        seq: 0,
                        attempts: 0,
                        failed_at: None,
                        plugins: 0,
                    },
                );
                self.set_place(&uid, Place::Active);
            }
            Some(q) => {
                let priority_changed = q.info.priority != info.priority;
                q.info = info;
                match q.place {
                    Place::Unschedulable(_) if spec_changed => self.requeue(&uid),
                    Place::Active if priority_changed => self.set_place(&uid, Place::Active),
                    _ => {}
                }
            }
        }
    }

    /// To active, or to backoff while the pod's backoff lasts.
    fn requeue(&mut self, uid: &str) {
        let Some(q) = self.pods.get(uid) else {
            return;
        };
        match self.backoff_until(q) {
            Some(until) => self.set_place(uid, Place::Backoff(until)),
            None => self.set_place(uid, Place::Active),
        }
    }

    pub fn remove(&mut self, uid: &str) {
        if let Some(q) = self.pods.remove(uid) {
            self.count(q.place, -1);
            if matches!(q.place, Place::Unschedulable(_)) {
                self.tally(q.plugins, -1);
            }
        }
    }

    /// The next pod to try, now in flight.
    pub fn pop(&mut self) -> Option<Arc<PodInfo>> {
        while let Some(e) = self.active.pop() {
            let live = self
                .pods
                .get(&e.uid)
                .is_some_and(|q| q.seq == e.seq && q.place == Place::Active);
            if !live {
                continue;
            }
            self.set_place(&e.uid, Place::InFlight);
            let q = self.pods.get_mut(&e.uid).expect("live");
            q.attempts += 1;
            return Some(q.info.clone());
        }
        None
    }

    /// The attempt succeeded (the pod is bound): it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        self.remove(uid);
    }

    /// The pod fits nowhere; `plugins` rejected it. `info` may carry news (a
    /// nominated node).
    pub fn unschedulable(&mut self, info: Arc<PodInfo>, plugins: PluginSet) {
        let uid = info.uid.clone();
        let Some(q) = self.pods.get_mut(&uid) else {
            return;
        };
        if matches!(q.place, Place::Unschedulable(_)) {
            return;
        }
        q.info = info;
        q.failed_at = Some(Instant::now());
        q.plugins = plugins;
        self.set_place(&uid, Place::Unschedulable(Instant::now()));
    }

    /// The attempt failed for another reason (an error, a failed binding): try again
    /// after the backoff.
    pub fn error(&mut self, uid: &str) {
        let Some(q) = self.pods.get_mut(uid) else {
            return;
        };
        q.failed_at = Some(Instant::now());
        self.requeue(uid);
        if let Some(q) = self.pods.get_mut(uid) {
            q.plugins = ALL_PLUGINS;
        }
    }

    /// A cluster event that may help pods rejected by any of `plugins`: move those
    /// unschedulable pods back.
    pub fn move_all(&mut self, plugins: PluginSet) {
        if self.counts[2] == 0 || !self.may_help(plugins) {
            return;
        }
        let moved: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, q)| {
                matches!(q.place, Place::Unschedulable(_))
                    && (q.plugins == 0 || q.plugins & plugins != 0)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in moved {
            self.requeue(&uid);
        }
    }

    /// Backoffs that ended go to active; pods unschedulable for too long are retried.
    pub fn flush(&mut self) {
        let now = Instant::now();
        while let Some(uid) = due(&mut self.backoff, now) {
            let live = self
                .pods
                .get(&uid.1)
                .is_some_and(|q| q.seq == uid.0 && matches!(q.place, Place::Backoff(_)));
            if live {
                self.set_place(&uid.1, Place::Active);
            }
        }
        while let Some(uid) = due(&mut self.timeouts, now) {
            let live = self
                .pods
                .get(&uid.1)
                .is_some_and(|q| q.seq == uid.0 && matches!(q.place, Place::Unschedulable(_)));
            if live {
                self.requeue(&uid.1);
            }
        }
    }

    /// When [`SchedulingQueue::flush`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let first =
            |h: &BinaryHeap<Reverse<(Instant, u64, String)>>| h.peek().map(|Reverse(e)| e.0);
        [first(&self.backoff), first(&self.timeouts)]
            .into_iter()
            .flatten()
            .min()
    }
}

/// Pop the first entry of a deadline heap if it is due: (seq, uid).
fn due(
    heap: &mut BinaryHeap<Reverse<(Instant, u64, String)>>,
    now: Instant,
) -> Option<(u64, String)> {
    if heap.peek().is_some_and(|Reverse(e)| e.0 <= now) {
        heap.pop().map(|Reverse((_, seq, uid))| (seq, uid))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::podinfo::testing::pod;
    use serde_json::json;

    fn p(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(pod(
            json!({"metadata": {"name": name}, "spec": {"containers": [], "priority": priority}}),
        ))
    }

    fn names(q: &mut SchedulingQueue) -> Vec<String> {
        std::iter::from_fn(|| q.pop())
            .map(|p| p.name.clone())
            .collect()
    }

    fn fast() -> QueueConfig {
        QueueConfig {
            initial_backoff: Duration::from_millis(40),
            max_backoff: Duration::from_millis(400),
            max_unschedulable: Duration::from_millis(300),
        }
    }

    #[test]
    fn priority_then_arrival() {
        let mut q = SchedulingQueue::new(fast());
        q.add_or_update(p("low", 0), false);
        q.add_or_update(p("high", 100), false);
        q.add_or_update(p("low2", 0), false);
        assert_eq!(q.lengths(), (3, 0, 0));
        assert_eq!(names(&mut q), ["high", "low", "low2"]);
        assert_eq!(q.lengths(), (0, 0, 0));
    }

    #[test]
    fn unschedulable_moves_on_events_with_backoff() {
        let mut q = SchedulingQueue::new(fast());
        q.add_or_update(p("a", 0), false);
        let a = q.pop().unwrap();
        q.unschedulable(a.clone(), 0b10);
        assert_eq!(q.lengths(), (0, 0, 1));
        q.move_all(0b01);
        assert_eq!(q.lengths(), (0, 0, 1), "an event that cannot help");
        q.move_all(0b10);
        assert_eq!(q.lengths(), (0, 1, 0), "still backing off");
        assert!(q.pop().is_none());
        std::thread::sleep(Duration::from_millis(45));
        q.flush();
        assert_eq!(names(&mut q), ["a"]);
        // Second failure: twice the backoff.
        q.error(&a.uid);
        let left = q.next_deadline().unwrap() - Instant::now();
        assert!(
            left > Duration::from_millis(60) && left <= Duration::from_millis(80),
            "{left:?}"
        );
        std::thread::sleep(Duration::from_millis(85));
        q.flush();
        assert_eq!(names(&mut q), ["a"]);
        q.done(&a.uid);
        assert!(!q.contains(&a.uid));
    }

    #[test]
    fn periodic_flush_and_updates() {
        let mut q = SchedulingQueue::new(fast());
        q.add_or_update(p("a", 0), false);
        let a = q.pop().unwrap();
        q.unschedulable(a.clone(), ALL_PLUGINS);
        q.add_or_update(a.clone(), false);
        assert_eq!(
            q.lengths(),
            (0, 0, 1),
            "a status-only update does not move it"
        );
        std::thread::sleep(Duration::from_millis(310));
        assert!(q.next_deadline().unwrap() <= Instant::now());
        q.flush();
        assert_eq!(q.lengths(), (1, 0, 0));
        q.remove(&a.uid);
        assert_eq!(q.lengths(), (0, 0, 0));
        assert!(q.pop().is_none());
        assert_eq!(q.backoff_duration(10), Duration::from_millis(400));
    }
}
