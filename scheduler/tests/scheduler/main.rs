//! The scheduler against a real apiserver and etcd.
//!
//! One test binary per crate: each module below was its own binary, and linking
//! every one of them separately cost minutes and gigabytes of disk.

mod support;

mod priority;
mod scheduling;
