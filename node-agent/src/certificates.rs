//! Client certificate rotation (`--rotate-certificates`), as the kubelet's certificate
//! manager: when 70 to 90 percent (jittered) of the current client certificate's
//! lifetime has passed, the agent makes a new ECDSA key, asks for a certificate with a
//! CertificateSigningRequest to `kubernetes.io/kube-apiserver-client-kubelet`
//! (`system:node:<name>` in `system:nodes`, digital signature and client auth), waits for
//! the controller-manager's approver and signer, and then replaces the credentials its
//! kubeconfig holds (the embedded data, or the files it names), each file atomically.
//!
//! The agent's connection to the apiserver presents whatever [`ClientCertificate`] holds
//! at each TLS handshake, so new connections use the new certificate without a restart;
//! the connection already open keeps the identity it was opened with until it is
//! re-established.

use std::io::Write as _;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestSpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use keelson_client::{Api, Client, Config, PostParams};
use keelson_pki::Kubeconfig;
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::SignatureScheme;

pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// The client certificate the agent presents, replaced on rotation.
#[derive(Debug)]
pub struct ClientCertificate {
    current: RwLock<(Arc<CertifiedKey>, Vec<u8>)>,
}

impl ClientCertificate {
    fn new(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<ClientCertificate> {
        Ok(ClientCertificate {
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

    fn set(&self, cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<()> {
        let key = certified(cert_pem, key_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = (key, cert_pem.to_vec());
        Ok(())
    }
}

impl ResolvesClientCert for ClientCertificate {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .0
                .clone(),
        )
    }

    fn has_certs(&self) -> bool {
        true
    }
}

fn certified(cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Arc<CertifiedKey>> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .context("client certificate PEM")?;
    anyhow::ensure!(!chain.is_empty(), "no client certificate");
    let key = PrivateKeyDer::from_pem_slice(key_pem).context("client key PEM")?;
    let key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| anyhow::anyhow!("client key: {e}"))?;
    Ok(Arc::new(CertifiedKey::new(chain, key)))
}

/// A client for the kubeconfig at `path` whose client certificate can be rotated.
pub fn rotating_client(path: &Path) -> anyhow::Result<(Client, Arc<ClientCertificate>)> {
    let kubeconfig = Kubeconfig::load(path)?;
    let ctx = kubeconfig.current()?;
    let (Some(cert), Some(key)) = (&ctx.client_cert_pem, &ctx.client_key_pem) else {
        anyhow::bail!("{}: no client certificate to rotate", path.display());
    };
    let current = Arc::new(ClientCertificate::new(cert, key)?);
    let mut config = Config::from_context(&ctx)?;
    let mut tls = (*config.tls).clone();
    tls.client_auth_cert_resolver = current.clone();
    config.tls = Arc::new(tls);
    Ok((Client::new(config)?, current))
}

/// The agent's API client: with `--rotate-certificates`, one whose certificate is
/// rotated by a task started here (within the Tokio runtime); otherwise a plain one.
pub fn client_for(kubeconfig: &Path, opts: &crate::NodeAgentOptions) -> anyhow::Result<Client> {
    if !opts.rotate_certificates {
        return Ok(Client::from_kubeconfig(kubeconfig)?);
    }
    let (client, current) = rotating_client(kubeconfig)?;
    tokio::spawn(run(
        client.clone(),
        opts.node_name(),
        kubeconfig.to_path_buf(),
        current,
    ));
    Ok(client)
}

/// When to rotate a certificate valid from `not_before` to `not_after`: at a random
/// point between 70% and 90% of its lifetime (the kubelet's `nextRotationDeadline`).
pub fn rotation_deadline(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let total = not_after.duration_since(not_before).unwrap_or_default();
    let fraction = 0.7 + 0.2 * rand::random::<f64>();
    not_before + total.mul_f64(fraction)
}

/// Keeps the client certificate fresh until dropped: rotates when due, retrying
/// failures with backoff (up to five minutes).
pub async fn run(
    client: Client,
    node: String,
    kubeconfig: std::path::PathBuf,
    current: Arc<ClientCertificate>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        let deadline = match keelson_pki::csr::validity(&current.pem()) {
            Ok((from, to)) => rotation_deadline(from, to),
            Err(_) => SystemTime::now(),
        };
        if let Ok(wait) = deadline.duration_since(SystemTime::now()) {
            tracing::info!(?wait, "client certificate rotation scheduled");
            tokio::time::sleep(wait).await;
        }
        match rotate(
            &client,
            &node,
            &kubeconfig,
            &current,
            Duration::from_secs(15 * 60),
        )
        .await
        {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "client certificate rotation failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(300));
            }
        }
    }
}

/// One rotation: a new key, a request for it, the certificate once issued (within
/// `wait`), written to the kubeconfig's credentials and presented from now on.
pub async fn rotate(
    client: &Client,
    node: &str,
    kubeconfig: &Path,
    current: &ClientCertificate,
    wait: Duration,
) -> anyhow::Result<()> {
    let user = format!("system:node:{node}");
    let (key_pem, csr_pem) = keelson_pki::csr::new_key_and_csr(&user, &["system:nodes"], &[], &[])?;
    let api: Api<CertificateSigningRequest> = Api::all(client.clone());
    let request = CertificateSigningRequest {
        metadata: ObjectMeta {
            generate_name: Some("csr-".into()),
            ..Default::default()
        },
        spec: CertificateSigningRequestSpec {
            request: ByteString(csr_pem.into_bytes()),
            signer_name: SIGNER.into(),
            usages: Some(vec!["digital signature".into(), "client auth".into()]),
            ..Default::default()
        },
        status: None,
    };
    let created = api.create(&PostParams::default(), &request).await?;
    let name = created.metadata.name.clone().unwrap_or_default();
    tracing::info!(csr = %name, "requested a new client certificate");
    let give_up = tokio::time::Instant::now() + wait;
    let cert_pem = loop {
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
            break cert.0;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < give_up,
            "certificate request {name} was not issued within {wait:?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    write_credentials(kubeconfig, &cert_pem, key_pem.as_bytes())?;
    current.set(&cert_pem, key_pem.as_bytes())?;
    tracing::info!(csr = %name, "rotated the client certificate");
    Ok(())
}

/// Replace the current context's client certificate and key: in the files the
/// kubeconfig names, or embedded in it. Every file is replaced atomically.
pub fn write_credentials(path: &Path, cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<()> {
    let mut kubeconfig = Kubeconfig::load(path)?;
    let user_name = kubeconfig
        .contexts
        .iter()
        .find(|c| c.name == kubeconfig.current_context)
        .map(|c| c.context.user.clone())
        .context("kubeconfig has no current context")?;
    let base = kubeconfig.base_dir.clone();
    let user = kubeconfig
        .users
        .iter_mut()
        .find(|u| u.name == user_name)
        .map(|u| &mut u.user)
        .with_context(|| format!("kubeconfig has no user {user_name:?}"))?;
    let resolve = |p: &str| match &base {
        Some(dir) if Path::new(p).is_relative() => dir.join(p),
        _ => Path::new(p).to_path_buf(),
    };
    match (&user.client_certificate, &user.client_key) {
        (Some(cert), Some(key)) => {
            // The key first: a certificate never names a key that is not there yet.
            write_atomic(&resolve(key), key_pem)?;
            write_atomic(&resolve(cert), cert_pem)?;
            Ok(())
        }
        _ => {
            let b64 = base64::engine::general_purpose::STANDARD;
            user.client_certificate_data = Some(b64.encode(cert_pem));
            user.client_key_data = Some(b64.encode(key_pem));
            user.client_certificate = None;
            user.client_key = None;
            kubeconfig.save(path)
        }
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
}
