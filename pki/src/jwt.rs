//! JSON Web Tokens as Kubernetes' service-account tokens are: signed with an RSA key
//! (RS256, kubeadm's `sa.key`) or an ECDSA key (ES256 on P-256, ES384 on P-384),
//! verified against a set of public keys, and the key ids and JWKs that publish them.
//! Claims are the caller's business (the apiserver checks issuer, audience and time; the
//! controller-manager signs legacy Secret tokens).
//!
//! Keys come from PEM files in any form kube-apiserver reads ([`crate::keys`]). The key id
//! is Kubernetes': the unpadded base64url SHA-256 of the public key's PKIX DER. P-521
//! (ES512) keys are refused: `ring` has no P-521.

use std::path::Path;

use anyhow::{bail, Context as _};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use ring::rand::SystemRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use serde_json::{json, Value};

use crate::keys::{self, Curve, Private, Public};

/// A public key that verifies tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub kid: String,
    key: Public,
}

impl PublicKey {
    fn new(key: Public) -> anyhow::Result<PublicKey> {
        if let Public::Ec {
            curve: Curve::P521, ..
        } = key
        {
            bail!("ECDSA P-521 (ES512) keys are not supported; use RSA, P-256 or P-384");
        }
        let kid = B64.encode(ring::digest::digest(&ring::digest::SHA256, &key.spki_der()));
        Ok(PublicKey { kid, key })
    }

    /// Every key of a PEM file (`--service-account-key-file`): public keys (`PUBLIC KEY`,
    /// `RSA PUBLIC KEY`), certificates and private keys, as kube-apiserver reads them.
    pub fn load_all(path: &Path) -> anyhow::Result<Vec<PublicKey>> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        PublicKey::from_pem(&pem).with_context(|| format!("{}", path.display()))
    }

    /// Every key of PEM data, as [`PublicKey::load_all`].
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<Vec<PublicKey>> {
        keys::public_keys_from_pem(pem)?
            .into_iter()
            .map(PublicKey::new)
            .collect()
    }

    /// The JWS algorithm of tokens this key verifies, as Kubernetes chooses it.
    pub fn alg(&self) -> &'static str {
        match &self.key {
            Public::Rsa { .. } => "RS256",
            Public::Ec {
                curve: Curve::P256, ..
            } => "ES256",
            Public::Ec {
                curve: Curve::P384, ..
            } => "ES384",
            Public::Ec {
                curve: Curve::P521, ..
            } => "ES512",
        }
    }

    /// The key as a `PUBLIC KEY` PEM block (what `sa.pub` holds).
    pub fn pem(&self) -> String {
        self.key.pem()
    }

    /// The key as a JWK, for `/openid/v1/jwks`.
    pub fn jwk(&self) -> Value {
        match &self.key {
            Public::Rsa { n, e } => json!({
                "use": "sig", "kty": "RSA", "kid": self.kid, "alg": self.alg(),
                "n": B64.encode(n), "e": B64.encode(e),
            }),
            Public::Ec { curve, point } => {
                let len = curve.coordinate_len();
                json!({
                    "use": "sig", "kty": "EC", "kid": self.kid, "crv": curve.name(),
                    "alg": self.alg(),
                    "x": B64.encode(&point[1..1 + len]), "y": B64.encode(&point[1 + len..]),
                })
            }
        }
    }

    fn verifies(&self, input: &[u8], sig: &[u8]) -> bool {
        match &self.key {
            Public::Rsa { n, e } => signature::RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, input, sig)
                .is_ok(),
            Public::Ec { curve, point } => {
                let alg = match curve {
                    Curve::P256 => &signature::ECDSA_P256_SHA256_FIXED,
                    Curve::P384 => &signature::ECDSA_P384_SHA384_FIXED,
                    Curve::P521 => return false,
                };
                signature::UnparsedPublicKey::new(alg, point)
                    .verify(input, sig)
                    .is_ok()
            }
        }
    }
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
}

/// A private key that signs tokens.
pub struct SigningKey {
    signer: Signer,
    public: PublicKey,
    rng: SystemRandom,
}

impl SigningKey {
    /// The first private key of a PEM file (`--service-account-signing-key-file`,
    /// `--service-account-private-key-file`): PKCS#1, SEC1 or PKCS#8, RSA or ECDSA.
    pub fn load(path: &Path) -> anyhow::Result<SigningKey> {
        let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        SigningKey::from_pem(&pem).with_context(|| format!("{}", path.display()))
    }

