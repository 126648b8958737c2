//! Every controller against a real apiserver and etcd.
//!
//! One test binary per crate: each module below was its own binary, and linking
//! every one of them separately cost minutes and gigabytes of disk.

mod support;

mod certificates;
mod cronjob;
mod custom_resources;
mod daemonset;
mod deployment;
mod disruption;
mod endpoints;
mod endpointslicemirroring;
mod garbage_collector;
mod identities;
mod job;
mod namespace;
mod networkpolicy;
mod node_lifecycle;
mod quota;
mod replicaset;
mod service_lb;
mod serviceaccount_podgc;
mod statefulset;
