//! `ctx::http` over real HTTP: axum servers with `ServerLayer` on 127.0.0.1:0, called by
//! hyper-util's client (with `ClientLayer` where the client side is under test). Each test is
//! bounded in time; each server is aborted when its test ends.
//!
//! Needs `--features http` (declared as `required-features` in Cargo.toml).

use std::convert::Infallible;
use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Extension, State};
use axum::routing::get;
use bytes::Bytes;
use ctx::http::{ClientLayer, ClientService, ResponseDropped, ServerLayer};
use ctx::{Context, cancellable};
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::mpsc;
use tower::{Service, ServiceBuilder, ServiceExt};

/// Generous: the point is "it does not hang", not how fast it is.
const NO_HANG: Duration = Duration::from_secs(10);

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(NO_HANG, future).await.expect("the test hung")
}

/// What handlers tell the test: the request context they were given, and how often they ran.
#[derive(Clone)]
struct Probe {
    contexts: mpsc::UnboundedSender<Context>,
    /// Lines from tasks the handlers spawned.
    events: mpsc::UnboundedSender<String>,
    /// The senders of streaming bodies.
    streams: mpsc::UnboundedSender<Chunks>,
    calls: Arc<AtomicUsize>,
}

type Chunks = mpsc::UnboundedSender<Result<Bytes, Infallible>>;

struct Observed {
    contexts: mpsc::UnboundedReceiver<Context>,
    events: mpsc::UnboundedReceiver<String>,
    streams: mpsc::UnboundedReceiver<Chunks>,
    calls: Arc<AtomicUsize>,
}

impl Observed {
    async fn context(&mut self) -> Context {
        within(self.contexts.recv()).await.expect("a handler sends its context")
    }
}

fn probe() -> (Probe, Observed) {
    let (contexts, contexts_rx) = mpsc::unbounded_channel();
    let (events, events_rx) = mpsc::unbounded_channel();
    let (streams, streams_rx) = mpsc::unbounded_channel();
    let calls = Arc::new(AtomicUsize::new(0));
    (
        Probe { contexts, events, streams, calls: calls.clone() },
        Observed { contexts: contexts_rx, events: events_rx, streams: streams_rx, calls },
    )
}

impl Probe {
    fn saw(&self, ctx: &Context) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let _ = self.contexts.send(ctx.clone());
    }
}

/// A server on 127.0.0.1:0 that stops when the returned guard is dropped.
struct Server {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    fn uri(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

async fn serve(app: Router) -> Server {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        axum::serve(listener, app).into_future().await.expect("serve");
    });
    Server { addr, task }
}

/// The routes every server test uses, behind `layer`.
fn app(layer: ServerLayer, probe: Probe) -> Router {
    Router::new()
        .route("/work", get(work))
        .route("/deadline", get(deadline))
        .route("/quick", get(quick))
        .route("/stream", get(stream))
        .route("/wait", get(wait))
        .layer(layer)
        .with_state(probe)
}

/// Works in a loop until its context is done; spawns a task with a derived context first.
async fn work(State(probe): State<Probe>, Extension(ctx): Extension<Context>) -> String {
    let (child, _handle) = ctx.with_cancel();
    tokio::spawn(background(child, probe.events.clone()));
    probe.saw(&ctx);
    busy(ctx).await
}

#[cancellable(on_cancel = String::from("stopped"))]
async fn busy(ctx: Context) -> String {
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[cancellable(on_cancel = stopped(&ctx, &events))]
async fn background(ctx: Context, events: mpsc::UnboundedSender<String>) {
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn stopped(ctx: &Context, events: &mpsc::UnboundedSender<String>) {
    let _ = events.send(format!("background stopped: {}", ctx.cause().unwrap()));
}

/// Answers with the time left before its deadline, in microseconds, or `none`.
async fn deadline(State(probe): State<Probe>, Extension(ctx): Extension<Context>) -> String {
    probe.saw(&ctx);
    match ctx.deadline() {
        Some(at) => at.saturating_duration_since(Instant::now()).as_micros().to_string(),
        None => "none".to_owned(),
    }
}

async fn quick(State(probe): State<Probe>, Extension(ctx): Extension<Context>) -> &'static str {
    probe.saw(&ctx);
    "done"
}

/// Streams what the test sends on the channel the handler hands over, until it is closed.
async fn stream(State(probe): State<Probe>, Extension(ctx): Extension<Context>) -> Body {
    let (chunks, rx) = mpsc::unbounded_channel();
    chunks.send(Ok(Bytes::from_static(b"first"))).unwrap();
    probe.saw(&ctx);
    probe.streams.send(chunks).unwrap();
    Body::from_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
}

/// Waits until its context is done and answers with the context's cause.
async fn wait(State(probe): State<Probe>, Extension(ctx): Extension<Context>) -> String {
    probe.saw(&ctx);
    ctx.done().await;
    ctx.cause().unwrap().to_string()
}

/// A connector that sends small frames at once (`TCP_NODELAY`, as tonic's channels do): without
/// it, the RST_STREAM of an abandoned HTTP/2 call waits about 40 ms for Nagle's algorithm.
fn connector() -> HttpConnector {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector
}

fn http1_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).build(connector())
}

