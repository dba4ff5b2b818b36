//! What happens to response bodies.
//!
//! - On the server, step 3 of the request context's lifecycle (see the [module docs](super)):
//!   [`ResponseBody`] owns the request's [`RequestGuard`] once the handler has answered, and sees
//!   the body end (the request context is cancelled with `Canceled`) or be dropped before its
//!   end ([`ResponseDropped`](super::ResponseDropped)).
//! - On the client, [`ClientBody`] goes on racing the call's context while the body streams in.

use std::fmt;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use bytes::Buf;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::future::context_won;
use super::{BoxError, RequestGuard};
use crate::{Context, Done};

pin_project! {
    /// The response body of [`ServerService`](super::ServerService): the handler's body `B`,
    /// which keeps the request context alive until its end, or the short text of an answer the
    /// layer made itself (a malformed `grpc-timeout`).
    ///
    /// It is cancelled with plain `Canceled` when the inner body ends (its last frame was
    /// taken, or `is_end_stream` is true: an empty body ends at once) or when it has produced
    /// the length the response declares, and with [`ResponseDropped`](super::ResponseDropped)
    /// when dropped before either, or after an error frame. The declared length is the
    /// `content-length` header, else the body's exact `size_hint`; it is zero for the answer to
    /// a `HEAD` request and for a `1xx`, `204` or `304` status. A transport stops there and
    /// drops the body without polling it further (hyper's HTTP/1 does), so a body that does
    /// not say it has ended would otherwise look cut short. Trailers after a declared length
    /// are still passed on, but the request context is already done when they are polled.
    ///
    /// `B::Data` must be buildable from a `String` (as `bytes::Bytes`, the data type of axum's,
    /// hyper's and tonic's bodies, is).
    pub struct ResponseBody<B> {
        #[pin]
        state: BodyState<B>,
    }
}

