//! Credentials made by the real `openssl` CLI, the way how-tos and existing clusters make
//! them: client certificates (X.509 v1 from `openssl x509 -req` without an extension file,
//! chains through intermediates, expired ones, other CAs, other purposes) verified by
//! [`ClientCaVerifier`] and in real TLS handshakes (1.2 and 1.3) against `server_config`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use keelson_pki::{
    ensure_pki, identity_from_cert_der, load_certs, load_private_key, peer_identity, server_config,
    ClientCaVerifier, Identity, PkiOptions,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::{CertifiedKey, SingleCertAndKey};
use rustls::CertificateError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Runs `openssl` in `dir`; panics with its output when it fails.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("running openssl (scripts/setup installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key pair: `rsa` (2048 bits) or `ec` (P-256), PEM as openssl writes it by default.
fn key(dir: &Path, name: &str, kind: &str) {
    let file = format!("{name}.key");
    match kind {
        "rsa" => openssl(dir, &["genrsa", "-out", &file, "2048"]),
        "ec" => openssl(
            dir,
            &["ecparam", "-name", "prime256v1", "-genkey", "-out", &file],
        ),
        _ => unreachable!(),
    }
}

/// A self-signed CA as `openssl req -x509` makes it (v3, CA:true from openssl.cnf).
fn ca(dir: &Path, name: &str, kind: &str) {
    key(dir, name, kind);
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            &format!("/CN={name}"),
            "-days",
            "30",
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// A certificate for `subject` signed by `issuer` with `openssl x509 -req`: X.509 v1
/// without `ext` (an extension file's lines), v3 with it.
fn issue(dir: &Path, name: &str, kind: &str, subject: &str, issuer: &str, days: &str, ext: &str) {
    key(dir, name, kind);
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-out",
            &csr,
        ],
    );
    let crt = format!("{name}.crt");
    let (ca_crt, ca_key) = (format!("{issuer}.crt"), format!("{issuer}.key"));
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAcreateserial",
        "-days",
        days,
        "-sha256",
        "-out",
        &crt,
    ];
    let ext_file = format!("{name}.ext");
    if !ext.is_empty() {
        std::fs::write(dir.join(&ext_file), ext).unwrap();
        args.extend(["-extfile", &ext_file]);
    }
    openssl(dir, &args);
}

fn der(dir: &Path, name: &str) -> CertificateDer<'static> {
    load_certs(&dir.join(format!("{name}.crt")))
        .unwrap()
        .remove(0)
}

fn verifier(dir: &Path, ca: &str) -> ClientCaVerifier {
    ClientCaVerifier::from_pem(&std::fs::read(dir.join(format!("{ca}.crt"))).unwrap()).unwrap()
}

