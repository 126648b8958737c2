//! Service-account tokens, as kube-apiserver issues and checks them: JWTs signed
//! with `--service-account-signing-key-file`, verified with the keys of
//! `--service-account-key-file`, naming their issuer (`--service-account-issuer`) and
//! audiences (`--api-audiences`). [`Issuer::sign`] serves `serviceaccounts/token`
//! (TokenRequest), [`Issuer::verify`] bearer authentication, and [`Issuer::jwks`] and
//! [`Issuer::openid_configuration`] the OIDC discovery documents other systems use to
//! verify the tokens themselves.
//!
//! Keys are RSA (RS256; kubeadm's `sa.key`) or ECDSA (ES256 on P-256, what `keelson pki`
//! makes; ES384 on P-384), in any PEM form kube-apiserver reads (PKCS#1, SEC1, PKCS#8
//! private keys; public keys and certificates, several per file, for
//! `--service-account-key-file`). The key id is Kubernetes': the unpadded base64url
//! SHA-256 of the public key's PKIX DER.

use keelson_pki::jwt::{self, PublicKey, SigningKey};
use serde_json::{json, Value};
use std::path::PathBuf;

/// Clock skew allowed on `nbf` and `exp`.
const LEEWAY_SECONDS: i64 = 60;

/// The issuer of legacy tokens, kept in `kubernetes.io/service-account-token` Secrets:
/// they name no audience and never expire.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";

/// The service-account token settings of the apiserver (kube-apiserver's flags).
#[derive(Debug, Clone)]
pub struct IssuerConfig {
    pub issuer: String,
    pub signing_key_file: Option<PathBuf>,
    pub key_files: Vec<PathBuf>,
    pub api_audiences: Vec<String>,
    /// Where the JWKS is served, as published in the OIDC discovery document.
    pub jwks_uri: String,
}

pub struct Issuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    jwks_uri: String,
    signer: SigningKey,
    verifiers: Vec<PublicKey>,
}

/// Why a token was refused (never shown to the client, which just gets 401).
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

fn invalid(why: impl Into<String>) -> Invalid {
    Invalid(why.into())
}

impl Issuer {
    /// Load the keys; without a signing key file a fresh key is made for this process
    /// alone (tokens then verify only on this apiserver, until it restarts).
    pub fn load(cfg: &IssuerConfig) -> anyhow::Result<Issuer> {
        let signer = match &cfg.signing_key_file {
            Some(path) => SigningKey::load(path)?,
            None => {
                tracing::warn!(
                    "no --service-account-signing-key-file: service-account tokens are signed \
                     with a key only this process knows"
                );
                SigningKey::generate()?
            }
        };
        let mut verifiers = vec![signer.public()];
        for path in &cfg.key_files {
            for key in PublicKey::load_all(path)? {
                if !verifiers.contains(&key) {
                    verifiers.push(key);
                }
            }
        }
        let audiences = if cfg.api_audiences.is_empty() {
            vec![cfg.issuer.clone()]
        } else {
            cfg.api_audiences.clone()
        };
        Ok(Issuer {
            issuer: cfg.issuer.clone(),
            audiences,
            jwks_uri: cfg.jwks_uri.clone(),
            signer,
            verifiers,
        })
    }

    /// A signed token carrying `claims` (the issuer is added).
    pub fn sign(&self, claims: &Value) -> String {
        let mut claims = claims.clone();
        claims["iss"] = json!(self.issuer);
        self.signer.sign(&claims)
    }

