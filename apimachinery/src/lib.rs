//! Kubernetes API machinery as pure functions over `serde_json::Value`.
//!
//! Nothing here does I/O: the apiserver, the client library and tests all share these
//! pieces, and each is unit-tested on its own.
//!
//! - [`status`]: `metav1.Status` errors with the HTTP code, reason and field causes.
//! - [`validation`]: DNS-1123 names, label keys and values, as Kubernetes words them.
//! - [`meta`]: small accessors for `metadata` on untyped objects.
//! - [`duration`]: Go-style duration flags (`15s`, `250ms`).
//! - [`quantity`]: `resource.Quantity` parsing, comparison and canonical form.

pub mod apply;
pub mod cron;
pub mod duration;
pub mod meta;
pub mod patch;
pub mod quantity;
pub mod selector;
pub mod status;
pub mod validation;

pub use status::{ApiError, Cause};
