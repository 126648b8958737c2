//! Key files as kube-apiserver reads them for service-account tokens (client-go's
//! `keyutil`): PEM files of RSA or ECDSA keys, several blocks per file.
//!
//! * private keys: PKCS#1 (`RSA PRIVATE KEY`, kubeadm's `sa.key`), SEC1 (`EC PRIVATE
//!   KEY`, what `openssl ecparam -genkey` writes after its `EC PARAMETERS` block) and
//!   PKCS#8 (`PRIVATE KEY`);
//! * public keys: PKIX (`PUBLIC KEY`), PKCS#1 (`RSA PUBLIC KEY`), and the key of a
//!   certificate (`CERTIFICATE`); a private key stands for its public half.
//!
//! Blocks of other types are passed over, as keyutil passes them over; encrypted keys are
//! refused. Curves: P-256, P-384 and P-521 (the last is parsed, but has no signer or
//! verifier here: see [`crate::jwt`]).

use anyhow::{bail, Context as _};
use base64::Engine as _;

use crate::der::element_len;

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_NULL: u8 = 0x05;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
const TAG_EXPLICIT_0: u8 = 0xa0;
const TAG_EXPLICIT_1: u8 = 0xa1;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// id-ecPublicKey, 1.2.840.10045.2.1.
const OID_EC: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// An elliptic curve of an ECDSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Curve {
    P256,
    P384,
    P521,
}

impl Curve {
    fn oid(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x2b, 0x81, 0x04, 0x00, 0x22],
            Curve::P521 => &[0x2b, 0x81, 0x04, 0x00, 0x23],
        }
    }

    fn from_oid(oid: &[u8]) -> anyhow::Result<Curve> {
        [Curve::P256, Curve::P384, Curve::P521]
            .into_iter()
            .find(|c| c.oid() == oid)
            .context("an unsupported elliptic curve (P-256, P-384 and P-521 are supported)")
    }

    /// The JWK name.
    pub fn name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
            Curve::P521 => "P-521",
        }
    }

    /// Bytes of one coordinate of a point.
    pub fn coordinate_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
            Curve::P521 => 66,
        }
    }
}

/// A public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Public {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed point (`04 || x || y`).
    Ec { curve: Curve, point: Vec<u8> },
}

impl Public {
    /// The PKIX SubjectPublicKeyInfo DER, as Go's `x509.MarshalPKIXPublicKey` writes it
    /// (Kubernetes' key ids are its SHA-256).
    pub fn spki_der(&self) -> Vec<u8> {
        let (algorithm, key) = match self {
            Public::Rsa { n, e } => {
                let mut alg = tlv(TAG_OID, OID_RSA);
                alg.extend(tlv(TAG_NULL, &[]));
                let mut rsa = integer(n);
                rsa.extend(integer(e));
                (alg, tlv(TAG_SEQUENCE, &rsa))
            }
            Public::Ec { curve, point } => {
                let mut alg = tlv(TAG_OID, OID_EC);
                alg.extend(tlv(TAG_OID, curve.oid()));
                (alg, point.clone())
            }
        };
        let mut bits = vec![0u8];
        bits.extend(key);
        let mut spki = tlv(TAG_SEQUENCE, &algorithm);
        spki.extend(tlv(TAG_BIT_STRING, &bits));
        tlv(TAG_SEQUENCE, &spki)
    }

    /// The key as a `PUBLIC KEY` PEM block.
    pub fn pem(&self) -> String {
        pem("PUBLIC KEY", &self.spki_der())
    }
}

/// A private key.
pub enum Private {
    /// The PKCS#1 RSAPrivateKey DER, and the public key.
    Rsa { pkcs1: Vec<u8>, public: Public },
    /// The private scalar and the public key.
    Ec { scalar: Vec<u8>, public: Public },
}

impl Private {
    pub fn public(&self) -> &Public {
        match self {
            Private::Rsa { public, .. } | Private::Ec { public, .. } => public,
        }
    }
}

/// The first private key of a PEM file.
pub fn private_key_from_pem(pem: &[u8]) -> anyhow::Result<Private> {
    for (label, der) in pem_blocks(pem)? {
        let key = match label.as_str() {
            "RSA PRIVATE KEY" => rsa_private_key(&der),
            "EC PRIVATE KEY" => ec_private_key(&der, None),
            "PRIVATE KEY" => pkcs8(&der),
            _ => continue,
        };
        return key.with_context(|| format!("{label} block"));
    }
    bail!("no RSA PRIVATE KEY, EC PRIVATE KEY or PRIVATE KEY block")
}

