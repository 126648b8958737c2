//! A rate-limited work queue for controllers, as client-go's `workqueue`.
//!
//! - An item is queued at most once: adding an item that is already waiting does
//!   nothing (keys, not events, are queued; the worker reads the current state).
//! - An item being processed (between [`WorkQueue::get`] and [`WorkQueue::done`]) is
//!   never handed to a second worker; added meanwhile, it is queued again at `done`.
//! - [`WorkQueue::add_after`] delays an item; [`WorkQueue::add_rate_limited`] delays
//!   it by the [`RateLimiter`]: per item exponential backoff (5ms doubling to 1000s)
//!   and an overall token bucket (10 per second, bursts of 100), the larger of the two,
//!   as client-go's `DefaultControllerRateLimiter`. [`WorkQueue::forget`] resets an
//!   item's backoff after it was processed successfully.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Per item exponential backoff, plus an overall token bucket.
#[derive(Debug)]
pub struct RateLimiter<T> {
    base: Duration,
    max: Duration,
    failures: HashMap<T, u32>,
    bucket: Option<TokenBucket>,
}

#[derive(Debug)]
struct TokenBucket {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// Reserve one token; the delay until it is available.
    fn reserve(&mut self) -> Duration {
        let now = Instant::now();
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.qps).min(self.burst);
        self.tokens -= 1.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.qps)
        }
    }
}

impl<T: Eq + Hash + Clone> Default for RateLimiter<T> {
    /// client-go's default controller rate limiter.
    fn default() -> Self {
        RateLimiter::exponential(Duration::from_millis(5), Duration::from_secs(1000))
            .with_bucket(10.0, 100)
    }
}

impl<T: Eq + Hash + Clone> RateLimiter<T> {
    /// Per item: `base * 2^failures`, capped at `max`; no overall limit.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        RateLimiter {
            base,
            max,
            failures: HashMap::new(),
            bucket: None,
        }
    }

    /// Add an overall token bucket of `qps` with `burst` tokens.
    pub fn with_bucket(mut self, qps: f64, burst: u32) -> Self {
        self.bucket = Some(TokenBucket {
            qps: qps.max(f64::MIN_POSITIVE),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            last: Instant::now(),
        });
        self
    }

    /// How long to wait before retrying `item`; counts a failure.
    pub fn when(&mut self, item: &T) -> Duration {
        let n = self.failures.entry(item.clone()).or_insert(0);
        let exp = self
            .base
            .checked_mul(1u32.checked_shl(*n).unwrap_or(u32::MAX))
            .unwrap_or(self.max)
            .min(self.max);
        *n = n.saturating_add(1);
        let bucket = self
            .bucket
            .as_mut()
            .map_or(Duration::ZERO, TokenBucket::reserve);
        exp.max(bucket)
    }

    /// Failures counted for `item` since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.failures.get(item).copied().unwrap_or(0)
    }

    /// Reset `item`'s backoff.
    pub fn forget(&mut self, item: &T) {
        self.failures.remove(item);
    }
}

struct State<T> {
    queue: VecDeque<T>,
    /// Items that need processing (queued, or added again while processing).
    dirty: HashSet<T>,
    processing: HashSet<T>,
    /// Delayed items: the earliest time each is due, and the same ordered by time.
    waiting: HashMap<T, (Instant, u64)>,
    due: BTreeMap<(Instant, u64), T>,
    seq: u64,
    shutting_down: bool,
    limiter: RateLimiter<T>,
}

impl<T: Eq + Hash + Clone> State<T> {
    fn add(&mut self, item: T) -> bool {
        if self.shutting_down || self.dirty.contains(&item) {
            return false;
        }
        self.dirty.insert(item.clone());
        if self.processing.contains(&item) {
            return false;
        }
        self.queue.push_back(item);
        true
    }

    /// Move due delayed items into the queue.
    fn promote(&mut self, now: Instant) {
        while let Some(entry) = self.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let item = entry.remove();
            self.waiting.remove(&item);
            self.add(item);
        }
    }
}

struct Inner<T> {
    state: Mutex<State<T>>,
    notify: Notify,
}

/// A deduplicating, delaying, rate-limited queue of keys. Cheap to clone: clones share
/// the queue, so several workers can [`get`](WorkQueue::get) from it.
pub struct WorkQueue<T> {
    inner: Arc<Inner<T>>,
}