    /// The claims of a token this cluster issued for one of its audiences and that is
    /// valid at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<Value, Invalid> {
        self.verify_for(token, now, &self.audiences)
    }

    /// [`Issuer::verify`] for other audiences (a TokenReview names its own). A legacy
    /// token (from a Secret) names none and passes for any.
    pub fn verify_for(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<Value, Invalid> {
        let claims = jwt::verify(token, &self.verifiers).map_err(invalid)?;
        if claims["iss"] == LEGACY_ISSUER {
            return Ok(claims);
        }
        if claims["iss"] != json!(self.issuer) {
            return Err(invalid("another issuer"));
        }
        let aud: Vec<&str> = match &claims["aud"] {
            Value::String(a) => vec![a.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !aud.iter().any(|a| audiences.iter().any(|b| a == b)) {
            return Err(invalid("not for this cluster's audiences"));
        }
        let exp = claims["exp"].as_i64().ok_or_else(|| invalid("no exp"))?;
        if now > exp + LEEWAY_SECONDS {
            return Err(invalid("expired"));
        }
        if claims["nbf"]
            .as_i64()
            .is_some_and(|nbf| now + LEEWAY_SECONDS < nbf)
        {
            return Err(invalid("not yet valid"));
        }
        Ok(claims)
    }

    /// `/openid/v1/jwks`.
    pub fn jwks(&self) -> Value {
        let keys: Vec<Value> = self.verifiers.iter().map(PublicKey::jwk).collect();
        json!({ "keys": keys })
    }

    /// `/.well-known/openid-configuration`: the algorithms are those of the published
    /// keys, sorted, as Kubernetes lists them.
    pub fn openid_configuration(&self) -> Value {
        let algs: std::collections::BTreeSet<&str> =
            self.verifiers.iter().map(PublicKey::alg).collect();
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn issuer(name: &str) -> Issuer {
        Issuer::load(&IssuerConfig {
            issuer: name.into(),
            signing_key_file: None,
            key_files: vec![],
            api_audiences: vec![],
            jwks_uri: "https://127.0.0.1:6443/openid/v1/jwks".into(),
        })
        .unwrap()
    }

    #[test]
    fn tokens_verify_only_for_their_issuer_audience_and_time() {
        let a = issuer("https://a");
        let now = 1_800_000_000;
        let token = a.sign(&json!({"sub": "system:serviceaccount:default:app",
            "aud": ["https://a"], "exp": now + 600, "nbf": now}));
        let claims = a.verify(&token, now).unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:default:app");
        assert_eq!(claims["iss"], "https://a");
        assert_eq!(a.verify(&token, now + 3600).unwrap_err().0, "expired");
        // Another cluster's key does not verify it.
        assert!(issuer("https://a").verify(&token, now).is_err());
        let other_aud = a.sign(&json!({"aud": ["vault"], "exp": now + 600}));
        assert!(a.verify(&other_aud, now).is_err());
        assert!(a
            .verify_for(&other_aud, now, &["vault".to_string()])
            .is_ok());
        assert!(a.verify("not-a-token", now).is_err());
    }

    #[test]
    fn legacy_tokens_name_no_audience_and_never_expire() {
        let a = issuer("https://a");
        let legacy = a
            .signer
            .sign(&json!({"iss": LEGACY_ISSUER, "sub": "system:serviceaccount:default:app"}));
        assert!(a.verify(&legacy, 4_000_000_000).is_ok());
    }

    #[test]
    fn discovery_documents_publish_the_key() {
        let a = issuer("https://a");
        let jwks = a.jwks();
        assert_eq!(jwks["keys"][0]["kid"], json!(a.signer.public().kid));
        assert_eq!(jwks["keys"][0]["crv"], "P-256");
        assert_eq!(a.openid_configuration()["issuer"], "https://a");
        assert_eq!(
            a.openid_configuration()["id_token_signing_alg_values_supported"],
            json!(["ES256"])
        );
    }

    #[test]
    fn apiservers_with_the_same_key_files_verify_each_other() {
        let dir = tempfile::tempdir().unwrap();
        let paths =
            keelson_pki::ensure_pki(dir.path(), &keelson_pki::PkiOptions::default()).unwrap();
        let cfg = IssuerConfig {
            issuer: "https://k".into(),
            signing_key_file: Some(paths.sa_key.clone()),
            key_files: vec![paths.sa_pub.clone()],
            api_audiences: vec!["https://k".into(), "api".into()],
            jwks_uri: String::new(),
        };
        let one = Issuer::load(&cfg).unwrap();
        // The public file is the same key: one verifier.
        assert_eq!(one.verifiers.len(), 1);
        let two = Issuer::load(&cfg).unwrap();
        let token = one.sign(&json!({"aud": ["api"], "exp": 2_000_000_000}));
        assert!(two.verify(&token, 1_900_000_000).is_ok());
    }

    /// Runs `openssl` in `dir`.
    fn openssl(dir: &std::path::Path, args: &[&str]) {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("running openssl (scripts/setup installs it)");
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
    }

    #[test]
    fn kubeadm_rsa_keys_sign_and_publish() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        // kubeadm's sa.key is PKCS#1; a previous ECDSA key verifies through its certificate.
        openssl(d, &["genrsa", "-traditional", "-out", "sa.key", "2048"]);
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-out",
                "old.key",
            ],
        );
        openssl(
            d,
            &[
                "req", "-x509", "-new", "-key", "old.key", "-subj", "/CN=old", "-out", "old.crt",
            ],
        );
        openssl(d, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);
        let keys = [
            std::fs::read(d.join("sa.pub")).unwrap(),
            std::fs::read(d.join("old.crt")).unwrap(),
        ]
        .concat();
        std::fs::write(d.join("keys.pem"), keys).unwrap();
        let issuer = Issuer::load(&IssuerConfig {
            issuer: "https://k".into(),
            signing_key_file: Some(d.join("sa.key")),
            key_files: vec![d.join("keys.pem")],
            api_audiences: vec![],
            jwks_uri: String::new(),
        })
        .unwrap();
        // sa.pub is the signing key again: two keys, not three.
        assert_eq!(issuer.verifiers.len(), 2);
        let jwks = issuer.jwks();
        assert_eq!(jwks["keys"][0]["kty"], "RSA");
        assert_eq!(jwks["keys"][0]["alg"], "RS256");
        assert_eq!(jwks["keys"][0]["e"], "AQAB");
        assert_eq!(jwks["keys"][1]["kty"], "EC");
        assert_eq!(
            issuer.openid_configuration()["id_token_signing_alg_values_supported"],
            json!(["ES256", "RS256"])
        );
        let token = issuer.sign(&json!({"aud": ["https://k"], "exp": 2_000_000_000}));
        let header: Value = serde_json::from_slice(
            &base64::Engine::decode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                token.split('.').next().unwrap(),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], jwks["keys"][0]["kid"]);
        assert!(issuer.verify(&token, 1_900_000_000).is_ok());
        // A token of the old key verifies too.
        let old = SigningKey::load(&d.join("old.key")).unwrap();
        let old_token =
            old.sign(&json!({"iss": "https://k", "aud": ["https://k"], "exp": 2_000_000_000}));
        assert!(issuer.verify(&old_token, 1_900_000_000).is_ok());
    }
}
