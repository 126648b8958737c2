use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use keelson_pki::{
    cert_sans, ensure_pki, identity_from_cert_der, issue_client_cert, load_certs, Identity,
    PkiOptions, SanEntry,
};
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{ServerName, UnixTime};

fn opts() -> PkiOptions {
    PkiOptions {
        hostname: Some("node-a".into()),
        ..Default::default()
    }
}

fn snapshot(dir: &Path) -> BTreeMap<String, (Vec<u8>, std::time::SystemTime)> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let meta = e.metadata().unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                (std::fs::read(e.path()).unwrap(), meta.modified().unwrap()),
            )
        })
        .collect()
}

fn server_verifier(ca: &Path) -> Arc<rustls::client::WebPkiServerVerifier> {
    let mut roots = rustls::RootCertStore::empty();
    for c in load_certs(ca).unwrap() {
        roots.add(c).unwrap();
    }
    rustls::client::WebPkiServerVerifier::builder_with_provider(
        Arc::new(roots),
        Arc::new(rustls::crypto::ring::default_provider()),
    )
    .build()
    .unwrap()
}

fn verifies_for(ca: &Path, cert: &Path, name: &str) -> bool {
    let leaf = load_certs(cert).unwrap().remove(0);
    let name = ServerName::try_from(name.to_string()).unwrap();
    server_verifier(ca)
        .verify_server_cert(&leaf, &[], &name, &[], UnixTime::now())
        .is_ok()
}

fn identity_of(cert: &Path) -> Identity {
    identity_from_cert_der(&load_certs(cert).unwrap()[0]).unwrap()
}

#[test]
fn creates_pki_with_modes() {
    let dir = tempfile::tempdir().unwrap();
    let pki_dir = dir.path().join("pki");
    let paths = ensure_pki(&pki_dir, &opts()).unwrap();
    assert_eq!(
        paths.issued,
        [
            "ca",
            "apiserver",
            "admin",
            "apiserver-kubelet-client",
            "scheduler",
            "controller-manager",
            "proxy",
            "dns",
            "sa"
        ]
    );
    assert!(paths.sa_key.exists() && paths.sa_pub.exists());
    for (p, name) in [
        (&paths.ca_cert, "ca.crt"),
        (&paths.ca_key, "ca.key"),
        (&paths.apiserver_cert, "apiserver.crt"),
        (&paths.apiserver_key, "apiserver.key"),
        (&paths.admin_cert, "admin.crt"),
        (&paths.admin_key, "admin.key"),
        (
            &paths.apiserver_kubelet_client_cert,
            "apiserver-kubelet-client.crt",
        ),
        (
            &paths.apiserver_kubelet_client_key,
            "apiserver-kubelet-client.key",
        ),
        (&paths.scheduler_cert, "scheduler.crt"),
        (&paths.scheduler_key, "scheduler.key"),
        (&paths.controller_manager_cert, "controller-manager.crt"),
        (&paths.controller_manager_key, "controller-manager.key"),
        (&paths.proxy_cert, "proxy.crt"),
        (&paths.proxy_key, "proxy.key"),
        (&paths.dns_cert, "dns.crt"),
        (&paths.dns_key, "dns.key"),
    ] {
        assert_eq!(p, &pki_dir.join(name));
        assert!(p.exists(), "{name} missing");
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        for k in [
            &paths.ca_key,
            &paths.apiserver_key,
            &paths.admin_key,
            &paths.sa_key,
            &paths.scheduler_key,
            &paths.controller_manager_key,
            &paths.proxy_key,
            &paths.dns_key,
        ] {
            assert_eq!(mode(k), 0o600, "{}", k.display());
        }
        assert_eq!(mode(&paths.ca_cert), 0o644);
    }
    // Keys are PKCS#8 ECDSA P-256.
    let key = std::fs::read_to_string(&paths.admin_key).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    let kp = rcgen::KeyPair::from_pem(&key).unwrap();
    assert!(kp.is_compatible(&rcgen::PKCS_ECDSA_P256_SHA256));
    // The CA.
    let ca = identity_of(&paths.ca_cert);
    assert_eq!(ca.user, "keelson-ca");
    // No leftover temp files.
    assert_eq!(std::fs::read_dir(&pki_dir).unwrap().count(), 18);
    let public = std::fs::read_to_string(&paths.sa_pub).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
}

