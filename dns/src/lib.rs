//! keelson-dns: cluster DNS. See docs/dns.md.
