//! Serving certificate rotation (`--rotate-server-certificates`), as the kubelet's
//! server certificate manager (`serverTLSBootstrap`): the agent asks
//! `kubernetes.io/kubelet-serving` for the certificate of its HTTPS API with a
//! CertificateSigningRequest (`system:node:<name>` in `system:nodes`, digital signature
//! and server auth, the Node's addresses as subject alternative names), keeps it in
//! `<root-dir>/pki/kubelet-server-current.pem` (certificate and key, mode 0600) so that
//! a restarted agent serves it again, and renews it at 70 to 90 percent of its
//! lifetime, or at once when the Node's addresses change.
//!
//! Nothing is requested before the Node's addresses are known (they are the names).
//! Until a certificate is issued the agent serves what it had before: `--tls-cert-file`
//! or its self-signed certificate, so its API never stops answering. Each handshake
//! asks [`CurrentCertificate`], so the listener keeps running through a rotation.
//!
//! Kubernetes approves no kubelet-serving request by itself: an operator does
//! (`kubectl certificate approve`), or the controller-manager's opt-in approver
//! (`--approve-kubelet-serving-certificates`), which checks the names against the Node.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::NodeAddress;
use keelson_client::Client;
use keelson_pki::SanEntry;
use tokio::sync::watch;

use super::{
    next_backoff, request, rotation_deadline, write_atomic, CurrentCertificate, ISSUE_WAIT,
};

pub const SIGNER: &str = "kubernetes.io/kubelet-serving";
/// Under the agent's `<root-dir>/pki`, as the kubelet's certificate store names it.
pub const CURRENT_FILE: &str = "kubelet-server-current.pem";
/// An ECDSA key: no key encipherment (that is for RSA keys).
pub const USAGES: [&str; 2] = ["digital signature", "server auth"];
const ORGANIZATION: &str = "system:nodes";

/// The names a serving certificate carries: the Node's host names and IP addresses
/// (the kubelet's `addressesToHostnamesAndIPs`), each once, in the Node's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingNames {
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
}

impl ServingNames {
    pub fn from_addresses(addresses: &[NodeAddress]) -> ServingNames {
        let mut names = ServingNames::default();
        for a in addresses.iter().filter(|a| !a.address.is_empty()) {
            match a.type_.as_str() {
                "Hostname" | "InternalDNS" | "ExternalDNS"
                    if !names.dns_names.contains(&a.address) =>
                {
                    names.dns_names.push(a.address.clone());
                }
                "InternalIP" | "ExternalIP" => {
                    if let Ok(ip) = a.address.parse::<IpAddr>() {
                        if !names.ips.contains(&ip) {
                            names.ips.push(ip);
                        }
                    }
                }
                _ => {}
            }
        }
        names
    }

    pub fn is_empty(&self) -> bool {
        self.dns_names.is_empty() && self.ips.is_empty()
    }

    fn sans(&self) -> BTreeSet<SanEntry> {
        self.dns_names
            .iter()
            .map(|d| SanEntry::Dns(d.to_ascii_lowercase()))
            .chain(self.ips.iter().map(|ip| SanEntry::Ip(*ip)))
            .collect()
    }
}

/// Whether `cert_pem` is a serving certificate for `node` naming exactly `names` that
/// has not expired (the kubelet's `certSatisfiesTemplate`).
pub fn satisfies(cert_pem: &[u8], node: &str, names: &ServingNames) -> bool {
    use rustls::pki_types::pem::PemObject as _;
    let Some(Ok(der)) = rustls::pki_types::CertificateDer::pem_slice_iter(cert_pem).next() else {
        return false;
    };
    let identity = keelson_pki::identity_from_cert_der(&der);
    let subject_ok = identity
        .is_some_and(|id| id.user == format!("system:node:{node}") && id.groups == [ORGANIZATION]);
    let sans: Option<BTreeSet<SanEntry>> = keelson_pki::cert_sans(&der)
        .ok()
        .map(|s| s.into_iter().collect());
    let live = keelson_pki::csr::validity(cert_pem).is_ok_and(|(_, to)| to > SystemTime::now());
    subject_ok && live && sans.as_ref() == Some(&names.sans())
}

