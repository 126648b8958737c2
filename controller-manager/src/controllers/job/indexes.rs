//! Completion indexes of Indexed Jobs: which index a pod runs, and the compressed
//! interval form of `status.completedIndexes` (`"0-2,4,6,7"`).

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// The pod's completion index, from its annotation (what Kubernetes reads).
pub fn of_pod(pod: &Pod) -> Option<u32> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(INDEX_KEY)?
        .parse()
        .ok()
}

/// A pod's index if it is one the job runs (below `completions`).
pub fn valid(pod: &Pod, completions: u32) -> Option<u32> {
    of_pod(pod).filter(|i| *i < completions)
}

/// Parse `completedIndexes`, keeping only indexes below `completions` (the job may
/// have been scaled down). Malformed parts are skipped.
pub fn parse(s: &str, completions: u32) -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((lo, hi)) => (lo.parse::<u32>(), hi.parse::<u32>()),
            None => (part.parse(), part.parse()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            set.extend((lo..=hi).take_while(|i| *i < completions));
        }
    }
    set
}

/// Kubernetes' interval form: runs of three or more as `a-b`, pairs as `a,b`.
pub fn format(set: &BTreeSet<u32>) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while iter.peek() == Some(&(last + 1)) {
            last = iter.next().unwrap_or(last);
        }
        out.push(match last - first {
            0 => first.to_string(),
            1 => format!("{first},{last}"),
            _ => format!("{first}-{last}"),
        });
    }
    out.join(",")
}

/// The lowest `count` indexes that neither succeeded nor have an active pod.
pub fn first_pending(
    succeeded: &BTreeSet<u32>,
    active: &BTreeSet<u32>,
    completions: u32,
    count: usize,
) -> Vec<u32> {
    (0..completions)
        .filter(|i| !succeeded.contains(i) && !active.contains(i))
        .take(count)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let set: BTreeSet<u32> = [0, 1, 2, 4, 6, 7].into();
        assert_eq!(format(&set), "0-2,4,6,7");
        assert_eq!(parse("0-2,4,6,7", 10), set);
        assert_eq!(parse("0-2,4,6,7", 5), [0, 1, 2, 4].into());
        assert_eq!(format(&BTreeSet::new()), "");
        assert_eq!(parse("", 3), BTreeSet::new());
    }

    #[test]
    fn pending_skips_done_and_running() {
        let done: BTreeSet<u32> = [0, 2].into();
        let running: BTreeSet<u32> = [1].into();
        assert_eq!(first_pending(&done, &running, 6, 2), vec![3, 4]);
        assert_eq!(first_pending(&done, &running, 3, 5), Vec::<u32>::new());
    }
}