fn http2_client() -> Client<HttpConnector, Empty<Bytes>> {
    Client::builder(TokioExecutor::new()).http2_only(true).build(connector())
}

fn get_request(uri: &str) -> Request<Empty<Bytes>> {
    Request::get(uri).body(Empty::new()).unwrap()
}

fn with_timeout_header(uri: &str, timeout: &'static str) -> Request<Empty<Bytes>> {
    Request::get(uri).header("grpc-timeout", timeout).body(Empty::new()).unwrap()
}

async fn text<B>(response: http::Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = within(response.into_body().collect()).await.expect("read the body").to_bytes();
    String::from_utf8(bytes.to_vec()).expect("utf-8")
}

fn is_response_dropped(ctx: &Context) -> bool {
    ctx.cause().is_some_and(|cause| cause.is::<ResponseDropped>())
}

/// The client goes away mid-request: the handler's context is done within 100 ms with
/// `ResponseDropped`, and the task it spawned with a derived context stops too.
async fn disconnect_cancels_the_handler(client: Client<HttpConnector, Empty<Bytes>>) {
    let (probe, mut observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe)).await;
    let call = tokio::spawn(client.request(get_request(&server.uri("/work"))));
    let ctx = observed.context().await;
    assert!(!ctx.is_done());

    call.abort();
    let aborted = Instant::now();
    within(ctx.done()).await;
    let took = aborted.elapsed();
    eprintln!("the request context was done {took:?} after the client went away");
    assert!(took < Duration::from_millis(100), "the request context was done after {took:?}");
    assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    assert!(is_response_dropped(&ctx), "cause: {:?}", ctx.cause());
    let line = within(observed.events.recv()).await.unwrap();
    assert_eq!(line, "background stopped: response dropped before it was sent");
}

#[tokio::test]
async fn http1_disconnect_cancels_the_handler_and_what_it_spawned() {
    disconnect_cancels_the_handler(http1_client()).await;
}

#[tokio::test]
async fn http2_stream_reset_cancels_the_handler_and_what_it_spawned() {
    disconnect_cancels_the_handler(http2_client()).await;
}

async fn time_left(
    client: &Client<HttpConnector, Empty<Bytes>>,
    request: Request<Empty<Bytes>>,
) -> Option<Duration> {
    let response = within(client.request(request)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = text(response).await;
    (body != "none").then(|| Duration::from_micros(body.parse().unwrap()))
}

#[tokio::test]
async fn grpc_timeout_becomes_the_deadline_capped_by_max_timeout() {
    let (probe, _observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe.clone())).await;
    let client = http1_client();

    let left = time_left(&client, with_timeout_header(&server.uri("/deadline"), "200m")).await;
    let left = left.expect("a deadline");
    assert!(left > Duration::from_millis(150) && left <= Duration::from_millis(200), "{left:?}");
    let left = time_left(&client, get_request(&server.uri("/deadline"))).await;
    assert_eq!(left, None, "no header, no default: no deadline");

    let capped = ServerLayer::new(&Context::background())
        .max_timeout(Duration::from_millis(300))
        .default_timeout(Duration::from_millis(250));
    let capped = serve(app(capped, probe)).await;
    let left = time_left(&client, with_timeout_header(&capped.uri("/deadline"), "10S")).await;
    let left = left.expect("a deadline");
    assert!(left > Duration::from_millis(250) && left <= Duration::from_millis(300), "{left:?}");
    let left = time_left(&client, get_request(&capped.uri("/deadline"))).await;
    let left = left.expect("the default deadline");
    assert!(left > Duration::from_millis(200) && left <= Duration::from_millis(250), "{left:?}");
}

