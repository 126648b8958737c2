//! Kubeconfig files: writing the standard format `kubectl` reads, and reading one back.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde::{Deserialize, Deserializer, Serialize};

use crate::files::write_atomic;
use crate::PkiPaths;

/// A kubeconfig file (`apiVersion: v1`, `kind: Config`). Fields this crate does not model
/// (exec plugins, auth providers, extensions, ...) are ignored when reading.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Kubeconfig {
    #[serde(rename = "apiVersion", default = "default_api_version")]
    pub api_version: String,
    #[serde(default = "default_kind")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_default")]
    pub clusters: Vec<NamedCluster>,
    #[serde(default, deserialize_with = "null_default")]
    pub users: Vec<NamedAuthInfo>,
    #[serde(default, deserialize_with = "null_default")]
    pub contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default, deserialize_with = "null_default")]
    pub current_context: String,
    #[serde(default, deserialize_with = "null_default")]
    pub preferences: serde_yaml::Mapping,
    /// Directory that relative file paths in this kubeconfig are resolved against (the
    /// directory of the file it was loaded from).
    #[serde(skip)]
    pub base_dir: Option<PathBuf>,
}

impl Default for Kubeconfig {
    fn default() -> Self {
        Self {
            api_version: default_api_version(),
            kind: default_kind(),
            clusters: Vec::new(),
            users: Vec::new(),
            contexts: Vec::new(),
            current_context: String::new(),
            preferences: serde_yaml::Mapping::new(),
            base_dir: None,
        }
    }
}

fn default_api_version() -> String {
    "v1".into()
}

fn default_kind() -> String {
    "Config".into()
}

fn null_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedCluster {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub cluster: Cluster,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Cluster {
    #[serde(default)]
    pub server: String,
    /// Base64 of the PEM CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority_data: Option<String>,
    /// Path of a PEM CA bundle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub certificate_authority: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_skip_tls_verify: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls_server_name: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedAuthInfo {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub user: AuthInfo,
}

#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct AuthInfo {
    /// Base64 of the PEM client certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate: Option<String>,
    /// Base64 of the PEM client key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key_data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(rename = "tokenFile", default, skip_serializing_if = "Option::is_none")]
    pub token_file: Option<String>,
}

