//! `ctx::http` over real gRPC: tonic servers with `ServerLayer` on 127.0.0.1:0, called through
//! real tonic channels wrapped in `ClientLayer`, and a chain client → A → B.
//!
//! No `protoc`: the service is written by hand over tonic's codec (`TextCodec`, a UTF-8 string
//! per message) with `tonic::server::Grpc` and `tonic::client::Grpc`, which is all that
//! generated code does. Needs `--features http,tonic` (`required-features` in Cargo.toml).

use std::convert::Infallible;
use std::error::Error as _;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut};
use ctx::Context;
use ctx::http::{ClientLayer, ClientService, ResponseDropped, ServerLayer};
use http::uri::PathAndQuery;
use tokio::sync::mpsc;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};
use tower::ServiceBuilder;

/// Generous: the point is "it does not hang", not how fast it is.
const NO_HANG: Duration = Duration::from_secs(10);

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(NO_HANG, future).await.expect("the test hung")
}

/// One UTF-8 string per gRPC message.
#[derive(Debug, Clone, Copy, Default)]
struct TextCodec;

impl Codec for TextCodec {
    type Encode = String;
    type Decode = String;
    type Encoder = TextCodec;
    type Decoder = TextCodec;

    fn encoder(&mut self) -> TextCodec {
        TextCodec
    }

    fn decoder(&mut self) -> TextCodec {
        TextCodec
    }
}

impl Encoder for TextCodec {
    type Item = String;
    type Error = Status;

    fn encode(&mut self, item: String, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(item.as_bytes());
        Ok(())
    }
}

impl Decoder for TextCodec {
    type Item = String;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<String>, Status> {
        let bytes = src.copy_to_bytes(src.remaining());
        String::from_utf8(bytes.to_vec())
            .map(Some)
            .map_err(|_| Status::invalid_argument("not UTF-8"))
    }
}

type Answer = Pin<Box<dyn Future<Output = Result<tonic::Response<String>, Status>> + Send>>;
type Handler = Arc<dyn Fn(tonic::Request<String>) -> Answer + Send + Sync>;

/// A gRPC service `test.Text` whose every method is `handler`, as generated code would route it.
#[derive(Clone)]
struct TextService {
    handler: Handler,
}

impl tonic::server::NamedService for TextService {
    const NAME: &'static str = "test.Text";
}

impl tower::Service<http::Request<tonic::body::Body>> for TextService {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let handler = self.handler.clone();
        Box::pin(async move {
            let method = tower::service_fn(move |request| handler(request));
            Ok(tonic::server::Grpc::new(TextCodec).unary(method, request).await)
        })
    }
}

/// A tonic server on 127.0.0.1:0 with `layer`, aborted when dropped.
struct Server {
    uri: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve<F, A>(layer: ServerLayer, handler: F) -> Server
where
    F: Fn(tonic::Request<String>) -> A + Send + Sync + 'static,
    A: Future<Output = Result<tonic::Response<String>, Status>> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind loopback");
    let uri = format!("http://{}", listener.local_addr().unwrap());
    let service = TextService { handler: Arc::new(move |request| Box::pin(handler(request))) };
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let task = tokio::spawn(async move {
        let mut builder = tonic::transport::Server::builder().layer(layer);
        builder.add_service(service).serve_with_incoming(incoming).await.expect("serve");
    });
    Server { uri, task }
}

type TextClient = tonic::client::Grpc<ClientService<Channel>>;

/// A tonic client for `uri`, its channel wrapped in `ClientLayer`.
async fn client(uri: &str) -> TextClient {
    let channel = within(Endpoint::from_shared(uri.to_owned()).unwrap().connect()).await;
    let channel = channel.expect("connect");
    tonic::client::Grpc::new(ServiceBuilder::new().layer(ClientLayer::new()).service(channel))
}

/// Calls `test.Text/Call` with `ctx` in the request's extensions.
async fn call(client: &mut TextClient, ctx: &Context, message: &str) -> Result<String, Status> {
    let mut request = tonic::Request::new(message.to_owned());
    request.extensions_mut().insert(ctx.clone());
    client.ready().await.map_err(Status::from_error)?;
    let path = PathAndQuery::from_static("/test.Text/Call");
    client.unary(request, path, TextCodec).await.map(tonic::Response::into_inner)
}

fn request_context(request: &tonic::Request<String>) -> Context {
    request.extensions().get::<Context>().expect("ServerLayer puts it there").clone()
}

