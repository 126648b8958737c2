//! The cluster CA and the certificates it signs.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber, PKCS_ECDSA_P256_SHA256,
};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use time::{Duration, OffsetDateTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::files::{certs_from_pem, write_atomic};
use crate::Identity;

/// Default Kubernetes service CIDR; its first address is the `kubernetes` service's ClusterIP.
pub const DEFAULT_SERVICE_CIDR: &str = "10.96.0.0/12";

const CA_CN: &str = "keelson-ca";
const CA_VALIDITY_DAYS: i64 = 3650;
const LEAF_VALIDITY_DAYS: i64 = 365;
/// Leaf certificates expiring within this many days are re-issued by `ensure_pki` /
/// `issue_client_cert`.
const RENEW_BEFORE_DAYS: i64 = 30;
/// Backdating of `notBefore`, for clock skew between machines.
const BACKDATE: Duration = Duration::hours(1);

const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;

/// What [`ensure_pki`] should put in the apiserver serving certificate beyond the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiOptions {
    /// Extra subject alternative names for the apiserver serving certificate: each entry that
    /// parses as an IP address is an IP SAN, anything else a DNS name.
    pub extra_sans: Vec<String>,
    /// Service CIDR(s), comma separated; the first address of each is added as an IP SAN.
    pub service_cidr: String,
    /// The machine's hostname for the serving certificate; `None` detects it.
    pub hostname: Option<String>,
}

impl Default for PkiOptions {
    fn default() -> Self {
        Self {
            extra_sans: Vec::new(),
            service_cidr: DEFAULT_SERVICE_CIDR.to_string(),
            hostname: None,
        }
    }
}

/// One subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SanEntry {
    Dns(String),
    Ip(IpAddr),
}

impl SanEntry {
    /// An IP SAN if `s` parses as an IP address (brackets around IPv6 allowed), else a DNS SAN
    /// (lowercased).
    pub fn parse(s: &str) -> anyhow::Result<Self> {
        let s = s.trim();
        let unbracketed = s
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .unwrap_or(s);
        if let Ok(ip) = unbracketed.parse::<IpAddr>() {
            return Ok(SanEntry::Ip(ip));
        }
        validate_dns_name(s)?;
        Ok(SanEntry::Dns(s.to_ascii_lowercase()))
    }

    fn to_rcgen(&self) -> anyhow::Result<SanType> {
        Ok(match self {
            SanEntry::Dns(d) => SanType::DnsName(
                d.clone()
                    .try_into()
                    .map_err(|e| anyhow::anyhow!("invalid DNS SAN {d:?}: {e}"))?,
            ),
            SanEntry::Ip(ip) => SanType::IpAddress(*ip),
        })
    }
}

impl fmt::Display for SanEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SanEntry::Dns(d) => f.write_str(d),
            SanEntry::Ip(ip) => write!(f, "{ip}"),
        }
    }
}

fn validate_dns_name(s: &str) -> anyhow::Result<()> {
    let ok = !s.is_empty()
        && s.len() <= 253
        && s.split('.').enumerate().all(|(i, label)| {
            (i == 0 && label == "*")
                || (!label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                    && !label.starts_with('-')
                    && !label.ends_with('-'))
        });
    if !ok {
        bail!("{s:?} is neither an IP address nor a valid DNS name");
    }
    Ok(())
}

