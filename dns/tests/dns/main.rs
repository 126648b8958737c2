//! keelson-dns against a real etcd and apiserver: the server runs in-process on
//! loopback ports, queried with hickory-proto and with the real `dig`.

mod support;

mod forward;
mod freshness;
mod publish;
mod records;
