//! `secretbox`: NaCl's XSalsa20-Poly1305 with a random 24-byte nonce in front (Kubernetes'
//! format: nonce || tag || ciphertext, what Go's `secretbox.Seal` appends). Like
//! Kubernetes, no additional data: the etcd key is not bound in.

use super::Cipher;
use crypto_secretbox::aead::{Aead, KeyInit};
use crypto_secretbox::XSalsa20Poly1305;
use rand::RngCore;

const NONCE: usize = 24;
const OVERHEAD: usize = 16;

/// One 32-byte secretbox key.
pub struct Secretbox {
    cipher: XSalsa20Poly1305,
}

impl Secretbox {
    pub fn new(key: &[u8]) -> Result<Secretbox, String> {
        if key.len() != 32 {
            return Err(format!(
                "expected key size 32 for secretbox provider, got {}",
                key.len()
            ));
        }
        Ok(Secretbox {
            cipher: XSalsa20Poly1305::new_from_slice(key).expect("32 bytes"),
        })
    }
}

impl Cipher for Secretbox {
    fn seal(&self, plaintext: &[u8], _authenticated: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt((&nonce).into(), plaintext)
            .map_err(|_| "secretbox: encryption failed".to_string())?;
        let mut out = Vec::with_capacity(NONCE + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend(sealed);
        Ok(out)
    }

    fn open(&self, data: &[u8], _authenticated: &[u8]) -> Result<Vec<u8>, String> {
        if data.len() < NONCE + OVERHEAD {
            return Err("the stored data was shorter than the required size".into());
        }
        let (nonce, body) = data.split_at(NONCE);
        self.cipher
            .decrypt(nonce.into(), body)
            // Kubernetes' (misleading) text for a failed secretbox.Open.
            .map_err(|_| "output array was not large enough for encryption".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::test_hex as hex;

    #[test]
    fn round_trips_and_refuses_other_keys() {
        let c = Secretbox::new(&[3; 32]).unwrap();
        let sealed = c.seal(b"hello", b"").unwrap();
        assert_eq!(sealed.len(), 24 + 16 + 5);
        assert_eq!(c.open(&sealed, b"").unwrap(), b"hello");
        let other = Secretbox::new(&[4; 32]).unwrap();
        assert!(other.open(&sealed, b"").is_err());
        assert!(Secretbox::new(&[0; 16]).is_err());
    }

    /// Made with PyNaCl (libsodium's crypto_secretbox, tag before ciphertext, as Go's
    /// nacl/secretbox): nonce || box.
    #[test]
    fn opens_a_value_made_elsewhere() {
        let key = b"0123456789abcdef0123456789abcdef";
        let sealed = hex(include_str!("testdata/secretbox.hex").trim());
        let c = Secretbox::new(key).unwrap();
        assert_eq!(
            c.open(&sealed, b"").unwrap(),
            br#"{"kind":"Secret","apiVersion":"v1","data":{"password":"aHVudGVyMg=="}}"#
        );
    }
}
