//! The client library against a real cluster (etcd + keelson-apiserver).
//!
//! One test binary per crate: each module below was its own binary, and linking
//! every one of them separately cost minutes and gigabytes of disk.

mod common;

mod api;
mod gone;
mod informer;
