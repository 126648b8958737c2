//! Just enough DER to give a certificate a subject with several O (organization) attributes,
//! which rcgen's `DistinguishedName` cannot express (one value per attribute type), but
//! Kubernetes needs: every O of a client certificate is a group.

use anyhow::{bail, Context as _};
use rcgen::SigningKey;
use x509_parser::prelude::{FromDer, X509Certificate};

const OID_COMMON_NAME: &[u8] = &[0x55, 0x04, 0x03];
const OID_ORGANIZATION: &[u8] = &[0x55, 0x04, 0x0a];

fn encode_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    encode_len(content.len(), &mut out);
    out.extend_from_slice(content);
    out
}

/// (header length, total length) of the DER element at the start of `bytes`.
pub(crate) fn element_len(bytes: &[u8]) -> anyhow::Result<(usize, usize)> {
    if bytes.len() < 2 {
        bail!("truncated DER");
    }
    let first = bytes[1] as usize;
    let (hdr, len) = if first < 0x80 {
        (2, first)
    } else {
        let n = first & 0x7f;
        if n == 0 || n > 4 || bytes.len() < 2 + n {
            bail!("unsupported DER length");
        }
        (
            2 + n,
            bytes[2..2 + n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize),
        )
    };
    if bytes.len() < hdr + len {
        bail!("truncated DER");
    }
    Ok((hdr, hdr + len))
}

/// DER of the X.501 name `O=orgs[0], O=orgs[1], ..., CN=cn` (each attribute its own RDN,
/// UTF8String values), as kubeadm/openssl write client certificate subjects.
pub(crate) fn subject_der(cn: &str, orgs: &[&str]) -> Vec<u8> {
    let rdn = |oid: &[u8], value: &str| {
        let mut atv = tlv(0x06, oid);
        atv.extend(tlv(0x0c, value.as_bytes()));
        tlv(0x31, &tlv(0x30, &atv))
    };
    let mut content = Vec::new();
    for o in orgs {
        content.extend(rdn(OID_ORGANIZATION, o));
    }
    content.extend(rdn(OID_COMMON_NAME, cn));
    tlv(0x30, &content)
}

/// Replaces the subject of `cert_der` (issued by the holder of `issuer_key`) with
/// `subject`, and signs it again with `issuer_key`.
pub(crate) fn with_subject(
    cert_der: &[u8],
    subject: &[u8],
    issuer_key: &impl SigningKey,
) -> anyhow::Result<Vec<u8>> {
    let (_, cert) = X509Certificate::from_der(cert_der)
        .map_err(|e| anyhow::anyhow!("parsing issued certificate: {e}"))?;
    let tbs: &[u8] = cert.tbs_certificate.as_ref();
    let old_subject = cert.tbs_certificate.subject.as_raw();
    let offset = (old_subject.as_ptr() as usize)
        .checked_sub(tbs.as_ptr() as usize)
        .filter(|o| o + old_subject.len() <= tbs.len())
        .context("subject not inside the TBS certificate")?;
    let (tbs_hdr, tbs_len) = element_len(tbs)?;
    let mut tbs_content = Vec::with_capacity(tbs_len + subject.len());
    tbs_content.extend_from_slice(&tbs[tbs_hdr..offset]);
    tbs_content.extend_from_slice(subject);
    tbs_content.extend_from_slice(&tbs[offset + old_subject.len()..tbs_len]);
    let new_tbs = tlv(0x30, &tbs_content);

    // Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }: keep
    // the signatureAlgorithm element as it is.
    let (cert_hdr, _) = element_len(cert_der)?;
    let tbs_start = cert_hdr;
    let alg_start = tbs_start + element_len(&cert_der[tbs_start..])?.1;
    let alg_end = alg_start + element_len(&cert_der[alg_start..])?.1;
    let sig_alg = &cert_der[alg_start..alg_end];

    let signature = issuer_key
        .sign(&new_tbs)
        .map_err(|e| anyhow::anyhow!("signing certificate: {e}"))?;
    let mut bit_string = vec![0u8]; // no unused bits
    bit_string.extend(signature);

    let mut content = new_tbs;
    content.extend_from_slice(sig_alg);
    content.extend(tlv(0x03, &bit_string));
    Ok(tlv(0x30, &content))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths() {
        let mut v = Vec::new();
        encode_len(0x7f, &mut v);
        encode_len(0x80, &mut v);
        encode_len(0x1234, &mut v);
        assert_eq!(v, [0x7f, 0x81, 0x80, 0x82, 0x12, 0x34]);
        let long = tlv(0x04, &[0u8; 300]);
        assert_eq!(element_len(&long).unwrap(), (4, 304));
        assert!(element_len(&long[..100]).is_err());
    }
}