/// A certificate file and its private key file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The files of a PKI directory, as returned by [`ensure_pki`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PkiPaths {
    pub dir: PathBuf,
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub apiserver_cert: PathBuf,
    pub apiserver_key: PathBuf,
    pub admin_cert: PathBuf,
    pub admin_key: PathBuf,
    /// The client certificate the apiserver presents to node agents (kubeadm's
    /// `apiserver-kubelet-client`: CN `kube-apiserver-kubelet-client`, no group: RBAC
    /// grants it `system:kubelet-api-admin`, not the whole cluster).
    pub apiserver_kubelet_client_cert: PathBuf,
    pub apiserver_kubelet_client_key: PathBuf,
    /// keelson-scheduler's client certificate (CN `system:kube-scheduler`).
    pub scheduler_cert: PathBuf,
    pub scheduler_key: PathBuf,
    /// keelson-controller-manager's client certificate (CN `system:kube-controller-manager`).
    pub controller_manager_cert: PathBuf,
    pub controller_manager_key: PathBuf,
    /// keelson-proxy's client certificate (CN `system:kube-proxy`).
    pub proxy_cert: PathBuf,
    pub proxy_key: PathBuf,
    /// keelson-dns's client certificate (CN `system:keelson-dns`).
    pub dns_cert: PathBuf,
    pub dns_key: PathBuf,
    /// The key that signs service-account tokens (`sa.key`; made ECDSA P-256 PKCS#8, an
    /// existing RSA or ECDSA key in any PEM form is kept) and its public half (`sa.pub`),
    /// as kubeadm names them.
    pub sa_key: PathBuf,
    pub sa_pub: PathBuf,
    /// Base names (`"ca"`, `"apiserver"`, `"admin"`) of the certificates this call created or
    /// re-issued; empty when everything was already in place. Callers that embed
    /// certificates elsewhere (kubeconfigs) can use it to know when to refresh them.
    pub issued: Vec<String>,
}

/// Creates the cluster PKI in `dir` (created if missing), only where files are missing:
///
/// * `ca.crt`/`ca.key`: self-signed CA, CN `keelson-ca`, valid 10 years;
/// * `apiserver.crt`/`apiserver.key`: serving certificate with the SANs `localhost`,
///   `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`,
///   `kubernetes.default.svc.cluster.local`, the hostname, `127.0.0.1`, `::1`, the first IP of
///   each service CIDR and `opts.extra_sans`;
/// * `admin.crt`/`admin.key`: client certificate CN `kubernetes-admin`, O `system:masters`;
/// * `apiserver-kubelet-client.crt`/`.key`: the apiserver's client certificate towards node
///   agents, CN `kube-apiserver-kubelet-client`, no group;
/// * one client certificate per component, as kubeadm's: `scheduler.crt`/`.key` (CN
///   `system:kube-scheduler`), `controller-manager.crt`/`.key` (CN
///   `system:kube-controller-manager`), `proxy.crt`/`.key` (CN `system:kube-proxy`),
///   `dns.crt`/`.key` (CN `system:keelson-dns`), none in a group;
/// * `sa.key`/`sa.pub`: the key pair that signs and verifies service-account tokens.
///
/// Keys are ECDSA P-256 (PKCS#8 PEM, mode 0600). Existing files are left alone, except that a
/// leaf certificate is re-issued (with a log line) when it does not cover the requested SANs
/// (the new one has the union of old and requested SANs), was not signed by the current CA,
/// does not match its key, has the wrong subject, or expires within 30 days. If exactly one of
/// `ca.crt`/`ca.key` exists, this fails rather than replacing the CA.
///
/// Not safe against concurrent callers on the same directory (each file is replaced
/// atomically, but two callers may both create a CA).
pub fn ensure_pki(dir: &Path, opts: &PkiOptions) -> anyhow::Result<PkiPaths> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut issued = Vec::new();

    let ca = ensure_ca(dir)?;
    if ca.created {
        issued.push("ca".to_string());
    }

    let requested = serving_sans(opts)?;
    let apiserver = paths_for(dir, "apiserver");
    if ensure_serving_cert(&ca, &apiserver, "kube-apiserver", &requested)? {
        issued.push("apiserver".to_string());
    }

    let admin = paths_for(dir, "admin");
    if ensure_client_cert(
        &ca,
        &admin,
        "admin",
        "kubernetes-admin",
        &["system:masters"],
    )? {
        issued.push("admin".to_string());
    }

    // One identity per component, none an administrator (kubeadm gives its kubelet client
    // `kubeadm:cluster-admins`; here RBAC binds it to system:kubelet-api-admin).
    let mut component = |name: &str, cn: &str| -> anyhow::Result<CertPaths> {
        let paths = paths_for(dir, name);
        if ensure_client_cert(&ca, &paths, name, cn, &[])? {
            issued.push(name.to_string());
        }
        Ok(paths)
    };
    let kubelet_client = component("apiserver-kubelet-client", "kube-apiserver-kubelet-client")?;
    let scheduler = component("scheduler", "system:kube-scheduler")?;
    let controller_manager = component("controller-manager", "system:kube-controller-manager")?;
    let proxy = component("proxy", "system:kube-proxy")?;
    let dns = component("dns", "system:keelson-dns")?;

    let (sa_key, sa_pub) = (dir.join("sa.key"), dir.join("sa.pub"));
    if ensure_key_pair(&sa_key, &sa_pub)? {
        issued.push("sa".to_string());
    }

    Ok(PkiPaths {
        dir: dir.to_path_buf(),
        sa_key,
        sa_pub,
        ca_cert: ca.paths.cert.clone(),
        ca_key: ca.paths.key.clone(),
        apiserver_cert: apiserver.cert,
        apiserver_key: apiserver.key,
        admin_cert: admin.cert,
        admin_key: admin.key,
        apiserver_kubelet_client_cert: kubelet_client.cert,
        apiserver_kubelet_client_key: kubelet_client.key,
        scheduler_cert: scheduler.cert,
        scheduler_key: scheduler.key,
        controller_manager_cert: controller_manager.cert,
        controller_manager_key: controller_manager.key,
        proxy_cert: proxy.cert,
        proxy_key: proxy.key,
        dns_cert: dns.cert,
        dns_key: dns.key,
        issued,
    })
}

