//! `aescbc`: AES-CBC with PKCS#7 padding, a random 16-byte IV in front of the
//! ciphertext (Kubernetes' format: IV || CBC(plaintext || padding)). CBC authenticates
//! nothing, so the etcd key is not bound in; Kubernetes recommends aesgcm, secretbox or
//! KMS v2 over it.

use super::Cipher;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use rand::RngCore;

const BLOCK: usize = 16;

/// One aescbc key (16, 24 or 32 bytes: AES-128, -192 or -256).
pub struct AesCbc {
    key: Vec<u8>,
}

impl AesCbc {
    pub fn new(key: &[u8]) -> Result<AesCbc, String> {
        match key.len() {
            16 | 24 | 32 => Ok(AesCbc { key: key.to_vec() }),
            n => Err(format!("crypto/aes: invalid key size {n}")),
        }
    }

    fn encrypt_blocks(&self, iv: &[u8; BLOCK], data: &mut [u8]) {
        let len = data.len();
        macro_rules! run {
            ($aes:ty) => {
                cbc::Encryptor::<$aes>::new_from_slices(&self.key, iv)
                    .expect("key and IV sizes checked")
                    .encrypt_padded_mut::<NoPadding>(data, len)
                    .expect("whole blocks")
            };
        }
        match self.key.len() {
            16 => run!(aes::Aes128),
            24 => run!(aes::Aes192),
            _ => run!(aes::Aes256),
        };
    }

    fn decrypt_blocks(&self, iv: &[u8], data: &mut [u8]) {
        macro_rules! run {
            ($aes:ty) => {
                cbc::Decryptor::<$aes>::new_from_slices(&self.key, iv)
                    .expect("key and IV sizes checked")
                    .decrypt_padded_mut::<NoPadding>(data)
                    .expect("whole blocks")
            };
        }
        match self.key.len() {
            16 => run!(aes::Aes128),
            24 => run!(aes::Aes192),
            _ => run!(aes::Aes256),
        };
    }
}

impl Cipher for AesCbc {
    fn seal(&self, plaintext: &[u8], _authenticated: &[u8]) -> Result<Vec<u8>, String> {
        let padding = BLOCK - plaintext.len() % BLOCK;
        let mut out = Vec::with_capacity(BLOCK + plaintext.len() + padding);
        let mut iv = [0u8; BLOCK];
        rand::rng().fill_bytes(&mut iv);
        out.extend_from_slice(&iv);
        out.extend_from_slice(plaintext);
        out.resize(BLOCK + plaintext.len() + padding, padding as u8);
        self.encrypt_blocks(&iv, &mut out[BLOCK..]);
        Ok(out)
    }

    /// Kubernetes' checks and messages, in its order.
    fn open(&self, data: &[u8], _authenticated: &[u8]) -> Result<Vec<u8>, String> {
        if data.len() < BLOCK {
            return Err("the stored data was shorter than the required size".into());
        }
        let (iv, body) = data.split_at(BLOCK);
        if body.len() % BLOCK != 0 {
            return Err("the stored data is not a multiple of the block size".into());
        }
        let mut out = body.to_vec();
        self.decrypt_blocks(iv, &mut out);
        let Some(&last) = out.last() else {
            return Err("invalid PKCS7 data (empty or not padded)".into());
        };
        let padding = usize::from(last);
        if padding == 0 || padding > out.len() {
            return Err("invalid PKCS7 data (empty or not padded)".into());
        }
        let size = out.len() - padding;
        if out[size..].iter().any(|&b| b != last) {
            return Err("invalid padding on input".into());
        }
        out.truncate(size);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::encryption::test_hex as hex;

    #[test]
    fn round_trips_with_every_key_size() {
        for size in [16, 24, 32] {
            let c = AesCbc::new(&vec![7u8; size]).unwrap();
            for len in [0, 1, 15, 16, 17, 100] {
                let msg = vec![b'x'; len];
                let sealed = c.seal(&msg, b"").unwrap();
                assert_eq!(sealed.len(), 16 + (len / 16 + 1) * 16);
                assert_eq!(c.open(&sealed, b"").unwrap(), msg);
            }
        }
        assert!(AesCbc::new(&[0; 10]).is_err());
    }

    /// Made with Python's `cryptography` (an independent AES-CBC): IV || CBC(PKCS#7),
    /// what Go's crypto/cipher produces for kube-apiserver.
    #[test]
    fn opens_a_value_made_elsewhere() {
        let key = b"0123456789abcdef0123456789abcdef";
        let sealed = hex(include_str!("testdata/aescbc.hex").trim());
        let c = AesCbc::new(key).unwrap();
        assert_eq!(
            c.open(&sealed, b"").unwrap(),
            br#"{"kind":"Secret","apiVersion":"v1","data":{"password":"aHVudGVyMg=="}}"#
        );
    }

    #[test]
    fn damaged_values_get_kubernetes_errors() {
        let c = AesCbc::new(&[1; 32]).unwrap();
        assert_eq!(
            c.open(&[0; 8], b"").unwrap_err(),
            "the stored data was shorter than the required size"
        );
        assert_eq!(
            c.open(&[0; 20], b"").unwrap_err(),
            "the stored data is not a multiple of the block size"
        );
        let other = AesCbc::new(&[2; 32]).unwrap();
        let sealed = other.seal(b"some secret value", b"").unwrap();
        // A wrong key decrypts to noise whose last byte is almost never valid padding.
        let mut failures = 0;
        for _ in 0..20 {
            let sealed = other.seal(b"some secret value", b"").unwrap();
            failures += usize::from(c.open(&sealed, b"").is_err());
        }
        assert!(failures >= 15, "{failures}");
        assert!(c.open(&sealed[..16], b"").is_err());
    }
}
