//! [`ClientLayer`]: an outgoing request's [`Context`] travels with it, as a `grpc-timeout`
//! header and the headers of the layer's injectors, and bounds the call.

use std::fmt;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http::{HeaderMap, Request, Response};
use tower_layer::Layer;
use tower_service::Service;

use super::grpc_timeout;
use super::{BoxError, ClientBody, ClientFuture};
use crate::Context;

/// Writes headers from an outgoing request's context.
type Injector = Arc<dyn Fn(&Context, &mut HeaderMap) + Send + Sync>;

/// A tower layer for HTTP and gRPC clients: each outgoing request that carries a [`Context`] in
/// its extensions (`request.extensions_mut().insert(ctx.clone())`; a `tonic::Request`'s
/// extensions travel into its `http::Request`) is bound to it.
///
/// - If the context is already done, the call fails at once with the context's
///   [`Error`](crate::Error), and nothing is sent (the inner service is not called). So it
///   does, with `DeadlineExceeded`, when its deadline has passed though the context is not
///   marked done yet: a `grpc-timeout` written is never `0n`.
/// - If it has a deadline, the request gets a `grpc-timeout` header with the time remaining
///   ([`grpc_timeout::format`]: rounded up, in the finest unit that fits 8 digits). An existing
///   `grpc-timeout` is replaced only when ours is shorter, or when it is malformed (or there
///   are several: all of them are replaced by ours).
/// - The layer's [`inject`](ClientLayer::inject)ors write headers from the context (a request
///   id, a tenant, a trace parent).
/// - The call is raced against the context: when the context is done first, the call is
///   dropped (hyper then resets the stream or closes the connection, so the server's request
///   context is cancelled in turn) and fails with the context's `Error`. The response body
///   ([`ClientBody`]) goes on racing it while it streams in: a context done mid-body drops the
///   body and ends it with the context's `Error`.
///
/// With hyper-util's `HttpConnector`, turn on `set_nodelay(true)` (tonic's channels have it on):
/// otherwise the reset of an abandoned HTTP/2 call can wait for Nagle's algorithm, and the
/// server sees the cancel about 40 ms late (measured in `tests/http_axum.rs`: 41 to 48 ms
/// without it, 0.12 to 0.22 ms with it).
///
/// Errors are tower's [`BoxError`]: the inner service's error, or a `ctx::Error` (find it with
/// `error.downcast_ref::<ctx::Error>()`). Through a tonic client, the `ctx::Error` arrives as a
/// `tonic::Status` with code `UNKNOWN` whose `source()` is the `ctx::Error`. A request without a
/// context passes through untouched.
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use ctx::Context;
/// use ctx::http::ClientLayer;
/// use http::{HeaderValue, Request, Response};
/// use http_body_util::BodyExt;
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // A stand-in for a real client (hyper-util's, or a tonic channel): it echoes the header.
/// let transport = tower::service_fn(|req: Request<()>| async move {
///     let timeout = req.headers()["grpc-timeout"].to_str().unwrap().to_owned();
///     Ok::<_, Infallible>(Response::new(timeout))
/// });
/// let mut client = ServiceBuilder::new().layer(ClientLayer::new()).service(transport);
///
/// let (ctx, cancel) = Context::background().with_timeout(Duration::from_millis(300));
/// let mut request = Request::new(());
/// request.extensions_mut().insert(ctx.clone());
/// let response = client.ready().await.unwrap().call(request).await.unwrap();
/// let sent = response.into_body().collect().await.unwrap().to_bytes();
/// let sent = ctx::http::grpc_timeout::parse(&HeaderValue::from_maybe_shared(sent).unwrap());
/// assert!(sent.unwrap() <= Duration::from_millis(300));
///
/// cancel.cancel();
/// let mut request = Request::new(());
/// request.extensions_mut().insert(ctx);
/// let error = client.ready().await.unwrap().call(request).await.unwrap_err();
/// assert_eq!(error.downcast_ref::<ctx::Error>(), Some(&ctx::Error::Canceled));
/// # }
/// ```
#[derive(Clone, Default)]
pub struct ClientLayer {
    injectors: Vec<Injector>,
}

impl ClientLayer {
    /// A layer with no injectors.
    ///
    /// ```
    /// let layer = ctx::http::ClientLayer::new();
    /// # drop(layer);
    /// ```
    pub fn new() -> ClientLayer {
        ClientLayer::default()
    }

    /// Adds `inject`, which writes headers from each outgoing request's context, after the
    /// `grpc-timeout` header: the way values cross processes (read them back on the server with
    /// [`ServerLayer::extract`](super::ServerLayer::extract)). Injectors run in the order they
    /// were added, only for requests that carry a context that is not done.
    ///
    /// ```
    /// use http::HeaderValue;
    ///
    /// #[derive(Debug)]
    /// struct RequestId(String);
    ///
    /// let layer = ctx::http::ClientLayer::new().inject(|ctx, headers| {
    ///     let id = ctx.value::<RequestId>().and_then(|id| HeaderValue::try_from(&id.0).ok());
    ///     if let Some(id) = id {
    ///         headers.insert("x-request-id", id);
    ///     }
    /// });
    /// # drop(layer);
    /// ```
    pub fn inject<F>(mut self, inject: F) -> ClientLayer
    where
        F: Fn(&Context, &mut HeaderMap) + Send + Sync + 'static,
    {
        self.injectors.push(Arc::new(inject));
        self
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> ClientService<S> {
        ClientService { inner, injectors: self.injectors.clone().into() }
    }
}

impl fmt::Debug for ClientLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientLayer").field("injectors", &self.injectors.len()).finish()
    }
}

