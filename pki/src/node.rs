//! A node's credentials, issued from the cluster CA: what a node agent needs to talk to
//! the apiserver (a client certificate in a kubeconfig) and to be talked to by it (a
//! serving certificate for its HTTPS API, and the CA that client certificates chain to).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};

use crate::files::write_atomic;
use crate::pki::{ensure_client_cert, ensure_serving_cert, load_ca, paths_for, SanEntry};
use crate::{write_kubeconfig, CertPaths, PkiPaths};

/// The files [`issue_node_credentials`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeCredentials {
    /// `kubelet.kubeconfig`: the apiserver URL, the CA and the client certificate, embedded.
    pub kubeconfig: PathBuf,
    /// `kubelet-client.crt`/`.key`: CN `system:node:<name>`, O `system:nodes`.
    pub client: CertPaths,
    /// `kubelet.crt`/`.key`: the agent's serving certificate (`--tls-cert-file`).
    pub serving: CertPaths,
    /// `ca.crt`: the cluster CA, the agent's `--client-ca-file`.
    pub ca_cert: PathBuf,
}

/// Issues (or keeps, when still good) a node's credentials into `dir` from the CA in
/// `paths`: a client certificate for `system:node:<node_name>` in group `system:nodes`
/// and a kubeconfig with it for `server`; a serving certificate whose SANs are the node
/// name (when it is a DNS name) and `sans` (IP addresses or DNS names); a copy of the CA
/// certificate. Keys are ECDSA P-256, mode 0600.
pub fn issue_node_credentials(
    paths: &PkiPaths,
    dir: &Path,
    node_name: &str,
    sans: &[String],
    server: &str,
) -> anyhow::Result<NodeCredentials> {
    if node_name.is_empty() || node_name.contains(['/', '\\', ':']) {
        bail!("invalid node name {node_name:?}");
    }
    let mut requested = Vec::new();
    for s in sans.iter().filter(|s| !s.trim().is_empty()) {
        requested.push(SanEntry::parse(s).with_context(|| format!("node SAN {s:?}"))?);
    }
    if let Ok(name) = SanEntry::parse(node_name) {
        requested.push(name);
    }
    if requested.is_empty() {
        bail!("node {node_name:?}: no SAN for the serving certificate (pass its IP address)");
    }
    requested.dedup();
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = load_ca(&paths.dir)?;

    let user = format!("system:node:{node_name}");
    let client = paths_for(dir, "kubelet-client");
    ensure_client_cert(&ca, &client, "kubelet-client", &user, &["system:nodes"])?;
    let serving = paths_for(dir, "kubelet");
    ensure_serving_cert(&ca, &serving, &user, &requested)?;

    let ca_pem = std::fs::read(&paths.ca_cert)
        .with_context(|| format!("reading {}", paths.ca_cert.display()))?;
    let ca_cert = dir.join("ca.crt");
    write_atomic(&ca_cert, &ca_pem, 0o644)?;
    let kubeconfig = dir.join("kubelet.kubeconfig");
    write_kubeconfig(
        &kubeconfig,
        server,
        &ca_pem,
        &std::fs::read(&client.cert)?,
        &std::fs::read(&client.key)?,
        &user,
        "keelson",
    )?;
    Ok(NodeCredentials {
        kubeconfig,
        client,
        serving,
        ca_cert,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        cert_sans, ensure_pki, identity_from_cert_der, load_certs, Kubeconfig, PkiOptions,
    };
    use rustls::client::danger::ServerCertVerifier;
    use rustls::pki_types::{ServerName, UnixTime};
    use std::sync::Arc;

    fn verifier(ca: &Path) -> Arc<rustls::client::WebPkiServerVerifier> {
        let mut roots = rustls::RootCertStore::empty();
        for c in load_certs(ca).unwrap() {
            roots.add(c).unwrap();
        }
        rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            crate::provider(),
        )
        .build()
        .unwrap()
    }

    #[test]
    fn node_credentials_chain_to_the_cluster_ca() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(
            &tmp.path().join("pki"),
            &PkiOptions {
                hostname: Some("cp".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let node_dir = tmp.path().join("node-1");
        let creds = issue_node_credentials(
            &pki,
            &node_dir,
            "node-1",
            &["10.0.0.5".into(), "node-1.example".into()],
            "https://10.0.0.1:6443",
        )
        .unwrap();
        assert_eq!(creds.kubeconfig, node_dir.join("kubelet.kubeconfig"));
        assert_eq!(creds.serving.cert, node_dir.join("kubelet.crt"));

        let client = load_certs(&creds.client.cert).unwrap().remove(0);
        let id = identity_from_cert_der(&client).unwrap();
        assert_eq!(id.user, "system:node:node-1");
        assert_eq!(id.groups, ["system:nodes"]);

        let serving = load_certs(&creds.serving.cert).unwrap().remove(0);
        let sans: Vec<String> = cert_sans(&serving)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(sans, ["10.0.0.5", "node-1.example", "node-1"]);
        let v = verifier(&creds.ca_cert);
        for name in [
            ServerName::IpAddress("10.0.0.5".parse::<std::net::IpAddr>().unwrap().into()),
            ServerName::try_from("node-1").unwrap(),
        ] {
            v.verify_server_cert(&serving, &[], &name, &[], UnixTime::now())
                .unwrap_or_else(|e| panic!("{name:?}: {e}"));
        }
        let other = ServerName::IpAddress("10.0.0.6".parse::<std::net::IpAddr>().unwrap().into());
        assert!(v
            .verify_server_cert(&serving, &[], &other, &[], UnixTime::now())
            .is_err());

        let kc = Kubeconfig::load(&creds.kubeconfig)
            .unwrap()
            .current()
            .unwrap();
        assert_eq!(kc.server, "https://10.0.0.1:6443");
        assert_eq!(kc.user_name, "system:node:node-1");
        assert_eq!(
            kc.client_cert_pem.unwrap(),
            std::fs::read(&creds.client.cert).unwrap()
        );
        assert_eq!(
            std::fs::read(&creds.ca_cert).unwrap(),
            std::fs::read(&pki.ca_cert).unwrap()
        );

        // Again with the same input: nothing re-issued. With another IP: the serving
        // certificate grows, the client certificate stays.
        let before = std::fs::read(&creds.serving.cert).unwrap();
        let client_before = std::fs::read(&creds.client.cert).unwrap();
        issue_node_credentials(
            &pki,
            &node_dir,
            "node-1",
            &["10.0.0.5".into()],
            "https://10.0.0.1:6443",
        )
        .unwrap();
        assert_eq!(std::fs::read(&creds.serving.cert).unwrap(), before);
        issue_node_credentials(
            &pki,
            &node_dir,
            "node-1",
            &["10.0.0.7".into()],
            "https://10.0.0.1:6443",
        )
        .unwrap();
        let serving = load_certs(&creds.serving.cert).unwrap().remove(0);
        let sans: Vec<String> = cert_sans(&serving)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(
            sans.contains(&"10.0.0.7".to_string()) && sans.contains(&"10.0.0.5".to_string()),
            "{sans:?}"
        );
        assert_eq!(std::fs::read(&creds.client.cert).unwrap(), client_before);
    }

    #[test]
    fn bad_node_input_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        let pki = ensure_pki(&tmp.path().join("pki"), &PkiOptions::default()).unwrap();
        let dir = tmp.path().join("n");
        assert!(issue_node_credentials(&pki, &dir, "", &[], "https://x").is_err());
        assert!(issue_node_credentials(&pki, &dir, "a/b", &[], "https://x").is_err());
        assert!(
            issue_node_credentials(&pki, &dir, "n", &["bad name".into()], "https://x").is_err()
        );
        // No CA in an empty directory.
        let empty = PkiPaths {
            dir: tmp.path().join("none"),
            ca_cert: tmp.path().join("none/ca.crt"),
            ..pki.clone()
        };
        assert!(
            issue_node_credentials(&empty, &dir, "n", &["10.0.0.1".into()], "https://x").is_err()
        );
    }
}
