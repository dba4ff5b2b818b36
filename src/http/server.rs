//! [`ServerLayer`]: step 1 of the request context's lifecycle (see the [module docs](super)):
//! make each request's context, or answer a malformed `grpc-timeout` without calling the
//! inner service.

use std::fmt;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Request, Response, StatusCode};
use tower_layer::Layer;
use tower_service::Service;

use super::grpc_timeout::{self, ParseError};
use super::{RequestGuard, ResponseBody, ResponseFuture};
use crate::Context;

/// Adds a value to a request context from the request's headers.
type Extractor = Arc<dyn Fn(&HeaderMap, &Context) -> Option<Context> + Send + Sync>;

/// A tower layer that gives every request a [`Context`] derived from `root`, in the request's
/// extensions, and cancels it when the response has been sent or dropped (the [lifecycle]).
///
/// - `root` is the server's lifetime: cancel it at shutdown and every in-flight request's
///   context is cancelled, with `root`'s cause.
/// - A `grpc-timeout` request header becomes the request context's deadline, counted from when
///   the request reached the layer; [`max_timeout`](ServerLayer::max_timeout) caps it and
///   [`default_timeout`](ServerLayer::default_timeout) applies when a request brings none. A
///   deadline never extends one that `root` already has: the earlier wins.
/// - A malformed `grpc-timeout` (or one sent more than once) is answered at once, without
///   calling the inner service:
///   `400 Bad Request` with a plain-text body naming the header and its value, or, for a gRPC
///   request (`content-type: application/grpc`, alone or with `+format` or `;parameters`), a
///   gRPC error with `grpc-status: 13` (`INTERNAL`, as grpc-go answers) and the same text in
///   `grpc-message`: status `200`, `content-type: application/grpc`, a trailers-only response.
///   A gRPC-Web request (`application/grpc-web...`) is not a gRPC request here: it gets the
///   `400`, since a gRPC-Web client reads its status in a framing this layer does not write;
///   put the layer inside the gRPC-Web translation (tonic-web's layer) to have it answered as
///   gRPC.
/// - [`extract`](ServerLayer::extract) adds values from the request headers (a request id, a
///   tenant, a trace parent).
///
/// Axum handlers take `Extension<Context>`; tonic handlers read
/// `request.extensions().get::<Context>()`.
///
/// Behind tonic's server, tonic enforces `grpc-timeout` as well, by dropping the handler at the
/// same deadline (counted from a moment earlier, on tokio's millisecond timer): a request whose
/// time runs out is then done with `DeadlineExceeded` or with
/// [`ResponseDropped`](super::ResponseDropped), whichever fires first, and the caller gets
/// tonic's `CANCELLED` in the second case. A `max_timeout` shorter than the caller's timeout
/// always fires first.
///
/// [lifecycle]: super#the-request-contexts-lifecycle
///
/// ```
/// use std::convert::Infallible;
/// use std::time::Duration;
/// use ctx::Context;
/// use ctx::http::ServerLayer;
/// use http::{Request, Response};
/// use tower::{Service, ServiceBuilder, ServiceExt};
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let handler = tower::service_fn(|req: Request<String>| async move {
///     let ctx = req.extensions().get::<Context>().expect("the layer put it there").clone();
///     let left = ctx.deadline().unwrap().saturating_duration_since(std::time::Instant::now());
///     Ok::<_, Infallible>(Response::new(format!("{} ms left", left.as_millis())))
/// });
/// let mut service = ServiceBuilder::new()
///     .layer(ServerLayer::new(&Context::background()).default_timeout(Duration::from_secs(5)))
///     .service(handler);
///
/// let request = Request::builder().header("grpc-timeout", "200m").body(String::new()).unwrap();
/// let response = service.ready().await.unwrap().call(request).await.unwrap();
/// assert_eq!(response.status(), 200);
///
/// let request = Request::builder().header("grpc-timeout", "200").body(String::new()).unwrap();
/// let response = service.ready().await.unwrap().call(request).await.unwrap();
/// assert_eq!(response.status(), 400);
/// # }
/// ```
#[derive(Clone)]
pub struct ServerLayer {
    root: Context,
    config: Arc<Config>,
}

#[derive(Clone, Default)]
struct Config {
    max_timeout: Option<Duration>,
    default_timeout: Option<Duration>,
    extractors: Vec<Extractor>,
}

impl ServerLayer {
    /// A layer whose request contexts are children of `root`, with no deadline unless a
    /// request brings one, and no values.
    ///
    /// ```
    /// let (root, shutdown) = ctx::Context::background().with_cancel();
    /// let layer = ctx::http::ServerLayer::new(&root);
    /// // ... serve with the layer; at shutdown, cancel every in-flight request:
    /// shutdown.cancel();
    /// # drop(layer);
    /// ```
    pub fn new(root: &Context) -> ServerLayer {
        ServerLayer { root: root.clone(), config: Arc::default() }
    }

    /// Caps the deadline a request asks for with `grpc-timeout` (and the
    /// [`default_timeout`](ServerLayer::default_timeout)) at `max` after its arrival. A second
    /// call replaces the first. A zero `max` gives every request with a timeout a context that
    /// is done on arrival.
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = ctx::http::ServerLayer::new(&ctx::Context::background())
    ///     .max_timeout(Duration::from_secs(10)); // `grpc-timeout: 1H` gets 10 s
    /// # drop(layer);
    /// ```
    pub fn max_timeout(mut self, max: Duration) -> ServerLayer {
        Arc::make_mut(&mut self.config).max_timeout = Some(max);
        self
    }

    /// The deadline, `timeout` after its arrival, of a request that brings no `grpc-timeout`.
    /// Without it, such a request has no deadline of its own. A second call replaces the first;
    /// a zero `timeout` gives such requests a context that is done on arrival.
    ///
    /// ```
    /// use std::time::Duration;
    /// let layer = ctx::http::ServerLayer::new(&ctx::Context::background())
    ///     .default_timeout(Duration::from_secs(30));
    /// # drop(layer);
    /// ```
    pub fn default_timeout(mut self, timeout: Duration) -> ServerLayer {
        Arc::make_mut(&mut self.config).default_timeout = Some(timeout);
        self
    }

    /// Puts the `T` that `extract` finds in a request's headers into its context, where
    /// handlers read it with [`Context::value`]. `extract` runs once per request, before the
    /// inner service; `None` adds nothing. Each call adds one extractor; they run in the order
    /// they were added, so a later one's `T` hides an earlier one's of the same type. A panic in
    /// `extract` unwinds out of the service's `call`, before the inner service is called.
    ///
    /// ```
    /// use ctx::http::ServerLayer;
    ///
    /// #[derive(Debug, Clone, PartialEq)]
    /// struct RequestId(String);
    ///
    /// let layer = ServerLayer::new(&ctx::Context::background()).extract(|headers| {
    ///     let id = headers.get("x-request-id")?.to_str().ok()?;
    ///     Some(RequestId(id.to_owned()))
    /// });
    /// # drop(layer);
    /// ```
    pub fn extract<T, F>(mut self, extract: F) -> ServerLayer
    where
        F: Fn(&HeaderMap) -> Option<T> + Send + Sync + 'static,
        T: Send + Sync + 'static,
    {
        let extractor: Extractor =
            Arc::new(move |headers, ctx| extract(headers).map(|value| ctx.with_value(value)));
        Arc::make_mut(&mut self.config).extractors.push(extractor);
        self
    }
}

impl<S> Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> ServerService<S> {
        ServerService { inner, root: self.root.clone(), config: self.config.clone() }
    }
}

impl fmt::Debug for ServerLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerLayer")
            .field("root", &self.root)
            .field("max_timeout", &self.config.max_timeout)
            .field("default_timeout", &self.config.default_timeout)
            .field("extractors", &self.config.extractors.len())
            .finish()
    }
}

