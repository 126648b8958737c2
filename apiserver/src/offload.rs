//! CPU-heavy work (decoding and encoding large lists) off the async workers.
//!
//! Tokio's workers are cooperative: a task decoding a thousand objects keeps its worker
//! until it is done, and every short request queued behind it (a Lease renewal, an
//! admin's get) waits, whatever API Priority and Fairness decided. Go's scheduler
//! preempts goroutines, which is why kube-apiserver needs nothing like this. Work over a
//! few dozen objects runs on the blocking pool instead, where the kernel shares the CPU
//! between threads and wakes the (mostly idle) workers first.

/// Up to this many objects are decoded or encoded in place: a thread hop costs more.
pub const INLINE_ITEMS: usize = 64;

/// Run `f`, which handles `items` objects, where it does not hold up other requests.
/// A panic in `f` resumes in the caller, so the handler's panic guard still sees it.
pub async fn run<T: Send + 'static>(items: usize, f: impl FnOnce() -> T + Send + 'static) -> T {
    if items <= INLINE_ITEMS {
        return f();
    }
    match tokio::task::spawn_blocking(f).await {
        Ok(v) => v,
        Err(e) => match e.try_into_panic() {
            Ok(payload) => std::panic::resume_unwind(payload),
            // The blocking pool only cancels work at runtime shutdown.
            Err(e) => panic!("offloaded work did not run: {e}"),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn small_work_runs_in_place_and_large_work_on_the_pool() {
        let here = std::thread::current().id();
        assert_eq!(run(1, move || std::thread::current().id()).await, here);
        let there = run(INLINE_ITEMS + 1, || std::thread::current().id()).await;
        assert_ne!(there, here);
    }

    #[tokio::test]
    async fn a_panic_reaches_the_caller() {
        let caught = tokio::spawn(run(INLINE_ITEMS + 1, || -> u8 { panic!("boom") })).await;
        assert!(caught.unwrap_err().is_panic());
    }
}
