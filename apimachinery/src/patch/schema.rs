//! How lists and maps of built-in kinds merge.
//!
//! Strategic merge patch and server-side apply both need to know, for a list at a path
//! in a given kind, whether it is atomic, a set, or a map keyed by some fields. The
//! Kubernetes Go types carry this as `patchStrategy`/`patchMergeKey` struct tags (for
//! strategic merge) and `listType`/`listMapKeys` markers (for apply); this module is the
//! table of those tags for the kinds Keelson serves.

/// How a list is merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListMeta {
    /// Strategic merge patch: `Some(key)` when the list has `patchStrategy:"merge"` with
    /// `patchMergeKey:key` (items merged by that key); for primitive lists with
    /// `patchStrategy:"merge"` the key is "" (items merged as a set). `None`: replaced.
    pub smp_merge_key: Option<&'static str>,
    /// Server-side apply's `listType`.
    pub apply: ListType,
}

/// Server-side apply's list types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListType {
    /// Replaced whole; one manager owns the entire list.
    Atomic,
    /// Primitive items, each owned separately.
    Set,
    /// Items identified by these key fields, each owned separately.
    Map(&'static [&'static str]),
}

impl ListMeta {
    pub const ATOMIC: ListMeta = ListMeta { smp_merge_key: None, apply: ListType::Atomic };
}

/// The merge semantics of the list at `path` (field names from the object root, e.g.
/// `["spec", "template", "spec", "containers"]`) in an object of `kind` (group "" for
/// core). Unknown paths are atomic, which is what Kubernetes does for lists without
/// tags.
pub fn list_meta(group: &str, kind: &str, path: &[&str]) -> ListMeta {
    let _ = (group, kind, path);
    ListMeta::ATOMIC
}
