//! What happens to a response on its way back: on the server, step 2 of the request context's
//! lifecycle (see the [module docs](super)): the response future owns the request's
//! [`RequestGuard`] until the handler answers, then hands it to the body; on the client, the
//! call raced against the request's context.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::{BoxError, ClientBody, RequestGuard, ResponseBody};
use crate::{Context, Done};

pin_project! {
    /// The response future of [`ServerService`](super::ServerService).
    ///
    /// Dropped before the handler answers (hyper drops it when the client disconnects), it
    /// cancels the request context with [`ResponseDropped`](super::ResponseDropped). When the
    /// handler answers, the context passes to the [`ResponseBody`]; when it fails, the context
    /// is cancelled with plain `Canceled`.
    pub struct ResponseFuture<F> {
        #[pin]
        state: ServerState<F>,
    }
}

pin_project! {
    #[project = ServerStateProj]
    enum ServerState<F> {
        Called { #[pin] future: F, guard: Option<RequestGuard>, head: bool },
        Rejected { response: Option<(http::response::Parts, Option<String>)> },
    }
}

impl<F> ResponseFuture<F> {
    /// The inner service's `future`, owning `guard`; `head` says the request was a `HEAD`
    /// request, whose response has no body on the wire.
    pub(super) fn new(future: F, guard: RequestGuard, head: bool) -> ResponseFuture<F> {
        ResponseFuture { state: ServerState::Called { future, guard: Some(guard), head } }
    }

    /// A response made without calling the inner service: its head and its body's one frame.
    pub(super) fn rejected(response: (http::response::Parts, Option<String>)) -> ResponseFuture<F> {
        ResponseFuture { state: ServerState::Rejected { response: Some(response) } }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<ResponseBody<B>>, E>;

    /// # Panics
    /// When polled again after it returned `Ready`, like most futures.
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            ServerStateProj::Called { future, guard, head } => {
                let output = ready!(future.poll(cx));
                let guard = guard.take().expect("ResponseFuture polled after completion");
                Poll::Ready(match output {
                    Ok(response) => {
                        let declared = declared_length(&response, *head);
                        Ok(response.map(|body| ResponseBody::new(body, guard, declared)))
                    }
                    Err(error) => {
                        guard.finish();
                        Err(error)
                    }
                })
            }
            ServerStateProj::Rejected { response } => {
                let (parts, message) =
                    response.take().expect("ResponseFuture polled after completion");
                Poll::Ready(Ok(Response::from_parts(parts, ResponseBody::rejected(message))))
            }
        }
    }
}

/// How many bytes of body the transport will send for `response`: none for the answer to a
/// `HEAD` request or a `1xx`, `204` or `304` status (RFC 9110, 6.4.1), else its
/// `content-length`, if it has a valid one.
fn declared_length<B>(response: &Response<B>, head: bool) -> Option<u64> {
    let status = response.status();
    if head || status.is_informational() || status == 204 || status == 304 {
        return Some(0);
    }
    let length = response.headers().get(http::header::CONTENT_LENGTH)?;
    length.to_str().ok()?.parse().ok()
}

pin_project! {
    /// The response future of [`ClientService`](super::ClientService): the inner call, raced
    /// against the request's context, and then its body, as a [`ClientBody`].
    ///
    /// When the context is done first, the inner call is dropped (hyper then resets the stream
    /// or closes the connection, which cancels the server's request context in turn) and this
    /// future fails with the context's [`Error`](crate::Error), boxed.
    pub struct ClientFuture<F> {
        #[pin]
        state: ClientState<F>,
    }
}

pin_project! {
    #[project = ClientStateProj]
    enum ClientState<F> {
        Raced { #[pin] future: F, ctx: Context, done: Done },
        Unbound { #[pin] future: F },
        Failed { error: Option<crate::Error> },
    }
}

impl<F> ClientFuture<F> {
    /// The call `future`, raced against `ctx`.
    pub(super) fn raced(future: F, ctx: Context) -> ClientFuture<F> {
        let done = ctx.done();
        ClientFuture { state: ClientState::Raced { future, ctx, done } }
    }

    /// A call whose request carries no context: nothing to race.
    pub(super) fn unbound(future: F) -> ClientFuture<F> {
        ClientFuture { state: ClientState::Unbound { future } }
    }

    /// A call not made because its context was done already.
    pub(super) fn failed(error: crate::Error) -> ClientFuture<F> {
        ClientFuture { state: ClientState::Failed { error: Some(error) } }
    }
}

impl<F, B, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<ClientBody<B>>, BoxError>;

    /// # Panics
    /// A call that failed because of its context panics when polled again after it returned
    /// `Ready`.
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        let error = match state.as_mut().project() {
            ClientStateProj::Raced { future, ctx, done } => {
                // The call first, as `Context::run` polls its future first: a response that is
                // ready in the same poll as a cancel is returned, not thrown away. A context
                // done before the call was made never gets here (`ClientService::call`).
                if let Poll::Ready(output) = future.poll(cx) {
                    let raced = |body| ClientBody::raced(body, ctx.clone());
                    return Poll::Ready(
                        output.map(|response| response.map(raced)).map_err(Into::into),
                    );
                }
                ready!(context_won(ctx, done, cx))
            }
            ClientStateProj::Unbound { future } => {
                let output = ready!(future.poll(cx));
                return Poll::Ready(output.map(|r| r.map(ClientBody::unbound)).map_err(Into::into));
            }
            ClientStateProj::Failed { error } => {
                error.take().expect("ClientFuture polled after completion")
            }
        };
        // Drop the call now, not when this future is dropped: that is what tells the transport
        // to reset the stream or close the connection.
        state.set(ClientState::Failed { error: None });
        Poll::Ready(Err(Box::new(error)))
    }
}