/// The certificate and key blocks of a PEM file holding both.
fn split_pem(pem: &str) -> (String, String) {
    let (mut cert, mut key) = (String::new(), String::new());
    let mut into_cert = false;
    for line in pem.lines() {
        if let Some(kind) = line.trim().strip_prefix("-----BEGIN ") {
            into_cert = kind.starts_with("CERTIFICATE");
        }
        let out = if into_cert { &mut cert } else { &mut key };
        out.push_str(line);
        out.push('\n');
    }
    (cert, key)
}

/// The serving certificate of the agent's API and its renewal.
pub struct ServingCertificate {
    node: String,
    /// `<root-dir>/pki/kubelet-server-current.pem`.
    path: PathBuf,
    current: Arc<CurrentCertificate>,
    /// Whether `current` was issued for this node (else it is the fallback).
    issued: AtomicBool,
}

impl ServingCertificate {
    /// The stored certificate in `dir` when it has not expired, else `fallback` (PEM
    /// certificate and key) until the first one is issued.
    pub fn load(
        dir: &Path,
        node: &str,
        fallback: (&[u8], &[u8]),
    ) -> anyhow::Result<ServingCertificate> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(CURRENT_FILE);
        let stored = std::fs::read_to_string(&path).ok().and_then(|text| {
            let (cert, key) = split_pem(&text);
            let (_, to) = keelson_pki::csr::validity(cert.as_bytes()).ok()?;
            if to <= SystemTime::now() {
                return None;
            }
            CurrentCertificate::new(cert.as_bytes(), key.as_bytes()).ok()
        });
        let issued = stored.is_some();
        let current = match stored {
            Some(c) => c,
            None => CurrentCertificate::new(fallback.0, fallback.1)?,
        };
        if issued {
            tracing::info!(file = %path.display(), "serving the stored serving certificate");
        }
        Ok(ServingCertificate {
            node: node.to_string(),
            path,
            current: Arc::new(current),
            issued: AtomicBool::new(issued),
        })
    }

    /// What the agent's API presents: ask it at every handshake.
    pub fn current(&self) -> Arc<CurrentCertificate> {
        self.current.clone()
    }

    /// When to renew for `names`: now, unless the current certificate was issued for
    /// exactly these names.
    fn deadline(&self, names: &ServingNames) -> SystemTime {
        let pem = self.current.pem();
        if !self.issued.load(Ordering::Relaxed) || !satisfies(&pem, &self.node, names) {
            return SystemTime::now();
        }
        match keelson_pki::csr::validity(&pem) {
            Ok((from, to)) => rotation_deadline(from, to),
            Err(_) => SystemTime::now(),
        }
    }

    /// Keeps the serving certificate fresh until dropped. `addresses` are the Node's
    /// (from [`crate::node::run`]); a change starts a new request at once, abandoning
    /// one still waiting for names that are no longer the Node's.
    pub async fn run(
        self: Arc<Self>,
        client: Client,
        mut addresses: watch::Receiver<Vec<NodeAddress>>,
    ) {
        let mut backoff = Duration::from_secs(1);
        loop {
            let names = ServingNames::from_addresses(&addresses.borrow_and_update());
            if names.is_empty() {
                if addresses.changed().await.is_err() {
                    return;
                }
                continue;
            }
            let wait = self
                .deadline(&names)
                .duration_since(SystemTime::now())
                .unwrap_or_default();
            if !wait.is_zero() {
                tracing::info!(?wait, "serving certificate rotation scheduled");
            }
            let renewal = async {
                tokio::time::sleep(wait).await;
                self.renew(&client, &names, ISSUE_WAIT).await
            };
            let result = tokio::select! {
                r = renewal => r,
                changed = addresses.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    tracing::info!("node addresses changed: a new serving certificate is due");
                    continue;
                }
            };
            match result {
                Ok(()) => backoff = Duration::from_secs(1),
                Err(e) => {
                    tracing::warn!(error = %format!("{e:#}"), ?backoff, "serving certificate rotation failed");
                    tokio::time::sleep(backoff).await;
                    backoff = next_backoff(backoff);
                }
            }
        }
    }

    /// One renewal: a new key, a request naming `names`, the certificate once issued
    /// (within `wait`), stored and served from the next handshake on.
    pub async fn renew(
        &self,
        client: &Client,
        names: &ServingNames,
        wait: Duration,
    ) -> anyhow::Result<()> {
        let (key_pem, csr_pem) = keelson_pki::csr::new_key_and_csr(
            &format!("system:node:{}", self.node),
            &[ORGANIZATION],
            &names.dns_names,
            &names.ips,
        )?;
        let cert_pem = request(client, SIGNER, csr_pem, &USAGES, wait).await?;
        // Kept first: a restart serves what was stored.
        let mut stored = cert_pem.clone();
        if !stored.ends_with(b"\n") {
            stored.push(b'\n');
        }
        stored.extend_from_slice(key_pem.as_bytes());
        write_atomic(&self.path, &stored)?;
        self.current.set(&cert_pem, key_pem.as_bytes())?;
        self.issued.store(true, Ordering::Relaxed);
        tracing::info!(file = %self.path.display(), "rotated the serving certificate");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn address(t: &str, a: &str) -> NodeAddress {
        NodeAddress {
            type_: t.into(),
            address: a.into(),
        }
    }

    #[test]
    fn names_are_the_nodes_host_names_and_ips_once_each() {
        let names = ServingNames::from_addresses(&[
            address("InternalIP", "10.0.0.5"),
            address("Hostname", "n1"),
            address("ExternalIP", "10.0.0.5"),
            address("ExternalDNS", "n1.example.com"),
            address("InternalIP", "not-an-ip"),
            address("Hostname", ""),
        ]);
        assert_eq!(names.dns_names, ["n1", "n1.example.com"]);
        assert_eq!(names.ips, ["10.0.0.5".parse::<IpAddr>().unwrap()]);
        assert!(ServingNames::from_addresses(&[]).is_empty());
    }

    #[test]
    fn a_certificate_satisfies_only_its_own_node_and_names() {
        let dir = tempfile::tempdir().unwrap();
        let pki = keelson_pki::ensure_pki(dir.path(), &Default::default()).unwrap();
        let signer = keelson_pki::csr::Signer::load(&pki.ca_cert, &pki.ca_key).unwrap();
        let names = ServingNames {
            dns_names: vec!["n1".into()],
            ips: vec!["10.0.0.5".parse().unwrap()],
        };
        let (key, csr) = keelson_pki::csr::new_key_and_csr(
            "system:node:n1",
            &[ORGANIZATION],
            &names.dns_names,
            &names.ips,
        )
        .unwrap();
        let usages: Vec<String> = USAGES.iter().map(|u| u.to_string()).collect();
        let cert = signer
            .sign(csr.as_bytes(), &usages, Duration::from_secs(3600))
            .unwrap();
        assert!(satisfies(cert.as_bytes(), "n1", &names));
        assert!(!satisfies(cert.as_bytes(), "n2", &names));
        let moved = ServingNames {
            ips: vec!["10.0.0.6".parse().unwrap()],
            ..names.clone()
        };
        assert!(!satisfies(cert.as_bytes(), "n1", &moved));
        assert!(!satisfies(b"junk", "n1", &names));

        // Stored with its key, it is what a restarted agent serves.
        std::fs::write(dir.path().join(CURRENT_FILE), format!("{cert}{key}")).unwrap();
        let fallback = (b"unused".as_slice(), b"unused".as_slice());
        let loaded = ServingCertificate::load(dir.path(), "n1", fallback).unwrap();
        assert_eq!(loaded.current().pem(), cert.as_bytes());
        assert!(loaded.deadline(&names) > SystemTime::now());
        assert!(loaded.deadline(&moved) <= SystemTime::now());
    }
}