/// Every public key of a PEM file: public keys, certificates' keys, private keys' public
/// halves, in the file's order.
pub fn public_keys_from_pem(pem: &[u8]) -> anyhow::Result<Vec<Public>> {
    let mut keys = Vec::new();
    for (label, der) in pem_blocks(pem)? {
        let key = match label.as_str() {
            "PUBLIC KEY" => spki(&der),
            "RSA PUBLIC KEY" => rsa_public_key(&der),
            "CERTIFICATE" => certificate_key(&der),
            "RSA PRIVATE KEY" => rsa_private_key(&der).map(|k| k.public().clone()),
            "EC PRIVATE KEY" => ec_private_key(&der, None).map(|k| k.public().clone()),
            "PRIVATE KEY" => pkcs8(&der).map(|k| k.public().clone()),
            _ => continue,
        };
        keys.push(key.with_context(|| format!("{label} block {}", keys.len() + 1))?);
    }
    if keys.is_empty() {
        bail!("no RSA or ECDSA key (PUBLIC KEY, RSA PUBLIC KEY, CERTIFICATE or a private key)");
    }
    Ok(keys)
}

/// The PEM blocks of `data` (label, DER), in order.
fn pem_blocks(data: &[u8]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let text = std::str::from_utf8(data).context("not PEM text")?;
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in text.lines().map(str::trim) {
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            current = Some((label.to_string(), String::new()));
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            let (begun, body) = current
                .take()
                .with_context(|| format!("END {label} without BEGIN"))?;
            if begun != label {
                bail!("BEGIN {begun} ended by END {label}");
            }
            if label.starts_with("ENCRYPTED") {
                bail!("{label}: encrypted keys are not supported");
            }
            let der = base64::engine::general_purpose::STANDARD
                .decode(&body)
                .with_context(|| format!("{label} block: invalid base64"))?;
            blocks.push((label.to_string(), der));
        } else if let Some((label, body)) = current.as_mut() {
            // RFC 1421 headers: OpenSSL's encrypted traditional keys ("Proc-Type: 4,ENCRYPTED").
            if line.contains(':') {
                bail!("{label} block has headers: encrypted keys are not supported");
            }
            body.push_str(line);
        }
    }
    if let Some((label, _)) = current {
        bail!("BEGIN {label} without END");
    }
    Ok(blocks)
}

/// Reads DER elements one after another.
struct Der<'a>(&'a [u8]);

impl<'a> Der<'a> {
    /// The next element's tag and contents, if there is one.
    fn next(&mut self) -> anyhow::Result<Option<(u8, &'a [u8])>> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let (header, len) = element_len(self.0)?;
        let (element, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(Some((element[0], &element[header..])))
    }

    /// The contents of the next element, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> anyhow::Result<&'a [u8]> {
        match self.next()? {
            Some((t, content)) if t == tag => Ok(content),
            _ => bail!("malformed key: expected {what}"),
        }
    }

    /// The contents of the next element if it has `tag`.
    fn optional(&mut self, tag: u8) -> anyhow::Result<Option<&'a [u8]>> {
        if self.0.first() == Some(&tag) {
            return Ok(self.next()?.map(|(_, content)| content));
        }
        Ok(None)
    }
}

/// The SEQUENCE at the start of `der`, as a reader of its elements.
fn sequence(der: &[u8]) -> anyhow::Result<Der<'_>> {
    Ok(Der(Der(der).expect(TAG_SEQUENCE, "a SEQUENCE")?))
}

/// A DER INTEGER's value without leading zeros.
fn unsigned(value: &[u8]) -> Vec<u8> {
    let zeros = value.iter().take_while(|b| **b == 0).count();
    value[zeros.min(value.len().saturating_sub(1))..].to_vec()
}

/// A BIT STRING's bytes (no unused bits).
fn bits(value: &[u8]) -> anyhow::Result<&[u8]> {
    match value.split_first() {
        Some((0, bytes)) => Ok(bytes),
        _ => bail!("malformed key: BIT STRING with unused bits"),
    }
}

/// PKCS#1 RSAPrivateKey: version, n, e, d, p, q, dp, dq, qinv.
fn rsa_private_key(der: &[u8]) -> anyhow::Result<Private> {
    let mut seq = sequence(der)?;
    seq.expect(TAG_INTEGER, "the RSA key version")?;
    let n = unsigned(seq.expect(TAG_INTEGER, "the RSA modulus")?);
    let e = unsigned(seq.expect(TAG_INTEGER, "the RSA exponent")?);
    Ok(Private::Rsa {
        pkcs1: der.to_vec(),
        public: Public::Rsa { n, e },
    })
}

/// PKCS#1 RSAPublicKey: n, e.
fn rsa_public_key(der: &[u8]) -> anyhow::Result<Public> {
    let mut seq = sequence(der)?;
    let n = unsigned(seq.expect(TAG_INTEGER, "the RSA modulus")?);
    let e = unsigned(seq.expect(TAG_INTEGER, "the RSA exponent")?);
    Ok(Public::Rsa { n, e })
}

