//! What happens to the response body: step 3 of the request context's lifecycle (see the
//! [module docs](super)). The body owns the request's [`RequestGuard`] once the handler has
//! answered, and sees the body end (the request context is cancelled with `Canceled`) or be
//! dropped before its end ([`ResponseDropped`](super::ResponseDropped)).

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll, ready};

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::RequestGuard;

pin_project! {
    /// The response body of [`ServerService`](super::ServerService): the handler's body `B`,
    /// which keeps the request context alive until its end, or the short text of an answer the
    /// layer made itself (a malformed `grpc-timeout`).
    ///
    /// It is cancelled with plain `Canceled` when the inner body ends (its last frame was
    /// taken, or `is_end_stream` is true: an empty body ends at once), and with
    /// [`ResponseDropped`](super::ResponseDropped) when dropped before its end, or after an
    /// error frame.
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
        Inner { #[pin] body: B, guard: Option<RequestGuard> },
        Rejected { message: Option<String> },
    }
}

impl<B: Body> ResponseBody<B> {
    /// The handler's `body`, which now owns `guard`: an empty body finishes it at once, since
    /// a server may send it without ever polling it.
    pub(super) fn new(body: B, guard: RequestGuard) -> ResponseBody<B> {
        let guard = if body.is_end_stream() {
            guard.finish();
            None
        } else {
            Some(guard)
        };
        ResponseBody { state: BodyState::Inner { body, guard } }
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
            BodyStateProj::Inner { mut body, guard } => {
                let frame = ready!(body.as_mut().poll_frame(cx));
                let ended = match &frame {
                    None => true,
                    Some(Ok(_)) => body.is_end_stream(),
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
