//! Credentials as kube-apiserver takes them, made by the real `openssl` the way how-tos
//! and existing clusters make them.
//!
//! * Client certificates: X.509 v1 certificates from `openssl x509 -req -CA ca.crt -CAkey
//!   ca.key` (no extension file), RSA and ECDSA, authenticate with curl and the real
//!   kubectl (SelfSubjectReview); an expired one, one from another CA and one only for
//!   servers are refused.
//! * Service-account keys: apiservers signing with kubeadm's RSA PKCS#1 `sa.key`, an RSA
//!   PKCS#8 key, an ECDSA P-256 SEC1 key and an ECDSA P-384 PKCS#8 key; `kubectl create
//!   token` on each, the token authenticates, its key id is Kubernetes' (computed by
//!   openssl), `/openid/v1/jwks` publishes it; one `--service-account-key-file` with the
//!   keys in several forms (PKIX, PKCS#1, certificates) lets every apiserver accept every
//!   other's tokens.

use base64::Engine as _;
use keelson_e2e::{json, CLUSTER};
use keelson_testkit::{ok, ApiserverOptions, Cluster};
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

/// Runs `openssl` in `dir`; panics with its output when it fails.
fn openssl(dir: &Path, args: &[&str]) {
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

/// A client key (`rsa` or `ec`) and a certificate for `subject` signed by `ca_crt` and
/// `ca_key` with `openssl x509 -req`: X.509 v1 unless `ext` (an extension file) is given.
#[allow(clippy::too_many_arguments)]
fn client_cert(
    dir: &Path,
    name: &str,
    kind: &str,
    subject: &str,
    ca_crt: &Path,
    ca_key: &Path,
    days: &str,
    ext: Option<&str>,
) {
    let key = format!("{name}.key");
    match kind {
        "rsa" => openssl(dir, &["genrsa", "-out", &key, "2048"]),
        _ => openssl(
            dir,
            &["ecparam", "-name", "prime256v1", "-genkey", "-out", &key],
        ),
    }
    let csr = format!("{name}.csr");
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
    );
    let (ca_crt, ca_key) = (ca_crt.display().to_string(), ca_key.display().to_string());
    let crt = format!("{name}.crt");
    let serial = format!("{name}.srl");
    let mut args = vec![
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        &ca_crt,
        "-CAkey",
        &ca_key,
        "-CAserial",
        &serial,
        "-CAcreateserial",
        "-days",
        days,
        "-out",
        &crt,
    ];
    let ext_file = format!("{name}.ext");
    if let Some(ext) = ext {
        std::fs::write(dir.join(&ext_file), ext).unwrap();
        args.extend(["-extfile", &ext_file]);
    }
    openssl(dir, &args);
}

/// `POST selfsubjectreviews` with curl and a client certificate.
fn curl_whoami(c: &Cluster, dir: &Path, name: &str) -> Output {
    Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "20"])
        .arg("--cacert")
        .arg(&c.pki.ca_cert)
        .arg("--cert")
        .arg(dir.join(format!("{name}.crt")))
        .arg("--key")
        .arg(dir.join(format!("{name}.key")))
        .args([
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}"#,
        ])
        .arg(format!(
            "{}/apis/authentication.k8s.io/v1/selfsubjectreviews",
            c.server_url()
        ))
        .output()
        .expect("running curl")
}

/// `kubectl auth whoami` with only the server, its CA and a client certificate.
fn kubectl_whoami(c: &Cluster, dir: &Path, name: &str) -> Output {
    let server = format!("--server={}", c.server_url());
    let ca = format!("--certificate-authority={}", c.pki.ca_cert.display());
    let cert = format!(
        "--client-certificate={}",
        dir.join(format!("{name}.crt")).display()
    );
    let key = format!("--client-key={}", dir.join(format!("{name}.key")).display());
    c.kubectl_with(
        "kubectl",
        &[
            "--kubeconfig=/dev/null",
            &server,
            &ca,
            &cert,
            &key,
            "auth",
            "whoami",
            "-o",
            "json",
        ],
        None,
    )
}