#[test]
fn rerun_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let first = ensure_pki(dir.path(), &opts()).unwrap();
    let before = snapshot(dir.path());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let second = ensure_pki(dir.path(), &opts()).unwrap();
    assert!(second.issued.is_empty(), "{:?}", second.issued);
    assert_eq!(snapshot(dir.path()), before);
    assert_eq!(
        PkiPathsNoIssued::from(&first),
        PkiPathsNoIssued::from(&second)
    );
}

#[derive(Debug, PartialEq)]
struct PkiPathsNoIssued(Vec<std::path::PathBuf>);
impl From<&keelson_pki::PkiPaths> for PkiPathsNoIssued {
    fn from(p: &keelson_pki::PkiPaths) -> Self {
        Self(vec![
            p.ca_cert.clone(),
            p.ca_key.clone(),
            p.apiserver_cert.clone(),
            p.apiserver_key.clone(),
            p.admin_cert.clone(),
            p.admin_key.clone(),
            p.apiserver_kubelet_client_cert.clone(),
            p.apiserver_kubelet_client_key.clone(),
            p.scheduler_cert.clone(),
            p.scheduler_key.clone(),
            p.controller_manager_cert.clone(),
            p.controller_manager_key.clone(),
            p.proxy_cert.clone(),
            p.proxy_key.clone(),
            p.dns_cert.clone(),
            p.dns_key.clone(),
        ])
    }
}

#[test]
fn serving_cert_verifies_with_sans() {
    let dir = tempfile::tempdir().unwrap();
    let o = PkiOptions {
        extra_sans: vec!["api.example.test".into(), "192.0.2.7".into()],
        service_cidr: "10.100.0.0/16".into(),
        hostname: Some("Node-A".into()),
    };
    let p = ensure_pki(dir.path(), &o).unwrap();
    for name in [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "node-a",
        "127.0.0.1",
        "::1",
        "10.100.0.1",
        "api.example.test",
        "192.0.2.7",
    ] {
        assert!(
            verifies_for(&p.ca_cert, &p.apiserver_cert, name),
            "serving cert should verify for {name}"
        );
    }
    for name in [
        "example.com",
        "10.96.0.1",
        "10.0.0.1",
        "kubernetes.default.svc.cluster",
    ] {
        assert!(
            !verifies_for(&p.ca_cert, &p.apiserver_cert, name),
            "serving cert should not verify for {name}"
        );
    }
    // Not against another CA.
    let other = tempfile::tempdir().unwrap();
    let p2 = ensure_pki(other.path(), &opts()).unwrap();
    assert!(!verifies_for(&p2.ca_cert, &p.apiserver_cert, "localhost"));
    // The default service CIDR gives 10.96.0.1.
    assert!(verifies_for(&p2.ca_cert, &p2.apiserver_cert, "10.96.0.1"));
    assert!(verifies_for(&p2.ca_cert, &p2.apiserver_cert, "node-a"));
}

