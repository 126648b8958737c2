//! Service-account keys made by the real `openssl`, in every form kube-apiserver reads:
//! tokens signed with each private key verify with each form of its public key, key ids
//! are Kubernetes' (SHA-256 of the PKIX DER openssl writes), RS256 and ES256 signatures
//! verify with `openssl dgst`, several keys share a file.

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use keelson_pki::jwt::{verify, PublicKey, SigningKey};
use serde_json::json;

use crate::openssl::openssl;

/// Kubernetes' key id of `key`'s public half, computed by openssl alone.
fn openssl_kid(dir: &Path, key: &str) -> String {
    openssl(
        dir,
        &[
            "pkey", "-in", key, "-pubout", "-outform", "DER", "-out", "kid.der",
        ],
    );
    openssl(
        dir,
        &["dgst", "-sha256", "-binary", "-out", "kid.sha", "kid.der"],
    );
    B64.encode(std::fs::read(dir.join("kid.sha")).unwrap())
}

/// A JWS ECDSA signature (r || s) as the DER openssl verifies.
fn ecdsa_der(sig: &[u8]) -> Vec<u8> {
    let int = |v: &[u8]| {
        let v = &v[v.iter().take_while(|b| **b == 0).count()..];
        let mut out = vec![0x02];
        let pad = v.first().is_some_and(|b| b & 0x80 != 0);
        out.push((v.len() + pad as usize) as u8);
        if pad {
            out.push(0);
        }
        out.extend_from_slice(v);
        out
    };
    let (r, s) = sig.split_at(sig.len() / 2);
    let mut body = int(r);
    body.extend(int(s));
    let mut out = vec![0x30];
    if body.len() >= 0x80 {
        out.push(0x81);
    }
    out.push(body.len() as u8);
    out.extend(body);
    out
}

/// Checks a token's signature with `openssl dgst -verify` and `pubkey` (PEM).
fn openssl_verifies(dir: &Path, token: &str, pubkey: &str, alg: &str) {
    let (input, sig) = token.rsplit_once('.').unwrap();
    let sig = B64.decode(sig).unwrap();
    let sig = if alg.starts_with("ES") {
        ecdsa_der(&sig)
    } else {
        sig
    };
    std::fs::write(dir.join("input"), input).unwrap();
    std::fs::write(dir.join("sig"), sig).unwrap();
    let digest = if alg.ends_with("384") {
        "-sha384"
    } else {
        "-sha256"
    };
    openssl(
        dir,
        &[
            "dgst",
            digest,
            "-verify",
            pubkey,
            "-signature",
            "sig",
            "input",
        ],
    );
}