#[tokio::test]
async fn a_request_deadline_never_extends_roots() {
    let (probe, _observed) = probe();
    let (root, _guard) = Context::background().with_timeout(Duration::from_secs(2));
    let server = serve(app(ServerLayer::new(&root), probe)).await;
    let client = http1_client();
    let left = time_left(&client, with_timeout_header(&server.uri("/deadline"), "1H")).await;
    let left = left.expect("root's deadline");
    assert!(left > Duration::from_secs(1) && left <= Duration::from_secs(2), "{left:?}");
    let left = time_left(&client, with_timeout_header(&server.uri("/deadline"), "100m")).await;
    let left = left.expect("the request's deadline");
    assert!(left > Duration::from_millis(50) && left <= Duration::from_millis(100), "{left:?}");
}

#[tokio::test]
async fn a_deadline_that_passes_cancels_the_request() {
    let (probe, mut observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe)).await;
    let response =
        within(http1_client().request(with_timeout_header(&server.uri("/wait"), "50m"))).await;
    assert_eq!(text(response.unwrap()).await, "context deadline exceeded");
    assert_eq!(observed.context().await.err(), Some(ctx::Error::DeadlineExceeded));
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_answered_without_calling_the_handler() {
    let (probe, observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe)).await;
    let client = http1_client();

    let response =
        within(client.request(with_timeout_header(&server.uri("/quick"), "200"))).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(text(response).await, r#"malformed grpc-timeout header "200": no unit"#);

    let grpc = Request::get(server.uri("/quick"))
        .header("content-type", "application/grpc")
        .header("grpc-timeout", "123456789S")
        .body(Empty::new())
        .unwrap();
    let response = within(client.request(grpc)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK, "gRPC errors travel in grpc-status");
    assert_eq!(response.headers()["grpc-status"], "13");
    assert_eq!(
        response.headers()["grpc-message"],
        r#"malformed grpc-timeout header "123456789S": more than 8 digits"#
    );
    assert_eq!(text(response).await, "");

    // Two values could disagree: answered as malformed, not one of them picked.
    let twice = Request::get(server.uri("/quick"))
        .header("grpc-timeout", "1S")
        .header("grpc-timeout", "2S")
        .body(Empty::new())
        .unwrap();
    let response = within(client.request(twice)).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        text(response).await,
        r#"malformed grpc-timeout header "1S", "2S": sent 2 times, where a request has one"#
    );
    assert_eq!(observed.calls.load(Ordering::SeqCst), 0, "the handler was never called");
}

#[derive(Debug, Clone)]
struct Shutdown;

impl std::fmt::Display for Shutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("server shutting down")
    }
}

impl std::error::Error for Shutdown {}

#[tokio::test]
async fn cancelling_root_gives_every_request_roots_cause() {
    let (root, shutdown) = Context::background().with_cancel();
    let (probe, mut observed) = probe();
    let server = serve(app(ServerLayer::new(&root), probe)).await;
    let client = http1_client();
    let first = tokio::spawn(client.request(get_request(&server.uri("/wait"))));
    let second = tokio::spawn(client.request(get_request(&server.uri("/wait"))));
    let contexts = [observed.context().await, observed.context().await];

    shutdown.cancel_with_cause(Shutdown);
    for call in [first, second] {
        let response = within(call).await.unwrap().unwrap();
        assert_eq!(text(response).await, "server shutting down");
    }
    for ctx in contexts {
        assert!(ctx.cause().unwrap().is::<Shutdown>());
    }
}

#[tokio::test]
async fn a_completed_response_cancels_the_request_context() {
    let (probe, mut observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe)).await;
    let response = within(http1_client().request(get_request(&server.uri("/quick")))).await;
    assert_eq!(text(response.unwrap()).await, "done");
    let ctx = observed.context().await;
    within(ctx.done()).await;
    assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    assert!(!is_response_dropped(&ctx), "sent to its end: plain Canceled, not {:?}", ctx.cause());
}