/// The second half of the client's race, polled after the call or its body was pending:
/// `Ready` with the context's error once the context is done.
pub(super) fn context_won(
    ctx: &Context,
    done: &mut Done,
    cx: &mut TaskContext<'_>,
) -> Poll<crate::Error> {
    ready!(Pin::new(done).poll(cx));
    Poll::Ready(ctx.err().expect("a context whose Done resolved is done"))
}

#[cfg(test)]
mod tests {
    use std::future::{Ready, ready};
    use std::pin::pin;
    use std::task::Waker;

    use super::*;
    use crate::http::ResponseDropped;

    /// A server response future whose request context is returned alongside.
    fn called<T>(output: T) -> (ResponseFuture<Ready<T>>, Context) {
        let (ctx, handle) = Context::background().with_cancel();
        (ResponseFuture::new(ready(output), RequestGuard::new(handle), false), ctx)
    }

    fn poll_once<F: Future>(future: F) -> Poll<F::Output> {
        pin!(future).poll(&mut TaskContext::from_waker(Waker::noop()))
    }

    fn dropped(ctx: &Context) -> bool {
        ctx.cause().is_some_and(|cause| cause.is::<ResponseDropped>())
    }

    #[test]
    fn a_handler_error_cancels_plainly() {
        let (future, ctx) = called(Err::<Response<String>, _>("handler failed"));
        assert!(matches!(poll_once(future), Poll::Ready(Err("handler failed"))));
        assert_eq!(ctx.err(), Some(crate::Error::Canceled));
        assert!(!dropped(&ctx));
    }

    #[test]
    fn a_future_dropped_before_the_answer_cancels_with_response_dropped() {
        let (future, ctx) = called(Ok::<_, ()>(Response::new(String::from("never sent"))));
        assert!(!ctx.is_done());
        drop(future);
        assert!(dropped(&ctx));
    }

    #[test]
    fn an_empty_body_cancels_plainly_at_once() {
        let (future, ctx) = called(Ok::<_, ()>(Response::new(String::new())));
        let Poll::Ready(Ok(response)) = poll_once(future) else { panic!("ready") };
        assert_eq!(ctx.err(), Some(crate::Error::Canceled), "nothing left to send");
        drop(response);
        assert!(!dropped(&ctx));
    }

    #[test]
    fn a_body_dropped_before_its_end_cancels_with_response_dropped() {
        let (future, ctx) = called(Ok::<_, ()>(Response::new(String::from("unread"))));
        let Poll::Ready(Ok(response)) = poll_once(future) else { panic!("ready") };
        assert!(!ctx.is_done(), "the body is still to be sent");
        drop(response);
        assert!(dropped(&ctx));
    }

    #[test]
    fn a_body_dropped_before_its_declared_length_cancels_with_response_dropped() {
        use http_body::{Body, Frame};

        let frames: Vec<Result<Frame<bytes::Bytes>, ()>> =
            vec![Ok(Frame::data("hello".into())), Ok(Frame::data("world".into()))];
        let stream = http_body_util::StreamBody::new(tokio_stream::iter(frames));
        let response = Response::builder().header("content-length", "10").body(stream).unwrap();
        let (future, ctx) = called(Ok::<_, ()>(response));
        let Poll::Ready(Ok(response)) = poll_once(future) else { panic!("ready") };
        let mut body = Box::pin(response.into_body());
        let frame = body.as_mut().poll_frame(&mut TaskContext::from_waker(Waker::noop()));
        assert!(matches!(frame, Poll::Ready(Some(Ok(_)))));
        assert!(!ctx.is_done(), "5 of the 10 declared bytes sent");
        drop(body);
        assert!(dropped(&ctx));
    }

    #[test]
    fn a_body_that_fails_cancels_with_response_dropped() {
        use http_body::{Body, Frame};

        let frames: Vec<Result<Frame<bytes::Bytes>, &str>> = vec![Err("disk on fire")];
        let failing = http_body_util::StreamBody::new(tokio_stream::iter(frames));
        let (future, ctx) = called(Ok::<_, ()>(Response::new(failing)));
        let Poll::Ready(Ok(response)) = poll_once(future) else { panic!("ready") };
        let mut body = Box::pin(response.into_body());
        let frame = body.as_mut().poll_frame(&mut TaskContext::from_waker(Waker::noop()));
        assert!(matches!(frame, Poll::Ready(Some(Err("disk on fire")))));
        assert!(!ctx.is_done(), "cut short, not ended");
        drop(body);
        assert!(dropped(&ctx));
    }
}
