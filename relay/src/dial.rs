//! Opening the connection to a backend: TCP, then TLS for `https://`, within a timeout.

use crate::RelayError;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// A byte stream to the backend, plain or TLS.
pub trait Stream: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Stream for T {}

/// Connect to `host:port`; with `tls`, complete a TLS handshake naming `server_name`
/// (SNI for a DNS name; an IP address is matched against the certificate's IP SANs when
/// verifying), usually `host` itself.
pub async fn dial(
    host: &str,
    port: u16,
    server_name: &str,
    tls: Option<&Arc<rustls::ClientConfig>>,
    timeout: Duration,
) -> Result<Box<dyn Stream>, RelayError> {
    let addr = format!("{host}:{port}");
    let bare_host = host.trim_start_matches('[').trim_end_matches(']');
    let work = async {
        let tcp = TcpStream::connect((bare_host, port))
            .await
            .map_err(|source| RelayError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let Some(config) = tls else {
            return Ok(Box::new(tcp) as Box<dyn Stream>);
        };
        let bare_name = server_name.trim_start_matches('[').trim_end_matches(']');
        let name =
            ServerName::try_from(bare_name.to_string()).map_err(|_| RelayError::InvalidTarget {
                url: addr.clone(),
                why: "the host is neither a DNS name nor an IP address",
            })?;
        let stream = tokio_rustls::TlsConnector::from(config.clone())
            .connect(name, tcp)
            .await
            .map_err(|source| RelayError::Tls {
                addr: addr.clone(),
                source,
            })?;
        Ok(Box::new(stream) as Box<dyn Stream>)
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(r) => r,
        Err(_) => Err(RelayError::Timeout {
            addr,
            after: timeout,
        }),
    }
}