#[tokio::test]
async fn the_client_deadline_bounds_the_server_handler() {
    let server = serve(ServerLayer::new(&Context::background()), |request| async move {
        let ctx = request_context(&request);
        let left = ctx.deadline().map(|at| at.saturating_duration_since(Instant::now()));
        Ok(tonic::Response::new(format!("{:?}", left.map(|left| left.as_micros()))))
    })
    .await;
    let mut client = client(&server.uri).await;

    let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(300));
    let left = parse_left(&within(call(&mut client, &ctx, "")).await.unwrap());
    assert!(left > Duration::from_millis(150) && left <= Duration::from_millis(300), "{left:?}");

    let none = within(call(&mut client, &Context::background(), "")).await.unwrap();
    assert_eq!(none, "None", "no deadline, no grpc-timeout");

    // A shorter `grpc-timeout` that the caller set itself is kept.
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(5));
    let mut request = tonic::Request::new(String::new());
    request.extensions_mut().insert(ctx);
    request.set_timeout(Duration::from_millis(100));
    client.ready().await.unwrap();
    let path = PathAndQuery::from_static("/test.Text/Call");
    let left = within(client.unary::<_, String, _>(request, path, TextCodec)).await.unwrap();
    let left = parse_left(left.get_ref());
    assert!(left > Duration::from_millis(50) && left <= Duration::from_millis(100), "{left:?}");
}

/// The time left that the handler of `the_client_deadline_bounds_the_server_handler` reports.
fn parse_left(answer: &str) -> Duration {
    let micros = answer.strip_prefix("Some(").and_then(|rest| rest.strip_suffix(')'));
    Duration::from_micros(micros.expect(answer).parse().unwrap())
}

/// Client → A → B: A answers by calling B with its own request context, and B's handler
/// reports its context, then waits for it to be done and answers with its error.
struct Chain {
    b_contexts: mpsc::UnboundedReceiver<Context>,
    client: TextClient,
    _servers: [Server; 2],
}

async fn chain(b_layer: ServerLayer) -> Chain {
    let (b_seen, b_contexts) = mpsc::unbounded_channel();
    let b = serve(b_layer, move |request| {
        let ctx = request_context(&request);
        let _ = b_seen.send(ctx.clone());
        async move {
            ctx.done().await;
            Err(Status::from(ctx.err().unwrap()))
        }
    })
    .await;
    let to_b = client(&b.uri).await;
    let a = serve(ServerLayer::new(&Context::background()), move |request| {
        let mut to_b = to_b.clone();
        async move {
            let ctx = request_context(&request);
            let answer = call(&mut to_b, &ctx, request.get_ref()).await?;
            Ok(tonic::Response::new(answer))
        }
    })
    .await;
    let client = client(&a.uri).await;
    Chain { b_contexts, client, _servers: [a, b] }
}

#[tokio::test]
async fn cancelling_the_client_cancels_the_last_hop() {
    let mut chain = chain(ServerLayer::new(&Context::background())).await;
    let (ctx, cancel) = Context::background().with_cancel();
    let mut client = chain.client.clone();
    let call = tokio::spawn(async move { call(&mut client, &ctx, "hello").await });
    let b_ctx = within(chain.b_contexts.recv()).await.unwrap();
    assert!(!b_ctx.is_done());

    cancel.cancel();
    let cancelled = Instant::now();
    within(b_ctx.done()).await;
    let took = cancelled.elapsed();
    eprintln!("B's request context was done {took:?} after the client's was cancelled");
    assert!(took < Duration::from_millis(200), "B's request context was done after {took:?}");
    assert!(b_ctx.cause().unwrap().is::<ResponseDropped>(), "cause: {:?}", b_ctx.cause());

    // tonic reports a failed transport call as UNKNOWN; the `ctx::Error` is its source.
    let status = within(call).await.unwrap().unwrap_err();
    assert_eq!(status.code(), Code::Unknown, "{status:?}");
    let source = status.source().and_then(|source| source.downcast_ref::<ctx::Error>());
    assert_eq!(source, Some(&ctx::Error::Canceled));
}

#[tokio::test]
async fn the_last_hops_deadline_exceeded_reaches_the_client() {
    let b_layer = ServerLayer::new(&Context::background()).max_timeout(Duration::from_millis(100));
    let mut chain = chain(b_layer).await;
    let (ctx, _guard) = Context::background().with_timeout(Duration::from_secs(5));
    let started = Instant::now();
    let status = within(call(&mut chain.client, &ctx, "hello")).await.unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(status.message(), "context deadline exceeded");
    assert!(started.elapsed() < Duration::from_secs(2), "B's 100 ms, not the client's 5 s");
    let b_ctx = within(chain.b_contexts.recv()).await.unwrap();
    assert_eq!(b_ctx.err(), Some(ctx::Error::DeadlineExceeded));
}

#[tokio::test]
async fn a_malformed_grpc_timeout_is_a_grpc_internal_error() {
    let server = serve(ServerLayer::new(&Context::background()), |_| async move {
        panic!("the handler must not be called")
    })
    .await;
    let mut client = client(&server.uri).await;
    let mut request = tonic::Request::new(String::new());
    request.metadata_mut().insert("grpc-timeout", "1x".parse().unwrap());
    client.ready().await.unwrap();
    let path = PathAndQuery::from_static("/test.Text/Call");
    let status = within(client.unary::<_, String, _>(request, path, TextCodec)).await.unwrap_err();
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    assert_eq!(status.message(), r#"malformed grpc-timeout header "1x": unknown unit"#);
}
