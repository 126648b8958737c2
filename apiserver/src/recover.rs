//! A panic in a request's handler is that request's failure, never the connection's.
//!
//! hyper runs a connection's requests inside the connection's task, so an unwinding
//! handler used to end the task and drop the TCP connection (every other request on it
//! with it). [`guard`] turns a panicking handler into a 500 `InternalError` Status (a gRPC
//! `INTERNAL` status for gRPC calls) and an error log line, as kube-apiserver's
//! `WithPanicRecovery` does; [`GuardedBody`] does the same for a body that panics while
//! it streams (a watch): the stream ends cleanly, with `grpc-status` trailers for gRPC.

use axum::body::Body;
use axum::http::{HeaderMap, HeaderValue, Response};
use bytes::Bytes;
use futures::FutureExt;
use hyper::body::{Body as HttpBody, Frame, SizeHint};
use keelson_apimachinery::ApiError;
use std::any::Any;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// What Kubernetes answers a request that made it panic (the details go to the log).
pub const PANIC_MESSAGE: &str =
    "This request caused apiserver to panic. Look in the logs for details.";

/// Which protocol a request speaks: how its failure is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Rest,
    Grpc,
}

/// Run one request's handler; a panic becomes a failure response and a log line naming
/// the request. The response body is wrapped in [`GuardedBody`].
pub async fn guard<F>(protocol: Protocol, what: String, handler: F) -> Response<Body>
where
    F: Future<Output = Response<Body>>,
{
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(resp) => resp.map(|b| Body::new(GuardedBody::new(b, protocol, what))),
        Err(panic) => {
            tracing::error!(
                request = %what,
                panic = %panic_text(panic.as_ref()),
                "request handler panicked"
            );
            failure(protocol)
        }
    }
}

/// The 500 a panicking request gets.
pub fn failure(protocol: Protocol) -> Response<Body> {
    let e = ApiError::internal(PANIC_MESSAGE);
    match protocol {
        Protocol::Rest => crate::http::respond::error_response(&e),
        Protocol::Grpc => {
            let status = crate::grpc::to_status(&e);
            let (parts, body) = status.into_http::<tonic::body::Body>().into_parts();
            Response::from_parts(parts, Body::new(body))
        }
    }
}

/// The payload of a panic, as text (`panic!` carries a `&str` or a `String`).
pub fn panic_text(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "(a non-string panic payload)".to_string()
    }
}

/// A response body whose panics end the stream instead of the connection.
pub struct GuardedBody {
    inner: Body,
    protocol: Protocol,
    what: String,
    /// Set once the inner body panicked: it is not polled again.
    poisoned: bool,
}

impl GuardedBody {
    pub fn new(inner: Body, protocol: Protocol, what: String) -> Self {
        GuardedBody {
            inner,
            protocol,
            what,
            poisoned: false,
        }
    }
}

/// gRPC's trailers for a call that failed on the server.
fn grpc_internal_trailers() -> HeaderMap {
    let mut t = HeaderMap::new();
    // 13 is INTERNAL; the message is percent-encoded by the spec, and this one needs
    // only its spaces encoded.
    t.insert("grpc-status", HeaderValue::from_static("13"));
    if let Ok(v) = HeaderValue::from_str(&PANIC_MESSAGE.replace(' ', "%20")) {
        t.insert("grpc-message", v);
    }
    t
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if this.poisoned {
            return Poll::Ready(None);
        }
        let inner = &mut this.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| Pin::new(inner).poll_frame(cx))) {
            Ok(p) => p,
            Err(panic) => {
                tracing::error!(
                    request = %this.what,
                    panic = %panic_text(panic.as_ref()),
                    "response stream panicked; ending it"
                );
                this.poisoned = true;
                match this.protocol {
                    Protocol::Rest => Poll::Ready(None),
                    Protocol::Grpc => {
                        Poll::Ready(Some(Ok(Frame::trailers(grpc_internal_trailers()))))
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.poisoned || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        if self.poisoned {
            SizeHint::default()
        } else {
            self.inner.size_hint()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn collect(b: Body) -> (Bytes, Option<HeaderMap>) {
        let c = b.collect().await.expect("a guarded body never fails");
        let trailers = c.trailers().cloned();
        (c.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn a_panicking_rest_handler_is_a_500_status() {
        let r = guard(Protocol::Rest, "GET /boom".into(), async {
            if true {
                panic!("boom");
            }
            Response::new(Body::empty())
        })
        .await;
        assert_eq!(r.status(), 500);
        let (body, _) = collect(r.into_body()).await;
        let s: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(s["kind"], "Status");
        assert_eq!(s["status"], "Failure");
        assert_eq!(s["code"], 500);
        assert_eq!(s["reason"], "InternalError");
        assert_eq!(s["message"], PANIC_MESSAGE);
    }

    #[tokio::test]
    async fn a_panicking_grpc_handler_is_an_internal_status() {
        let r = guard(Protocol::Grpc, "/keelson.Api/List".into(), async {
            let v: Vec<u8> = Vec::new();
            // An out-of-bounds index, the kind of bug this guards against.
            let _ = v[usize::from(v.is_empty())];
            Response::new(Body::empty())
        })
        .await;
        // gRPC carries failures in its headers (a trailers-only response), status 200.
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["grpc-status"], "13");
        // The metav1.Status travels in the details, as for every Keelson gRPC error.
        assert!(r.headers().contains_key("grpc-status-details-bin"));
    }

    #[tokio::test]
    async fn a_handler_that_does_not_panic_is_untouched() {
        let r = guard(Protocol::Rest, "GET /ok".into(), async {
            Response::new(Body::from("fine"))
        })
        .await;
        assert_eq!(r.status(), 200);
        assert_eq!(collect(r.into_body()).await.0, "fine");
    }

    /// A stream that yields one chunk, then panics.
    fn chunk_then_panic() -> Body {
        let mut n = 0;
        Body::from_stream(futures::stream::poll_fn(move |_| {
            n += 1;
            if n == 1 {
                Poll::Ready(Some(Ok::<_, std::io::Error>(Bytes::from_static(
                    b"{\"type\":\"ADDED\"}\n",
                ))))
            } else {
                panic!("encoding the next event failed")
            }
        }))
    }

    #[tokio::test]
    async fn a_rest_stream_that_panics_ends_after_what_it_sent() {
        let r = guard(Protocol::Rest, "GET /watch".into(), async {
            Response::new(chunk_then_panic())
        })
        .await;
        let (body, trailers) = collect(r.into_body()).await;
        assert_eq!(body, "{\"type\":\"ADDED\"}\n");
        assert!(trailers.is_none());
    }

    #[tokio::test]
    async fn a_grpc_stream_that_panics_ends_with_internal_trailers() {
        let r = guard(Protocol::Grpc, "/keelson.Api/Watch".into(), async {
            Response::new(chunk_then_panic())
        })
        .await;
        let (body, trailers) = collect(r.into_body()).await;
        assert_eq!(body, "{\"type\":\"ADDED\"}\n");
        let t = trailers.expect("grpc-status trailers");
        assert_eq!(t["grpc-status"], "13");
        assert_eq!(
            t["grpc-message"],
            "This%20request%20caused%20apiserver%20to%20panic.%20Look%20in%20the%20logs%20for%20details."
        );
    }
}