/// Creates, when missing, a client certificate `<name>.crt`/`<name>.key` in `dir` with
/// subject CN `cn` and one O per entry of `orgs`, signed by the CA in `dir` (which must
/// exist: call [`ensure_pki`] first). For example the scheduler's:
/// `issue_client_cert(dir, "scheduler", "system:kube-scheduler", &[])`.
///
/// An existing certificate is kept if it has this subject, chains to the CA and does not
/// expire within 30 days; otherwise it is re-issued.
pub fn issue_client_cert(
    dir: &Path,
    name: &str,
    cn: &str,
    orgs: &[&str],
) -> anyhow::Result<CertPaths> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') || name == "ca" {
        bail!("invalid certificate name {name:?}");
    }
    if cn.is_empty() {
        bail!("client certificate {name:?}: empty common name");
    }
    let ca = load_ca(dir)?;
    let paths = paths_for(dir, name);
    ensure_client_cert(&ca, &paths, name, cn, orgs)?;
    Ok(paths)
}

/// The user identity of a client certificate (DER): CN as user, O values as groups. `None` if
/// the certificate does not parse or has no CN.
pub fn identity_from_cert_der(der: &[u8]) -> Option<Identity> {
    let (_, cert) = X509Certificate::from_der(der).ok()?;
    let subject = cert.subject();
    let user = subject
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())?
        .to_string();
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok().map(str::to_string))
        .collect();
    Some(Identity { user, groups })
}

