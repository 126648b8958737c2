//! `aesgcm`: AES-GCM with a random 12-byte nonce in front of the ciphertext and tag
//! (Kubernetes' format: nonce || GCM(plaintext)), the etcd key as additional
//! authenticated data, so a value copied to another key does not decrypt. Kubernetes
//! asks for rotation every 200,000 writes with random nonces. KMS v2 uses the same
//! construction under derived keys.

use super::Cipher;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes128Gcm, Aes256Gcm, AesGcm};
use rand::RngCore;

pub const NONCE: usize = 12;

enum Key {
    Aes128(Aes128Gcm),
    Aes192(AesGcm<aes::Aes192, U12>),
    Aes256(Aes256Gcm),
}

/// One AES-GCM key (16, 24 or 32 bytes).
pub struct Gcm {
    key: Key,
}

impl Gcm {
    pub fn new(key: &[u8]) -> Result<Gcm, String> {
        let key = match key.len() {
            16 => Key::Aes128(Aes128Gcm::new_from_slice(key).expect("16 bytes")),
            24 => Key::Aes192(AesGcm::new_from_slice(key).expect("24 bytes")),
            32 => Key::Aes256(Aes256Gcm::new_from_slice(key).expect("32 bytes")),
            n => return Err(format!("crypto/aes: invalid key size {n}")),
        };
        Ok(Gcm { key })
    }

    fn encrypt(&self, nonce: &[u8], payload: Payload) -> Vec<u8> {
        let nonce = nonce.into();
        match &self.key {
            Key::Aes128(c) => c.encrypt(nonce, payload),
            Key::Aes192(c) => c.encrypt(nonce, payload),
            Key::Aes256(c) => c.encrypt(nonce, payload),
        }
        .expect("AES-GCM encrypts any value under 64 GiB")
    }

    fn decrypt(&self, nonce: &[u8], payload: Payload) -> Result<Vec<u8>, String> {
        let nonce = nonce.into();
        match &self.key {
            Key::Aes128(c) => c.decrypt(nonce, payload),
            Key::Aes192(c) => c.decrypt(nonce, payload),
            Key::Aes256(c) => c.decrypt(nonce, payload),
        }
        // Go's wording, which is what Kubernetes reports.
        .map_err(|_| "cipher: message authentication failed".to_string())
    }
}

impl Cipher for Gcm {
    fn seal(&self, plaintext: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, String> {
        let mut nonce = [0u8; NONCE];
        rand::rng().fill_bytes(&mut nonce);
        let mut out = Vec::with_capacity(NONCE + plaintext.len() + 16);
        out.extend_from_slice(&nonce);
        out.extend(self.encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad: authenticated,
            },
        ));
        Ok(out)
    }

    fn open(&self, data: &[u8], authenticated: &[u8]) -> Result<Vec<u8>, String> {
        if data.len() < NONCE {
            return Err("the stored data was shorter than the required size".into());
        }
        let (nonce, body) = data.split_at(NONCE);
        self.decrypt(
            nonce,
            Payload {
                msg: body,
                aad: authenticated,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::test_hex as hex;

    #[test]
    fn round_trips_and_binds_the_key_path() {
        for size in [16, 24, 32] {
            let c = Gcm::new(&vec![9u8; size]).unwrap();
            let sealed = c.seal(b"hello", b"/registry/secrets/a/b").unwrap();
            assert_eq!(sealed.len(), 12 + 5 + 16);
            assert_eq!(c.open(&sealed, b"/registry/secrets/a/b").unwrap(), b"hello");
            assert_eq!(
                c.open(&sealed, b"/registry/secrets/a/c").unwrap_err(),
                "cipher: message authentication failed"
            );
        }
    }

    /// Made with Python's `cryptography` (an independent AES-GCM): nonce || GCM with
    /// the etcd key as additional data, as kube-apiserver writes it.
    #[test]
    fn opens_a_value_made_elsewhere() {
        let key = b"0123456789abcdef0123456789abcdef";
        let sealed = hex(include_str!("testdata/aesgcm.hex").trim());
        let c = Gcm::new(key).unwrap();
        assert_eq!(
            c.open(&sealed, b"/registry/secrets/default/db").unwrap(),
            br#"{"kind":"Secret","apiVersion":"v1","data":{"password":"aHVudGVyMg=="}}"#
        );
    }
}