/// SEC1 ECPrivateKey: version 1, the scalar, [0] the curve, [1] the public point. In
/// PKCS#8 the curve may come from the algorithm's parameters instead.
fn ec_private_key(der: &[u8], curve: Option<Curve>) -> anyhow::Result<Private> {
    let mut seq = sequence(der)?;
    seq.expect(TAG_INTEGER, "the EC key version")?;
    let scalar = seq.expect(TAG_OCTET_STRING, "the EC private key")?.to_vec();
    let named = match seq.optional(TAG_EXPLICIT_0)? {
        Some(params) => Some(Curve::from_oid(Der(params).expect(TAG_OID, "a curve")?)?),
        None => None,
    };
    let curve = match (named, curve) {
        (Some(a), Some(b)) if a != b => bail!("the EC key names two curves"),
        (Some(c), _) | (None, Some(c)) => c,
        (None, None) => bail!("the EC key names no curve"),
    };
    let point = match seq.optional(TAG_EXPLICIT_1)? {
        Some(public) => bits(Der(public).expect(TAG_BIT_STRING, "the EC public key")?)?,
        None => bail!("the EC private key does not carry its public key"),
    };
    Ok(Private::Ec {
        scalar,
        public: ec_point(curve, point)?,
    })
}

fn ec_point(curve: Curve, point: &[u8]) -> anyhow::Result<Public> {
    if point.len() != 1 + 2 * curve.coordinate_len() || point[0] != 4 {
        bail!("{}: only uncompressed points are supported", curve.name());
    }
    Ok(Public::Ec {
        curve,
        point: point.to_vec(),
    })
}

/// The AlgorithmIdentifier of a PKCS#8 or PKIX structure: RSA, or EC with its curve.
fn algorithm(der: &[u8]) -> anyhow::Result<Option<Curve>> {
    let mut alg = Der(der);
    match alg.expect(TAG_OID, "an algorithm")? {
        OID_RSA => Ok(None),
        OID_EC => Ok(Some(Curve::from_oid(
            alg.expect(TAG_OID, "a named curve")?,
        )?)),
        _ => bail!("neither an RSA nor an ECDSA key"),
    }
}

/// PKCS#8 PrivateKeyInfo: version, algorithm, the PKCS#1 or SEC1 key.
fn pkcs8(der: &[u8]) -> anyhow::Result<Private> {
    let mut seq = sequence(der)?;
    seq.expect(TAG_INTEGER, "the PKCS#8 version")?;
    let curve = algorithm(seq.expect(TAG_SEQUENCE, "the key algorithm")?)?;
    let key = seq.expect(TAG_OCTET_STRING, "the private key")?;
    match curve {
        None => rsa_private_key(key),
        Some(curve) => ec_private_key(key, Some(curve)),
    }
}

/// PKIX SubjectPublicKeyInfo: algorithm, key.
fn spki(der: &[u8]) -> anyhow::Result<Public> {
    let mut seq = sequence(der)?;
    let curve = algorithm(seq.expect(TAG_SEQUENCE, "the key algorithm")?)?;
    let key = bits(seq.expect(TAG_BIT_STRING, "the public key")?)?;
    match curve {
        None => rsa_public_key(key),
        Some(curve) => ec_point(curve, key),
    }
}

/// The public key of an X.509 certificate.
fn certificate_key(der: &[u8]) -> anyhow::Result<Public> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| anyhow::anyhow!("certificate does not parse: {e}"))?;
    spki(cert.public_key().raw)
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// A positive DER INTEGER from big-endian bytes without leading zeros.
fn integer(value: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(value.len() + 1);
    if value.first().is_none_or(|b| b & 0x80 != 0) {
        content.push(0);
    }
    content.extend_from_slice(value);
    tlv(TAG_INTEGER, &content)
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_are_minimal_and_positive() {
        assert_eq!(integer(&[0x01, 0x00, 0x01]), [0x02, 0x03, 0x01, 0x00, 0x01]);
        assert_eq!(integer(&[0x80]), [0x02, 0x02, 0x00, 0x80]);
        assert_eq!(unsigned(&[0x00, 0x80]), [0x80]);
        assert_eq!(unsigned(&[0x00]), [0x00]);
    }

    #[test]
    fn pem_errors() {
        assert!(pem_blocks(b"-----BEGIN X-----\nAAAA\n").is_err());
        assert!(pem_blocks(b"-----BEGIN X-----\nAAAA\n-----END Y-----\n").is_err());
        let encrypted = b"-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nAAAA\n-----END RSA PRIVATE KEY-----\n";
        assert!(format!("{:#}", pem_blocks(encrypted).unwrap_err()).contains("encrypted"));
        assert!(public_keys_from_pem(
            b"-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n"
        )
        .is_err());
        assert!(private_key_from_pem(b"").is_err());
    }

    #[test]
    fn generated_keys_round_trip_through_pkix() {
        let key = crate::jwt::SigningKey::generate().unwrap();
        let pem = key.public().pem();
        let keys = public_keys_from_pem(pem.as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].spki_der(), spki_der_of(&pem));
    }

    fn spki_der_of(pem: &str) -> Vec<u8> {
        pem_blocks(pem.as_bytes()).unwrap().remove(0).1
    }
}
