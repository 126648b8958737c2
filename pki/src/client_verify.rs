//! Client certificates verified as Go's `crypto/x509` verifies them for kube-apiserver
//! (`x509.VerifyOptions{Roots: client CA, Intermediates: the rest of the client's chain,
//! KeyUsages: [ClientAuth]}`), so that what a kubeadm, "the hard way" or `openssl x509 -req`
//! cluster issued keeps working here. rustls' webpki verifier refuses X.509 v1 certificates
//! (what `openssl x509 -req` writes without an extension file); this one accepts them and
//! keeps every check Go makes:
//!
//! * a chain from the leaf to a certificate of the client CA file, through the intermediates
//!   the client sent, each certificate signed by the next one's key (matched by subject, as
//!   Go matches them), with the signature algorithms rustls' provider verifies (RSA PKCS#1
//!   and PSS, ECDSA P-256/P-384, Ed25519; SHA-1 is refused, as Go refuses it);
//! * every certificate of the chain valid at the time of the handshake;
//! * a certificate that signs another: a CA by its basic constraints (an X.509 v1 root is
//!   taken as a CA, a v1 intermediate is not), `keyCertSign` when it has a key usage
//!   extension, its path length constraint;
//! * extended key usage: each certificate of the chain that has the extension names
//!   `clientAuth` (or `anyExtendedKeyUsage`); one without it is unconstrained;
//! * no critical extension Go does not know.
//!
//! Name constraints are not evaluated: a chain with a constrained CA is refused when the
//! leaf names anything (Go checks the leaf's subject alternative names against them).

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, SubjectPublicKeyInfoDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, Error, OtherError, PeerMisbehaved,
    SignatureScheme,
};
use x509_parser::certificate::X509Certificate;
use x509_parser::oid_registry::{self as oids, Oid};
use x509_parser::prelude::{FromDer, X509Version};
use x509_parser::time::ASN1Time;

use crate::der::element_len;
use crate::files::certs_from_pem;

/// Longest chain looked at (leaf, intermediates, root).
const MAX_CHAIN: usize = 10;
/// Signatures checked per verification at most, as Go's `maxChainSignatureChecks`: a client
/// sending many look-alike intermediates cannot make the server work without bound.
const MAX_SIGNATURE_CHECKS: usize = 100;

/// Verifies client certificates against a client CA bundle (`--client-ca-file`). Client
/// certificates are optional: a client without one completes the handshake.
#[derive(Debug)]
pub struct ClientCaVerifier {
    roots: Vec<CertificateDer<'static>>,
    hints: Vec<DistinguishedName>,
    algs: WebPkiSupportedAlgorithms,
}

/// Why a certificate was refused, where rustls has no error of its own for it.
#[derive(Debug)]
struct Refused(String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

fn refused(why: impl Into<String>) -> Error {
    Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(Refused(
        why.into(),
    )))))
}

fn cert_error(e: CertificateError) -> Error {
    Error::InvalidCertificate(e)
}

/// Which place a certificate takes in a chain.
#[derive(Clone, Copy, PartialEq)]
enum Role {
    Intermediate,
    Root,
}

impl ClientCaVerifier {
    /// The verifier for the CA certificates of a PEM bundle (one or more).
    pub fn from_pem(pem: &[u8]) -> anyhow::Result<ClientCaVerifier> {
        let roots = certs_from_pem(pem)?;
        let mut hints = Vec::with_capacity(roots.len());
        for root in &roots {
            let (_, cert) = X509Certificate::from_der(root)
                .map_err(|e| anyhow::anyhow!("CA certificate does not parse: {e}"))?;
            hints.push(DistinguishedName::from(cert.subject().as_raw().to_vec()));
        }
        Ok(ClientCaVerifier {
            roots,
            hints,
            algs: crate::provider().signature_verification_algorithms,
        })
    }

