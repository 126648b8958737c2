//! `identity`: values stored as they are. Reading refuses what carries the `k8s:enc:`
//! prefix, so a config that lists identity first (to decrypt a cluster) still tries
//! the providers after it for encrypted values.

/// What every encrypted value starts with.
pub const ENCRYPTED_PREFIX: &[u8] = b"k8s:enc:";

/// The stored value as plaintext, unless it is encrypted.
pub fn open(data: &[u8]) -> Result<(), String> {
    if data.starts_with(ENCRYPTED_PREFIX) {
        return Err("identity transformer tried to read encrypted data".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn refuses_encrypted_values_only() {
        assert!(super::open(br#"{"kind":"Secret"}"#).is_ok());
        assert_eq!(
            super::open(b"k8s:enc:aescbc:v1:key1:xxxx").unwrap_err(),
            "identity transformer tried to read encrypted data"
        );
    }
}