/// The service that [`ServerLayer`] wraps around an inner service: see the layer.
#[derive(Clone)]
pub struct ServerService<S> {
    inner: S,
    root: Context,
    config: Arc<Config>,
}

impl<S> ServerService<S> {
    /// The inner service.
    ///
    /// ```
    /// use tower::Layer;
    /// let service = ctx::http::ServerLayer::new(&ctx::Context::background()).layer(7);
    /// assert_eq!(*service.get_ref(), 7);
    /// ```
    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: fmt::Debug> fmt::Debug for ServerService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerService").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ServerService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ResponseBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    /// Step 1 of the lifecycle: the request context is made here, or the request is answered.
    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        let requested =
            match grpc_timeout::parse_all(request.headers().get_all(grpc_timeout::HEADER)) {
                Some(Ok(timeout)) => Some(timeout),
                Some(Err(error)) => {
                    return ResponseFuture::rejected(rejection(request.headers(), error));
                }
                None => self.config.default_timeout,
            };
        let timeout = match (requested, self.config.max_timeout) {
            (Some(timeout), Some(max)) => Some(timeout.min(max)),
            (timeout, _) => timeout,
        };
        // A timeout too long for an `Instant` is no deadline at all, as in `with_timeout`.
        let (ctx, handle) = match timeout.and_then(|timeout| Instant::now().checked_add(timeout)) {
            Some(deadline) => self.root.with_deadline(deadline),
            None => self.root.with_cancel(),
        };
        let guard = RequestGuard::new(handle);
        let ctx = self
            .config
            .extractors
            .iter()
            .fold(ctx, |ctx, extract| extract(request.headers(), &ctx).unwrap_or(ctx));
        request.extensions_mut().insert(ctx);
        let head = request.method() == http::Method::HEAD;
        ResponseFuture::new(self.inner.call(request), guard, head)
    }
}

