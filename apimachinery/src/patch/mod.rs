//! Patches: JSON patch (RFC 6902), JSON merge patch (RFC 7386), strategic merge patch,
//! and the list semantics of built-in kinds both strategic merge and server-side apply
//! need ([`schema`]).

pub mod json_patch;
pub mod merge_patch;
pub mod schema;
pub mod strategic;
