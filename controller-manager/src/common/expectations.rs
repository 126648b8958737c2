//! Creation and deletion expectations (client-go's ControllerExpectations).
//!
//! After a controller creates or deletes pods, its informer learns of them only some
//! time later. Until it has seen every change it made, a second sync would count the
//! old state and create or delete again. So a controller records what it expects and
//! skips changing anything for that key until the informer has caught up, or until
//! the expectations are five minutes old (a lost event must not wedge a controller).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keelson_client::ObjectKey;

const TTL: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Expected {
    adds: i64,
    dels: i64,
    at: Instant,
}

/// Per-key outstanding creations and deletions. Cheap to clone.
#[derive(Clone, Default)]
pub struct Expectations {
    by_key: Arc<Mutex<HashMap<ObjectKey, Expected>>>,
}

impl Expectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ObjectKey, Expected>> {
        self.by_key.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the controller may act on `key`: nothing outstanding, or expired.
    pub fn satisfied(&self, key: &ObjectKey) -> bool {
        match self.lock().get(key) {
            None => true,
            Some(e) => (e.adds <= 0 && e.dels <= 0) || e.at.elapsed() > TTL,
        }
    }

    /// Replace the expectations for `key` (before creating or deleting).
    pub fn expect(&self, key: &ObjectKey, adds: i64, dels: i64) {
        self.lock().insert(
            key.clone(),
            Expected {
                adds,
                dels,
                at: Instant::now(),
            },
        );
    }

    /// A creation was seen by the informer, or will never happen (it failed).
    pub fn creation_observed(&self, key: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// A deletion was seen by the informer, or will never happen.
    pub fn deletion_observed(&self, key: &ObjectKey) {
        if let Some(e) = self.lock().get_mut(key) {
            e.dels -= 1;
        }
    }

    /// Forget `key` (its owner is gone).
    pub fn forget(&self, key: &ObjectKey) {
        self.lock().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn satisfied_after_every_expected_change_is_observed() {
        let exp = Expectations::default();
        let key = ObjectKey::new(Some("ns"), "rs");
        assert!(exp.satisfied(&key));
        exp.expect(&key, 2, 0);
        assert!(!exp.satisfied(&key));
        exp.creation_observed(&key);
        assert!(!exp.satisfied(&key));
        exp.creation_observed(&key);
        assert!(exp.satisfied(&key));
        exp.expect(&key, 0, 1);
        assert!(!exp.satisfied(&key));
        exp.deletion_observed(&key);
        assert!(exp.satisfied(&key));
        exp.expect(&key, 1, 0);
        exp.forget(&key);
        assert!(exp.satisfied(&key));
    }
}
