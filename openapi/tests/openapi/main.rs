//! The OpenAPI documents: structure, and the real kubectl reading them.
//!
//! One test binary per crate: each module below was its own binary, and linking
//! every one of them separately cost minutes and gigabytes of disk.

mod common;

mod docs;
mod kubectl;
