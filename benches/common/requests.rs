//! One HTTP request served start to end through a tower service, without a network or a
//! runtime: what `benches/http.rs` times and `benches/alloc.rs` counts, so both measure the same
//! thing. The service answers at once and its body is one frame, so one poll of each suffices.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context as TaskContext, Poll, Waker};

use bytes::Bytes;
use http::{Request, Response};
use http_body::Body;
use http_body_util::Full;
use tower::Service;

/// What the handler answers.
pub type Answer = Result<Response<Full<Bytes>>, Infallible>;

/// The handler every variant wraps: it answers `ok` without looking at the request.
pub fn handler() -> impl Service<
    Request<()>,
    Response = Response<Full<Bytes>>,
    Error = Infallible,
    Future = Ready<Answer>,
> + Clone {
    tower::service_fn(|_: Request<()>| {
        ready(Ok(Response::new(Full::new(Bytes::from_static(b"ok")))))
    })
}

/// Serves `request` with `service`, then reads the response body to its end.
///
/// # Panics
/// If the service is not ready at once or does not answer at once: these benchmarks need a
/// service that never waits.
pub fn serve<S, B>(service: &mut S, request: Request<()>)
where
    S: Service<Request<()>, Response = Response<B>>,
    S::Error: std::fmt::Debug,
    B: Body,
{
    let mut cx = TaskContext::from_waker(Waker::noop());
    assert!(matches!(service.poll_ready(&mut cx), Poll::Ready(Ok(()))), "not ready at once");
    let response = match pin!(service.call(request)).poll(&mut cx) {
        Poll::Ready(response) => response.expect("the benchmark service does not fail"),
        Poll::Pending => panic!("the benchmark service answers at once"),
    };
    let mut body = pin!(response.into_body());
    while let Poll::Ready(Some(frame)) = body.as_mut().poll_frame(&mut cx) {
        black_box(frame.is_ok());
    }
}
