//! Certificates, kubeconfigs and TLS, checked with rustls and the real kubectl.
//!
//! One test binary per crate: each module below was its own binary, and linking
//! every one of them separately cost minutes and gigabytes of disk.

mod kubeconfig;
mod kubectl;
mod openssl;
mod pki;
mod sa_keys;
mod tls;