fn user_info(review: &Value) -> (String, Vec<String>) {
    let info = &review["status"]["userInfo"];
    let groups = info["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    (info["username"].as_str().unwrap_or("").to_string(), groups)
}

#[test]
fn client_certificates_as_openssl_makes_them() {
    let c = &*CLUSTER;
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let (ca_crt, ca_key) = (c.pki.ca_cert.as_path(), c.pki.ca_key.as_path());
    client_cert(
        d,
        "jane",
        "rsa",
        "/O=dev/O=ops/CN=jane",
        ca_crt,
        ca_key,
        "30",
        None,
    );
    client_cert(d, "joe", "ec", "/CN=joe", ca_crt, ca_key, "30", None);
    let text = Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in", "jane.crt"])
        .current_dir(d)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("Version: 1 (0x0)"),
        "openssl x509 -req without extensions makes X.509 v1"
    );

    let out = curl_whoami(c, d, "jane");
    let body = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "curl: {body}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (user, groups) = user_info(&json(&body));
    assert_eq!(user, "jane");
    assert_eq!(groups, ["dev", "ops", "system:authenticated"]);

    // The real kubectl (Go's TLS client), RSA and ECDSA keys.
    for (name, want) in [("jane", "jane"), ("joe", "joe")] {
        let me = json(&ok(kubectl_whoami(c, d, name)));
        assert_eq!(user_info(&me).0, want);
    }

    // Refused: expired, from another CA, only for servers.
    client_cert(d, "old", "ec", "/CN=old", ca_crt, ca_key, "-1", None);
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "other-ca.key",
        ],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "other-ca.key",
            "-subj",
            "/CN=other-ca",
            "-out",
            "other-ca.crt",
        ],
    );
    client_cert(
        d,
        "mallory",
        "rsa",
        "/O=system:masters/CN=mallory",
        &d.join("other-ca.crt"),
        &d.join("other-ca.key"),
        "30",
        None,
    );
    client_cert(
        d,
        "web",
        "ec",
        "/CN=web",
        ca_crt,
        ca_key,
        "30",
        Some("extendedKeyUsage=serverAuth\n"),
    );
    for name in ["old", "mallory", "web"] {
        let out = curl_whoami(c, d, name);
        let body = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            !out.status.success() && !body.contains("userInfo"),
            "{name}'s certificate was accepted: {body}"
        );
        let out = kubectl_whoami(c, d, name);
        assert!(
            !out.status.success(),
            "kubectl with {name}'s certificate: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    // The apiserver says why.
    let log = c.log_tail("apiserver-0.log");
    assert!(
        log.contains("client certificate refused"),
        "no refusal logged:\n{log}"
    );
}

