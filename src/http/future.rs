//! What happens to a response on its way back: on the server, step 2 of the request context's
//! lifecycle (see the [module docs](super)): the response future owns the request's
//! [`RequestGuard`] until the handler answers, then hands it to the body; on the client, the
//! call raced against the request's context.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use http::Response;
use pin_project_lite::pin_project;

use super::{BoxError, RequestGuard, ResponseBody};
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
        Called { #[pin] future: F, guard: Option<RequestGuard> },
        Rejected { response: Option<(http::response::Parts, Option<String>)> },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(future: F, guard: RequestGuard) -> ResponseFuture<F> {
        ResponseFuture { state: ServerState::Called { future, guard: Some(guard) } }
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
            ServerStateProj::Called { future, guard } => {
                let output = ready!(future.poll(cx));
                let guard = guard.take().expect("ResponseFuture polled after completion");
                Poll::Ready(match output {
                    Ok(response) => Ok(response.map(|body| ResponseBody::new(body, guard))),
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

pin_project! {
    /// The response future of [`ClientService`](super::ClientService): the inner call, raced
    /// against the request's context.
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

impl<F, T, E> Future for ClientFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

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
                    return Poll::Ready(output.map_err(Into::into));
                }
                if Pin::new(done).poll(cx).is_pending() {
                    return Poll::Pending;
                }
                ctx.err().expect("a context whose Done resolved is done")
            }
            ClientStateProj::Unbound { future } => return future.poll(cx).map_err(Into::into),
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
