//! Connection settings, usually read from a kubeconfig.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use keelson_pki::{Kubeconfig, ResolvedContext};

use crate::error::{Error, Result};

/// Everything a [`Client`](crate::Client) needs to reach and authenticate to an apiserver.
#[derive(Clone)]
pub struct Config {
    /// The apiserver URL (`https://host:port`).
    pub server: url::Url,
    /// TLS server name to verify (and send as SNI for DNS names); defaults to the URL host.
    pub tls_server_name: Option<String>,
    /// Trusts the cluster CA, presents the client certificate if any, offers ALPN `h2`.
    pub tls: Arc<rustls::ClientConfig>,
    /// Bearer token sent as `authorization` metadata on every call.
    pub token: Option<String>,
    /// The cluster CA bundle (PEM) the kubeconfig trusts, if it names one; the
    /// controller-manager publishes it to every namespace.
    pub ca_pem: Option<Vec<u8>>,
    /// The namespace of [`Api::default_namespaced`](crate::Api::default_namespaced): the
    /// context's namespace, else `default`.
    pub default_namespace: String,
    /// Sent as `user-agent`; the apiserver derives default field managers from it.
    pub user_agent: String,
    pub connect_timeout: Duration,
    /// Bound on each call until the response starts (for watches: until the stream
    /// opens). `None`: no bound.
    pub request_timeout: Option<Duration>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("server", &self.server.as_str())
            .field("tls_server_name", &self.tls_server_name)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("default_namespace", &self.default_namespace)
            .field("user_agent", &self.user_agent)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish_non_exhaustive()
    }
}

impl Config {
    /// The current context of the kubeconfig at `path`.
    pub fn from_kubeconfig(path: impl AsRef<Path>) -> Result<Config> {
        let kc = Kubeconfig::load(path.as_ref()).map_err(Error::Config)?;
        let ctx = kc.current().map_err(Error::Config)?;
        Config::from_context(&ctx)
    }

    /// The kubeconfig named by `KUBECONFIG` (the first existing file of a `:`-separated
    /// list; files are not merged), else `~/.kube/config`.
    pub fn from_kubeconfig_default() -> Result<Config> {
        Config::from_kubeconfig(default_kubeconfig_path()?)
    }

    /// A resolved kubeconfig context.
    pub fn from_context(ctx: &ResolvedContext) -> Result<Config> {
        let server = url::Url::parse(&ctx.server)
            .with_context(|| format!("server URL {:?}", ctx.server))
            .map_err(Error::Config)?;
        if server.scheme() != "https" {
            return Err(Error::Config(anyhow::anyhow!(
                "server URL {:?}: only https is supported",
                ctx.server
            )));
        }
        if server.host().is_none() {
            return Err(Error::Config(anyhow::anyhow!(
                "server URL {:?} has no host",
                ctx.server
            )));
        }
        let tls = keelson_pki::client_config_for(ctx).map_err(Error::Config)?;
        Ok(Config {
            server,
            tls_server_name: ctx.tls_server_name.clone(),
            tls: Arc::new(tls),
            token: ctx.token.clone(),
            ca_pem: ctx.ca_pem.clone(),
            default_namespace: ctx.namespace.clone().unwrap_or_else(|| "default".into()),
            user_agent: format!("keelson-client/{}", env!("CARGO_PKG_VERSION")),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Some(Duration::from_secs(60)),
        })
    }

    /// The same server and CA without credentials (no client certificate, no token),
    /// as client-go's `AnonymousClientConfig`: for clients that authenticate with a
    /// [`BearerToken`](crate::client::BearerToken) only.
    pub fn anonymous(&self) -> Result<Config> {
        let ca_pem = self.ca_pem.clone().ok_or_else(|| {
            Error::Config(anyhow::anyhow!(
                "no CA bundle to build an anonymous client from"
            ))
        })?;
        let ctx = ResolvedContext {
            context_name: String::new(),
            cluster_name: String::new(),
            user_name: String::new(),
            server: self.server.to_string(),
            namespace: None,
            ca_pem: Some(ca_pem),
            tls_server_name: self.tls_server_name.clone(),
            insecure_skip_tls_verify: false,
            client_cert_pem: None,
            client_key_pem: None,
            token: None,
        };
        let tls = keelson_pki::client_config_for(&ctx).map_err(Error::Config)?;
        Ok(Config {
            tls: Arc::new(tls),
            token: None,
            ..self.clone()
        })
    }

    pub fn with_user_agent(mut self, ua: impl Into<String>) -> Self {
        self.user_agent = ua.into();
        self
    }

    pub fn with_default_namespace(mut self, ns: impl Into<String>) -> Self {
        self.default_namespace = ns.into();
        self
    }
}

/// `KUBECONFIG` (first existing entry), else `$HOME/.kube/config`.
pub fn default_kubeconfig_path() -> Result<PathBuf> {
    if let Some(list) = std::env::var_os("KUBECONFIG").filter(|v| !v.is_empty()) {
        let paths: Vec<PathBuf> = std::env::split_paths(&list)
            .filter(|p| !p.as_os_str().is_empty())
            .collect();
        if let Some(p) = paths.iter().find(|p| p.exists()).or(paths.first()) {
            return Ok(p.clone());
        }
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or_else(|| Error::Config(anyhow::anyhow!("neither KUBECONFIG nor HOME is set")))?;
    Ok(PathBuf::from(home).join(".kube").join("config"))
}
