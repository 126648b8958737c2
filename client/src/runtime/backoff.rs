//! Exponential backoff with jitter.

use std::time::Duration;

use rand::Rng;

/// Doubles from `initial` up to `max`, with ±20% jitter; [`Backoff::reset`] after success.
#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    current: Option<Duration>,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            current: None,
        }
    }

    /// The next delay.
    pub fn next_delay(&mut self) -> Duration {
        let d = match self.current {
            None => self.initial,
            Some(c) => c.saturating_mul(2).min(self.max),
        };
        self.current = Some(d);
        d.mul_f64(rand::rng().random_range(0.8..1.2))
    }

    pub fn reset(&mut self) {
        self.current = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_max_and_resets() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_millis(350));
        let within = |d: Duration, nominal: u64| {
            let ms = d.as_secs_f64() * 1000.0;
            ms >= nominal as f64 * 0.8 - 0.001 && ms <= nominal as f64 * 1.2 + 0.001
        };
        assert!(within(b.next_delay(), 100));
        assert!(within(b.next_delay(), 200));
        assert!(within(b.next_delay(), 350));
        assert!(within(b.next_delay(), 350));
        b.reset();
        assert!(within(b.next_delay(), 100));
    }
}