/// The subject alternative names (DNS names and IP addresses) of a certificate (DER).
pub fn cert_sans(der: &[u8]) -> anyhow::Result<Vec<SanEntry>> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| anyhow::anyhow!("invalid certificate: {e}"))?;
    let mut out = Vec::new();
    let ext = cert
        .subject_alternative_name()
        .map_err(|e| anyhow::anyhow!("invalid subjectAltName extension: {e}"))?;
    if let Some(ext) = ext {
        for name in &ext.value.general_names {
            match name {
                GeneralName::DNSName(d) => out.push(SanEntry::Dns(d.to_ascii_lowercase())),
                GeneralName::IPAddress(bytes) => {
                    if let Ok(b) = <[u8; 4]>::try_from(*bytes) {
                        out.push(SanEntry::Ip(IpAddr::from(b)));
                    } else if let Ok(b) = <[u8; 16]>::try_from(*bytes) {
                        out.push(SanEntry::Ip(IpAddr::from(b)));
                    }
                }
                _ => {}
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------

pub(crate) struct Ca {
    paths: CertPaths,
    der: CertificateDer<'static>,
    key: KeyPair,
    created: bool,
}

impl Ca {
    fn issuer(&self) -> anyhow::Result<Issuer<'static, &KeyPair>> {
        Issuer::from_ca_cert_der(&self.der, &self.key)
            .map_err(|e| anyhow::anyhow!("using {} as issuer: {e}", self.paths.cert.display()))
    }
}

pub(crate) fn paths_for(dir: &Path, name: &str) -> CertPaths {
    CertPaths {
        cert: dir.join(format!("{name}.crt")),
        key: dir.join(format!("{name}.key")),
    }
}

/// Creates a key pair at `key` (private, PKCS#8 PEM) and `public` (SPKI PEM) unless the
/// private key exists; a missing public half is written again from it. Returns whether
/// a new key was made.
fn ensure_key_pair(key: &Path, public: &Path) -> anyhow::Result<bool> {
    if key.exists() {
        if !public.exists() {
            // Any key kube-apiserver reads (kubeadm's is RSA PKCS#1).
            let pem = std::fs::read(key).with_context(|| format!("reading {}", key.display()))?;
            let private = crate::keys::private_key_from_pem(&pem)
                .with_context(|| format!("parsing {}", key.display()))?;
            write_atomic(public, private.public().pem().as_bytes(), CERT_MODE)?;
        }
        return Ok(false);
    }
    let pair = new_key()?;
    write_atomic(key, pair.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomic(public, pair.public_key_pem().as_bytes(), CERT_MODE)?;
    Ok(true)
}

fn ensure_ca(dir: &Path) -> anyhow::Result<Ca> {
    let paths = paths_for(dir, "ca");
    match (paths.cert.exists(), paths.key.exists()) {
        (true, true) => load_ca(dir),
        (false, false) => {
            let key = new_key()?;
            let mut params = CertificateParams::default();
            params.distinguished_name = dn(CA_CN, &[]);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ];
            set_validity(&mut params, CA_VALIDITY_DAYS);
            let cert = params
                .self_signed(&key)
                .map_err(|e| anyhow::anyhow!("creating CA certificate: {e}"))?;
            write_atomic(&paths.key, key.serialize_pem().as_bytes(), KEY_MODE)?;
            write_atomic(&paths.cert, cert.pem().as_bytes(), CERT_MODE)?;
            tracing::info!(dir = %dir.display(), "created cluster CA");
            Ok(Ca {
                paths,
                der: cert.der().clone(),
                key,
                created: true,
            })
        }
        (cert_exists, _) => {
            let (present, missing) = if cert_exists {
                (&paths.cert, &paths.key)
            } else {
                (&paths.key, &paths.cert)
            };
            bail!(
                "{} exists but {} is missing; refusing to replace the cluster CA \
                 (restore the missing file or remove both)",
                present.display(),
                missing.display()
            )
        }
    }
}

pub(crate) fn load_ca(dir: &Path) -> anyhow::Result<Ca> {
    let paths = paths_for(dir, "ca");
    let cert_pem = std::fs::read(&paths.cert)
        .with_context(|| format!("reading CA certificate {}", paths.cert.display()))?;
    let der = certs_from_pem(&cert_pem)
        .with_context(|| format!("parsing {}", paths.cert.display()))?
        .remove(0);
    let key_pem = std::fs::read_to_string(&paths.key)
        .with_context(|| format!("reading CA key {}", paths.key.display()))?;
    let key = KeyPair::from_pem(&key_pem)
        .map_err(|e| anyhow::anyhow!("parsing CA key {}: {e}", paths.key.display()))?;
    if !key_matches_cert(&key, &der) {
        bail!(
            "CA key {} does not match CA certificate {}",
            paths.key.display(),
            paths.cert.display()
        );
    }
    Ok(Ca {
        paths,
        der,
        key,
        created: false,
    })
}

fn new_key() -> anyhow::Result<KeyPair> {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)
        .map_err(|e| anyhow::anyhow!("generating ECDSA P-256 key: {e}"))
}

fn dn(cn: &str, orgs: &[&str]) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    for o in orgs {
        dn.push(DnType::OrganizationName, *o);
    }
    dn.push(DnType::CommonName, cn);
    dn
}

fn set_validity(params: &mut CertificateParams, days: i64) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(days);
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f; // positive
    serial[0] |= 0x01; // non-zero, fixed length
    params.serial_number = Some(SerialNumber::from_slice(&serial));
}

fn key_matches_cert(key: &KeyPair, cert_der: &[u8]) -> bool {
    match X509Certificate::from_der(cert_der) {
        Ok((_, cert)) => cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw(),
        Err(_) => false,
    }
}

