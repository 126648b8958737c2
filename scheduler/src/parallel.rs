//! Split a map over node lists across threads (`parallelism`), only when each thread
//! gets enough nodes for the split to pay for itself.

/// Fewest items per thread worth a thread.
const MIN_PER_THREAD: usize = 256;

/// `items.iter().map(f)`, in order, on up to `threads` scoped threads.
pub fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.min(items.len() / MIN_PER_THREAD);
    if threads <= 1 {
        return items.iter().map(f).collect();
    }
    let chunk = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("scheduler worker panicked"))
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_as_sequential() {
        let items: Vec<u32> = (0..2000).collect();
        assert_eq!(
            parallel_map(&items, 4, |x| x * 2),
            items.iter().map(|x| x * 2).collect::<Vec<_>>()
        );
        assert_eq!(parallel_map(&items[..10], 4, |x| x + 1).len(), 10);
    }
}