/// Kubernetes' key id of a key file's public key, computed by openssl alone.
fn openssl_kid(dir: &Path, key: &str) -> String {
    let der = format!("{key}.pub.der");
    let sha = format!("{key}.sha256");
    openssl(
        dir,
        &[
            "pkey", "-in", key, "-pubout", "-outform", "DER", "-out", &der,
        ],
    );
    openssl(dir, &["dgst", "-sha256", "-binary", "-out", &sha, &der]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(std::fs::read(dir.join(sha)).unwrap())
}

fn jwt_header(token: &str) -> Value {
    let part = token.split('.').next().unwrap();
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .unwrap();
    serde_json::from_slice(&bytes).unwrap()
}

/// kubectl against the apiserver at `port`: with the admin certificate, or with only a
/// bearer `token`.
fn kubectl_at(c: &Cluster, port: u16, token: Option<&str>, args: &[&str]) -> Output {
    let server = format!("--server=https://127.0.0.1:{port}");
    let ca = format!("--certificate-authority={}", c.pki.ca_cert.display());
    let mut all = vec![server, ca];
    match token {
        Some(t) => all.extend(["--kubeconfig=/dev/null".to_string(), format!("--token={t}")]),
        None => all.extend([
            format!("--client-certificate={}", c.pki.admin_cert.display()),
            format!("--client-key={}", c.pki.admin_key.display()),
            "--kubeconfig=/dev/null".to_string(),
        ]),
    }
    all.extend(args.iter().map(|a| a.to_string()));
    let all: Vec<&str> = all.iter().map(String::as_str).collect();
    c.kubectl_with("kubectl", &all, None)
}

#[test]
fn service_account_keys_as_openssl_makes_them() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    // The signing keys, in the forms clusters carry them.
    openssl(
        d,
        &["genrsa", "-traditional", "-out", "rsa-pkcs1.key", "2048"],
    );
    openssl(d, &["genrsa", "-out", "rsa-pkcs8.key", "2048"]);
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "p256-sec1.key",
        ],
    );
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-out",
            "p384.sec1",
        ],
    );
    openssl(
        d,
        &[
            "pkcs8",
            "-topk8",
            "-nocrypt",
            "-in",
            "p384.sec1",
            "-out",
            "p384-pkcs8.key",
        ],
    );
    // One verification file, each key in another form: an RSA PUBLIC KEY, a PUBLIC KEY,
    // a certificate and a PUBLIC KEY again.
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "rsa-pkcs1.key",
            "-RSAPublicKey_out",
            "-out",
            "a.pem",
        ],
    );
    openssl(
        d,
        &["pkey", "-in", "rsa-pkcs8.key", "-pubout", "-out", "b.pem"],
    );
    openssl(
        d,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "p256-sec1.key",
            "-subj",
            "/CN=sa",
            "-out",
            "c.pem",
        ],
    );
    openssl(
        d,
        &["pkey", "-in", "p384-pkcs8.key", "-pubout", "-out", "d.pem"],
    );
    let mut bundle = String::new();
    for f in ["a.pem", "b.pem", "c.pem", "d.pem"] {
        bundle.push_str(&std::fs::read_to_string(d.join(f)).unwrap());
    }
    std::fs::write(d.join("verify.pem"), bundle).unwrap();

    let mut cluster = Cluster::start_with(
        1,
        ApiserverOptions {
            extra_args: vec![format!(
                "--service-account-key-file={}",
                d.join("verify.pem").display()
            )],
            ..Default::default()
        },
    )
    .expect("cluster");
    // One more apiserver per signing key: the cluster's sa.key is replaced before each
    // starts (an apiserver reads it once, at start).
    let mut signers = Vec::new();
    for (key, alg) in [
        ("rsa-pkcs1.key", "RS256"),
        ("rsa-pkcs8.key", "RS256"),
        ("p256-sec1.key", "ES256"),
        ("p384-pkcs8.key", "ES384"),
    ] {
        std::fs::copy(d.join(key), &cluster.pki.sa_key).unwrap();
        let i = cluster
            .add_apiserver()
            .unwrap_or_else(|e| panic!("an apiserver signing with {key}: {e:#}"));
        signers.push((key, alg, cluster.apiservers[i].port, openssl_kid(d, key)));
    }
    let c = &cluster;
    let ports: Vec<u16> = c.apiservers.iter().map(|a| a.port).collect();
    // No controller-manager runs here: the account is made by hand.
    ok(kubectl_at(
        c,
        ports[0],
        None,
        &["create", "serviceaccount", "app", "-n", "default"],
    ));

    for (key, alg, port, kid) in &signers {
        let token = ok(kubectl_at(
            c,
            *port,
            None,
            &["create", "token", "app", "-n", "default"],
        ));
        let token = token.trim();
        let header = jwt_header(token);
        assert_eq!(header["alg"], *alg, "{key}");
        assert_eq!(header["kid"], kid.as_str(), "{key}");
        // The JWKS publishes the key.
        let jwks = json(&ok(kubectl_at(
            c,
            *port,
            None,
            &["get", "--raw", "/openid/v1/jwks"],
        )));
        let jwk = jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .find(|k| k["kid"] == kid.as_str())
            .unwrap_or_else(|| panic!("{key}: {kid} not in {jwks}"))
            .clone();
        assert_eq!(jwk["alg"], *alg);
        assert_eq!(jwk["kty"], if alg.starts_with("RS") { "RSA" } else { "EC" });
        // Every apiserver accepts it: they all verify with the same key file.
        for p in &ports {
            let me = json(&ok(kubectl_at(
                c,
                *p,
                Some(token),
                &["auth", "whoami", "-o", "json"],
            )));
            assert_eq!(
                user_info(&me).0,
                "system:serviceaccount:default:app",
                "a token signed with {key} at the apiserver on port {p}"
            );
        }
    }
    // The first apiserver signs with keelson's own key (not in the file): the others do
    // not know it.
    let token = ok(kubectl_at(
        c,
        ports[0],
        None,
        &["create", "token", "app", "-n", "default"],
    ));
    assert!(
        !kubectl_at(c, ports[1], Some(token.trim()), &["auth", "whoami"])
            .status
            .success()
    );
}
