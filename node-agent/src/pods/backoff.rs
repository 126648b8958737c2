//! Restart and image-pull backoff, as the kubelet's `flowcontrol.Backoff`: the first
//! retry is free, then 10 s doubling to 5 min; an entry untouched for twice the maximum
//! (10 min) starts over.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const INITIAL: Duration = Duration::from_secs(10);
pub const MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Entry {
    delay: Duration,
    last_update: Instant,
}

#[derive(Debug)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: Mutex<HashMap<String, Entry>>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(INITIAL, MAX)
    }
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: Mutex::default(),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// How long `key` must still wait when its last attempt ended at `since`; `None`
    /// when it may go now.
    pub fn remaining(&self, key: &str, since: Instant) -> Option<Duration> {
        let entries = self.entries();
        let e = entries.get(key)?;
        if e.last_update.elapsed() > 2 * self.max {
            return None;
        }
        let until = since + e.delay;
        until.checked_duration_since(Instant::now())
    }

    /// How long `key` must still wait after its last recorded attempt (image pulls: the
    /// failure is the attempt).
    pub fn remaining_since_last(&self, key: &str) -> Option<Duration> {
        let since = self.entries().get(key)?.last_update;
        self.remaining(key, since)
    }

    /// Record an attempt: the next one waits longer. Returns the delay now in force.
    pub fn next(&self, key: &str) -> Duration {
        let mut entries = self.entries();
        let now = Instant::now();
        let delay = match entries.get(key) {
            Some(e) if e.last_update.elapsed() <= 2 * self.max => (e.delay * 2).min(self.max),
            _ => self.initial,
        };
        entries.insert(
            key.to_string(),
            Entry {
                delay,
                last_update: now,
            },
        );
        delay
    }

    /// The delay in force for `key` (for messages), without recording anything.
    pub fn delay(&self, key: &str) -> Duration {
        self.entries()
            .get(key)
            .map(|e| e.delay)
            .unwrap_or(self.initial)
    }

    pub fn reset(&self, key: &str) {
        self.entries().remove(key);
    }

    /// Forget every key that starts with `prefix` (a pod uid when the pod goes).
    pub fn forget_prefix(&self, prefix: &str) {
        self.entries().retain(|k, _| !k.starts_with(prefix));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_to_the_maximum() {
        let b = Backoff::new(Duration::from_secs(10), Duration::from_secs(40));
        assert_eq!(
            b.remaining("a", Instant::now()),
            None,
            "first retry is free"
        );
        assert_eq!(b.next("a"), Duration::from_secs(10));
        assert!(b.remaining("a", Instant::now()).unwrap() > Duration::from_secs(9));
        assert_eq!(b.next("a"), Duration::from_secs(20));
        assert_eq!(b.next("a"), Duration::from_secs(40));
        assert_eq!(b.next("a"), Duration::from_secs(40));
        let long_ago = Instant::now() - Duration::from_secs(100);
        assert_eq!(b.remaining("a", long_ago), None);
        b.reset("a");
        assert_eq!(b.next("a"), Duration::from_secs(10));
        b.forget_prefix("a");
        assert_eq!(b.remaining("a", Instant::now()), None);
    }
}
