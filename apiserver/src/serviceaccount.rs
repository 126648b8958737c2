//! Service-account tokens, as kube-apiserver issues and checks them: ES256 JWTs signed
//! with `--service-account-signing-key-file`, verified with the keys of
//! `--service-account-key-file`, naming their issuer (`--service-account-issuer`) and
//! audiences (`--api-audiences`). [`Issuer::sign`] serves `serviceaccounts/token`
//! (TokenRequest), [`Issuer::verify`] bearer authentication, and [`Issuer::jwks`] and
//! [`Issuer::openid_configuration`] the OIDC discovery documents other systems use to
//! verify the tokens themselves.
//!
//! Keys are ECDSA P-256 (what `keelson pki` makes); the key id is Kubernetes': the
//! unpadded base64url SHA-256 of the public key's DER (SubjectPublicKeyInfo).

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// DER SubjectPublicKeyInfo header of an uncompressed P-256 point (id-ecPublicKey,
/// prime256v1); the 65-byte point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

/// Clock skew allowed on `nbf` and `exp`.
const LEEWAY_SECONDS: i64 = 60;

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

/// A public key that verifies tokens.
struct Verifier {
    kid: String,
    /// The uncompressed P-256 point.
    point: Vec<u8>,
}

pub struct Issuer {
    pub issuer: String,
    pub audiences: Vec<String>,
    jwks_uri: String,
    signer: EcdsaKeyPair,
    kid: String,
    verifiers: Vec<Verifier>,
    rng: SystemRandom,
}

/// Why a token was refused (never shown to the client, which just gets 401).
#[derive(Debug, PartialEq, Eq)]
pub struct Invalid(pub String);

fn invalid(why: impl Into<String>) -> Invalid {
    Invalid(why.into())
}

fn key_id(point: &[u8]) -> String {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    B64.encode(ring::digest::digest(&ring::digest::SHA256, &der))
}

/// The P-256 point of a PEM file holding a PKCS#8 private key or an SPKI public key.
fn point_from_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if text.contains("PRIVATE KEY") {
        let key = keelson_pki::load_private_key(path)?;
        let pair = EcdsaKeyPair::from_pkcs8(
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            key.secret_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| anyhow::anyhow!("{}: not an ECDSA P-256 key: {e}", path.display()))?;
        return Ok(pair.public_key().as_ref().to_vec());
    }
    let body: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .with_context(|| format!("{}: not PEM", path.display()))?;
    anyhow::ensure!(
        der.len() == P256_SPKI_PREFIX.len() + 65 && der.starts_with(&P256_SPKI_PREFIX),
        "{}: only ECDSA P-256 public keys are supported",
        path.display()
    );
    Ok(der[P256_SPKI_PREFIX.len()..].to_vec())
}