    /// Verifies a client's certificate chain (`leaf`, then what else it sent) at `now`.
    pub fn verify(
        &self,
        leaf: &[u8],
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<(), Error> {
        let now = ASN1Time::from_timestamp(now.as_secs().min(i64::MAX as u64) as i64)
            .map_err(|_| cert_error(CertificateError::BadEncoding))?;
        let leaf = parse(leaf)?;
        check_time(&leaf, now)?;
        check_critical_extensions(&leaf)?;
        let intermediates = intermediates
            .iter()
            .map(|c| parse(c))
            .collect::<Result<Vec<_>, _>>()?;
        let roots: Vec<X509Certificate<'_>> = self
            .roots
            .iter()
            .filter_map(|c| X509Certificate::from_der(c).ok().map(|(_, c)| c))
            .collect();
        let mut search = Search {
            algs: &self.algs,
            roots: &roots,
            intermediates: &intermediates,
            now,
            checks: 0,
            error: cert_error(CertificateError::UnknownIssuer),
        };
        let mut chain = vec![&leaf];
        if search.extend(&mut chain) {
            Ok(())
        } else {
            Err(search.error)
        }
    }

    /// Verifies a handshake signature with the leaf's public key, for any X.509 version.
    fn verify_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
        tls13: bool,
    ) -> Result<HandshakeSignatureValid, Error> {
        let leaf = parse(cert)?;
        let spki = leaf.public_key();
        if tls13 {
            return rustls::crypto::verify_tls13_signature_with_raw_key(
                message,
                &SubjectPublicKeyInfoDer::from(spki.raw),
                dss,
                &self.algs,
            );
        }
        // TLS 1.2: the scheme names the hash; the key says which algorithm it is.
        let key_alg = spki_algorithm(spki.raw)?;
        let candidates = self
            .algs
            .mapping
            .iter()
            .find(|(scheme, _)| *scheme == dss.scheme)
            .map(|(_, algs)| *algs)
            .ok_or(Error::PeerMisbehaved(
                PeerMisbehaved::SignedHandshakeWithUnadvertisedSigScheme,
            ))?;
        let alg = candidates
            .iter()
            .find(|a| a.public_key_alg_id().as_ref() == key_alg)
            .ok_or(cert_error(CertificateError::BadSignature))?;
        alg.verify_signature(&spki.subject_public_key.data, message, dss.signature())
            .map(|_| HandshakeSignatureValid::assertion())
            .map_err(|_| cert_error(CertificateError::BadSignature))
    }
}

impl ClientCertVerifier for ClientCaVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &self.hints
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        match self.verify(end_entity, intermediates, now) {
            Ok(()) => Ok(ClientCertVerified::assertion()),
            Err(e) => {
                // The client only sees an alert; the operator needs the reason.
                let subject = X509Certificate::from_der(end_entity)
                    .map(|(_, c)| c.subject().to_string())
                    .unwrap_or_default();
                tracing::info!(subject, "client certificate refused: {e}");
                Err(e)
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss, false)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.verify_signature(message, cert, dss, true)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algs.supported_schemes()
    }
}

/// A depth-first search for a chain that passes every check, as Go's `buildChains`.
struct Search<'a, 'c> {
    algs: &'a WebPkiSupportedAlgorithms,
    roots: &'a [X509Certificate<'c>],
    intermediates: &'a [X509Certificate<'c>],
    now: ASN1Time,
    checks: usize,
    /// The reason the last candidate failed, reported when no chain is found.
    error: Error,
}

impl<'a, 'c> Search<'a, 'c> {
    /// Whether `chain` (leaf first) can be completed up to a root.
    fn extend(&mut self, chain: &mut Vec<&'a X509Certificate<'c>>) -> bool {
        let child = *chain.last().expect("the chain holds the leaf");
        for root in self.roots {
            if self.issued(child, root, chain, Role::Root) {
                chain.push(root);
                let usable = self.check_chain(chain);
                chain.pop();
                if usable {
                    return true;
                }
            }
        }
        if chain.len() + 1 >= MAX_CHAIN {
            return false;
        }
        for candidate in self.intermediates {
            let seen = chain.iter().any(|c| c.as_raw() == candidate.as_raw());
            if !seen && self.issued(child, candidate, chain, Role::Intermediate) {
                chain.push(candidate);
                if self.extend(chain) {
                    return true;
                }
                chain.pop();
            }
        }
        false
    }