fn version(dir: &Path, name: &str) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", &format!("{name}.crt")])
        .current_dir(dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.trim_start().starts_with("Version:"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

const CLIENT_AUTH: &str = "extendedKeyUsage=clientAuth\n";

#[test]
fn v1_client_certificates_verify_with_rsa_and_ecdsa() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ca(d, "ec-ca", "ec");
    ca(d, "rsa-ca", "rsa");
    issue(d, "jane", "rsa", "/O=dev/O=ops/CN=jane", "ec-ca", "30", "");
    issue(d, "joe", "ec", "/CN=joe", "rsa-ca", "30", "");
    assert_eq!(version(d, "jane"), "Version: 1 (0x0)");
    assert_eq!(version(d, "joe"), "Version: 1 (0x0)");
    verifier(d, "ec-ca")
        .verify(&der(d, "jane"), &[], UnixTime::now())
        .unwrap();
    verifier(d, "rsa-ca")
        .verify(&der(d, "joe"), &[], UnixTime::now())
        .unwrap();
    assert_eq!(
        identity_from_cert_der(&der(d, "jane")).unwrap(),
        Identity {
            user: "jane".into(),
            groups: vec!["dev".into(), "ops".into()]
        }
    );
    // A bundle of both CAs verifies both.
    let bundle = [
        std::fs::read(d.join("ec-ca.crt")).unwrap(),
        std::fs::read(d.join("rsa-ca.crt")).unwrap(),
    ]
    .concat();
    let both = ClientCaVerifier::from_pem(&bundle).unwrap();
    for name in ["jane", "joe"] {
        both.verify(&der(d, name), &[], UnixTime::now()).unwrap();
    }
}

#[test]
fn refused_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ca(d, "ca", "ec");
    ca(d, "other-ca", "ec");
    let v = verifier(d, "ca");
    let err = |name: &str| {
        v.verify(&der(d, name), &[], UnixTime::now())
            .expect_err(name)
    };

    // Expired: notAfter a day ago.
    issue(d, "expired", "rsa", "/CN=old", "ca", "-1", "");
    assert_eq!(
        err("expired"),
        rustls::Error::InvalidCertificate(CertificateError::Expired)
    );
    // Another CA's.
    issue(d, "foreign", "ec", "/CN=mallory", "other-ca", "30", "");
    assert_eq!(
        err("foreign"),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );
    // Only for servers.
    issue(
        d,
        "server",
        "ec",
        "/CN=web",
        "ca",
        "30",
        "extendedKeyUsage=serverAuth\n",
    );
    assert_eq!(
        err("server"),
        rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
    );
    // SHA-1 signatures, as Go refuses them.
    issue(d, "sha1", "ec", "/CN=sha1", "ca", "30", "");
    openssl(
        d,
        &[
            "x509", "-req", "-in", "sha1.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-days", "30",
            "-sha1", "-out", "sha1.crt",
        ],
    );
    assert!(matches!(
        err("sha1"),
        rustls::Error::InvalidCertificate(
            CertificateError::UnsupportedSignatureAlgorithmContext { .. }
        )
    ));
    // The right subject and issuer name, the wrong key: the signature does not verify.
    std::fs::create_dir(d.join("twin")).unwrap();
    ca(&d.join("twin"), "ca", "ec");
    issue(&d.join("twin"), "twin", "ec", "/CN=twin", "ca", "30", "");
    assert_eq!(
        v.verify(&der(&d.join("twin"), "twin"), &[], UnixTime::now())
            .unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::BadSignature)
    );
    // Not yet valid: checked a day before it was issued.
    issue(d, "fresh", "ec", "/CN=fresh", "ca", "30", CLIENT_AUTH);
    let yesterday = UnixTime::since_unix_epoch(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            - std::time::Duration::from_secs(86_400),
    );
    assert_eq!(
        v.verify(&der(d, "fresh"), &[], yesterday).unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::NotValidYet)
    );
    v.verify(&der(d, "fresh"), &[], UnixTime::now()).unwrap();
    // An unknown critical extension.
    issue(
        d,
        "critical",
        "ec",
        "/CN=critical",
        "ca",
        "30",
        "1.2.3.4=critical,ASN1:UTF8String:x\n",
    );
    assert_eq!(
        err("critical"),
        rustls::Error::InvalidCertificate(CertificateError::UnhandledCriticalExtension)
    );
}

#[test]
fn chains_through_intermediates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ca(d, "root", "rsa");
    let ca_ext = "basicConstraints=critical,CA:true\nkeyUsage=critical,keyCertSign,cRLSign\n";
    issue(d, "inter", "ec", "/CN=inter", "root", "30", ca_ext);
    issue(d, "leaf", "ec", "/O=team/CN=alice", "inter", "30", "");
    let v = verifier(d, "root");
    let inter = der(d, "inter");
    v.verify(
        &der(d, "leaf"),
        std::slice::from_ref(&inter),
        UnixTime::now(),
    )
    .unwrap();
    // Unrelated certificates in the client's chain are passed over.
    ca(d, "stray", "ec");
    v.verify(&der(d, "leaf"), &[der(d, "stray"), inter], UnixTime::now())
        .unwrap();
    // Without the intermediate there is no chain.
    assert_eq!(
        v.verify(&der(d, "leaf"), &[], UnixTime::now()).unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)
    );

    // A v1 intermediate is no CA (Go: "not authorized to sign other certificates").
    issue(d, "v1-inter", "ec", "/CN=v1-inter", "root", "30", "");
    issue(d, "leaf2", "ec", "/CN=bob", "v1-inter", "30", "");
    let e = v
        .verify(&der(d, "leaf2"), &[der(d, "v1-inter")], UnixTime::now())
        .unwrap_err();
    assert!(e.to_string().contains("not a certificate authority"), "{e}");

    // A CA whose key usage does not include keyCertSign.
    issue(
        d,
        "nosign",
        "ec",
        "/CN=nosign",
        "root",
        "30",
        "basicConstraints=critical,CA:true\nkeyUsage=critical,digitalSignature\n",
    );
    issue(d, "leaf3", "ec", "/CN=carol", "nosign", "30", "");
    let e = v
        .verify(&der(d, "leaf3"), &[der(d, "nosign")], UnixTime::now())
        .unwrap_err();
    assert!(e.to_string().contains("key usage"), "{e}");

    // An intermediate restricted to server authentication restricts its leaves.
    issue(
        d,
        "server-inter",
        "ec",
        "/CN=server-inter",
        "root",
        "30",
        &format!("{ca_ext}extendedKeyUsage=serverAuth\n"),
    );
    issue(
        d,
        "leaf4",
        "ec",
        "/CN=dave",
        "server-inter",
        "30",
        CLIENT_AUTH,
    );
    assert_eq!(
        v.verify(&der(d, "leaf4"), &[der(d, "server-inter")], UnixTime::now())
            .unwrap_err(),
        rustls::Error::InvalidCertificate(CertificateError::InvalidPurpose)
    );

    // A path length of 0 allows no intermediate below it.
    issue(
        d,
        "inter-top",
        "ec",
        "/CN=inter-top",
        "root",
        "30",
        "basicConstraints=critical,CA:true,pathlen:0\n",
    );
    issue(
        d,
        "inter-low",
        "ec",
        "/CN=inter-low",
        "inter-top",
        "30",
        ca_ext,
    );
    issue(d, "leaf5", "ec", "/CN=erin", "inter-low", "30", "");
    let e = v
        .verify(
            &der(d, "leaf5"),
            &[der(d, "inter-low"), der(d, "inter-top")],
            UnixTime::now(),
        )
        .unwrap_err();
    assert!(e.to_string().contains("intermediates below it"), "{e}");
}

