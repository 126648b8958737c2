//! Certificate signing requests, as certificates.k8s.io uses them: reading a PKCS#10
//! request (its signature checked, as Kubernetes' validation does), making one with a
//! new key (the node agent's certificate rotation), and signing one with the cluster CA
//! (the controller-manager's `kubernetes.io/*` signers, kube-controller-manager's
//! `--cluster-signing-cert-file`/`--cluster-signing-key-file`).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context as _};
use rcgen::{
    CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    SanType, SerialNumber, SubjectPublicKeyInfo, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::certs_from_pem;

/// The public key algorithm of a request (the kubelet signers want key encipherment
/// only for RSA keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAlgorithm {
    Rsa,
    Ecdsa,
    Ed25519,
    Other,
}

/// What a request asks for: its subject and subject alternative names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CsrInfo {
    pub common_name: String,
    pub organizations: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addresses: Vec<IpAddr>,
    pub email_addresses: Vec<String>,
    pub uris: Vec<String>,
    pub key_algorithm: KeyAlgorithm,
}

const PEM_TYPE: &str = "CERTIFICATE REQUEST";

/// The DER of the first `CERTIFICATE REQUEST` PEM block, with Kubernetes' error when
/// there is none (`ParseCSR`).
fn csr_der(pem: &[u8]) -> Result<Vec<u8>, String> {
    let text =
        std::str::from_utf8(pem).map_err(|_| "PEM block type must be CERTIFICATE REQUEST")?;
    let begin = format!("-----BEGIN {PEM_TYPE}-----");
    let end = format!("-----END {PEM_TYPE}-----");
    let start = text
        .find(&begin)
        .ok_or("PEM block type must be CERTIFICATE REQUEST")?;
    let body = &text[start + begin.len()..];
    let stop = body
        .find(&end)
        .ok_or("PEM block type must be CERTIFICATE REQUEST")?;
    let b64: String = body[..stop]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| "PEM block type must be CERTIFICATE REQUEST".to_string())
}