/// The answer to a malformed `grpc-timeout`: a gRPC error for a gRPC request, else `400`.
fn rejection(headers: &HeaderMap, error: ParseError) -> (http::response::Parts, Option<String>) {
    let message = error.to_string();
    let (response, body) = if is_grpc(headers) {
        let response = Response::builder()
            .header(CONTENT_TYPE, "application/grpc")
            .header("grpc-status", "13")
            .header("grpc-message", grpc_message(&message));
        (response, None)
    } else {
        let response = Response::builder()
            .status(StatusCode::BAD_REQUEST)
            .header(CONTENT_TYPE, "text/plain; charset=utf-8");
        (response, Some(message))
    };
    let (parts, ()) =
        response.body(()).expect("static, valid header names and values").into_parts();
    (parts, body)
}

/// Whether `headers` mark a gRPC request: `content-type: application/grpc`, alone or followed
/// by `+format` or `;parameters`.
fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|value| {
        value
            .as_bytes()
            .strip_prefix(b"application/grpc")
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b"+") || rest.starts_with(b";"))
    })
}

/// `message` as a `grpc-message` value: percent-encoded UTF-8, where only visible ASCII and
/// space other than `%` stand for themselves (gRPC over HTTP/2, "Responses").
fn grpc_message(message: &str) -> HeaderValue {
    let mut encoded = String::with_capacity(message.len());
    for byte in message.bytes() {
        if (b' '..=b'~').contains(&byte) && byte != b'%' {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    HeaderValue::try_from(encoded).expect("visible ASCII and spaces are a valid header value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_content_types() {
        let headers = |value: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static(value));
            headers
        };
        assert!(is_grpc(&headers("application/grpc")));
        assert!(is_grpc(&headers("application/grpc+proto")));
        assert!(is_grpc(&headers("application/grpc;charset=utf-8")));
        assert!(!is_grpc(&headers("application/grpc-web")));
        assert!(!is_grpc(&headers("application/json")));
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message("50% \"done\"\n"), "50%25 \"done\"%0A");
        assert_eq!(grpc_message("é"), "%C3%A9");
    }
}