/// The SANs of the serving certificate for `opts`, without duplicates, in a stable order.
fn serving_sans(opts: &PkiOptions) -> anyhow::Result<Vec<SanEntry>> {
    let mut sans: Vec<SanEntry> = [
        "localhost",
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ]
    .iter()
    .map(|d| SanEntry::Dns(d.to_string()))
    .collect();
    let hostname = match &opts.hostname {
        Some(h) => Some(h.clone()),
        None => detect_hostname(),
    };
    if let Some(h) = hostname {
        match SanEntry::parse(&h) {
            Ok(san) => sans.push(san),
            Err(e) if opts.hostname.is_some() => return Err(e.context("hostname")),
            Err(e) => tracing::warn!("not adding the hostname to the serving certificate: {e}"),
        }
    }
    sans.push(SanEntry::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    sans.push(SanEntry::Ip(IpAddr::V6(Ipv6Addr::LOCALHOST)));
    for cidr in opts
        .service_cidr
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        sans.push(SanEntry::Ip(first_ip_of_cidr(cidr)?));
    }
    for extra in &opts.extra_sans {
        if extra.trim().is_empty() {
            continue;
        }
        sans.push(SanEntry::parse(extra).context("extra SAN")?);
    }
    let mut seen = BTreeSet::new();
    sans.retain(|s| seen.insert(s.clone()));
    Ok(sans)
}

fn detect_hostname() -> Option<String> {
    let from_file = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    };
    from_file("/proc/sys/kernel/hostname")
        .or_else(|| from_file("/etc/hostname"))
        .or_else(|| {
            std::env::var("HOSTNAME")
                .ok()
                .filter(|s| !s.trim().is_empty())
        })
        .map(|s| s.trim().to_ascii_lowercase())
}

/// The first usable address of a CIDR: network address + 1 (`10.96.0.0/12` -> `10.96.0.1`).
fn first_ip_of_cidr(cidr: &str) -> anyhow::Result<IpAddr> {
    let (addr, prefix) = cidr
        .split_once('/')
        .with_context(|| format!("service CIDR {cidr:?}: expected ADDRESS/PREFIX"))?;
    let addr: IpAddr = addr
        .parse()
        .with_context(|| format!("service CIDR {cidr:?}: invalid address"))?;
    let prefix: u32 = prefix
        .parse()
        .with_context(|| format!("service CIDR {cidr:?}: invalid prefix length"))?;
    match addr {
        IpAddr::V4(v4) => {
            if prefix > 30 {
                bail!("service CIDR {cidr:?}: prefix length must be at most 30");
            }
            let mask = u32::MAX.checked_shl(32 - prefix).unwrap_or(0);
            Ok(IpAddr::V4(Ipv4Addr::from((u32::from(v4) & mask) + 1)))
        }
        IpAddr::V6(v6) => {
            if prefix > 126 {
                bail!("service CIDR {cidr:?}: prefix length must be at most 126");
            }
            let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
            Ok(IpAddr::V6(Ipv6Addr::from((u128::from(v6) & mask) + 1)))
        }
    }
}

/// Reads an existing leaf certificate and key; `Err` with the reason when it must be
/// (re-)issued.
fn read_leaf(paths: &CertPaths) -> Result<CertificateDer<'static>, String> {
    if !paths.cert.exists() || !paths.key.exists() {
        return Err("missing".into());
    }
    let pem = std::fs::read(&paths.cert).map_err(|e| format!("unreadable ({e})"))?;
    let der = certs_from_pem(&pem)
        .map_err(|e| format!("unparsable ({e:#})"))?
        .remove(0);
    let key_pem =
        std::fs::read_to_string(&paths.key).map_err(|e| format!("key unreadable ({e})"))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|e| format!("key unparsable ({e})"))?;
    if !key_matches_cert(&key, &der) {
        return Err("certificate does not match its key".into());
    }
    Ok(der)
}

/// The time at which a leaf must still be valid to be kept.
fn renewal_horizon() -> UnixTime {
    let secs = (OffsetDateTime::now_utc() + Duration::days(RENEW_BEFORE_DAYS)).unix_timestamp();
    UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs.max(0) as u64))
}

fn root_store(ca_der: &CertificateDer<'static>) -> anyhow::Result<rustls::RootCertStore> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(ca_der.clone())
        .map_err(|e| anyhow::anyhow!("CA certificate not usable as trust anchor: {e}"))?;
    Ok(roots)
}