/// Parse a PEM PKCS#10 request and check its signature with its own public key.
/// Errors are worded as Go's x509 package words them.
pub fn parse_csr(pem: &[u8]) -> Result<CsrInfo, String> {
    let der = csr_der(pem)?;
    let (_, csr) = X509CertificationRequest::from_der(&der)
        .map_err(|e| format!("x509: malformed certificate request: {e}"))?;
    csr.verify_signature()
        .map_err(|_| "x509: signature verification failure".to_string())?;
    let info = &csr.certification_request_info;
    let text = |v: &x509_parser::x509::AttributeTypeAndValue<'_>| {
        v.as_str().map(str::to_string).unwrap_or_default()
    };
    let mut out = CsrInfo {
        common_name: info
            .subject
            .iter_common_name()
            .next()
            .map(text)
            .unwrap_or_default(),
        organizations: info.subject.iter_organization().map(text).collect(),
        dns_names: Vec::new(),
        ip_addresses: Vec::new(),
        email_addresses: Vec::new(),
        uris: Vec::new(),
        key_algorithm: key_algorithm(&info.subject_pki.algorithm.algorithm.to_id_string()),
    };
    for ext in csr.requested_extensions().into_iter().flatten() {
        if let ParsedExtension::SubjectAlternativeName(san) = ext {
            for name in &san.general_names {
                match name {
                    GeneralName::DNSName(d) => out.dns_names.push(d.to_string()),
                    GeneralName::RFC822Name(e) => out.email_addresses.push(e.to_string()),
                    GeneralName::URI(u) => out.uris.push(u.to_string()),
                    GeneralName::IPAddress(b) => {
                        if let Ok(b) = <[u8; 4]>::try_from(*b) {
                            out.ip_addresses.push(IpAddr::from(b));
                        } else if let Ok(b) = <[u8; 16]>::try_from(*b) {
                            out.ip_addresses.push(IpAddr::from(b));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(out)
}

/// What is wrong with a `status.certificate`, if anything: it must be one or more PEM
/// `CERTIFICATE` blocks without headers, each a certificate (Kubernetes'
/// `validateCertificate`).
pub fn certificates_problem(pem: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(pem);
    let mut blocks = 0;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let Some(kind) = line
            .trim()
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        else {
            continue;
        };
        if kind != "CERTIFICATE" {
            return Some(format!(
                "only CERTIFICATE PEM blocks are allowed, found {kind:?}"
            ));
        }
        let mut b64 = String::new();
        for body in lines.by_ref() {
            if body.trim().starts_with("-----END ") {
                break;
            }
            if body.contains(':') {
                return Some("no PEM block headers are permitted".into());
            }
            b64.push_str(body.trim());
        }
        use base64::Engine as _;
        let Ok(der) = base64::engine::general_purpose::STANDARD.decode(&b64) else {
            return Some("x509: malformed certificate".into());
        };
        if let Err(e) = X509Certificate::from_der(&der) {
            return Some(format!("x509: malformed certificate: {e}"));
        }
        blocks += 1;
    }
    (blocks == 0).then(|| "must contain at least one CERTIFICATE PEM block".to_string())
}

/// The validity (not before, not after) of the first certificate in `pem`.
pub fn validity(pem: &[u8]) -> anyhow::Result<(std::time::SystemTime, std::time::SystemTime)> {
    let der = certs_from_pem(pem)?.remove(0);
    let (_, cert) =
        X509Certificate::from_der(&der).map_err(|e| anyhow::anyhow!("invalid certificate: {e}"))?;
    let at = |t: x509_parser::time::ASN1Time| {
        std::time::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0) as u64)
    };
    Ok((
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    ))
}

fn key_algorithm(oid: &str) -> KeyAlgorithm {
    match oid {
        "1.2.840.113549.1.1.1" => KeyAlgorithm::Rsa,
        "1.2.840.10045.2.1" => KeyAlgorithm::Ecdsa,
        "1.3.101.112" => KeyAlgorithm::Ed25519,
        _ => KeyAlgorithm::Other,
    }
}

/// A new ECDSA P-256 key (PKCS#8 PEM) and a request for `cn`, `orgs` and the given
/// subject alternative names, signed by it.
pub fn new_key_and_csr(
    cn: &str,
    orgs: &[&str],
    dns_names: &[String],
    ips: &[IpAddr],
) -> anyhow::Result<(String, String)> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| anyhow::anyhow!("generating ECDSA P-256 key: {e}"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    // rcgen keeps one value per attribute type; the kubelet's requests have one O.
    if let Some(o) = orgs.first() {
        params.distinguished_name.push(DnType::OrganizationName, *o);
    }
    params.distinguished_name.push(DnType::CommonName, cn);
    for d in dns_names {
        params.subject_alt_names.push(SanType::DnsName(
            d.clone()
                .try_into()
                .map_err(|e| anyhow::anyhow!("{d}: {e}"))?,
        ));
    }
    for ip in ips {
        params.subject_alt_names.push(SanType::IpAddress(*ip));
    }
    let csr = params
        .serialize_request(&key)
        .map_err(|e| anyhow::anyhow!("making a certificate request: {e}"))?;
    let pem = csr
        .pem()
        .map_err(|e| anyhow::anyhow!("encoding a certificate request: {e}"))?;
    Ok((key.serialize_pem(), pem))
}

/// Certificates issued this long before now, as Kubernetes' signer backdates them
/// (clocks differ between machines).
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// The cluster CA as a signer.
pub struct Signer {
    ca_der: CertificateDer<'static>,
    key: KeyPair,
    ca_not_after: OffsetDateTime,
}

impl Signer {
    /// `--cluster-signing-cert-file` and `--cluster-signing-key-file`.
    pub fn load(cert: &Path, key: &Path) -> anyhow::Result<Signer> {
        let cert_pem =
            std::fs::read(cert).with_context(|| format!("reading {}", cert.display()))?;
        let ca_der = certs_from_pem(&cert_pem)
            .with_context(|| format!("parsing {}", cert.display()))?
            .remove(0);
        let key_path = key;
        let key_pem = std::fs::read_to_string(key_path)
            .with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", key_path.display()))?;
        let (_, parsed) = X509Certificate::from_der(&ca_der)
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", cert.display()))?;
        if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
            bail!("{} does not match {}", key_path.display(), cert.display());
        }
        let ca_not_after = parsed.validity().not_after.to_datetime();
        Ok(Signer {
            ca_der,
            key,
            ca_not_after,
        })
    }

    /// The CA certificate (PEM), for clients to verify what this signer issues.
    pub fn ca_pem(&self) -> String {
        crate::pki::pem_cert(&self.ca_der)
    }

    /// Issue a certificate (PEM) for the request `csr_pem` with the request's subject
    /// and subject alternative names, the key usages `usages` (certificates.k8s.io
    /// names) and a lifetime of `ttl`, never past the CA's own expiry.
    pub fn sign(&self, csr_pem: &[u8], usages: &[String], ttl: Duration) -> anyhow::Result<String> {
        let der = csr_der(csr_pem).map_err(|e| anyhow::anyhow!(e))?;
        let (_, csr) = X509CertificationRequest::from_der(&der)
            .map_err(|e| anyhow::anyhow!("parsing the request: {e}"))?;
        csr.verify_signature()
            .map_err(|_| anyhow::anyhow!("the request's signature does not verify"))?;
        let info = &csr.certification_request_info;
        let public = SubjectPublicKeyInfo::from_der(info.subject_pki.raw)
            .map_err(|e| anyhow::anyhow!("the request's public key: {e}"))?;
        let mut params = CertificateParams::default();
        let (key_usages, extended) = key_usages(usages)?;
        params.key_usages = key_usages;
        params.extended_key_usages = extended;
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        for ext in csr.requested_extensions().into_iter().flatten() {
            if let ParsedExtension::SubjectAlternativeName(san) = ext {
                for name in &san.general_names {
                    let san = match name {
                        GeneralName::DNSName(d) => SanType::DnsName((*d).try_into()?),
                        GeneralName::RFC822Name(e) => SanType::Rfc822Name((*e).try_into()?),
                        GeneralName::URI(u) => SanType::URI((*u).try_into()?),
                        GeneralName::IPAddress(b) => match b.len() {
                            4 => SanType::IpAddress(IpAddr::from(<[u8; 4]>::try_from(*b)?)),
                            16 => SanType::IpAddress(IpAddr::from(<[u8; 16]>::try_from(*b)?)),
                            _ => continue,
                        },
                        _ => continue,
                    };
                    params.subject_alt_names.push(san);
                }
            }
        }
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = (now + ttl).min(self.ca_not_after);
        let mut serial: [u8; 16] = rand::random();
        serial[0] &= 0x7f;
        serial[0] |= 0x01;
        params.serial_number = Some(SerialNumber::from_slice(&serial));
        let issuer = Issuer::from_ca_cert_der(&self.ca_der, &self.key)
            .map_err(|e| anyhow::anyhow!("the signing CA: {e}"))?;
        let cert = params
            .signed_by(&public, &issuer)
            .map_err(|e| anyhow::anyhow!("signing: {e}"))?;
        // The request's subject as it was written (rcgen keeps one value per type).
        let der = crate::der::with_subject(cert.der(), info.subject.as_raw(), &self.key)?;
        Ok(crate::pki::pem_cert(&der))
    }
}

/// certificates.k8s.io key usages as X.509 key usages and extended key usages
/// (Kubernetes' `keyUsagesFromStrings`).
pub fn key_usages(
    usages: &[String],
) -> anyhow::Result<(Vec<KeyUsagePurpose>, Vec<ExtendedKeyUsagePurpose>)> {
    let mut keys = Vec::new();
    let mut extended = Vec::new();
    for u in usages {
        let k = match u.as_str() {
            "signing" | "digital signature" => Some(KeyUsagePurpose::DigitalSignature),
            "content commitment" => Some(KeyUsagePurpose::ContentCommitment),
            "key encipherment" => Some(KeyUsagePurpose::KeyEncipherment),
            "key agreement" => Some(KeyUsagePurpose::KeyAgreement),
            "data encipherment" => Some(KeyUsagePurpose::DataEncipherment),
            "cert sign" => Some(KeyUsagePurpose::KeyCertSign),
            "crl sign" => Some(KeyUsagePurpose::CrlSign),
            "encipher only" => Some(KeyUsagePurpose::EncipherOnly),
            "decipher only" => Some(KeyUsagePurpose::DecipherOnly),
            _ => None,
        };
        let e = match u.as_str() {
            "any" => Some(ExtendedKeyUsagePurpose::Any),
            "server auth" => Some(ExtendedKeyUsagePurpose::ServerAuth),
            "client auth" => Some(ExtendedKeyUsagePurpose::ClientAuth),
            "code signing" => Some(ExtendedKeyUsagePurpose::CodeSigning),
            "email protection" | "s/mime" => Some(ExtendedKeyUsagePurpose::EmailProtection),
            "timestamping" => Some(ExtendedKeyUsagePurpose::TimeStamping),
            "ocsp signing" => Some(ExtendedKeyUsagePurpose::OcspSigning),
            "ipsec end system" => Some(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 5,
            ])),
            "ipsec tunnel" => Some(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 6,
            ])),
            "ipsec user" => Some(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 5, 5, 7, 3, 7,
            ])),
            "microsoft sgc" => Some(ExtendedKeyUsagePurpose::Other(vec![
                1, 3, 6, 1, 4, 1, 311, 10, 3, 3,
            ])),
            "netscape sgc" => Some(ExtendedKeyUsagePurpose::Other(vec![
                2, 16, 840, 1, 113730, 4, 1,
            ])),
            _ => None,
        };
        match (k, e) {
            (Some(k), _) if !keys.contains(&k) => keys.push(k),
            (_, Some(e)) if !extended.contains(&e) => extended.push(e),
            (None, None) => bail!("unrecognized usage: {u}"),
            _ => {}
        }
    }
    Ok((keys, extended))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ca_files(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
        let paths = crate::ensure_pki(dir, &crate::PkiOptions::default()).unwrap();
        (paths.ca_cert, paths.ca_key)
    }

    #[test]
    fn a_request_is_read_back_and_a_tampered_one_refused() {
        let (_, csr) = new_key_and_csr(
            "system:node:n1",
            &["system:nodes"],
            &["n1.example".into()],
            &["10.0.0.7".parse().unwrap()],
        )
        .unwrap();
        let info = parse_csr(csr.as_bytes()).unwrap();
        assert_eq!(info.common_name, "system:node:n1");
        assert_eq!(info.organizations, ["system:nodes"]);
        assert_eq!(info.dns_names, ["n1.example"]);
        assert_eq!(info.ip_addresses, ["10.0.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(info.key_algorithm, KeyAlgorithm::Ecdsa);

        assert_eq!(
            parse_csr(b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err(),
            "PEM block type must be CERTIFICATE REQUEST"
        );
        // The last byte of the signature changed: it no longer verifies.
        let mut der = csr_der(csr.as_bytes()).unwrap();
        *der.last_mut().unwrap() ^= 0x01;
        use base64::Engine as _;
        let tampered = format!(
            "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
            base64::engine::general_purpose::STANDARD.encode(&der)
        );
        assert!(parse_csr(tampered.as_bytes()).is_err());
    }

    #[test]
    fn signed_certificates_carry_the_request_and_chain_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (ca_cert, ca_key) = ca_files(dir.path());
        let signer = Signer::load(&ca_cert, &ca_key).unwrap();
        let (_, csr) = new_key_and_csr("system:node:n1", &["system:nodes"], &[], &[]).unwrap();
        let usages = vec!["digital signature".to_string(), "client auth".to_string()];
        let pem = signer
            .sign(csr.as_bytes(), &usages, Duration::from_secs(3600))
            .unwrap();
        let der = certs_from_pem(pem.as_bytes()).unwrap().remove(0);
        let id = crate::identity_from_cert_der(&der).unwrap();
        assert_eq!(id.user, "system:node:n1");
        assert_eq!(id.groups, ["system:nodes"]);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        let lifetime =
            cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
        // An hour plus the five minutes of backdating.
        assert_eq!(lifetime, 3600 + 300);
        let eku = cert.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        // It chains to the CA: the apiserver's client verifier accepts it.
        let verifier =
            crate::ClientCaVerifier::from_pem(&std::fs::read(&ca_cert).unwrap()).unwrap();
        verifier
            .verify(&der, &[], rustls::pki_types::UnixTime::now())
            .unwrap();
        assert!(key_usages(&["bogus".into()]).is_err());
        assert_eq!(certificates_problem(pem.as_bytes()), None);
        assert_eq!(
            certificates_problem(csr.as_bytes()).unwrap(),
            "only CERTIFICATE PEM blocks are allowed, found \"CERTIFICATE REQUEST\""
        );
        assert_eq!(
            certificates_problem(b"junk").unwrap(),
            "must contain at least one CERTIFICATE PEM block"
        );
    }
}