    /// The first private key of PEM data, as [`SigningKey::load`].
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<SigningKey> {
        let key = keys::private_key_from_pem(pem)?;
        let public = PublicKey::new(key.public().clone())?;
        let rng = SystemRandom::new();
        let signer = match &key {
            Private::Rsa { pkcs1, .. } => Signer::Rsa(
                RsaKeyPair::from_der(pkcs1)
                    .map_err(|e| anyhow::anyhow!("unusable RSA key: {e}"))?,
            ),
            Private::Ec { scalar, public } => {
                let (alg, point) = match public {
                    Public::Ec {
                        curve: Curve::P256,
                        point,
                    } => (&signature::ECDSA_P256_SHA256_FIXED_SIGNING, point),
                    Public::Ec {
                        curve: Curve::P384,
                        point,
                    } => (&signature::ECDSA_P384_SHA384_FIXED_SIGNING, point),
                    _ => unreachable!("PublicKey::new refused other curves"),
                };
                Signer::Ec(
                    EcdsaKeyPair::from_private_key_and_public_key(alg, scalar, point, &rng)
                        .map_err(|e| anyhow::anyhow!("unusable ECDSA key: {e}"))?,
                )
            }
        };
        Ok(SigningKey {
            signer,
            public,
            rng,
        })
    }

    /// A fresh ECDSA P-256 key, known to this process only.
    pub fn generate() -> anyhow::Result<SigningKey> {
        let alg = &signature::ECDSA_P256_SHA256_FIXED_SIGNING;
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
            .map_err(|_| anyhow::anyhow!("generating an ECDSA key"))?;
        let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
            .map_err(|e| anyhow::anyhow!("generated ECDSA key: {e}"))?;
        let public = PublicKey::new(Public::Ec {
            curve: Curve::P256,
            point: pair.public_key().as_ref().to_vec(),
        })?;
        Ok(SigningKey {
            signer: Signer::Ec(pair),
            public,
            rng,
        })
    }

    pub fn public(&self) -> PublicKey {
        self.public.clone()
    }

    /// A token carrying `claims`, its header naming this key and its algorithm.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": self.public.alg(), "kid": self.public.kid});
        let input = format!(
            "{}.{}",
            B64.encode(header.to_string()),
            B64.encode(claims.to_string())
        );
        let sig = match &self.signer {
            Signer::Rsa(pair) => {
                let mut sig = vec![0u8; pair.public().modulus_len()];
                pair.sign(
                    &signature::RSA_PKCS1_SHA256,
                    &self.rng,
                    input.as_bytes(),
                    &mut sig,
                )
                .expect("RSA signing does not fail with a valid key");
                sig
            }
            Signer::Ec(pair) => pair
                .sign(&self.rng, input.as_bytes())
                .expect("ECDSA signing does not fail with a valid key")
                .as_ref()
                .to_vec(),
        };
        format!("{input}.{}", B64.encode(sig))
    }
}

/// The claims of `token` if one of `keys` signed it (nothing else is checked). As in
/// Kubernetes, every key of the token's algorithm is tried (the one its `kid` names
/// first): a token's key id is a hint, not a requirement.
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
    let Some(alg) = header["alg"]
        .as_str()
        .filter(|a| ["RS256", "ES256", "ES384"].contains(a))
    else {
        return Err("unsupported algorithm".into());
    };
    let sig = B64
        .decode(s)
        .map_err(|_| "bad signature encoding".to_string())?;
    let input = &token.as_bytes()[..h.len() + 1 + p.len()];
    let kid = header["kid"].as_str();
    let named = keys.iter().filter(|k| Some(k.kid.as_str()) == kid);
    let others = keys.iter().filter(|k| Some(k.kid.as_str()) != kid);
    let signed = named
        .chain(others)
        .filter(|k| k.alg() == alg)
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
        // The key that signed it, whatever the other keys: b is tried after a.
        assert!(verify(&token, &[b.public(), a.public()]).is_ok());
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        parts[1] = B64.encode(json!({"sub": "admin"}).to_string());
        assert_eq!(
            verify(&parts.join("."), &[a.public()]).unwrap_err(),
            "signature does not verify"
        );
        // alg "none" and algorithms that do not match the key.
        let mut none = parts.clone();
        none[0] = B64.encode(json!({"alg": "none"}).to_string());
        assert_eq!(
            verify(&none.join("."), &[a.public()]).unwrap_err(),
            "unsupported algorithm"
        );
        let mut rs = token.split('.').map(str::to_string).collect::<Vec<_>>();
        rs[0] = B64.encode(json!({"alg": "RS256", "kid": a.public().kid}).to_string());
        assert!(verify(&rs.join("."), &[a.public()]).is_err());
        assert!(verify("a.b", &[a.public()]).is_err());
        let jwk = a.public().jwk();
        assert_eq!(jwk["kid"], json!(a.public().kid));
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(B64.decode(jwk["x"].as_str().unwrap()).unwrap().len(), 32);
    }

    #[test]
    fn keys_load_from_the_pki_files() {
        let dir = tempfile::tempdir().unwrap();
        let paths = crate::ensure_pki(dir.path(), &crate::PkiOptions::default()).unwrap();
        let private = SigningKey::load(&paths.sa_key).unwrap();
        assert_eq!(
            PublicKey::load_all(&paths.sa_pub).unwrap(),
            [private.public()]
        );
        assert_eq!(
            PublicKey::load_all(&paths.sa_key).unwrap(),
            [private.public()]
        );
        // The public file is the key's PKIX PEM, byte for byte.
        assert_eq!(
            std::fs::read_to_string(&paths.sa_pub).unwrap(),
            private.public().pem()
        );
    }
}