/// Whether the serving cert at `paths` must be re-issued, and why. `Ok(None)` keeps it; when
/// it is only missing SANs, the existing SANs are returned to be kept in the new one.
fn check_serving_cert(
    ca: &Ca,
    paths: &CertPaths,
    requested: &[SanEntry],
) -> anyhow::Result<Result<(), (String, Vec<SanEntry>)>> {
    let der = match read_leaf(paths) {
        Ok(der) => der,
        Err(why) => return Ok(Err((why, Vec::new()))),
    };
    let existing = match cert_sans(&der) {
        Ok(s) => s,
        Err(e) => return Ok(Err((format!("{e:#}"), Vec::new()))),
    };
    let missing: Vec<String> = requested
        .iter()
        .filter(|s| !existing.contains(s))
        .map(|s| s.to_string())
        .collect();
    if !missing.is_empty() {
        return Ok(Err((
            format!("does not cover SANs {}", missing.join(", ")),
            existing,
        )));
    }
    // Chain, validity and key usage, via the same verifier a client would use.
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
        root_store(&ca.der)?.into(),
        crate::provider(),
    )
    .build()
    .context("building certificate verifier")?;
    let name = match requested.first() {
        Some(SanEntry::Ip(ip)) => ServerName::IpAddress((*ip).into()),
        Some(SanEntry::Dns(d)) if !d.starts_with('*') => match ServerName::try_from(d.clone()) {
            Ok(n) => n,
            Err(_) => return Ok(Err((format!("{d:?} is not a server name"), existing))),
        },
        _ => ServerName::try_from("localhost").expect("valid name"),
    };
    if let Err(e) = rustls::client::danger::ServerCertVerifier::verify_server_cert(
        verifier.as_ref(),
        &der,
        &[],
        &name,
        &[],
        renewal_horizon(),
    ) {
        return Ok(Err((
            format!("does not verify against the CA within {RENEW_BEFORE_DAYS} days ({e})"),
            existing,
        )));
    }
    Ok(Ok(()))
}

/// Creates or re-issues the serving certificate at `paths` (subject CN `cn`) so that it
/// covers `requested` (the first of which it must verify for). Returns whether a
/// certificate was issued.
pub(crate) fn ensure_serving_cert(
    ca: &Ca,
    paths: &CertPaths,
    cn: &str,
    requested: &[SanEntry],
) -> anyhow::Result<bool> {
    let mut sans = requested.to_vec();
    match check_serving_cert(ca, paths, requested)? {
        Ok(()) => return Ok(false),
        Err((why, existing)) => {
            if why == "missing" {
                tracing::info!(cert = %paths.cert.display(), "creating {cn} serving certificate");
            } else {
                tracing::warn!(cert = %paths.cert.display(), "re-issuing {cn} serving certificate: {why}");
            }
            for s in existing {
                if !sans.contains(&s) {
                    sans.push(s);
                }
            }
        }
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn, &[]);
    params.subject_alt_names = sans
        .iter()
        .map(SanEntry::to_rcgen)
        .collect::<anyhow::Result<_>>()?;
    // ECDSA keys: signatures only (no key encipherment).
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue_leaf(ca, paths, params, None)?;
    Ok(true)
}

fn check_client_cert(
    ca: &Ca,
    paths: &CertPaths,
    cn: &str,
    orgs: &[&str],
) -> anyhow::Result<Result<(), String>> {
    let der = match read_leaf(paths) {
        Ok(der) => der,
        Err(why) => return Ok(Err(why)),
    };
    let want = Identity {
        user: cn.to_string(),
        groups: orgs.iter().map(|o| o.to_string()).collect(),
    };
    match identity_from_cert_der(&der) {
        Some(id) if id == want => {}
        Some(id) => {
            return Ok(Err(format!(
                "subject is CN={} O={:?}, want CN={} O={:?}",
                id.user, id.groups, want.user, want.groups
            )))
        }
        None => return Ok(Err("no subject common name".into())),
    }
    // The verifier the apiserver uses.
    let verifier = crate::ClientCaVerifier::from_pem(pem_cert(&ca.der).as_bytes())
        .context("building certificate verifier")?;
    if let Err(e) = verifier.verify(&der, &[], renewal_horizon()) {
        return Ok(Err(format!(
            "does not verify against the CA within {RENEW_BEFORE_DAYS} days ({e})"
        )));
    }
    Ok(Ok(()))
}

