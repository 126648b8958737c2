//! Client certificate rotation (`--rotate-certificates`), as the kubelet's certificate
//! manager: when 70 to 90 percent (jittered) of the current client certificate's
//! lifetime has passed, the agent makes a new ECDSA key, asks for a certificate with a
//! CertificateSigningRequest to `kubernetes.io/kube-apiserver-client-kubelet`
//! (`system:node:<name>` in `system:nodes`, digital signature and client auth), waits for
//! the controller-manager's approver and signer, and then replaces the credentials its
//! kubeconfig holds (the embedded data, or the files it names), each file atomically.
//!
//! The agent's connection to the apiserver presents whatever [`CurrentCertificate`] holds
//! at each TLS handshake, so new connections use the new certificate without a restart;
//! the connection already open keeps the identity it was opened with until it is
//! re-established.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use base64::Engine as _;
use keelson_client::{Client, Config};
use keelson_pki::Kubeconfig;

use super::{
    next_backoff, request, rotation_deadline, write_atomic, CurrentCertificate, ISSUE_WAIT,
};

pub const SIGNER: &str = "kubernetes.io/kube-apiserver-client-kubelet";

/// A client for the kubeconfig at `path` whose client certificate can be rotated.
pub fn rotating_client(path: &Path) -> anyhow::Result<(Client, Arc<CurrentCertificate>)> {
    let kubeconfig = Kubeconfig::load(path)?;
    let ctx = kubeconfig.current()?;
    let (Some(cert), Some(key)) = (&ctx.client_cert_pem, &ctx.client_key_pem) else {
        anyhow::bail!("{}: no client certificate to rotate", path.display());
    };
    let current = Arc::new(CurrentCertificate::new(cert, key)?);
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

/// Keeps the client certificate fresh until dropped: rotates when due, retrying
/// failures with backoff (up to five minutes).
pub async fn run(
    client: Client,
    node: String,
    kubeconfig: std::path::PathBuf,
    current: Arc<CurrentCertificate>,
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
        match rotate(&client, &node, &kubeconfig, &current, ISSUE_WAIT).await {
            Ok(()) => backoff = Duration::from_secs(1),
            Err(e) => {
                tracing::warn!(error = %e, ?backoff, "client certificate rotation failed");
                tokio::time::sleep(backoff).await;
                backoff = next_backoff(backoff);
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
    current: &CurrentCertificate,
    wait: Duration,
) -> anyhow::Result<()> {
    let user = format!("system:node:{node}");
    let (key_pem, csr_pem) = keelson_pki::csr::new_key_and_csr(&user, &["system:nodes"], &[], &[])?;
    let usages = ["digital signature", "client auth"];
    let cert_pem = request(client, SIGNER, csr_pem, &usages, wait).await?;
    write_credentials(kubeconfig, &cert_pem, key_pem.as_bytes())?;
    current.set(&cert_pem, key_pem.as_bytes())?;
    tracing::info!("rotated the client certificate");
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