#[test]
fn new_san_reissues_serving_cert_only() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(
        dir.path(),
        &PkiOptions {
            extra_sans: vec!["old.example.test".into()],
            ..opts()
        },
    )
    .unwrap();
    let before = snapshot(dir.path());
    let o2 = PkiOptions {
        extra_sans: vec!["new.example.test".into(), "203.0.113.5".into()],
        ..opts()
    };
    let p2 = ensure_pki(dir.path(), &o2).unwrap();
    assert_eq!(p2.issued, ["apiserver"]);
    let after = snapshot(dir.path());
    for f in ["ca.crt", "ca.key", "admin.crt", "admin.key"] {
        assert_eq!(before[f], after[f], "{f} changed");
    }
    assert_ne!(before["apiserver.crt"].0, after["apiserver.crt"].0);
    let sans = cert_sans(&load_certs(&p.apiserver_cert).unwrap()[0]).unwrap();
    for want in [
        "old.example.test",
        "new.example.test",
        "203.0.113.5",
        "localhost",
    ] {
        assert!(
            sans.contains(&SanEntry::parse(want).unwrap()),
            "{want} not in {sans:?}"
        );
    }
    assert!(verifies_for(
        &p.ca_cert,
        &p.apiserver_cert,
        "new.example.test"
    ));
    assert!(verifies_for(
        &p.ca_cert,
        &p.apiserver_cert,
        "old.example.test"
    ));
    // Now covered: idempotent again, also with a subset of the SANs.
    assert!(ensure_pki(dir.path(), &o2).unwrap().issued.is_empty());
    assert!(ensure_pki(dir.path(), &opts()).unwrap().issued.is_empty());
}

#[test]
fn client_cert_identities() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(dir.path(), &opts()).unwrap();
    assert_eq!(
        identity_of(&p.admin_cert),
        Identity {
            user: "kubernetes-admin".into(),
            groups: vec!["system:masters".into()]
        }
    );

    let sched = issue_client_cert(dir.path(), "scheduler", "system:kube-scheduler", &[]).unwrap();
    assert_eq!(sched.cert, dir.path().join("scheduler.crt"));
    assert_eq!(sched.key, dir.path().join("scheduler.key"));
    assert_eq!(
        identity_of(&sched.cert),
        Identity {
            user: "system:kube-scheduler".into(),
            groups: vec![]
        }
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&sched.key).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    let multi = issue_client_cert(dir.path(), "dev", "jane", &["devs", "ops"]).unwrap();
    assert_eq!(
        identity_of(&multi.cert),
        Identity {
            user: "jane".into(),
            groups: vec!["devs".into(), "ops".into()]
        }
    );

    // Idempotent.
    let before = snapshot(dir.path());
    issue_client_cert(dir.path(), "scheduler", "system:kube-scheduler", &[]).unwrap();
    issue_client_cert(dir.path(), "dev", "jane", &["devs", "ops"]).unwrap();
    assert_eq!(snapshot(dir.path()), before);

    // A different subject for the same name re-issues.
    issue_client_cert(dir.path(), "dev", "jane", &["devs"]).unwrap();
    assert_eq!(identity_of(&multi.cert).groups, ["devs"]);

    // Bad names.
    assert!(issue_client_cert(dir.path(), "../x", "u", &[]).is_err());
    assert!(issue_client_cert(dir.path(), "ca", "u", &[]).is_err());
    assert!(issue_client_cert(dir.path(), "x", "", &[]).is_err());
}

#[test]
fn client_cert_needs_ca() {
    let dir = tempfile::tempdir().unwrap();
    let err = issue_client_cert(dir.path(), "scheduler", "system:kube-scheduler", &[]).unwrap_err();
    assert!(format!("{err:#}").contains("ca.crt"), "{err:#}");
}

#[test]
fn half_a_ca_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(dir.path(), &opts()).unwrap();
    std::fs::remove_file(&p.ca_key).unwrap();
    let err = ensure_pki(dir.path(), &opts()).unwrap_err();
    assert!(
        format!("{err:#}").contains("refusing to replace"),
        "{err:#}"
    );
}