/// The service that [`ClientLayer`] wraps around a client: see the layer.
#[derive(Clone)]
pub struct ClientService<S> {
    inner: S,
    injectors: Arc<[Injector]>,
}

impl<S> ClientService<S> {
    /// The inner service.
    ///
    /// ```
    /// use tower::Layer;
    /// let service = ctx::http::ClientLayer::new().layer(7);
    /// assert_eq!(*service.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ClientService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<ClientBody<ResBody>>;
    type Error = BoxError;
    type Future = ClientFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let Some(ctx) = request.extensions().get::<Context>().cloned() else {
            return ClientFuture::unbound(self.inner.call(request));
        };
        if let Some(error) = ctx.err() {
            return ClientFuture::failed(error);
        }
        if let Some(deadline) = ctx.deadline() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            // The deadline has passed and the timer has not fired yet: done all the same. A
            // request sent now could only carry `0n`, a call that is over before it starts
            // (grpc-go fails it the same way, before sending).
            if remaining.is_zero() {
                return ClientFuture::failed(crate::Error::DeadlineExceeded);
            }
            send_timeout(request.headers_mut(), remaining);
        }
        for inject in self.injectors.iter() {
            inject(&ctx, request.headers_mut());
        }
        ClientFuture::raced(self.inner.call(request), ctx)
    }
}

/// Sets `grpc-timeout` to `remaining`, unless the request already asks for less.
fn send_timeout(headers: &mut HeaderMap, remaining: std::time::Duration) {
    let shorter = grpc_timeout::parse_all(headers.get_all(grpc_timeout::HEADER))
        .and_then(Result::ok)
        .is_some_and(|existing| existing <= remaining);
    if !shorter {
        headers.insert(grpc_timeout::HEADER, grpc_timeout::format(remaining));
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::pin::pin;
    use std::sync::Mutex;
    use std::task::Waker;
    use std::time::Duration;

    use http::HeaderValue;

    use super::*;

    /// The moment a deadline passes, before the timer thread has marked the context done: the
    /// call fails with `DeadlineExceeded` and nothing is sent (never a `grpc-timeout: 0n`).
    /// The window is the timer thread's wake-up latency, so it is tried a few times.
    #[test]
    fn a_deadline_that_has_just_passed_sends_nothing() {
        let sent = Arc::new(Mutex::new(Vec::new()));
        let transport = tower::service_fn({
            let sent = sent.clone();
            move |request: Request<()>| {
                sent.lock().unwrap().push(request.headers()[grpc_timeout::HEADER].clone());
                std::future::ready(Ok::<_, BoxError>(Response::new(())))
            }
        });
        let mut client = ClientLayer::new().layer(transport);
        for _ in 0..20 {
            let deadline = Instant::now() + Duration::from_micros(200);
            let (ctx, _cancel) = Context::background().with_deadline(deadline);
            while Instant::now() < deadline {
                std::hint::spin_loop();
            }
            let mut request = Request::new(());
            request.extensions_mut().insert(ctx);
            let call = pin!(client.call(request));
            let Poll::Ready(Err(error)) = call.poll(&mut TaskContext::from_waker(Waker::noop()))
            else {
                panic!("a call whose deadline has passed is not made");
            };
            assert_eq!(error.downcast_ref::<crate::Error>(), Some(&crate::Error::DeadlineExceeded));
        }
        assert_eq!(*sent.lock().unwrap(), Vec::<HeaderValue>::new(), "nothing was sent");
    }

    fn sent(existing: Option<&'static str>, remaining: Duration) -> String {
        let mut headers = HeaderMap::new();
        if let Some(existing) = existing {
            headers.insert(grpc_timeout::HEADER, HeaderValue::from_static(existing));
        }
        send_timeout(&mut headers, remaining);
        headers[grpc_timeout::HEADER].to_str().unwrap().to_owned()
    }

    #[test]
    fn an_existing_timeout_is_replaced_only_by_a_shorter_one() {
        assert_eq!(sent(None, Duration::from_millis(300)), "300000u");
        assert_eq!(sent(Some("100m"), Duration::from_millis(300)), "100m", "theirs is shorter");
        assert_eq!(sent(Some("1S"), Duration::from_millis(300)), "300000u", "ours is shorter");
        assert_eq!(sent(Some("1 S"), Duration::from_millis(300)), "300000u", "theirs is malformed");
        let mut twice = HeaderMap::new();
        twice.append(grpc_timeout::HEADER, HeaderValue::from_static("100m"));
        twice.append(grpc_timeout::HEADER, HeaderValue::from_static("1S"));
        send_timeout(&mut twice, Duration::from_millis(300));
        let values: Vec<_> = twice.get_all(grpc_timeout::HEADER).iter().cloned().collect();
        assert_eq!(values, ["300000u"], "two of theirs could disagree: one of ours goes out");
    }
}
