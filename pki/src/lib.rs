//! Cluster PKI for Keelson.
//!
//! * [`ensure_pki`] / [`issue_client_cert`]: a self-signed cluster CA and the certificates
//!   signed by it (apiserver serving cert, admin and one client cert per component), created
//!   only when missing.
//! * [`issue_node_credentials`]: a node agent's client and serving certificates and kubeconfig.
//! * [`write_kubeconfig`] / [`Kubeconfig`]: standard kubeconfig files, as `kubectl` reads them;
//!   [`write_component_kubeconfigs`]: one per component, as kubeadm's `*.conf`.
//! * [`server_config`] / [`client_config`] / [`peer_identity`]: rustls configurations for the
//!   apiserver and its clients, and the user identity carried by a client certificate.
//! * [`csr`]: certificate signing requests read (signature checked), made, and signed by
//!   the cluster CA.
//! * [`TokenFile`]: Kubernetes' `--token-auth-file` static bearer tokens.
//! * [`jwt`]: service-account tokens signed and verified (RS256, ES256, ES384) with keys
//!   in the PEM forms kube-apiserver reads.
//!
//! All cryptography uses rustls' `ring` provider explicitly, so nothing here depends on a
//! process-wide default `CryptoProvider` being installed.

mod client_verify;
pub mod csr;
mod der;
mod files;
pub mod jwt;
mod keys;
mod kubeconfig;
mod node;
mod pki;
mod tls;
mod token;

pub use client_verify::ClientCaVerifier;
pub use files::{load_certs, load_private_key};
pub use kubeconfig::{
    write_component_kubeconfigs, write_kubeconfig, AuthInfo, Cluster, ComponentKubeconfigs,
    Context, Kubeconfig, NamedAuthInfo, NamedCluster, NamedContext, ResolvedContext,
};
pub use node::{issue_node_credentials, NodeCredentials};
pub use pki::{
    cert_sans, ensure_pki, identity_from_cert_der, issue_client_cert, CertPaths, PkiOptions,
    PkiPaths, SanEntry, DEFAULT_SERVICE_CIDR,
};
pub use tls::{
    client_config, client_config_for, peer_identity, server_config, server_config_with_resolver,
};
pub use token::{TokenEntry, TokenFile};

/// An authenticated user: from a client certificate (CN = user, O = groups) or a static token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// The `ring` crypto provider used for every rustls config built by this crate.
pub(crate) fn provider() -> std::sync::Arc<rustls::crypto::CryptoProvider> {
    std::sync::Arc::new(rustls::crypto::ring::default_provider())
}
