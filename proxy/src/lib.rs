//! keelson-proxy: kube-proxy's nftables mode. See docs/proxy.md.
pub mod netpol;
