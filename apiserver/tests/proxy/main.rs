//! The connect subresources end to end: a real apiserver (keelson-testkit), the real
//! kubectl, and backends written here on loopback: an HTTPS "kubelet" that demands a
//! client certificate from the cluster CA, and a plain HTTP server standing in for pods
//! and endpoints. `encryption` checks Secrets at rest with its own clusters (the real
//! etcdctl reads back what `--encryption-provider-config` stored); `audit` reads back
//! what `--audit-log-path` wrote.

mod audit;
mod encryption;
mod exec;
mod flowcontrol;
mod logs;
mod networkpolicies;
mod proxy;
mod support;
