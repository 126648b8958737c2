//! What can go wrong on the way to a backend, worded for the person reading the
//! `metav1.Status` the caller makes of it.

use std::time::Duration;

/// A failure to reach the backend or to get a response head from it. Failures after the
/// head (a body cut short, a spliced connection reset) end the stream instead.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// The backend URL is not `http://host:port/...` or `https://host:port/...`.
    #[error("invalid backend URL {url:?}: {why}")]
    InvalidTarget { url: String, why: &'static str },
    /// An upgrade was asked for on a connection that cannot be upgraded (HTTP/2).
    #[error("connection upgrades need HTTP/1.1")]
    UpgradeUnsupported,
    /// TCP connect (or name resolution) failed.
    #[error("dialing {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// TCP connect plus TLS handshake took longer than the configured timeout.
    #[error("dialing {addr}: timed out after {after:?}")]
    Timeout { addr: String, after: Duration },
    /// The TLS handshake failed (certificate not trusted, client certificate refused).
    #[error("TLS handshake with {addr}: {source}")]
    Tls {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    /// The backend broke the HTTP exchange before a response head arrived.
    #[error("talking to {addr}: {source}")]
    Http {
        addr: String,
        #[source]
        source: hyper::Error,
    },
}

impl RelayError {
    /// The HTTP status a proxy answers with: 400 for a request that cannot be relayed,
    /// 503 when the backend cannot be reached, 502 when it answered badly.
    pub fn status_code(&self) -> u16 {
        match self {
            RelayError::InvalidTarget { .. } | RelayError::UpgradeUnsupported => 400,
            RelayError::Connect { .. } | RelayError::Timeout { .. } => 503,
            RelayError::Tls { .. } | RelayError::Http { .. } => 502,
        }
    }
}