#[tokio::test]
async fn a_streaming_body_keeps_its_context_until_it_ends() {
    let (probe, mut observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe)).await;
    let response = within(http1_client().request(get_request(&server.uri("/stream")))).await;
    let mut body = response.unwrap().into_body();
    let ctx = observed.context().await;
    let first = within(body.frame()).await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first");

    let chunks = within(observed.streams.recv()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!ctx.is_done(), "the body has not ended yet");
    chunks.send(Ok(Bytes::from_static(b"second"))).unwrap();
    let second = within(body.frame()).await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(second, "second");
    assert!(!ctx.is_done(), "the body has not ended yet");

    drop(chunks);
    assert!(within(body.frame()).await.is_none(), "the body ended");
    within(ctx.done()).await;
    assert!(!is_response_dropped(&ctx), "sent to its end: plain Canceled, not {:?}", ctx.cause());
}

/// hyper-util's client wrapped in `ClientLayer`.
type LayeredClient = ClientService<Client<HttpConnector, Empty<Bytes>>>;

fn layered_client(layer: ClientLayer) -> LayeredClient {
    ServiceBuilder::new().layer(layer).service(http1_client())
}

fn request_in(uri: &str, ctx: &Context) -> Request<Empty<Bytes>> {
    let mut request = get_request(uri);
    request.extensions_mut().insert(ctx.clone());
    request
}

#[tokio::test]
async fn a_client_context_that_is_done_sends_nothing() {
    let (probe, observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe)).await;
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let mut client = layered_client(ClientLayer::new());
    let call = client.ready().await.unwrap().call(request_in(&server.uri("/quick"), &ctx));
    let error = within(call).await.unwrap_err();
    assert_eq!(error.downcast_ref::<ctx::Error>(), Some(&ctx::Error::Canceled));
    // A request that was sent would have reached the handler by the time this one returns.
    let response = within(http1_client().request(get_request(&server.uri("/quick")))).await;
    assert_eq!(response.unwrap().status(), StatusCode::OK);
    assert_eq!(observed.calls.load(Ordering::SeqCst), 1, "only the second request arrived");
}

#[tokio::test]
async fn the_client_deadline_travels_and_cancelling_the_client_cancels_the_server() {
    let (probe, mut observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe)).await;
    let mut client = layered_client(ClientLayer::new());

    let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(300));
    let call = client.ready().await.unwrap().call(request_in(&server.uri("/deadline"), &ctx));
    let left = text(within(call).await.unwrap()).await;
    let left = Duration::from_micros(left.parse().unwrap());
    assert!(left > Duration::from_millis(150) && left <= Duration::from_millis(300), "{left:?}");
    let _ = observed.context().await;

    let (ctx, cancel) = Context::background().with_cancel();
    let call =
        tokio::spawn(client.ready().await.unwrap().call(request_in(&server.uri("/work"), &ctx)));
    let server_ctx = observed.context().await;
    cancel.cancel();
    let error = within(call).await.unwrap().unwrap_err();
    assert_eq!(error.downcast_ref::<ctx::Error>(), Some(&ctx::Error::Canceled));
    within(server_ctx.done()).await;
    assert!(is_response_dropped(&server_ctx), "cause: {:?}", server_ctx.cause());
}

#[tokio::test]
async fn a_client_context_done_mid_body_ends_the_body_and_cancels_the_server() {
    let (probe, mut observed) = probe();
    let server = serve(app(ServerLayer::new(&Context::background()), probe)).await;
    let mut client = layered_client(ClientLayer::new());
    let (ctx, cancel) = Context::background().with_cancel();
    let call = client.ready().await.unwrap().call(request_in(&server.uri("/stream"), &ctx));
    let mut body = within(call).await.unwrap().into_body();
    let server_ctx = observed.context().await;
    let _chunks = within(observed.streams.recv()).await.unwrap(); // keeps the body open
    let first = within(body.frame()).await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(first, "first");

    cancel.cancel();
    let error = within(body.frame()).await.expect("a frame").unwrap_err();
    assert_eq!(error.downcast_ref::<ctx::Error>(), Some(&ctx::Error::Canceled));
    assert!(within(body.frame()).await.is_none(), "the body ended after the error");
    within(server_ctx.done()).await;
    assert!(is_response_dropped(&server_ctx), "cause: {:?}", server_ctx.cause());
}