pin_project! {
    #[project = BodyStateProj]
    enum BodyState<B> {
        Inner { #[pin] body: B, guard: Option<RequestGuard>, declared: Option<u64> },
        Rejected { message: Option<String> },
    }
}

impl<B: Body> ResponseBody<B> {
    /// The handler's `body`, which now owns `guard`; `declared` is the length the response
    /// declares (see the type's docs), if any. An empty body, or a declared length of zero,
    /// finishes the guard at once, since a server may send the response without ever polling
    /// the body.
    pub(super) fn new(body: B, guard: RequestGuard, declared: Option<u64>) -> ResponseBody<B> {
        let declared = declared.or_else(|| body.size_hint().exact());
        let guard = if body.is_end_stream() || declared == Some(0) {
            guard.finish();
            None
        } else {
            Some(guard)
        };
        ResponseBody { state: BodyState::Inner { body, guard, declared } }
    }
}

impl<B> ResponseBody<B> {
    /// The body of an answer the layer made: `message` as one data frame, or empty.
    pub(super) fn rejected(message: Option<String>) -> ResponseBody<B> {
        ResponseBody { state: BodyState::Rejected { message } }
    }
}

impl<B> Body for ResponseBody<B>
where
    B: Body,
    B::Data: From<String>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, B::Error>>> {
        match self.project().state.project() {
            BodyStateProj::Inner { mut body, guard, declared } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                let ended = match &frame {
                    None => true,
                    Some(Ok(frame)) => {
                        let sent = frame.data_ref().map_or(0, |data| data.remaining() as u64);
                        if let Some(left) = declared {
                            *left = left.saturating_sub(sent);
                        }
                        body.is_end_stream() || *declared == Some(0)
                    }
                    // The response is cut short: the guard stays, and is dropped unfinished.
                    Some(Err(_)) => false,
                };
                if ended {
                    if let Some(guard) = guard.take() {
                        guard.finish();
                    }
                }
                Poll::Ready(frame)
            }
            BodyStateProj::Rejected { message } => {
                Poll::Ready(message.take().map(|message| Ok(Frame::data(B::Data::from(message)))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            BodyState::Inner { body, .. } => body.is_end_stream(),
            BodyState::Rejected { message } => message.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            BodyState::Inner { body, .. } => body.size_hint(),
            BodyState::Rejected { message } => {
                SizeHint::with_exact(message.as_ref().map_or(0, |message| message.len() as u64))
            }
        }
    }
}

pin_project! {
    /// The response body of [`ClientService`](super::ClientService): the transport's body `B`,
    /// still raced against the request's context. When the context is done before the body
    /// ends, the body is dropped at once (hyper then resets the stream or closes the
    /// connection, so the server's request context is cancelled in turn) and the next frame is
    /// the context's [`Error`](crate::Error), boxed; the body has ended after it.
    ///
    /// Its error type is tower's [`BoxError`]: the transport's error, or a `ctx::Error`.
    pub struct ClientBody<B> {
        #[pin]
        state: ClientBodyState<B>,
    }
}

pin_project! {
    #[project = ClientBodyProj]
    enum ClientBodyState<B> {
        Raced { #[pin] body: B, ctx: Context, done: Done },
        Unbound { #[pin] body: B },
        Cancelled { error: Option<crate::Error> },
    }
}

impl<B> ClientBody<B> {
    /// `body`, raced against `ctx`.
    pub(super) fn raced(body: B, ctx: Context) -> ClientBody<B> {
        let done = ctx.done();
        ClientBody { state: ClientBodyState::Raced { body, ctx, done } }
    }

    /// The body of a call whose request carried no context.
    pub(super) fn unbound(body: B) -> ClientBody<B> {
        ClientBody { state: ClientBodyState::Unbound { body } }
    }
}

impl<B> Body for ClientBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = B::Data;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<B::Data>, BoxError>>> {
        let mut state = self.project().state;
        let error = match state.as_mut().project() {
            ClientBodyProj::Raced { body, ctx, done } => {
                // The body first, as the response future polls the call first.
                if let Poll::Ready(frame) = body.poll_frame(cx) {
                    return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
                }
                ready!(context_won(ctx, done, cx))
            }
            ClientBodyProj::Unbound { body } => {
                return body.poll_frame(cx).map(|frame| frame.map(|f| f.map_err(Into::into)));
            }
            ClientBodyProj::Cancelled { error } => {
                return Poll::Ready(error.take().map(|error| Err(Box::new(error) as BoxError)));
            }
        };
        // Drop the transport's body now: that is what resets the stream.
        state.set(ClientBodyState::Cancelled { error: None });
        Poll::Ready(Some(Err(Box::new(error))))
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            ClientBodyState::Raced { body, .. } | ClientBodyState::Unbound { body } => {
                body.is_end_stream()
            }
            ClientBodyState::Cancelled { error } => error.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.state {
            ClientBodyState::Raced { body, .. } | ClientBodyState::Unbound { body } => {
                body.size_hint()
            }
            ClientBodyState::Cancelled { .. } => SizeHint::with_exact(0),
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ResponseBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            BodyState::Inner { body, guard, .. } => f
                .debug_struct("ResponseBody")
                .field("body", body)
                .field("ended", &guard.is_none())
                .finish(),
            BodyState::Rejected { message } => {
                f.debug_struct("ResponseBody").field("rejected", message).finish()
            }
        }
    }
}

impl<B: fmt::Debug> fmt::Debug for ClientBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.state {
            ClientBodyState::Raced { body, ctx, .. } => {
                f.debug_struct("ClientBody").field("body", body).field("ctx", ctx).finish()
            }
            ClientBodyState::Unbound { body } => {
                f.debug_struct("ClientBody").field("body", body).finish()
            }
            ClientBodyState::Cancelled { error } => {
                f.debug_struct("ClientBody").field("cancelled", error).finish()
            }
        }
    }
}
