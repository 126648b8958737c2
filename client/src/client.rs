//! The connection to the apiserver: one HTTP/2 channel over TLS, shared by every clone.

use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use keelson_proto::api_client::ApiClient;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tonic::metadata::AsciiMetadataValue;
use tonic::transport::{Channel, Endpoint};

use crate::config::Config;
use crate::error::{Error, Result};

/// A connection to a Keelson apiserver's gRPC API.
///
/// Cheap to clone: clones share one HTTP/2 connection (made lazily on the first call,
/// and remade after it breaks). Build [`Api`](crate::Api)s from it for typed calls.
#[derive(Clone)]
pub struct Client {
    grpc: ApiClient<Channel>,
    authorization: Option<BearerToken>,
    default_namespace: Arc<str>,
    ca_pem: Option<Arc<[u8]>>,
    config: Arc<Config>,
}

/// A bearer token that can be replaced while clients use it, e.g. a service-account
/// token re-requested before it expires: every request reads the current value.
/// Clones share the value.
#[derive(Clone)]
pub struct BearerToken(Arc<RwLock<AsciiMetadataValue>>);

impl BearerToken {
    pub fn new(token: &str) -> Result<BearerToken> {
        Ok(BearerToken(Arc::new(RwLock::new(header(token)?))))
    }

    /// Replace the token; requests made from now on carry the new one.
    pub fn set(&self, token: &str) -> Result<()> {
        let value = header(token)?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = value;
        Ok(())
    }

    fn value(&self) -> AsciiMetadataValue {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl std::fmt::Debug for BearerToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BearerToken(<redacted>)")
    }
}

fn header(token: &str) -> Result<AsciiMetadataValue> {
    let mut v = format!("Bearer {token}")
        .parse::<AsciiMetadataValue>()
        .map_err(|_| Error::Config(anyhow::anyhow!("bearer token is not ASCII")))?;
    v.set_sensitive(true);
    Ok(v)
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("default_namespace", &self.default_namespace)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client for `config`. Must be called within a Tokio runtime (the channel's
    /// background task is spawned on it); does not connect yet.
    pub fn new(config: Config) -> Result<Client> {
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(Error::Config(anyhow::anyhow!(
                "keelson_client::Client must be created within a Tokio runtime"
            )));
        }
        let host = config
            .server
            .host()
            .ok_or_else(|| Error::Config(anyhow::anyhow!("server URL has no host")))?;
        let port = config.server.port_or_known_default().unwrap_or(443);
        // The address to dial and the name to verify (SNI for DNS names).
        let (dial_host, url_host) = match host {
            url::Host::Domain(d) => (d.to_string(), d.to_string()),
            url::Host::Ipv4(a) => (a.to_string(), a.to_string()),
            url::Host::Ipv6(a) => (a.to_string(), a.to_string()),
        };
        let name = config.tls_server_name.clone().unwrap_or(url_host);
        let server_name = ServerName::try_from(name.clone())
            .map_err(|e| Error::Config(anyhow::anyhow!("TLS server name {name:?}: {e}")))?;
        let authority = match host {
            url::Host::Ipv6(a) => format!("[{a}]:{port}"),
            _ => format!("{dial_host}:{port}"),
        };
        let connector = TlsConnector {
            tls: tokio_rustls::TlsConnector::from(config.tls.clone()),
            host: dial_host,
            port,
            server_name,
        };
        // tonic's own TLS would want its own config; the connector does TLS itself, so the
        // endpoint is `http://` while requests carry the `https` origin.
        let origin: http::Uri = format!("https://{authority}")
            .parse()
            .map_err(|e| Error::Config(anyhow::anyhow!("server authority {authority:?}: {e}")))?;
        let mut endpoint = Endpoint::from_shared(format!("http://{authority}"))
            .map_err(|e| Error::Config(anyhow::anyhow!("endpoint {authority:?}: {e}")))?
            .origin(origin)
            .user_agent(config.user_agent.clone())
            .map_err(|e| Error::Config(anyhow::anyhow!("user agent: {e}")))?
            .connect_timeout(config.connect_timeout)
            .http2_keep_alive_interval(std::time::Duration::from_secs(30))
            .keep_alive_timeout(std::time::Duration::from_secs(20))
            .keep_alive_while_idle(true)
            .http2_adaptive_window(true);
        if let Some(t) = config.request_timeout {
            endpoint = endpoint.timeout(t);
        }
        let channel = endpoint.connect_with_connector_lazy(connector);
        let grpc = ApiClient::new(channel)
            .max_decoding_message_size(usize::MAX)
            .max_encoding_message_size(usize::MAX);
        let authorization = config.token.as_deref().map(BearerToken::new).transpose()?;
        Ok(Client {
            grpc,
            authorization,
            default_namespace: config.default_namespace.clone().into(),
            ca_pem: config.ca_pem.clone().map(Into::into),
            config: Arc::new(config),
        })
    }

    /// This client on the same connection, authenticating every request with `token`
    /// instead of its own token. The apiserver prefers a client certificate to a
    /// token, so use it on a client built from [`Config::anonymous`].
    pub fn with_bearer_token(&self, token: BearerToken) -> Client {
        Client {
            authorization: Some(token),
            ..self.clone()
        }
    }

    /// The settings this client was built from.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// A client for the current context of the kubeconfig at `path`.
    pub fn from_kubeconfig(path: impl AsRef<Path>) -> Result<Client> {
        Client::new(Config::from_kubeconfig(path)?)
    }

    /// A client for `KUBECONFIG`, else `~/.kube/config`.
    pub fn from_kubeconfig_default() -> Result<Client> {
        Client::new(Config::from_kubeconfig_default()?)
    }

    /// The cluster CA bundle (PEM) this client was configured to trust, if known.
    pub fn ca_pem(&self) -> Option<&[u8]> {
        self.ca_pem.as_deref()
    }

    /// The context's namespace, else `default`.
    pub fn default_namespace(&self) -> &str {
        &self.default_namespace
    }

    /// The generated gRPC stub, for calls this crate does not wrap. Requests must go
    /// through [`Client::request`] to carry the credentials.
    pub fn grpc(&self) -> ApiClient<Channel> {
        self.grpc.clone()
    }

    /// A gRPC request carrying this client's bearer token, if it has one.
    pub fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut req = tonic::Request::new(message);
        if let Some(a) = &self.authorization {
            req.metadata_mut().insert("authorization", a.value());
        }
        req
    }
}

