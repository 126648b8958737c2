//! Kubernetes API machinery as pure functions over `serde_json::Value`.
//!
//! Nothing here does I/O: the apiserver, the client library and tests all share these
//! pieces, and each is unit-tested on its own.
//!
//! - [`status`]: `metav1.Status` errors with the HTTP code, reason and field causes.
//! - [`validation`]: DNS-1123 names, label keys and values, as Kubernetes words them.
//! - [`meta`]: small accessors for `metadata` on untyped objects.

pub mod apply;
pub mod meta;
pub mod patch;
pub mod selector;
pub mod status;
pub mod validation;

pub use status::{ApiError, Cause};