impl std::fmt::Debug for AuthInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redact = |o: &Option<String>| o.as_ref().map(|_| "<redacted>");
        f.debug_struct("AuthInfo")
            .field(
                "client_certificate_data",
                &redact(&self.client_certificate_data),
            )
            .field("client_certificate", &self.client_certificate)
            .field("client_key_data", &redact(&self.client_key_data))
            .field("client_key", &self.client_key)
            .field("token", &redact(&self.token))
            .field("token_file", &self.token_file)
            .finish()
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NamedContext {
    pub name: String,
    #[serde(default, deserialize_with = "null_default")]
    pub context: Context,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    #[serde(default)]
    pub cluster: String,
    #[serde(default)]
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// A context with its cluster and user looked up, file references read and base64 decoded:
/// what a client needs to connect.
#[derive(Clone, PartialEq, Eq)]
pub struct ResolvedContext {
    pub context_name: String,
    pub cluster_name: String,
    pub user_name: String,
    pub server: String,
    pub namespace: Option<String>,
    /// PEM CA bundle; `None` if the kubeconfig names none.
    pub ca_pem: Option<Vec<u8>>,
    pub tls_server_name: Option<String>,
    pub insecure_skip_tls_verify: bool,
    pub client_cert_pem: Option<Vec<u8>>,
    pub client_key_pem: Option<Vec<u8>>,
    pub token: Option<String>,
}

impl std::fmt::Debug for ResolvedContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResolvedContext")
            .field("context_name", &self.context_name)
            .field("cluster_name", &self.cluster_name)
            .field("user_name", &self.user_name)
            .field("server", &self.server)
            .field("namespace", &self.namespace)
            .field("ca_pem", &self.ca_pem.as_ref().map(|_| "<pem>"))
            .field("tls_server_name", &self.tls_server_name)
            .field("insecure_skip_tls_verify", &self.insecure_skip_tls_verify)
            .field(
                "client_cert_pem",
                &self.client_cert_pem.as_ref().map(|_| "<pem>"),
            )
            .field(
                "client_key_pem",
                &self.client_key_pem.as_ref().map(|_| "<redacted>"),
            )
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

impl Kubeconfig {
    /// Reads and parses a kubeconfig file; relative paths in it are resolved against its
    /// directory, as kubectl does.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        let mut kc =
            Self::from_yaml(&text).with_context(|| format!("kubeconfig {}", path.display()))?;
        kc.base_dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .map(Path::to_path_buf)
            .or_else(|| Some(PathBuf::from(".")));
        Ok(kc)
    }

    /// Parses kubeconfig YAML (or JSON).
    pub fn from_yaml(text: &str) -> anyhow::Result<Self> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let kc: Self = serde_yaml::from_str(text).context("parsing kubeconfig")?;
        if kc.kind != "Config" {
            bail!("kind is {:?}, expected \"Config\"", kc.kind);
        }
        Ok(kc)
    }

    pub fn to_yaml(&self) -> anyhow::Result<String> {
        serde_yaml::to_string(self).context("serializing kubeconfig")
    }

    /// Writes the kubeconfig to `path` (mode 0600: it may hold keys and tokens).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        if let Some(dir) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        write_atomic(path, self.to_yaml()?.as_bytes(), 0o600)
    }

    /// The current context, resolved.
    pub fn current(&self) -> anyhow::Result<ResolvedContext> {
        if self.current_context.is_empty() {
            bail!("kubeconfig has no current-context");
        }
        self.context(&self.current_context)
    }

    /// The named context, resolved.
    pub fn context(&self, name: &str) -> anyhow::Result<ResolvedContext> {
        let ctx = &self
            .contexts
            .iter()
            .find(|c| c.name == name)
            .with_context(|| format!("context {name:?} not found in kubeconfig"))?
            .context;
        let cluster = &self
            .clusters
            .iter()
            .find(|c| c.name == ctx.cluster)
            .with_context(|| {
                format!(
                    "cluster {:?} of context {name:?} not found in kubeconfig",
                    ctx.cluster
                )
            })?
            .cluster;
        if cluster.server.is_empty() {
            bail!("cluster {:?} has no server", ctx.cluster);
        }
        // A context may name no user (anonymous access).
        let user = if ctx.user.is_empty() {
            AuthInfo::default()
        } else {
            self.users
                .iter()
                .find(|u| u.name == ctx.user)
                .with_context(|| {
                    format!(
                        "user {:?} of context {name:?} not found in kubeconfig",
                        ctx.user
                    )
                })?
                .user
                .clone()
        };
        let ca_pem = self
            .data_or_file(
                cluster.certificate_authority_data.as_deref(),
                cluster.certificate_authority.as_deref(),
            )
            .with_context(|| format!("certificate authority of cluster {:?}", ctx.cluster))?;
        let client_cert_pem = self
            .data_or_file(
                user.client_certificate_data.as_deref(),
                user.client_certificate.as_deref(),
            )
            .with_context(|| format!("client certificate of user {:?}", ctx.user))?;
        let client_key_pem = self
            .data_or_file(user.client_key_data.as_deref(), user.client_key.as_deref())
            .with_context(|| format!("client key of user {:?}", ctx.user))?;
        if client_cert_pem.is_some() != client_key_pem.is_some() {
            bail!(
                "user {:?} has a client certificate without a key or a key without a certificate",
                ctx.user
            );
        }
        let token = match (&user.token, &user.token_file) {
            (Some(t), _) if !t.is_empty() => Some(t.clone()),
            (_, Some(f)) if !f.is_empty() => {
                let p = self.resolve_path(f);
                let t = std::fs::read_to_string(&p)
                    .with_context(|| format!("reading token file {}", p.display()))?;
                Some(t.trim().to_string())
            }
            _ => None,
        };
        Ok(ResolvedContext {
            context_name: name.to_string(),
            cluster_name: ctx.cluster.clone(),
            user_name: ctx.user.clone(),
            server: cluster.server.clone(),
            namespace: ctx.namespace.clone().filter(|n| !n.is_empty()),
            ca_pem,
            tls_server_name: cluster.tls_server_name.clone().filter(|n| !n.is_empty()),
            insecure_skip_tls_verify: cluster.insecure_skip_tls_verify,
            client_cert_pem,
            client_key_pem,
            token,
        })
    }

    /// A path from this kubeconfig, resolved against [`Kubeconfig::base_dir`] if relative.
    pub fn resolve_path(&self, p: &str) -> PathBuf {
        let p = Path::new(p);
        match &self.base_dir {
            Some(base) if p.is_relative() => base.join(p),
            _ => p.to_path_buf(),
        }
    }

    /// Inline base64 data (preferred, as in kubectl) or the contents of a file.
    fn data_or_file(
        &self,
        data: Option<&str>,
        file: Option<&str>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        if let Some(d) = data.filter(|d| !d.is_empty()) {
            let cleaned: String = d.chars().filter(|c| !c.is_ascii_whitespace()).collect();
            return base64::engine::general_purpose::STANDARD
                .decode(cleaned)
                .map(Some)
                .context("invalid base64 data");
        }
        if let Some(f) = file.filter(|f| !f.is_empty()) {
            let p = self.resolve_path(f);
            return std::fs::read(&p)
                .map(Some)
                .with_context(|| format!("reading {}", p.display()));
        }
        Ok(None)
    }
}

