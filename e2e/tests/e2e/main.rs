//! End-to-end: the built binaries, the real kubectl, a real etcd.
//!
//! One test binary per crate: each module below was its own binary, and linking
//! every one of them separately cost minutes and gigabytes of disk.

mod support;

mod bad_input;
mod conformance_api;
mod conformance_runner;
mod credentials;
mod custom_resources;
mod dns;
mod drain;
mod event_ttl;
mod failover;
mod fuzz;
mod ha;
mod images;
mod keelson_up;
mod kinds;
mod kubectl;
mod lifecycle;
mod mirroring;
mod network_policy;
mod nodes;
mod pod_security;
mod rbac;
mod service_accounts;
mod services;
mod webhooks;
mod workloads;