#[derive(Debug, Clone, PartialEq)]
struct RequestId(String);

fn extract_request_id(layer: ServerLayer) -> ServerLayer {
    layer.extract(|headers| {
        let id = headers.get("x-request-id")?.to_str().ok()?;
        Some(RequestId(id.to_owned()))
    })
}

fn inject_request_id(layer: ClientLayer) -> ClientLayer {
    layer.inject(|ctx, headers| {
        if let Some(id) = ctx.value::<RequestId>() {
            headers.insert("x-request-id", HeaderValue::try_from(&id.0).expect("a header-safe id"));
        }
    })
}

/// Service A answers `/hop` by calling B's `/id` with its own request context.
#[derive(Clone)]
struct HopState {
    b: String,
    client: LayeredClient,
}

#[tokio::test]
async fn a_request_id_travels_through_two_hops() {
    async fn id(Extension(ctx): Extension<Context>) -> String {
        match ctx.value::<RequestId>() {
            Some(id) => format!("B saw {}", id.0),
            None => "B saw no id".to_owned(),
        }
    }
    async fn hop(State(state): State<HopState>, Extension(ctx): Extension<Context>) -> String {
        let mut client = state.client.clone();
        let call = client.ready().await.unwrap().call(request_in(&state.b, &ctx));
        text(call.await.unwrap()).await
    }

    let b = Router::new()
        .route("/id", get(id))
        .layer(extract_request_id(ServerLayer::new(&Context::background())));
    let b = serve(b).await;
    let state =
        HopState { b: b.uri("/id"), client: layered_client(inject_request_id(ClientLayer::new())) };
    let a = Router::new()
        .route("/hop", get(hop))
        .layer(extract_request_id(ServerLayer::new(&Context::background())))
        .with_state(state);
    let a = serve(a).await;

    let mut client = layered_client(inject_request_id(ClientLayer::new()));
    let ctx = Context::background().with_value(RequestId("req-42".to_owned()));
    let call = client.ready().await.unwrap().call(request_in(&a.uri("/hop"), &ctx));
    assert_eq!(text(within(call).await.unwrap()).await, "B saw req-42");
    let call =
        client.ready().await.unwrap().call(request_in(&a.uri("/hop"), &Context::background()));
    assert_eq!(text(within(call).await.unwrap()).await, "B saw no id");
}

/// Answers `hello` from a stream that never says it has ended, with its length declared in a
/// `content-length` header (as a file server does): hyper stops polling it after 5 bytes.
async fn sized(
    State(probe): State<Probe>,
    Extension(ctx): Extension<Context>,
) -> http::Response<Body> {
    probe.saw(&ctx);
    let chunks = tokio_stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"hello"))]);
    http::Response::builder()
        .header(http::header::CONTENT_LENGTH, "5")
        .body(Body::from_stream(chunks))
        .unwrap()
}

/// The request context of a response that was sent in full, though not polled to its end.
async fn completed_context(request: Request<Empty<Bytes>>, expected_body: &str) -> Context {
    let (probe, mut observed) = probe();
    let app = Router::new()
        .route("/quick", get(quick))
        .route("/sized", get(sized))
        .layer(ServerLayer::new(&Context::background()))
        .with_state(probe);
    let server = serve(app).await;
    let uri = format!("http://{}{}", server.addr, request.uri().path());
    let (mut parts, body) = request.into_parts();
    parts.uri = uri.parse().unwrap();
    let response = within(http1_client().request(Request::from_parts(parts, body))).await;
    let response = response.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(text(response).await, expected_body);
    let ctx = observed.context().await;
    within(ctx.done()).await;
    ctx
}

#[tokio::test]
async fn a_body_sent_to_its_declared_length_cancels_plainly() {
    let ctx = completed_context(get_request("/sized"), "hello").await;
    assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    assert!(!is_response_dropped(&ctx), "sent in full: plain Canceled, not {:?}", ctx.cause());
}

#[tokio::test]
async fn a_head_request_answered_cancels_plainly() {
    let head = Request::head("/quick").body(Empty::new()).unwrap();
    let ctx = completed_context(head, "").await;
    assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    assert!(!is_response_dropped(&ctx), "answered in full: plain Canceled, not {:?}", ctx.cause());
}
