//! The agent's own certificates, renewed through CertificateSigningRequests before they
//! expire, as the kubelet's certificate managers do:
//!
//! - [`client`] (`--rotate-certificates`): the client certificate of its kubeconfig;
//! - [`serving`] (`--rotate-server-certificates`): the serving certificate of its HTTPS
//!   API.
//!
//! What both share lives here: the certificate presented now ([`CurrentCertificate`],
//! asked at every TLS handshake, so a new one is used without restarting anything),
//! when to renew ([`rotation_deadline`]), asking for a certificate and waiting for it
//! ([`request`]), and replacing files atomically.

pub mod client;
pub mod serving;

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use keelson_client::{Api, Client, PostParams};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

/// How long a request may wait for approval and issuance before a new one is made
/// (the kubelet's certificate manager waits as long).
pub const ISSUE_WAIT: Duration = Duration::from_secs(15 * 60);

/// The longest pause between failed renewals.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// A certificate and its key as presented now, replaced on rotation. Serves as a client
/// certificate (towards the apiserver) and as a server certificate (the agent's API).
#[derive(Debug)]
pub struct CurrentCertificate {
    current: RwLock<(Arc<CertifiedKey>, Vec<u8>)>,
}

impl CurrentCertificate {
    pub fn new(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<CurrentCertificate> {
        Ok(CurrentCertificate {
            current: RwLock::new((certified(cert_pem, key_pem)?, cert_pem.to_vec())),
        })
    }

    /// The certificate presented now (PEM).
    pub fn pem(&self) -> Vec<u8> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    /// Present `cert_pem` with `key_pem` from the next handshake on.
    pub fn set(&self, cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<()> {
        let key = certified(cert_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (key, cert_pem.to_vec());
        Ok(())
    }

    fn key(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .0
            .clone()
    }
}

impl ResolvesClientCert for CurrentCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ResolvesServerCert for CurrentCertificate {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.key())
    }
}

fn certified(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .context("certificate PEM")?;
    anyhow::ensure!(!chain.is_empty(), "no certificate");
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("private key PEM")?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| anyhow::anyhow!("private key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

/// When to rotate a certificate valid from `not_before` to `not_after`: at a random
/// point between 70% and 90% of its lifetime (the kubelet's `nextRotationDeadline`).
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let total = not_after.duration_since(not_before).unwrap_or_default();
    let fraction = 0.7 + 0.2 * rand::random::<f64>();
    not_before + total.mul_f64(fraction)
}

/// The next pause after a failed renewal: doubled, up to five minutes.
fn next_backoff(backoff: Duration) -> Duration {
    (backoff * 2).min(MAX_BACKOFF)
}

/// Ask `signer` for a certificate for `csr_pem` with `usages`, and wait (up to `wait`)
/// until it is issued. A request that is denied or fails is an error at once.
pub async fn request(
    client: &Client,
    signer: &str,
    csr_pem: String,
    usages: &[&str],
    wait: Duration,
) -> anyhow::Result<Vec<u8>> {
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let request = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: signer.into(),
            usages: Some(usages.iter().map(|u| u.to_string()).collect()),
            ..Default::default()
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &request).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, signer, "requested a certificate");
    let give_up = tokio::time::Instant::now() + wait;
    loop {
        let csr = api.get(&name).await?;
        let status = csr.status.unwrap_or_default();
        let refused = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| (c.type_ == "Denied" || c.type_ == "Failed") && c.status == "True");
        if let Some(c) = refused {
            anyhow::bail!(
                "certificate request {name} {}: {}",
                c.type_.to_lowercase(),
                c.message.unwrap_or_default()
            );
        }
        if let Some(cert) = status.certificate.filter(|c| !c.0.is_empty()) {
            return Ok(cert.0);
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < give_up,
            "certificate request {name} was not issued within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Write `data` to a new file next to `path` (mode 0600) and rename it over `path`.
fn write_atomic(path: &Path, data: &[u8]) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_is_due_between_70_and_90_percent() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let end = start + Duration::from_secs(1000);
        for _ in 0..100 {
            let d = rotation_deadline(start, end).duration_since(start).unwrap();
            assert!(
                d >= Duration::from_secs(700) && d <= Duration::from_secs(900),
                "{d:?}"
            );
        }
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        assert_eq!(next_backoff(Duration::from_secs(1)), Duration::from_secs(2));
        assert_eq!(next_backoff(Duration::from_secs(200)), MAX_BACKOFF);
    }
}