/// Writes a kubeconfig (mode 0600) with one cluster, one user and one context, all data
/// embedded (`certificate-authority-data`, `client-certificate-data`, `client-key-data`), and
/// that context as current. The cluster is named `keelson`.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &[u8],
    client_cert_pem: &[u8],
    client_key_pem: &[u8],
    user_name: &str,
    context_name: &str,
) -> anyhow::Result<()> {
    embedded_kubeconfig(
        server_url,
        ca_pem,
        client_cert_pem,
        client_key_pem,
        user_name,
        context_name,
    )
    .save(path)
}

/// The kubeconfig files of the components, as kubeadm's `/etc/kubernetes/*.conf`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComponentKubeconfigs {
    /// `scheduler.conf`: user `system:kube-scheduler`.
    pub scheduler: PathBuf,
    /// `controller-manager.conf`: user `system:kube-controller-manager`.
    pub controller_manager: PathBuf,
    /// `proxy.conf`: user `system:kube-proxy`.
    pub proxy: PathBuf,
    /// `dns.conf`: user `system:keelson-dns`.
    pub dns: PathBuf,
    /// Base names (`"scheduler"`, ...) of the files this call wrote; empty when all were
    /// already up to date.
    pub written: Vec<String>,
}

/// Writes into `dir` one kubeconfig per component (`scheduler.conf`,
/// `controller-manager.conf`, `proxy.conf`, `dns.conf`) for `server`, with the CA and that
/// component's client certificate and key from `paths` ([`crate::ensure_pki`]) embedded.
/// The user is the certificate's CN; the context `<user>@keelson`, as kubeadm names them.
/// A file that already says exactly this is left alone (not rewritten); one that differs
/// (another server, a re-issued certificate) is replaced.
pub fn write_component_kubeconfigs(
    paths: &PkiPaths,
    dir: &Path,
    server: &str,
) -> anyhow::Result<ComponentKubeconfigs> {
    let ca = std::fs::read(&paths.ca_cert)
        .with_context(|| format!("reading {}", paths.ca_cert.display()))?;
    let mut written = Vec::new();
    let mut write = |name: &str, user: &str, cert: &Path, key: &Path| -> anyhow::Result<PathBuf> {
        let read = |p: &Path| std::fs::read(p).with_context(|| format!("reading {}", p.display()));
        let kc = embedded_kubeconfig(
            server,
            &ca,
            &read(cert)?,
            &read(key)?,
            user,
            &format!("{user}@keelson"),
        );
        let path = dir.join(format!("{name}.conf"));
        let yaml = kc.to_yaml()?;
        if std::fs::read_to_string(&path).ok().as_deref() != Some(yaml.as_str()) {
            kc.save(&path)?;
            tracing::info!(path = %path.display(), user, "wrote kubeconfig");
            written.push(name.to_string());
        }
        Ok(path)
    };
    let scheduler = write(
        "scheduler",
        "system:kube-scheduler",
        &paths.scheduler_cert,
        &paths.scheduler_key,
    )?;
    let controller_manager = write(
        "controller-manager",
        "system:kube-controller-manager",
        &paths.controller_manager_cert,
        &paths.controller_manager_key,
    )?;
    let proxy = write(
        "proxy",
        "system:kube-proxy",
        &paths.proxy_cert,
        &paths.proxy_key,
    )?;
    let dns = write("dns", "system:keelson-dns", &paths.dns_cert, &paths.dns_key)?;
    Ok(ComponentKubeconfigs {
        scheduler,
        controller_manager,
        proxy,
        dns,
        written,
    })
}

/// One cluster (`keelson`), one user and one context, all data embedded.
fn embedded_kubeconfig(
    server_url: &str,
    ca_pem: &[u8],
    client_cert_pem: &[u8],
    client_key_pem: &[u8],
    user_name: &str,
    context_name: &str,
) -> Kubeconfig {
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let cluster_name = "keelson".to_string();
    Kubeconfig {
        clusters: vec![NamedCluster {
            name: cluster_name.clone(),
            cluster: Cluster {
                server: server_url.to_string(),
                certificate_authority_data: Some(b64(ca_pem)),
                ..Default::default()
            },
        }],
        users: vec![NamedAuthInfo {
            name: user_name.to_string(),
            user: AuthInfo {
                client_certificate_data: Some(b64(client_cert_pem)),
                client_key_data: Some(b64(client_key_pem)),
                ..Default::default()
            },
        }],
        contexts: vec![NamedContext {
            name: context_name.to_string(),
            context: Context {
                cluster: cluster_name,
                user: user_name.to_string(),
                namespace: None,
            },
        }],
        current_context: context_name.to_string(),
        ..Default::default()
    }
}