impl<T> Clone for WorkQueue<T> {
    fn clone(&self) -> Self {
        WorkQueue {
            inner: self.inner.clone(),
        }
    }
}

impl<T: Eq + Hash + Clone + Send + 'static> Default for WorkQueue<T> {
    fn default() -> Self {
        WorkQueue::new()
    }
}

impl<T: Eq + Hash + Clone + Send + 'static> WorkQueue<T> {
    /// A queue with client-go's default controller rate limiter.
    pub fn new() -> Self {
        WorkQueue::with_rate_limiter(RateLimiter::default())
    }

    pub fn with_rate_limiter(limiter: RateLimiter<T>) -> Self {
        WorkQueue {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    queue: VecDeque::new(),
                    dirty: HashSet::new(),
                    processing: HashSet::new(),
                    waiting: HashMap::new(),
                    due: BTreeMap::new(),
                    seq: 0,
                    shutting_down: false,
                    limiter,
                }),
                notify: Notify::new(),
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.inner.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queue `item` unless it is already queued.
    pub fn add(&self, item: T) {
        if self.lock().add(item) {
            self.inner.notify.notify_waiters();
        }
    }

    /// Queue `item` after `delay` (at once for zero). A pending earlier delay for the
    /// same item wins.
    pub fn add_after(&self, item: T, delay: Duration) {
        if delay.is_zero() {
            return self.add(item);
        }
        let at = Instant::now() + delay;
        let mut st = self.lock();
        if st.shutting_down {
            return;
        }
        if let Some(&(prev, seq)) = st.waiting.get(&item) {
            if prev <= at {
                return;
            }
            st.due.remove(&(prev, seq));
        }
        st.seq += 1;
        let seq = st.seq;
        st.waiting.insert(item.clone(), (at, seq));
        st.due.insert((at, seq), item);
        drop(st);
        // Sleeping getters recompute their deadline.
        self.inner.notify.notify_waiters();
    }

    /// Queue `item` after its rate-limited delay (counts a failure for it).
    pub fn add_rate_limited(&self, item: T) {
        let delay = self.lock().limiter.when(&item);
        self.add_after(item, delay);
    }

    /// Reset `item`'s backoff (after it was processed successfully).
    pub fn forget(&self, item: &T) {
        self.lock().limiter.forget(item);
    }

    /// Failures counted for `item` since it was last forgotten.
    pub fn num_requeues(&self, item: &T) -> u32 {
        self.lock().limiter.num_requeues(item)
    }

    /// Wait for the next item; `None` once the queue is shut down and drained. Every
    /// item returned must be handed back with [`WorkQueue::done`].
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.inner.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let next_due = {
                let mut st = self.lock();
                st.promote(Instant::now());
                if let Some(item) = st.queue.pop_front() {
                    st.dirty.remove(&item);
                    st.processing.insert(item.clone());
                    return Some(item);
                }
                if st.shutting_down {
                    return None;
                }
                st.due.first_key_value().map(|((at, _), _)| *at)
            };
            match next_due {
                Some(at) => {
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    /// `item` is processed; if it was added meanwhile, it is queued again.
    pub fn done(&self, item: &T) {
        let mut st = self.lock();
        st.processing.remove(item);
        if st.dirty.contains(item) {
            st.queue.push_back(item.clone());
            drop(st);
            self.inner.notify.notify_waiters();
        }
    }

    /// Items ready to be processed (not counting delayed or in-process ones).
    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Stop accepting items; getters drain what is queued, then get `None`. Delayed
    /// items are dropped.
    pub fn shut_down(&self) {
        let mut st = self.lock();
        st.shutting_down = true;
        st.waiting.clear();
        st.due.clear();
        drop(st);
        self.inner.notify.notify_waiters();
    }

    pub fn is_shutting_down(&self) -> bool {
        self.lock().shutting_down
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn exponential_backoff_per_item_and_forget() {
        let mut rl = RateLimiter::exponential(ms(5), Duration::from_secs(1000));
        let delays: Vec<Duration> = (0..5).map(|_| rl.when(&"a")).collect();
        assert_eq!(delays, [ms(5), ms(10), ms(20), ms(40), ms(80)]);
        assert_eq!(rl.when(&"b"), ms(5), "items back off independently");
        assert_eq!(rl.num_requeues(&"a"), 5);
        for _ in 0..30 {
            rl.when(&"a");
        }
        assert_eq!(rl.when(&"a"), Duration::from_secs(1000), "capped at max");
        rl.forget(&"a");
        assert_eq!(rl.num_requeues(&"a"), 0);
        assert_eq!(rl.when(&"a"), ms(5));
    }

    #[tokio::test(start_paused = true)]
    async fn default_limiter_has_an_overall_bucket() {
        let mut rl = RateLimiter::<u32>::default();
        // 100 distinct items use the burst; the next waits for a token at 10/s.
        for i in 0..100 {
            assert_eq!(rl.when(&i), ms(5));
        }
        assert_eq!(rl.when(&100), ms(100));
        assert_eq!(rl.when(&101), ms(200));
        tokio::time::advance(Duration::from_secs(1)).await;
        // 10 tokens came back, but 2 were already spent in advance.
        assert_eq!(rl.when(&102), ms(5));
    }

    #[tokio::test]
    async fn dedups_and_keeps_order() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        assert_eq!(q.get().await, Some("a"));
        assert_eq!(q.get().await, Some("b"));
        assert!(q.is_empty());
    }

    #[tokio::test]
    async fn item_in_process_is_requeued_at_done_not_handed_out_twice() {
        let q = WorkQueue::new();
        q.add("a");
        let item = q.get().await.unwrap();
        q.add("a");
        q.add("a");
        assert_eq!(q.len(), 0, "not queued while processing");
        let second = tokio::time::timeout(ms(50), q.get()).await;
        assert!(second.is_err(), "a second worker must not get it");
        q.done(&item);
        assert_eq!(q.len(), 1, "queued once at done");
        assert_eq!(q.get().await, Some("a"));
        q.done(&"a");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_delays_and_earliest_wins() {
        let q = WorkQueue::new();
        let start = Instant::now();
        q.add_after("slow", Duration::from_secs(10));
        q.add_after("x", Duration::from_secs(5));
        q.add_after("x", Duration::from_secs(2));
        q.add_after("x", Duration::from_secs(8));
        assert!(q.is_empty());
        assert_eq!(q.get().await, Some("x"));
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert_eq!(q.get().await, Some("slow"));
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        let again = tokio::time::timeout(Duration::from_secs(60), q.get()).await;
        assert!(again.is_err(), "x was queued once, not three times");
    }

    #[tokio::test(start_paused = true)]
    async fn rate_limited_requeue_backs_off_until_forgotten() {
        let q = WorkQueue::with_rate_limiter(RateLimiter::exponential(ms(5), ms(1000)));
        let mut waits = Vec::new();
        for _ in 0..4 {
            let t = Instant::now();
            q.add_rate_limited("k");
            let k = q.get().await.unwrap();
            waits.push(t.elapsed());
            q.done(&k);
        }
        assert_eq!(waits, [ms(5), ms(10), ms(20), ms(40)]);
        assert_eq!(q.num_requeues(&"k"), 4);
        q.forget(&"k");
        let t = Instant::now();
        q.add_rate_limited("k");
        q.get().await.unwrap();
        assert_eq!(t.elapsed(), ms(5));
    }

    #[tokio::test]
    async fn waiting_getter_is_woken_by_add() {
        let q = WorkQueue::<String>::new();
        let q2 = q.clone();
        let getter = tokio::spawn(async move { q2.get().await });
        tokio::time::sleep(ms(20)).await;
        q.add("late".to_string());
        let got = tokio::time::timeout(Duration::from_secs(5), getter)
            .await
            .expect("getter woke")
            .unwrap();
        assert_eq!(got.as_deref(), Some("late"));
    }

    #[tokio::test]
    async fn shut_down_drains_then_ends() {
        let q = WorkQueue::new();
        q.add(1);
        q.add(2);
        q.add_after(3, Duration::from_secs(3600));
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while let Some(i) = q.get().await {
                    got.push(i);
                    q.done(&i);
                }
                got
            })
        };
        tokio::time::sleep(ms(20)).await;
        q.shut_down();
        q.add(4);
        let got = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("getter ended")
            .unwrap();
        assert_eq!(got, [1, 2], "drained, delayed and late items dropped");
        assert!(q.is_shutting_down());
    }
}