    /// Whether `parent` issued `child` and may stand at its place above `chain`.
    fn issued(
        &mut self,
        child: &X509Certificate<'_>,
        parent: &X509Certificate<'_>,
        chain: &[&X509Certificate<'_>],
        role: Role,
    ) -> bool {
        if child.issuer().as_raw() != parent.subject().as_raw() {
            return false;
        }
        if self.checks >= MAX_SIGNATURE_CHECKS {
            self.error = refused("too many signature checks");
            return false;
        }
        self.checks += 1;
        let result = check_signature(self.algs, child, parent)
            .and_then(|()| check_issuer(parent, role, chain.len() - 1, self.now));
        match result {
            Ok(()) => true,
            Err(e) => {
                self.error = e;
                false
            }
        }
    }

    /// The checks on a whole chain: extended key usage, name constraints.
    fn check_chain(&mut self, chain: &[&X509Certificate<'_>]) -> bool {
        let result = check_client_auth(chain).and_then(|()| check_name_constraints(chain));
        match result {
            Ok(()) => true,
            Err(e) => {
                self.error = e;
                false
            }
        }
    }
}

fn parse<'c>(der: &'c [u8]) -> Result<X509Certificate<'c>, Error> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        _ => Err(cert_error(CertificateError::BadEncoding)),
    }
}

fn check_time(cert: &X509Certificate<'_>, now: ASN1Time) -> Result<(), Error> {
    let validity = cert.validity();
    if now < validity.not_before {
        return Err(cert_error(CertificateError::NotValidYet));
    }
    if now > validity.not_after {
        return Err(cert_error(CertificateError::Expired));
    }
    Ok(())
}

/// The extensions Go's parser understands; any other one marked critical refuses the
/// certificate (`x509.UnhandledCriticalExtension`).
fn check_critical_extensions(cert: &X509Certificate<'_>) -> Result<(), Error> {
    let known: [&Oid<'static>; 13] = [
        &oids::OID_X509_EXT_SUBJECT_KEY_IDENTIFIER,
        &oids::OID_X509_EXT_KEY_USAGE,
        &oids::OID_X509_EXT_SUBJECT_ALT_NAME,
        &oids::OID_X509_EXT_BASIC_CONSTRAINTS,
        &oids::OID_X509_EXT_NAME_CONSTRAINTS,
        &oids::OID_X509_EXT_CRL_DISTRIBUTION_POINTS,
        &oids::OID_X509_EXT_CERTIFICATE_POLICIES,
        &oids::OID_X509_EXT_POLICY_MAPPINGS,
        &oids::OID_X509_EXT_AUTHORITY_KEY_IDENTIFIER,
        &oids::OID_X509_EXT_POLICY_CONSTRAINTS,
        &oids::OID_X509_EXT_EXTENDED_KEY_USAGE,
        &oids::OID_X509_EXT_INHIBIT_ANY_POLICY,
        &oids::OID_PKIX_AUTHORITY_INFO_ACCESS,
    ];
    match cert
        .extensions()
        .iter()
        .find(|e| e.critical && !known.contains(&&e.oid))
    {
        Some(_) => Err(cert_error(CertificateError::UnhandledCriticalExtension)),
        None => Ok(()),
    }
}

/// What Go asks of a certificate that signed another (`CheckSignatureFrom`, `isValid`):
/// `below` is the number of intermediates between it and the leaf.
fn check_issuer(
    cert: &X509Certificate<'_>,
    role: Role,
    below: usize,
    now: ASN1Time,
) -> Result<(), Error> {
    check_time(cert, now)?;
    check_critical_extensions(cert)?;
    let constraints = cert
        .basic_constraints()
        .map_err(|_| cert_error(CertificateError::BadEncoding))?
        .map(|e| e.value.clone());
    // RFC 5280 4.2.1.9: a v3 certificate without basic constraints, or one that is not a
    // CA, does not sign certificates; a v1 root predates extensions and is trusted as one.
    let is_ca = match &constraints {
        Some(bc) => bc.ca,
        None => cert.version() != X509Version::V3 && role == Role::Root,
    };
    if !is_ca {
        return Err(refused(format!(
            "{} is not a certificate authority",
            cert.subject()
        )));
    }
    if let Some(usage) = cert
        .key_usage()
        .map_err(|_| cert_error(CertificateError::BadEncoding))?
    {
        if !usage.value.key_cert_sign() {
            return Err(refused(format!(
                "{} may not sign certificates (key usage)",
                cert.subject()
            )));
        }
    }
    if let Some(max) = constraints.and_then(|bc| bc.path_len_constraint) {
        if below > max as usize {
            return Err(refused(format!(
                "{} allows {max} intermediates below it, the chain has {below}",
                cert.subject()
            )));
        }
    }
    Ok(())
}

