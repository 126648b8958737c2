//! Kubernetes' "slow start" for creating many objects at once: batches of 1, 2, 4, ...
//! that stop after the first batch with an error, so a quota or admission failure costs
//! one request rather than hundreds.

use std::future::Future;

/// What [`slow_start`] did.
pub struct Outcome<T, E> {
    pub created: Vec<T>,
    pub errors: Vec<E>,
    /// Calls never made because a batch failed.
    pub skipped: usize,
}

/// Call `create(i)` for `i` in `0..count`, in doubling concurrent batches.
pub async fn slow_start<T, E, F, Fut>(count: usize, create: F) -> Outcome<T, E>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut out = Outcome {
        created: Vec::new(),
        errors: Vec::new(),
        skipped: 0,
    };
    let mut next = 0;
    let mut batch = 1;
    while next < count {
        let n = batch.min(count - next);
        let results = futures::future::join_all((next..next + n).map(&create)).await;
        next += n;
        for r in results {
            match r {
                Ok(t) => out.created.push(t),
                Err(e) => out.errors.push(e),
            }
        }
        if !out.errors.is_empty() {
            out.skipped = count - next;
            break;
        }
        batch *= 2;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_after_the_first_failing_batch() {
        let out = futures::executor::block_on(slow_start(10, |i| async move {
            if i == 2 {
                Err("quota")
            } else {
                Ok(i)
            }
        }));
        // Batches: [0], [1, 2] (fails), then stop.
        assert_eq!(out.created, vec![0, 1]);
        assert_eq!(out.errors, vec!["quota"]);
        assert_eq!(out.skipped, 7);
    }
}