#[test]
fn leaves_from_another_ca_are_reissued() {
    let a = tempfile::tempdir().unwrap();
    let b = tempfile::tempdir().unwrap();
    let pa = ensure_pki(a.path(), &opts()).unwrap();
    let pb = ensure_pki(b.path(), &opts()).unwrap();
    for f in ["apiserver.crt", "apiserver.key", "admin.crt", "admin.key"] {
        std::fs::copy(b.path().join(f), a.path().join(f)).unwrap();
    }
    assert!(!verifies_for(&pa.ca_cert, &pa.apiserver_cert, "localhost"));
    let again = ensure_pki(a.path(), &opts()).unwrap();
    assert_eq!(again.issued, ["apiserver", "admin"]);
    assert!(verifies_for(&pa.ca_cert, &pa.apiserver_cert, "localhost"));
    assert_ne!(
        std::fs::read(&pa.admin_cert).unwrap(),
        std::fs::read(&pb.admin_cert).unwrap()
    );
}

#[test]
fn mismatched_leaf_key_is_reissued() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(dir.path(), &opts()).unwrap();
    std::fs::copy(&p.apiserver_key, &p.admin_key).unwrap();
    let again = ensure_pki(dir.path(), &opts()).unwrap();
    assert_eq!(again.issued, ["admin"]);
}

#[test]
fn bad_options_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let bad_cidr = PkiOptions {
        service_cidr: "10.96.0.0".into(),
        ..opts()
    };
    assert!(ensure_pki(dir.path(), &bad_cidr).is_err());
    let bad_san = PkiOptions {
        extra_sans: vec!["not a name".into()],
        ..opts()
    };
    assert!(ensure_pki(dir.path(), &bad_san).is_err());
}

#[test]
fn one_identity_per_component() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(dir.path(), &opts()).unwrap();
    let id = |user: &str, groups: &[&str]| Identity {
        user: user.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
    };
    for (cert, want) in [
        (&p.admin_cert, id("kubernetes-admin", &["system:masters"])),
        (
            &p.apiserver_kubelet_client_cert,
            id("kube-apiserver-kubelet-client", &[]),
        ),
        (&p.scheduler_cert, id("system:kube-scheduler", &[])),
        (
            &p.controller_manager_cert,
            id("system:kube-controller-manager", &[]),
        ),
        (&p.proxy_cert, id("system:kube-proxy", &[])),
        (&p.dns_cert, id("system:keelson-dns", &[])),
    ] {
        assert_eq!(identity_of(cert), want, "{}", cert.display());
        // Each verifies as a client certificate, as the apiserver verifies them.
        let ca =
            keelson_pki::ClientCaVerifier::from_pem(&std::fs::read(&p.ca_cert).unwrap()).unwrap();
        ca.verify(&load_certs(cert).unwrap()[0], &[], UnixTime::now())
            .unwrap();
    }
}

#[test]
fn an_older_pki_gains_the_component_identities_and_keeps_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = ensure_pki(dir.path(), &opts()).unwrap();
    // What an earlier `keelson pki` left: no component certificates, the kubelet client
    // in system:masters.
    for f in ["scheduler", "controller-manager", "proxy", "dns"] {
        for ext in ["crt", "key"] {
            std::fs::remove_file(dir.path().join(format!("{f}.{ext}"))).unwrap();
        }
    }
    issue_client_cert(
        dir.path(),
        "apiserver-kubelet-client",
        "kube-apiserver-kubelet-client",
        &["system:masters"],
    )
    .unwrap();
    let before = snapshot(dir.path());
    let again = ensure_pki(dir.path(), &opts()).unwrap();
    assert_eq!(
        again.issued,
        [
            "apiserver-kubelet-client",
            "scheduler",
            "controller-manager",
            "proxy",
            "dns"
        ]
    );
    let after = snapshot(dir.path());
    for f in [
        "ca.crt",
        "ca.key",
        "apiserver.crt",
        "apiserver.key",
        "admin.crt",
        "admin.key",
        "sa.key",
        "sa.pub",
    ] {
        assert_eq!(before[f], after[f], "{f} changed");
    }
    assert!(identity_of(&p.apiserver_kubelet_client_cert)
        .groups
        .is_empty());
    assert_eq!(identity_of(&p.dns_cert).user, "system:keelson-dns");
}
