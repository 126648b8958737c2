//! Relaying one HTTP request to a backend URL: what the apiserver does for `pods/log`,
//! `pods/exec`, `pods/proxy` and friends (to a node agent or a pod), and what the node
//! agent does for exec, attach and port-forward (to containerd's CRI streaming server).
//!
//! [`Relay::forward`] takes the incoming request as hyper or axum hands it over (any body
//! type; the `OnUpgrade` extension hyper puts on requests of a connection served with
//! upgrades) and a backend [`http::Uri`] (`http://` or `https://`, path and query
//! included), and returns the response to send back:
//!
//! - a plain request goes out with its method, headers (without hop-by-hop headers;
//!   `Host` set to the backend) and streamed body; the backend's status, headers and
//!   *streamed* body come back (so `kubectl logs -f` follows);
//! - an upgrade request (`Connection: Upgrade` plus `Upgrade: SPDY/3.1`, `websocket`, ...)
//!   goes out with its upgrade headers intact. When the backend answers 101, the client is
//!   answered 101 with the backend's headers and both connections are spliced byte for
//!   byte until either side closes. Any other answer is relayed as is (kubectl falls back
//!   from WebSocket to SPDY on a 400 or 403).
//!
//! The relay knows nothing about Kubernetes: building the backend URL, authorising the
//! request and turning a [`RelayError`] into a `metav1.Status` are the caller's work.

mod dial;
mod error;
mod forward;
mod headers;
pub mod tls;

pub use error::RelayError;
pub use forward::{is_upgrade_request, Relay, RelayBody};
