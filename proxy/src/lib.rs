//! keelson-proxy: kube-proxy's nftables mode. See docs/proxy.md.
