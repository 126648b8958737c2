//! rustls configurations for the apiserver and its clients.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context as _};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::ResolvesServerCert;
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::{ClientConfig, RootCertStore, ServerConfig, ServerConnection};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::client_verify::ClientCaVerifier;
use crate::files::{certs_from_pem, key_from_pem, load_certs, load_private_key};
use crate::kubeconfig::{Kubeconfig, ResolvedContext};
use crate::pki::identity_from_cert_der;
use crate::Identity;

/// A TLS server config for the apiserver: serves `cert_path` (PEM, leaf first, chain may
/// follow) with `key_path`, offers ALPN `h2` and `http/1.1`, and with `client_ca_path`
/// verifies client certificates against that CA bundle. Client certificates are optional: a
/// client without one completes the handshake (bearer tokens; the apiserver answers 401
/// itself), but one presenting a certificate that does not verify is rejected. Client
/// certificates are verified as kube-apiserver verifies them ([`ClientCaVerifier`]: X.509 v1
/// certificates too).
pub fn server_config(
    cert_path: &Path,
    key_path: &Path,
    client_ca_path: Option<&Path>,
) -> anyhow::Result<ServerConfig> {
    let chain = load_certs(cert_path)?;
    let key = load_private_key(key_path)?;
    let mut config = server_builder(client_ca_path)?
        .with_single_cert(chain, key)
        .with_context(|| {
            format!(
                "serving certificate {} with key {}",
                cert_path.display(),
                key_path.display()
            )
        })?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// [`server_config`] for a certificate that may change while the server runs: every
/// handshake asks `resolver` (a node agent's rotated serving certificate).
pub fn server_config_with_resolver(
    resolver: Arc<dyn ResolvesServerCert>,
    client_ca_path: Option<&Path>,
) -> anyhow::Result<ServerConfig> {
    let mut config = server_builder(client_ca_path)?.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The protocol versions and client verification every server config shares.
fn server_builder(
    client_ca_path: Option<&Path>,
) -> anyhow::Result<rustls::ConfigBuilder<ServerConfig, rustls::server::WantsServerCert>> {
    let builder = ServerConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?;
    Ok(match client_ca_path {
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let verifier = ClientCaVerifier::from_pem(&pem)
                .with_context(|| format!("client CA {}", ca.display()))?;
            builder.with_client_cert_verifier(Arc::new(verifier))
        }
        None => builder.with_no_client_auth(),
    })
}

/// The identity of the client certificate a TLS connection presented (verified by the config
/// from [`server_config`]): CN as user, O values as groups. `None` without a client
/// certificate (or before the handshake completed).
pub fn peer_identity(conn: &ServerConnection) -> Option<Identity> {
    conn.peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|leaf| identity_from_cert_der(leaf))
}

/// A TLS client config for the kubeconfig's current context: trusts its CA, presents its
/// client certificate if it has one, offers ALPN `h2` (gRPC). SNI/server name is the caller's
/// (the connector's) business; see [`ResolvedContext::tls_server_name`].
pub fn client_config(kubeconfig: &Kubeconfig) -> anyhow::Result<ClientConfig> {
    client_config_for(&kubeconfig.current()?)
}

/// [`client_config`] for an already resolved context.
pub fn client_config_for(ctx: &ResolvedContext) -> anyhow::Result<ClientConfig> {
    if ctx.insecure_skip_tls_verify {
        bail!(
            "context {:?}: insecure-skip-tls-verify is not supported",
            ctx.context_name
        );
    }
    let ca = ctx.ca_pem.as_deref().with_context(|| {
        format!(
            "cluster {:?} has no certificate-authority(-data)",
            ctx.cluster_name
        )
    })?;
    let roots = roots_from_pem(ca)
        .with_context(|| format!("certificate authority of cluster {:?}", ctx.cluster_name))?;
    let builder = ClientConfig::builder_with_provider(crate::provider())
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_root_certificates(roots);
    let mut config = match (&ctx.client_cert_pem, &ctx.client_key_pem) {
        (Some(cert), Some(key)) => {
            let chain = certs_from_pem(cert)
                .with_context(|| format!("client certificate of user {:?}", ctx.user_name))?;
            let key = key_from_pem(key)
                .with_context(|| format!("client key of user {:?}", ctx.user_name))?;
            let certified = certified_key(chain, key)
                .with_context(|| format!("client certificate of user {:?}", ctx.user_name))?;
            builder.with_client_cert_resolver(Arc::new(SingleCertAndKey::from(certified)))
        }
        _ => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(config)
}

/// A client certificate chain and its key, checked to belong together. rustls' own check
/// (`with_client_auth_cert`) parses the certificate with webpki, which refuses X.509 v1
/// certificates that the apiserver accepts; this compares the public keys itself.
fn certified_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> anyhow::Result<CertifiedKey> {
    let key = crate::provider()
        .key_provider
        .load_private_key(key)
        .map_err(|e| anyhow::anyhow!("unusable private key: {e}"))?;
    let leaf = chain.first().context("no certificate")?;
    let (_, cert) = X509Certificate::from_der(leaf)
        .map_err(|e| anyhow::anyhow!("certificate does not parse: {e}"))?;
    if let Some(public) = key.public_key() {
        if public.as_ref() != cert.public_key().raw {
            bail!("the private key does not belong to the certificate");
        }
    }
    Ok(CertifiedKey::new(chain, key))
}

fn roots_from_pem(pem: &[u8]) -> anyhow::Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in certs_from_pem(pem)? {
        roots
            .add(CertificateDer::clone(&cert))
            .map_err(|e| anyhow::anyhow!("CA certificate not usable as trust anchor: {e}"))?;
    }
    Ok(roots)
}