/// Returns whether a certificate was issued.
pub(crate) fn ensure_client_cert(
    ca: &Ca,
    paths: &CertPaths,
    name: &str,
    cn: &str,
    orgs: &[&str],
) -> anyhow::Result<bool> {
    match check_client_cert(ca, paths, cn, orgs)? {
        Ok(()) => return Ok(false),
        Err(why) if why == "missing" => {
            tracing::info!(cert = %paths.cert.display(), cn, "creating {name} client certificate")
        }
        Err(why) => {
            tracing::warn!(cert = %paths.cert.display(), "re-issuing {name} client certificate: {why}")
        }
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = dn(cn, orgs);
    // ECDSA keys: signatures only (no key encipherment).
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let subject = crate::der::subject_der(cn, orgs);
    issue_leaf(ca, paths, params, Some(&subject))?;
    Ok(true)
}

/// Issues and writes a leaf certificate and a new key. `subject` (DER), if given, replaces
/// the subject rcgen wrote (rcgen cannot write several O attributes).
fn issue_leaf(
    ca: &Ca,
    paths: &CertPaths,
    mut params: CertificateParams,
    subject: Option<&[u8]>,
) -> anyhow::Result<()> {
    set_validity(&mut params, LEAF_VALIDITY_DAYS);
    params.use_authority_key_identifier_extension = true;
    let key = new_key()?;
    let issuer = ca.issuer()?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| anyhow::anyhow!("signing {}: {e}", paths.cert.display()))?;
    let der = match subject {
        Some(subject) => crate::der::with_subject(cert.der(), subject, &ca.key)
            .with_context(|| format!("issuing {}", paths.cert.display()))?,
        None => cert.der().to_vec(),
    };
    write_atomic(&paths.key, key.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomic(&paths.cert, pem_cert(&der).as_bytes(), CERT_MODE)?;
    Ok(())
}

pub(crate) fn pem_cert(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(chunk).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_ip() {
        assert_eq!(
            first_ip_of_cidr("10.96.0.0/12").unwrap().to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            first_ip_of_cidr("10.96.5.7/12").unwrap().to_string(),
            "10.96.0.1"
        );
        assert_eq!(
            first_ip_of_cidr("172.30.0.0/16").unwrap().to_string(),
            "172.30.0.1"
        );
        assert_eq!(
            first_ip_of_cidr("fd00:10:96::/108").unwrap().to_string(),
            "fd00:10:96::1"
        );
        assert_eq!(
            first_ip_of_cidr("0.0.0.0/0").unwrap().to_string(),
            "0.0.0.1"
        );
        assert!(first_ip_of_cidr("10.96.0.0").is_err());
        assert!(first_ip_of_cidr("10.96.0.0/33").is_err());
        assert!(first_ip_of_cidr("nope/12").is_err());
    }

    #[test]
    fn san_parse() {
        assert_eq!(
            SanEntry::parse("10.0.0.1").unwrap(),
            SanEntry::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            SanEntry::parse("[::1]").unwrap(),
            SanEntry::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            SanEntry::parse("API.Example.com").unwrap(),
            SanEntry::Dns("api.example.com".into())
        );
        assert_eq!(
            SanEntry::parse("*.example.com").unwrap(),
            SanEntry::Dns("*.example.com".into())
        );
        assert!(SanEntry::parse("bad name").is_err());
        assert!(SanEntry::parse("a..b").is_err());
        assert!(SanEntry::parse("").is_err());
    }

    #[test]
    fn default_sans() {
        let opts = PkiOptions {
            hostname: Some("node-1".into()),
            extra_sans: vec!["localhost".into(), "192.168.1.10".into()],
            ..Default::default()
        };
        let sans: Vec<String> = serving_sans(&opts)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert_eq!(
            sans,
            [
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
                "node-1",
                "127.0.0.1",
                "::1",
                "10.96.0.1",
                "192.168.1.10",
            ]
        );
    }
}