/// Every certificate of the chain that restricts its extended key usage allows client
/// authentication (Go's `checkChainForKeyUsage` for `ExtKeyUsageClientAuth`).
fn check_client_auth(chain: &[&X509Certificate<'_>]) -> Result<(), Error> {
    for cert in chain {
        let eku = cert
            .extended_key_usage()
            .map_err(|_| cert_error(CertificateError::BadEncoding))?;
        if let Some(eku) = eku {
            if !(eku.value.any || eku.value.client_auth) {
                return Err(cert_error(CertificateError::InvalidPurpose));
            }
        }
    }
    Ok(())
}

/// Name constraints are not evaluated: refuse when they would have to be.
fn check_name_constraints(chain: &[&X509Certificate<'_>]) -> Result<(), Error> {
    let leaf_names = chain[0]
        .subject_alternative_name()
        .ok()
        .flatten()
        .is_some_and(|san| !san.value.general_names.is_empty());
    let constrained = chain[1..]
        .iter()
        .any(|c| !matches!(c.name_constraints(), Ok(None)));
    if leaf_names && constrained {
        return Err(refused(
            "a CA of the chain has name constraints, which are not supported",
        ));
    }
    Ok(())
}

/// `child`'s signature, with `parent`'s public key.
fn check_signature(
    algs: &WebPkiSupportedAlgorithms,
    child: &X509Certificate<'_>,
    parent: &X509Certificate<'_>,
) -> Result<(), Error> {
    let signature_alg = signature_algorithm(child.as_raw())?;
    let key_alg = spki_algorithm(parent.public_key().raw)?;
    let alg = algs
        .all
        .iter()
        .find(|a| {
            a.signature_alg_id().as_ref() == signature_alg
                && a.public_key_alg_id().as_ref() == key_alg
        })
        .ok_or_else(|| {
            cert_error(CertificateError::UnsupportedSignatureAlgorithmContext {
                signature_algorithm_id: signature_alg.to_vec(),
                supported_algorithms: algs.all.iter().map(|a| a.signature_alg_id()).collect(),
            })
        })?;
    alg.verify_signature(
        &parent.public_key().subject_public_key.data,
        child.tbs_certificate.as_ref(),
        &child.signature_value.data,
    )
    .map_err(|_| cert_error(CertificateError::BadSignature))
}

/// The contents of the `index`th element of the DER SEQUENCE `der`.
fn sequence_item(der: &[u8], index: usize) -> Option<&[u8]> {
    let (header, total) = element_len(der).ok()?;
    let mut rest = der.get(header..total)?;
    for _ in 0..index {
        let (_, len) = element_len(rest).ok()?;
        rest = rest.get(len..)?;
    }
    let (header, len) = element_len(rest).ok()?;
    rest.get(header..len)
}

/// The certificate's `signatureAlgorithm` (AlgorithmIdentifier without its SEQUENCE
/// header, as rustls' algorithms name themselves).
fn signature_algorithm(cert_der: &[u8]) -> Result<&[u8], Error> {
    sequence_item(cert_der, 1).ok_or(cert_error(CertificateError::BadEncoding))
}

/// The algorithm of a SubjectPublicKeyInfo, in the same form.
fn spki_algorithm(spki_der: &[u8]) -> Result<&[u8], Error> {
    sequence_item(spki_der, 0).ok_or(cert_error(CertificateError::BadEncoding))
}
