//! The client's error type.
//!
//! The apiserver answers every failure with a gRPC status whose `details` bytes are the
//! `metav1.Status` JSON. [`Error::Api`] carries that Status decoded into an
//! [`ApiError`], so callers switch on the HTTP code and reason exactly as they would
//! against the REST API (404 NotFound, 409 AlreadyExists/Conflict, 410 Expired,
//! 422 Invalid with field causes, ...). A gRPC status without those details (the
//! connection failed, or the peer is not a Keelson apiserver) is [`Error::Grpc`].

use keelson_apimachinery::{ApiError, Cause};
use serde_json::Value;

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The apiserver refused the request with a `metav1.Status`.
    #[error("{0}")]
    Api(Box<ApiError>),
    /// A gRPC status without a `metav1.Status`: the connection failed or timed out, or
    /// the peer is not a Keelson apiserver.
    #[error("gRPC error {:?}: {}", .0.code(), .0.message())]
    Grpc(Box<tonic::Status>),
    /// The response could not be decoded into the requested type.
    #[error("decoding {what}: {source}")]
    Decode {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// The request could not be encoded.
    #[error("encoding request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The kubeconfig or TLS setup is unusable.
    #[error("client configuration: {0:#}")]
    Config(anyhow::Error),
}

/// Result with the client's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The API error, if the apiserver answered with a Status.
    pub fn api_error(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(&**e),
            _ => None,
        }
    }

    /// The HTTP code of the Status (404, 409, 410, 422, ...), if there was one.
    pub fn code(&self) -> Option<u16> {
        self.api_error().map(|e| e.code)
    }

    /// The Status reason (`NotFound`, `AlreadyExists`, `Conflict`, `Expired`, ...).
    pub fn reason(&self) -> Option<&str> {
        self.api_error().map(|e| e.reason.as_str())
    }

    /// 404.
    pub fn is_not_found(&self) -> bool {
        self.code() == Some(404)
    }

    /// 409 AlreadyExists (create of an existing name).
    pub fn is_already_exists(&self) -> bool {
        self.code() == Some(409) && self.reason() == Some("AlreadyExists")
    }

    /// 409 Conflict (stale resourceVersion, failed precondition).
    pub fn is_conflict(&self) -> bool {
        self.code() == Some(409) && self.reason() != Some("AlreadyExists")
    }

    /// 410 Gone: the resourceVersion or continue token was compacted away.
    pub fn is_gone(&self) -> bool {
        self.code() == Some(410)
    }

    /// 422 Invalid.
    pub fn is_invalid(&self) -> bool {
        self.code() == Some(422)
    }

    /// Worth retrying as is: the apiserver is unavailable, overloaded or timed out, or
    /// the connection failed.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Api(e) => matches!(e.code, 429 | 500 | 503 | 504),
            Error::Grpc(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::Cancelled
            ),
            _ => false,
        }
    }

    pub(crate) fn decode(what: impl Into<String>, source: serde_json::Error) -> Self {
        Error::Decode {
            what: what.into(),
            source,
        }
    }
}

impl From<ApiError> for Error {
    fn from(e: ApiError) -> Self {
        Error::Api(Box::new(e))
    }
}

impl From<tonic::Status> for Error {
    fn from(s: tonic::Status) -> Self {
        if !s.details().is_empty() {
            if let Some(e) = serde_json::from_slice::<Value>(s.details())
                .ok()
                .and_then(|v| api_error_from_status(&v))
            {
                return Error::Api(Box::new(e));
            }
        }
        Error::Grpc(Box::new(s))
    }
}

/// Decode a `metav1.Status` JSON object into an [`ApiError`]. `None` if `v` is not a
/// failure Status (no numeric `code`).
pub fn api_error_from_status(v: &Value) -> Option<ApiError> {
    let code = v.get("code").and_then(Value::as_u64)?;
    let code = u16::try_from(code).ok()?;
    let s = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let mut e = ApiError::new(code, &s(v.get("reason")), s(v.get("message")));
    if let Some(d) = v.get("details").filter(|d| d.is_object()) {
        e.group = s(d.get("group"));
        e.kind = s(d.get("kind"));
        e.name = s(d.get("name"));
        e.retry_after_seconds = d
            .get("retryAfterSeconds")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok());
        if let Some(causes) = d.get("causes").and_then(Value::as_array) {
            e.causes = causes
                .iter()
                .map(|c| Cause {
                    reason: s(c.get("reason")),
                    message: s(c.get("message")),
                    field: s(c.get("field")),
                })
                .collect();
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_details_round_trip() {
        let orig = ApiError::invalid(
            "apps",
            "Deployment",
            "web",
            vec![Cause::required("spec.selector")],
        );
        let body = serde_json::to_vec(&orig.to_status()).unwrap();
        let status = tonic::Status::with_details(tonic::Code::InvalidArgument, "x", body.into());
        let err = Error::from(status);
        assert!(err.is_invalid());
        assert_eq!(err.api_error(), Some(&orig));
    }

    #[test]
    fn status_without_details_is_grpc() {
        let err = Error::from(tonic::Status::unavailable("connection refused"));
        assert!(matches!(err, Error::Grpc(_)));
        assert_eq!(err.code(), None);
        assert!(err.is_transient());
    }

    #[test]
    fn conflict_and_already_exists_are_told_apart() {
        let c = Error::from(ApiError::stale("", "configmaps", "a"));
        let a = Error::from(ApiError::already_exists("", "configmaps", "a"));
        assert!(c.is_conflict() && !c.is_already_exists());
        assert!(a.is_already_exists() && !a.is_conflict());
        let gone = Error::from(ApiError::gone("too old resource version: 5"));
        assert!(gone.is_gone());
        assert_eq!(gone.reason(), Some("Expired"));
    }
}
