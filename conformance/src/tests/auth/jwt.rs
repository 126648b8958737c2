//! Verifying a service-account JWT against a published JWKS, as the OIDC library in
//! agnhost's `test-service-account-issuer-discovery` does: the key is the JWK whose `kid`
//! the token names, and the signature must verify under it. RS256, ES256 and ES384 (what
//! kube-apiserver signs with); the primitives are rustls' ring verifiers, so the runner
//! needs no crypto crate of its own.

use rustls::pki_types::SignatureVerificationAlgorithm;
use rustls::SignatureScheme;
use serde_json::Value;

/// Base64 in either alphabet (standard or URL-safe), padding optional, no whitespace.
pub fn base64_decode(s: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return Err(format!("not base64: {:?}", c as char)),
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

/// A JWT's header and claims, decoded without verifying anything.
pub fn unverified_parts(token: &str) -> Result<(Value, Value), String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [header, claims, _sig] = parts[..] else {
        return Err(format!("a JWT has three parts, this has {}", parts.len()));
    };
    let json = |part: &str| -> Result<Value, String> {
        serde_json::from_slice(&base64_decode(part)?).map_err(|e| e.to_string())
    };
    Ok((json(header)?, json(claims)?))
}

/// Verify `token`'s signature with the key of `jwks` (`{"keys": [...]}`) its `kid` names.
pub fn verify(token: &str, jwks: &Value) -> Result<(), String> {
    let (header, _) = unverified_parts(token)?;
    let kid = header["kid"].as_str().ok_or("the token names no kid")?;
    let alg = header["alg"].as_str().ok_or("the token names no alg")?;
    let jwk = jwks["keys"]
        .as_array()
        .ok_or("the JWKS has no keys")?
        .iter()
        .find(|k| k["kid"] == kid)
        .ok_or_else(|| format!("no key {kid} in the JWKS"))?;
    let field = |name: &str| -> Result<Vec<u8>, String> {
        base64_decode(
            jwk[name]
                .as_str()
                .ok_or_else(|| format!("the JWK has no {name}"))?,
        )
    };
    let (signed, sig) = token.rsplit_once('.').ok_or("not a JWT")?;
    let sig = base64_decode(sig)?;
    let (scheme, public_key, signature) = match (alg, jwk["kty"].as_str()) {
        ("RS256", Some("RSA")) => {
            let key = der(
                0x30,
                &[der_uint(&field("n")?), der_uint(&field("e")?)].concat(),
            );
            (SignatureScheme::RSA_PKCS1_SHA256, key, sig)
        }
        ("ES256" | "ES384", Some("EC")) => {
            let (scheme, size) = if alg == "ES256" {
                (SignatureScheme::ECDSA_NISTP256_SHA256, 32)
            } else {
                (SignatureScheme::ECDSA_NISTP384_SHA384, 48)
            };
            if sig.len() != 2 * size {
                return Err(format!("an {alg} signature has {} bytes", 2 * size));
            }
            // JWS signs with r || s; ring verifies the ASN.1 form.
            let (r, s) = sig.split_at(size);
            let asn1 = der(0x30, &[der_uint(r), der_uint(s)].concat());
            let point = [&[4u8][..], &field("x")?, &field("y")?].concat();
            (scheme, point, asn1)
        }
        (alg, kty) => return Err(format!("alg {alg} with a {kty:?} key is not supported")),
    };
    // The first verifier rustls maps the scheme to pairs the hash with its own curve.
    let algorithm: &dyn SignatureVerificationAlgorithm = rustls::crypto::ring::default_provider()
        .signature_verification_algorithms
        .mapping
        .iter()
        .find(|(s, _)| *s == scheme)
        .and_then(|(_, algs)| algs.first().copied())
        .ok_or_else(|| format!("no verifier for {scheme:?}"))?;
    algorithm
        .verify_signature(&public_key, signed.as_bytes(), &signature)
        .map_err(|_| format!("the {alg} signature does not verify with key {kid}"))
}

/// A DER element: tag, length, content.
fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend(bytes);
    }
    out.extend_from_slice(content);
    out
}

/// A DER INTEGER of the unsigned big-endian `n`: no leading zeros, one zero byte when the
/// high bit is set (else it would read as negative).
fn der_uint(n: &[u8]) -> Vec<u8> {
    let trimmed: &[u8] = match n.iter().position(|b| *b != 0) {
        Some(i) => &n[i..],
        None => &[0],
    };
    let mut content = Vec::with_capacity(trimmed.len() + 1);
    if trimmed[0] & 0x80 != 0 {
        content.push(0);
    }
    content.extend_from_slice(trimmed);
    der(0x02, &content)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn base64_in_both_alphabets() {
        assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64_decode("aGVsbG8").unwrap(), b"hello");
        assert_eq!(
            base64_decode("-_8").unwrap(),
            base64_decode("+/8=").unwrap()
        );
        assert!(base64_decode("a b").is_err());
    }

    #[test]
    fn der_integers_are_minimal_and_positive() {
        assert_eq!(der_uint(&[0, 0, 5]), [2, 1, 5]);
        assert_eq!(der_uint(&[0x80]), [2, 2, 0, 0x80]);
        assert_eq!(der_uint(&[0, 0]), [2, 1, 0]);
        let long = der(0x30, &[7; 300]);
        assert_eq!(&long[..4], &[0x30, 0x82, 0x01, 0x2c]);
    }

    // Tokens signed with keys made for this test by Python's `cryptography` (RSA 2048 and
    // P-256), and the JWKs of those keys.
    const RS256_TOKEN: &str = include_str!("testdata/rs256.jwt");
    const ES256_TOKEN: &str = include_str!("testdata/es256.jwt");
    const JWKS: &str = include_str!("testdata/jwks.json");

    #[test]
    fn verifies_rs256_and_es256_with_the_named_key_only() {
        let jwks: Value = serde_json::from_str(JWKS).unwrap();
        for token in [RS256_TOKEN.trim(), ES256_TOKEN.trim()] {
            verify(token, &jwks).unwrap();
            // One changed byte of the claims breaks the signature.
            let (h, rest) = token.split_once('.').unwrap();
            let (c, s) = rest.split_once('.').unwrap();
            let mut claims: Vec<u8> = c.bytes().collect();
            claims[3] = if claims[3] == b'A' { b'B' } else { b'A' };
            let tampered = format!("{h}.{}.{s}", String::from_utf8(claims).unwrap());
            assert!(verify(&tampered, &jwks).is_err(), "{tampered}");
            // The other key (swapped kids) does not verify it.
            let mut swapped = jwks.clone();
            let keys = swapped["keys"].as_array_mut().unwrap();
            let (a, b) = (keys[0]["kid"].clone(), keys[1]["kid"].clone());
            keys[0]["kid"] = b;
            keys[1]["kid"] = a;
            assert!(verify(token, &swapped).is_err());
        }
        assert!(verify(RS256_TOKEN.trim(), &json!({"keys": []}))
            .unwrap_err()
            .contains("no key"));
        let (header, claims) = unverified_parts(ES256_TOKEN.trim()).unwrap();
        assert_eq!(header["alg"], "ES256");
        assert_eq!(claims["sub"], "system:serviceaccount:default:test");
    }
}