/// Dials the apiserver and does the TLS handshake with the kubeconfig's rustls config.
#[derive(Clone)]
struct TlsConnector {
    tls: tokio_rustls::TlsConnector,
    host: String,
    port: u16,
    server_name: ServerName<'static>,
}

type TlsIo = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;

impl tower::Service<http::Uri> for TlsConnector {
    type Response = TlsIo;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TlsIo>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: http::Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let tcp = TcpStream::connect((this.host.as_str(), this.port)).await?;
            tcp.set_nodelay(true)?;
            let tls = this.tls.connect(this.server_name.clone(), tcp).await?;
            if tls.get_ref().1.alpn_protocol() != Some(b"h2".as_slice()) {
                return Err(std::io::Error::other(
                    "the server did not negotiate HTTP/2 (ALPN h2)",
                ));
            }
            Ok(TokioIo::new(tls))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
        Config {
            server: "https://127.0.0.1:6443".parse().unwrap(),
            tls_server_name: None,
            tls: Arc::new(tls),
            token: Some("root".into()),
            ca_pem: None,
            default_namespace: "default".into(),
            user_agent: "test".into(),
            connect_timeout: std::time::Duration::from_secs(1),
            request_timeout: None,
        }
    }

    fn sent(client: &Client) -> Option<String> {
        let req = client.request(());
        let v = req.metadata().get("authorization")?;
        Some(v.to_str().unwrap().to_string())
    }

    #[tokio::test]
    async fn a_replaced_token_is_sent_from_then_on() {
        let root = Client::new(config()).unwrap();
        assert_eq!(sent(&root).as_deref(), Some("Bearer root"));
        let token = BearerToken::new("first").unwrap();
        let account = root.with_bearer_token(token.clone());
        assert_eq!(sent(&account).as_deref(), Some("Bearer first"));
        token.set("second").unwrap();
        assert_eq!(sent(&account).as_deref(), Some("Bearer second"));
        // The client it came from keeps its own credentials.
        assert_eq!(sent(&root).as_deref(), Some("Bearer root"));
        assert!(token.set("line\nbreak").is_err());
    }
}