/// One TLS connection to a server using `server_config` with `client_ca`, presenting
/// `cert`/`key` (and `chain`), with the given protocol version. Returns what the server
/// saw: the client's identity or its handshake error.
async fn handshake(
    client_ca: &Path,
    cert: &Path,
    key: &Path,
    version: &'static rustls::SupportedProtocolVersion,
) -> Result<Option<Identity>, String> {
    let tmp = tempfile::tempdir().unwrap();
    let p = ensure_pki(tmp.path(), &PkiOptions::default()).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(
        server_config(&p.apiserver_cert, &p.apiserver_key, Some(client_ca)).unwrap(),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(tcp).await.map_err(|e| e.to_string())?;
        let id = peer_identity(tls.get_ref().1);
        tls.write_all(b"ok").await.unwrap();
        tls.shutdown().await.ok();
        Ok(id)
    });

    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(load_certs(&p.ca_cert).unwrap().remove(0))
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[version])
        .unwrap()
        .with_root_certificates(roots)
        // rustls' with_client_auth_cert parses the certificate with webpki (v3 only); Go and
        // curl clients present v1 certificates as they are.
        .with_client_cert_resolver(Arc::new(SingleCertAndKey::from(CertifiedKey::new(
            load_certs(cert).unwrap(),
            provider
                .key_provider
                .load_private_key(load_private_key(key).unwrap())
                .unwrap(),
        ))));
    let tcp = TcpStream::connect(addr).await.unwrap();
    if let Ok(mut tls) = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
    {
        let mut buf = Vec::new();
        let _ = tls.read_to_end(&mut buf).await;
    }
    server.await.unwrap()
}

#[tokio::test]
async fn v1_certificates_in_tls_handshakes() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ca(d, "ca", "ec");
    issue(
        d,
        "rsa",
        "rsa",
        "/O=system:masters/CN=root-user",
        "ca",
        "30",
        "",
    );
    issue(d, "ec", "ec", "/CN=ec-user", "ca", "30", "");
    issue(d, "expired", "ec", "/CN=old", "ca", "-1", "");
    let path = |n: &str, ext: &str| -> PathBuf { d.join(format!("{n}.{ext}")) };
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let rsa = handshake(
            &path("ca", "crt"),
            &path("rsa", "crt"),
            &path("rsa", "key"),
            version,
        )
        .await
        .unwrap();
        assert_eq!(
            rsa,
            Some(Identity {
                user: "root-user".into(),
                groups: vec!["system:masters".into()]
            }),
            "{version:?}"
        );
        let ec = handshake(
            &path("ca", "crt"),
            &path("ec", "crt"),
            &path("ec", "key"),
            version,
        )
        .await
        .unwrap();
        assert_eq!(ec.unwrap().user, "ec-user", "{version:?}");
        let expired = handshake(
            &path("ca", "crt"),
            &path("expired", "crt"),
            &path("expired", "key"),
            version,
        )
        .await
        .unwrap_err();
        assert!(expired.contains("Expired"), "{version:?}: {expired}");
    }
}

#[test]
fn kubeconfigs_carry_v1_client_certificates() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ca(d, "ca", "ec");
    issue(d, "v1", "rsa", "/CN=v1-user", "ca", "30", "");
    key(d, "stranger", "rsa");
    let read = |n: &str| std::fs::read(d.join(n)).unwrap();
    let config = |key: &str| {
        keelson_pki::write_kubeconfig(
            &d.join("kc"),
            "https://127.0.0.1:6443",
            &read("ca.crt"),
            &read("v1.crt"),
            &read(key),
            "v1-user",
            "ctx",
        )
        .unwrap();
        keelson_pki::client_config(&keelson_pki::Kubeconfig::load(&d.join("kc")).unwrap())
    };
    config("v1.key").unwrap();
    let err = config("stranger.key").unwrap_err();
    assert!(format!("{err:#}").contains("does not belong"), "{err:#}");
}