#[test]
fn every_key_form_signs_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    openssl(d, &["genrsa", "-traditional", "-out", "rsa1.key", "2048"]);
    openssl(d, &["genrsa", "-out", "rsa8.key", "3072"]);
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-out",
            "p256.key",
        ],
    );
    openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "p256.key", "-out", "p256.p8",
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
            "p384.key",
        ],
    );
    openssl(
        d,
        &[
            "pkcs8", "-topk8", "-nocrypt", "-in", "p384.key", "-out", "p384.p8",
        ],
    );
    let text = |f: &str| std::fs::read_to_string(d.join(f)).unwrap();
    assert!(text("rsa1.key").starts_with("-----BEGIN RSA PRIVATE KEY-----"));
    assert!(text("rsa8.key").starts_with("-----BEGIN PRIVATE KEY-----"));
    assert!(text("p256.key").starts_with("-----BEGIN EC PARAMETERS-----"));
    assert!(text("p256.key").contains("-----BEGIN EC PRIVATE KEY-----"));
    assert!(text("p384.p8").starts_with("-----BEGIN PRIVATE KEY-----"));

    let mut all_public = String::new();
    let mut all_kids = Vec::new();
    for (key, alg) in [
        ("rsa1.key", "RS256"),
        ("rsa8.key", "RS256"),
        ("p256.key", "ES256"),
        ("p256.p8", "ES256"),
        ("p384.key", "ES384"),
        ("p384.p8", "ES384"),
    ] {
        let signer = SigningKey::load(&d.join(key)).unwrap_or_else(|e| panic!("{key}: {e:#}"));
        let kid = openssl_kid(d, key);
        assert_eq!(signer.public().kid, kid, "{key}");
        assert_eq!(signer.public().alg(), alg, "{key}");
        let token = signer.sign(&json!({"sub": key}));
        let header: serde_json::Value =
            serde_json::from_slice(&B64.decode(token.split('.').next().unwrap()).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": alg, "kid": kid}), "{key}");

        // Each public form: PKIX, a self-signed certificate, the private key itself, and
        // for RSA the PKCS#1 public key.
        openssl(d, &["pkey", "-in", key, "-pubout", "-out", "pub.pem"]);
        openssl(
            d,
            &[
                "req", "-x509", "-new", "-key", key, "-subj", "/CN=sa", "-days", "1", "-out",
                "pub.crt",
            ],
        );
        let mut forms = vec!["pub.pem", "pub.crt", key];
        if alg == "RS256" {
            openssl(
                d,
                &["rsa", "-in", key, "-RSAPublicKey_out", "-out", "pub.pkcs1"],
            );
            assert!(text("pub.pkcs1").starts_with("-----BEGIN RSA PUBLIC KEY-----"));
            forms.push("pub.pkcs1");
        }
        for form in forms {
            let keys = PublicKey::load_all(&d.join(form)).unwrap();
            assert_eq!(keys, [signer.public()], "{key} as {form}");
            assert_eq!(
                verify(&token, &keys).unwrap()["sub"],
                key,
                "{key} verified by {form}"
            );
        }
        openssl_verifies(d, &token, "pub.pem", alg);
        all_public.push_str(&text("pub.pem"));
        if !all_kids.contains(&kid) {
            all_kids.push(kid);
        }
    }

    // One file, several keys (and a block that is not a key): all of them, in order.
    all_public.push_str(&text("p256.key"));
    std::fs::write(d.join("all.pem"), &all_public).unwrap();
    let keys = PublicKey::load_all(&d.join("all.pem")).unwrap();
    assert_eq!(keys.len(), 7);
    let kids: std::collections::BTreeSet<&String> = keys.iter().map(|k| &k.kid).collect();
    assert_eq!(kids, all_kids.iter().collect());
    assert_eq!(kids.len(), 4);
    // A token of the P-384 key verifies against the whole set.
    let token = SigningKey::load(&d.join("p384.key"))
        .unwrap()
        .sign(&json!({"sub": "x"}));
    assert!(verify(&token, &keys).is_ok());

    // JWKs as Kubernetes publishes them.
    let rsa = SigningKey::load(&d.join("rsa1.key"))
        .unwrap()
        .public()
        .jwk();
    assert_eq!(rsa["kty"], "RSA");
    assert_eq!(rsa["alg"], "RS256");
    assert_eq!(rsa["e"], "AQAB");
    assert_eq!(B64.decode(rsa["n"].as_str().unwrap()).unwrap().len(), 256);
    let p384 = SigningKey::load(&d.join("p384.p8")).unwrap().public().jwk();
    assert_eq!(p384["crv"], "P-384");
    assert_eq!(p384["alg"], "ES384");
    assert_eq!(B64.decode(p384["y"].as_str().unwrap()).unwrap().len(), 48);
}

#[test]
fn unsupported_keys_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    openssl(
        d,
        &[
            "ecparam",
            "-name",
            "secp521r1",
            "-genkey",
            "-out",
            "p521.key",
        ],
    );
    let err = format!("{:#}", SigningKey::load(&d.join("p521.key")).err().unwrap());
    assert!(err.contains("P-521"), "{err}");
    openssl(
        d,
        &["ecparam", "-name", "secp256k1", "-genkey", "-out", "k1.key"],
    );
    let err = format!("{:#}", SigningKey::load(&d.join("k1.key")).err().unwrap());
    assert!(err.contains("unsupported elliptic curve"), "{err}");
    openssl(
        d,
        &[
            "genrsa", "-aes256", "-passout", "pass:x", "-out", "enc.key", "2048",
        ],
    );
    let err = format!("{:#}", SigningKey::load(&d.join("enc.key")).err().unwrap());
    assert!(err.contains("encrypted"), "{err}");
    std::fs::write(d.join("cert-only.pem"), "no keys here\n").unwrap();
    assert!(PublicKey::load_all(&d.join("cert-only.pem")).is_err());
}

#[test]
fn an_existing_rsa_sa_key_is_kept_and_published() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    std::fs::create_dir(&dir).unwrap();
    // An existing cluster's kubeadm key, without its public half.
    openssl(&dir, &["genrsa", "-traditional", "-out", "sa.key", "2048"]);
    let before = std::fs::read(dir.join("sa.key")).unwrap();
    let paths = keelson_pki::ensure_pki(&dir, &keelson_pki::PkiOptions::default()).unwrap();
    assert!(
        !paths.issued.contains(&"sa".to_string()),
        "{:?}",
        paths.issued
    );
    assert_eq!(std::fs::read(&paths.sa_key).unwrap(), before);
    let public = std::fs::read_to_string(&paths.sa_pub).unwrap();
    assert!(public.starts_with("-----BEGIN PUBLIC KEY-----"), "{public}");
    assert_eq!(
        PublicKey::load_all(&paths.sa_pub).unwrap()[0].kid,
        openssl_kid(&dir, "sa.key")
    );
}
