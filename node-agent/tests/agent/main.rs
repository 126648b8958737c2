//! node-agent integration tests: the agent's parts against a real apiserver (real etcd,
//! real keelson-apiserver process; `cargo build -p keelson-apiserver` first). One
//! module per area.

mod auth;
mod certificates;
mod serving;
