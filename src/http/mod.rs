//! Request contexts across processes: tower layers for HTTP and gRPC servers and clients
//! (feature `http`).
//!
//! Go's `context` exists for servers: `r.Context()` is cancelled when the client goes away or
//! the handler returns, and grpc-go sends the caller's deadline as a `grpc-timeout` header and
//! turns it back into the server's deadline, so a deadline set at the edge bounds every hop.
//! These layers do the same on tower's `Service<http::Request<_>>`, which axum, tonic and hyper
//! (through hyper-util) all use:
//!
//! - [`ServerLayer`] gives every request a [`Context`](crate::Context) in its extensions (axum
//!   handlers take `Extension<Context>`; tonic handlers read
//!   `request.extensions().get::<Context>()`).
//! - [`ClientLayer`] reads the [`Context`](crate::Context) an outgoing request carries in its
//!   extensions, sends its deadline as `grpc-timeout`, and abandons the call when the context
//!   is done.
//! - [`grpc_timeout`] is the header's codec.
//!
//! # The request context's lifecycle
//!
//! This is the whole protocol of the server side; [`server`](ServerLayer),
//! [`future`](ResponseFuture) and [`body`](ResponseBody) each do one step of it.
//!
//! 1. **Born** when the request reaches [`ServerService`]'s `call`: a child of the layer's `root`
//!    (the server's lifetime), with a deadline when the request brings a `grpc-timeout` (capped
//!    by `max_timeout`) or the layer has a `default_timeout`, counted from that moment; then the
//!    values of the layer's [`extract`](ServerLayer::extract)ors; then inserted into the
//!    request's extensions. A malformed `grpc-timeout` is answered at once instead (`400`, or
//!    `grpc-status: 13` for a gRPC request) and no context is made.
//! 2. **Owned** by one `RequestGuard`, which holds the only handle that cancels it. The guard
//!    moves from the response future into the response body when the handler has answered.
//! 3. **Cancelled exactly once**, by whichever comes first:
//!    - `root` is done: the request context has `root`'s error and cause;
//!    - its deadline passes: `DeadlineExceeded`;
//!    - the response body ends (its last frame was taken, or it was empty, or it has produced
//!      the length the response declares: its `content-length`, none for `HEAD`, `204`,
//!      `304`; hyper's HTTP/1 drops a body there without polling it further), or the handler
//!      returned an error: plain `Canceled`, as Go cancels `r.Context()` when `ServeHTTP`
//!      returns, so work derived from the request stops too;
//!    - the response future, or the response body, is dropped before the body ended (hyper does
//!      this when the client disconnects or resets the stream): `Canceled` with the cause
//!      [`ResponseDropped`].
//!
//!    A streaming body (SSE, a gRPC stream) keeps its context alive until it ends.
//!
//! A request that brings no `grpc-timeout`, to a layer without `default_timeout` or extractors,
//! costs one `with_cancel` child and its place in the request's extensions: no header, no clock
//! read, no timer entry.
//!
//! The lifecycle, on a handler that keeps its request's context:
//!
//! ```
//! use std::convert::Infallible;
//! use std::sync::{Arc, Mutex};
//! use ctx::Context;
//! use ctx::http::{ResponseDropped, ServerLayer};
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{Service, ServiceBuilder, ServiceExt};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let kept = Arc::new(Mutex::new(None));
//! let handler = tower::service_fn({
//!     let kept = kept.clone();
//!     move |request: Request<()>| {
//!         *kept.lock().unwrap() = request.extensions().get::<Context>().cloned();
//!         async { Ok::<_, Infallible>(Response::new(String::from("hello"))) }
//!     }
//! });
//! let layer = ServerLayer::new(&Context::background());
//! let mut server = ServiceBuilder::new().layer(layer).service(handler);
//! let request_ctx = || kept.lock().unwrap().clone().unwrap();
//!
//! // Sent to its end: plain `Canceled`.
//! let response = server.ready().await.unwrap().call(Request::new(())).await.unwrap();
//! assert!(!request_ctx().is_done(), "the body has not been sent yet");
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert_eq!(body, "hello");
//! assert_eq!(request_ctx().err(), Some(ctx::Error::Canceled));
//! assert!(!request_ctx().cause().unwrap().is::<ResponseDropped>());
//!
//! // Dropped before its end (a client that went away): `ResponseDropped`.
//! let response = server.ready().await.unwrap().call(Request::new(())).await.unwrap();
//! drop(response);
//! assert!(request_ctx().cause().unwrap().is::<ResponseDropped>());
//! # }
//! ```

use std::fmt;

use crate::CancelHandle;

mod body;
mod client;
mod future;
pub mod grpc_timeout;
mod server;

pub use body::{ClientBody, ResponseBody};
pub use client::{ClientLayer, ClientService};
pub use future::{ClientFuture, ResponseFuture};
pub use server::{ServerLayer, ServerService};

/// tower's boxed error, the error type of [`ClientService`]: it composes with tonic's and
/// hyper-util's clients.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The cause of a request context cancelled because its response was dropped before its body
/// ended: the client disconnected, reset the stream, or the server was shut down without
/// draining.
///
/// ```
/// use ctx::http::ResponseDropped;
///
/// let (ctx, handle) = ctx::Context::background().with_cancel();
/// handle.cancel_with_cause(ResponseDropped);
/// let cause = ctx.cause().and_then(|c| c.downcast_ref::<ResponseDropped>().cloned());
/// assert_eq!(cause, Some(ResponseDropped));
/// assert_eq!(ResponseDropped.to_string(), "response dropped before it was sent");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ResponseDropped;

impl fmt::Display for ResponseDropped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("response dropped before it was sent")
    }
}

impl std::error::Error for ResponseDropped {}

/// The one owner of a request context's cancel handle (step 2 of the lifecycle): it cancels
/// the context with plain `Canceled` when [`finish`](RequestGuard::finish)ed, or with
/// [`ResponseDropped`] when dropped unfinished. Either happens once: `finish` consumes the
/// guard.
#[derive(Debug)]
pub(crate) struct RequestGuard {
    handle: Option<CancelHandle>,
}

impl RequestGuard {
    pub(crate) fn new(handle: CancelHandle) -> RequestGuard {
        RequestGuard { handle: Some(handle) }
    }

    /// The response has been sent to its end (or the handler failed): cancel with `Canceled`.
    pub(crate) fn finish(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.cancel();
        }
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.cancel_with_cause(ResponseDropped);
        }
    }
}
