//! ES256 JSON Web Tokens, as Kubernetes' service-account tokens are: signing with an
//! ECDSA P-256 key, verifying against a set of public keys, and the key ids and JWKs
//! that publish them. Claims are the caller's business (the apiserver checks issuer,
//! audience and time; the controller-manager signs legacy Secret tokens).
//!
//! The key id is Kubernetes': the unpadded base64url SHA-256 of the public key's DER
//! (SubjectPublicKeyInfo).

use anyhow::Context as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _};
use serde_json::{json, Value};
use std::path::Path;

/// DER SubjectPublicKeyInfo header of an uncompressed P-256 point (id-ecPublicKey,
/// prime256v1); the 65-byte point follows.
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];

const ALG: &signature::EcdsaSigningAlgorithm = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;

/// A public key that verifies tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    /// The uncompressed P-256 point.
    point: Vec<u8>,
}

impl PublicKey {
    fn from_point(point: Vec<u8>) -> PublicKey {
        let mut der = P256_SPKI_PREFIX.to_vec();
        der.extend_from_slice(&point);
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, &der));
        PublicKey { kid, point }
    }

    /// The public key of a PEM file holding a PKCS#8 private key or an SPKI public key.
    pub fn load(path: &Path) -> anyhow::Result<PublicKey> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        if text.contains("PRIVATE KEY") {
            return Ok(SigningKey::load(path)?.public());
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
        Ok(PublicKey::from_point(
            der[P256_SPKI_PREFIX.len()..].to_vec(),
        ))
    }

    /// The key as a JWK, for `/openid/v1/jwks`.
    pub fn jwk(&self) -> Value {
        json!({
            "use": "sig", "kty": "EC", "kid": self.kid, "crv": "P-256", "alg": "ES256",
            "x": B64.encode(&self.point[1..33]), "y": B64.encode(&self.point[33..65]),
        })
    }

    fn verifies(&self, input: &[u8], sig: &[u8]) -> bool {
        signature::UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &self.point)
            .verify(input, sig)
            .is_ok()
    }
}

/// An ECDSA P-256 private key that signs tokens.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    public: PublicKey,
    rng: SystemRandom,
}

impl SigningKey {
    /// A PKCS#8 PEM private key (`keelson pki`'s `sa.key`).
    pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
        let key = crate::load_private_key(path)?;
        SigningKey::from_pkcs8(key.secret_der())
            .with_context(|| format!("{}: not an ECDSA P-256 key", path.display()))
    }

    /// A fresh key, known to this process only.
    pub fn generate() -> anyhow::Result<SigningKey> {
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(ALG, &SystemRandom::new())
            .map_err(|_| anyhow::anyhow!("generating an ECDSA key"))?;
        SigningKey::from_pkcs8(pkcs8.as_ref())
    }

    fn from_pkcs8(der: &[u8]) -> anyhow::Result<SigningKey> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(ALG, der, &rng)
            .map_err(|e| anyhow::anyhow!("not an ECDSA P-256 key: {e}"))?;
        let public = PublicKey::from_point(pair.public_key().as_ref().to_vec());
        Ok(SigningKey { pair, public, rng })
    }

    pub fn public(&self) -> PublicKey {
        self.public.clone()
    }

    /// A token carrying `claims`, its header naming this key.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "ES256", "kid": self.public.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = self
            .pair
            .sign(&self.rng, input.as_bytes())
            .expect("ECDSA signing does not fail with a valid key");
        format!("{input}.{}", B64.encode(sig.as_ref()))
    }
}

/// The claims of `token` if one of `keys` signed it (nothing else is checked).
pub fn verify(token: &str, keys: &[PublicKey]) -> Result<Value, String> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a JWT".into());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = B64.decode(part).map_err(|_| "bad base64".to_string())?;
        serde_json::from_slice(&bytes).map_err(|_| "bad JSON".to_string())
    };
    let header = decode(h)?;
    if header["alg"] != "ES256" {
        return Err("unsupported algorithm".into());
    }
    let sig = B64
        .decode(s)
        .map_err(|_| "bad signature encoding".to_string())?;
    let input = &token.as_bytes()[..h.len() + 1 + p.len()];
    let kid = header["kid"].as_str();
    let signed = keys
        .iter()
        .filter(|k| kid.is_none_or(|want| want == k.kid))
        .any(|k| k.verifies(input, &sig));
    if !signed {
        return Err("signature does not verify".into());
    }
    decode(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signed_tokens_verify_only_with_their_key() {
        let a = SigningKey::generate().unwrap();
        let b = SigningKey::generate().unwrap();
        let token = a.sign(&json!({"sub": "x"}));
        assert_eq!(verify(&token, &[a.public()]).unwrap()["sub"], "x");
        assert!(verify(&token, &[b.public()]).is_err());
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = B64.encode(json!({"sub": "admin"}).to_string());
        assert_eq!(
            verify(&parts.join("."), &[a.public()]).unwrap_err(),
            "signature does not verify"
        );
        assert!(verify("a.b", &[a.public()]).is_err());
        let jwk = a.public().jwk();
        assert_eq!(jwk["kid"], json!(a.public().kid));
        assert_eq!(B64.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn keys_load_from_the_pki_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::ensure_pki(dir.path(), &crate::PkiOptions::default()).unwrap();
        let private = SigningKey::load(&paths.sa_key).unwrap();
        assert_eq!(PublicKey::load(&paths.sa_pub).unwrap(), private.public());
        assert_eq!(PublicKey::load(&paths.sa_key).unwrap(), private.public());
    }
}