impl Issuer {
    /// Load the keys; without a signing key file a fresh key is made for this process
    /// alone (tokens then verify only on this apiserver, until it restarts).
    pub fn load(cfg: &IssuerConfig) -> anyhow::Result<Issuer> {
        let rng = SystemRandom::new();
        let signer = match &cfg.signing_key_file {
            Some(path) => {
                let key = keelson_pki::load_private_key(path)?;
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    key.secret_der(),
                    &rng,
                )
                .map_err(|e| anyhow::anyhow!("{}: not an ECDSA P-256 key: {e}", path.display()))?
            }
            None => {
                tracing::warn!(
                    "no --service-account-signing-key-file: service-account tokens are signed \
                     with a key only this process knows"
                );
                let pkcs8 =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                        .map_err(|_| anyhow::anyhow!("generating a service-account key"))?;
                EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .map_err(|_| anyhow::anyhow!("loading the generated service-account key"))?
            }
        };
        let own = signer.public_key().as_ref().to_vec();
        let kid = key_id(&own);
        let mut verifiers = vec![Verifier {
            kid: kid.clone(),
            point: own,
        }];
        for path in &cfg.key_files {
            let point = point_from_pem(path)?;
            let kid = key_id(&point);
            if !verifiers.iter().any(|v| v.kid == kid) {
                verifiers.push(Verifier { kid, point });
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
            kid,
            verifiers,
            rng,
        })
    }

    /// A signed token carrying `claims` (the issuer is added).
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.kid});
        let mut claims = claims.clone();
        claims["iss"] = json!(self.issuer);
        let signing_input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .signer
            .sign(&self.rng, signing_input.as_bytes())
            .expect("ECDSA signing does not fail with a valid key");
        format!("{signing_input}.{}", B64.encode(sig.as_ref()))
    }

    /// The claims of a token this cluster issued for one of its audiences and that is
    /// valid at `now` (seconds since the epoch).
    pub fn verify(&self, token: &str, now: i64) -> Result<Value, Invalid> {
        self.verify_for(token, now, &self.audiences)
    }

    /// [`Issuer::verify`] for other audiences (a TokenReview names its own).
    pub fn verify_for(
        &self,
        token: &str,
        now: i64,
        audiences: &[String],
    ) -> Result<Value, Invalid> {
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid("not a JWT"));
        };
        let decode = |part: &str| -> Result<Value, Invalid> {
            let bytes = B64.decode(part).map_err(|_| invalid("bad base64"))?;
            serde_json::from_slice(&bytes).map_err(|_| invalid("bad JSON"))
        };
        let header = decode(h)?;
        if header["alg"] != "ES256" {
            return Err(invalid("unsupported algorithm"));
        }
        let sig = B64
            .decode(s)
            .map_err(|_| invalid("bad signature encoding"))?;
        let input = &token[..h.len() + 1 + p.len()];
        let kid = header["kid"].as_str();
        let verified = self
            .verifiers
            .iter()
            .filter(|v| kid.is_none_or(|k| k == v.kid))
            .any(|v| {
                signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &v.point)
                    .verify(input.as_bytes(), &sig)
                    .is_ok()
            });
        if !verified {
            return Err(invalid("signature does not verify"));
        }
        let claims = decode(p)?;
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
        let keys: Vec<Value> = self
            .verifiers
            .iter()
            .map(|v| {
                json!({
                    "use": "sig", "kty": "EC", "kid": v.kid, "crv": "P-256", "alg": "ES256",
                    "x": B64.encode(&v.point[1..33]), "y": B64.encode(&v.point[33..65]),
                })
            })
            .collect();
        json!({ "keys": keys })
    }

    /// `/.well-known/openid-configuration`.
    pub fn openid_configuration(&self) -> Value {
        json!({
            "issuer": self.issuer,
            "jwks_uri": self.jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
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
        let token = a.sign(&json!({"sub": "system:serviceaccount:default:app", "aud": ["https://a"], "exp": now + 600, "nbf": now}));
        let claims = a.verify(&token, now).unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:default:app");
        assert_eq!(a.verify(&token, now + 3600).unwrap_err().0, "expired");
        // Another cluster's key does not verify it.
        assert!(issuer("https://a").verify(&token, now).is_err());
        // A changed payload breaks the signature.
        let mut parts: Vec<&str> = token.split('.').collect();
        let forged = B64.encode(json!({"sub": "system:admin", "aud": ["https://a"], "exp": now + 600, "iss": "https://a"}).to_string());
        parts[1] = &forged;
        assert_eq!(
            a.verify(&parts.join("."), now).unwrap_err().0,
            "signature does not verify"
        );
        let other_aud = a.sign(&json!({"aud": ["vault"], "exp": now + 600}));
        assert!(a.verify(&other_aud, now).is_err());
        assert!(a.verify("not-a-token", now).is_err());
    }

    #[test]
    fn discovery_documents_publish_the_key() {
        let a = issuer("https://a");
        let jwks = a.jwks();
        assert_eq!(jwks["keys"][0]["kid"], json!(a.kid));
        assert_eq!(jwks["keys"][0]["crv"], "P-256");
        assert_eq!(
            B64.decode(jwks["keys"][0]["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert_eq!(a.openid_configuration()["issuer"], "https://a");
    }

    #[test]
    fn keys_load_from_pem_files() {
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
        // The public file is the same key: one verifier, and a second apiserver with the
        // same files verifies what the first signed.
        assert_eq!(one.verifiers.len(), 1);
        assert_eq!(
            point_from_pem(&paths.sa_pub).unwrap(),
            point_from_pem(&paths.sa_key).unwrap()
        );
        let two = Issuer::load(&cfg).unwrap();
        let token = one.sign(&json!({"aud": ["api"], "exp": 2_000_000_000}));
        assert!(two.verify(&token, 1_900_000_000).is_ok());
    }
}
