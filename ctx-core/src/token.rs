//! Bridges to tokio-util's [`CancellationToken`] (feature `tokio-util`), which many crates of
//! the tokio ecosystem take or hand out: [`Context::to_cancellation_token`] gives one to them,
//! [`Context::with_cancellation_token`] takes one in.
//!
//! The two directions differ because the two types do: a context can run code when it is done
//! ([`Context::after_func`]), so a context drives a token with no task and no thread; a token
//! offers only a future, so a token drives a context through a task that awaits it.
//!
//! Shape of the token-driven context: `self → outer (with_cancel) → value layer (StopWatching)
//! → child (with_cancel)`. The caller gets `child`. The watcher task holds `outer`'s handle
//! (which cancels `child` without keeping it alive), and ends as soon as the first of these
//! happens (invariants, kept by `with_cancellation_token` and the task it spawns):
//! 1. the token is cancelled: the task cancels `outer`, hence `child`;
//! 2. `child` is done for another reason: its `after_func` cancels the private `stop` token;
//! 3. `child` and everything derived from it are dropped: the value layer drops, and with it
//!    the `DropGuard` that cancels `stop`.
//!
//! On its way out the task stops the `after_func` (it may have moved up to `outer` in case 3),
//! so nothing stays registered on `self` either.
//!
//! 4. If the task is dropped before any of those (its runtime shut down, perhaps before it
//!    ever ran), nothing watches the token any more: the [`Watcher`] it owns cancels `outer`
//!    with the cause [`TokenWatcherGone`] as it drops, so the child is never left waiting for
//!    a token that can no longer reach it.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::task::Poll;

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{AfterFunc, CancelHandle, Context};

/// The value layer's content: cancels the watcher's `stop` token when dropped (invariant 3).
struct StopWatching {
    _stop: DropGuard,
}

/// The [`cause`](Context::cause) of a context from
/// [`with_cancellation_token`](Context::with_cancellation_token) whose watcher task was dropped
/// before the token was cancelled or the context was done: the tokio runtime it was spawned on
/// shut down, so the token could no longer reach the context. Its `err()` is
/// [`Error::Canceled`](crate::Error::Canceled).
///
/// ```
/// use tokio_util::sync::CancellationToken;
///
/// let token = CancellationToken::new();
/// let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// let (ctx, _handle) =
///     runtime.block_on(async { ctx::Context::background().with_cancellation_token(&token) });
/// drop(runtime); // the watcher task goes with it
/// let cause = ctx.cause().unwrap();
/// assert!(cause.downcast_ref::<ctx_core::TokenWatcherGone>().is_some());
/// assert_eq!(cause.to_string(), "the tokio runtime watching the cancellation token shut down");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TokenWatcherGone;

impl fmt::Display for TokenWatcherGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the tokio runtime watching the cancellation token shut down")
    }
}

impl std::error::Error for TokenWatcherGone {}

/// What the watcher task owns: `outer`'s handle and the `after_func` to stop on the way out.
/// Dropped unfinished (the task was dropped before it ended), it cancels `outer` with
/// [`TokenWatcherGone`] (invariant 4).
struct Watcher {
    cancel_outer: CancelHandle,
    on_done: Option<AfterFunc>,
}

impl Watcher {
    /// The task's end (invariants 1 to 3): cancels `outer` if the token was cancelled first.
    fn finish(mut self, token_cancelled: bool) {
        if token_cancelled {
            self.cancel_outer.cancel();
        }
        if let Some(on_done) = self.on_done.take() {
            on_done.stop();
        }
    }
}

impl Drop for Watcher {
    /// Invariant 4; after [`finish`](Watcher::finish), only `outer`'s handle drops.
    fn drop(&mut self) {
        if let Some(on_done) = self.on_done.take() {
            // Unfinished: the task itself was dropped. A child that is done already keeps its
            // cause (only the private `outer` layer can still be cancelled then).
            on_done.stop();
            self.cancel_outer.cancel_with_cause(TokenWatcherGone);
        }
    }
}

impl Context {
    /// A [`CancellationToken`] that is cancelled when this context is done, for any reason
    /// (cancel, parent, deadline), as part of the cancel that finishes it: an
    /// [`after_func`](Context::after_func), so no task and no thread are involved. If this
    /// context is done already, the token is returned cancelled (if it is
    /// being finished by another thread during the call, the token is cancelled soon after, on
    /// ctx's timer thread).
    ///
    /// Of a context that can never be done ([`background`](Context::background), a
    /// [`without_cancel`](Context::without_cancel) context), a token that is never cancelled,
    /// and nothing is registered. Cancelling the token does not cancel the context: use
    /// [`with_cancellation_token`](Context::with_cancellation_token) for that direction.
    ///
    /// Each call makes a new token; the callback holds a clone of it until the context is done
    /// or can no longer be, **even if the token is dropped** (a token tells nobody when it is
    /// dropped). A context dropped before it is done hands its callbacks to its parent (see
    /// [`after_func`](Context::after_func)), so a token made for each request from a request
    /// context keeps about 300 bytes on a long-lived cancellable ancestor (say the context of
    /// `ctx::signal::shutdown()`) until that ancestor is done. Where requests are many, register
    /// the callback yourself and stop it when the request ends:
    ///
    /// ```
    /// use tokio_util::sync::CancellationToken;
    ///
    /// let (server, _stop_server) = ctx::Context::background().with_cancel();
    /// let (request, _guard) = server.with_timeout(std::time::Duration::from_secs(30));
    /// let token = CancellationToken::new();
    /// let registration = request.after_func({
    ///     let token = token.clone();
    ///     move || token.cancel()
    /// });
    /// // ... hand `token` to the request's work ...
    /// registration.stop(); // the request is over: nothing stays on `server`
    /// ```
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// let token = ctx.to_cancellation_token();
    /// assert!(!token.is_cancelled());
    /// handle.cancel();
    /// assert!(token.is_cancelled()); // already, when `cancel` returns
    /// ```
    pub fn to_cancellation_token(&self) -> CancellationToken {
        let token = CancellationToken::new();
        if self.is_done() {
            // Here rather than through `after_func`, which would run it soon, on the timer thread.
            token.cancel();
            return token;
        }
        let cancel = token.clone();
        // Dropping the registration neither stops nor detaches it; on a context that can never
        // be done, `after_func` drops the closure at once.
        drop(self.after_func(move || cancel.cancel()));
        token
    }

    /// A child of this context that is also done when `token` is cancelled (its `err()` is then
    /// [`Error::Canceled`](crate::Error::Canceled), its cause too). Otherwise it is an ordinary
    /// [`with_cancel`](Context::with_cancel) child: done when this context is, or when the
    /// returned handle cancels it. Cancelling the child does not cancel the token.
    ///
    /// tokio-util's token offers no callback, so the token is watched by **a task spawned on
    /// the current tokio runtime**. That task ends as soon as the token is cancelled, or the
    /// child is done, or the child and every context derived from it are dropped; it holds
    /// nothing that keeps the child alive. If the token is cancelled already, or this context
    /// is done, the child is born done and no task is spawned. If the runtime shuts down while
    /// the task still watches, the child is cancelled then, with the cause
    /// [`TokenWatcherGone`]: it is never left waiting for a token nothing watches.
    ///
    /// # Panics
    /// If called outside a tokio runtime (there would be nothing to run the watcher on), with a
    /// message that says so, even when no task would be needed: the call does not work only
    /// by chance.
    ///
    /// ```
    /// use tokio_util::sync::CancellationToken;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// let token = CancellationToken::new();
    /// let (ctx, _handle) = ctx::Context::background().with_cancellation_token(&token);
    /// assert!(!ctx.is_done());
    /// token.cancel();
    /// ctx.done().await;
    /// assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    /// # }
    /// ```
    pub fn with_cancellation_token(&self, token: &CancellationToken) -> (Context, CancelHandle) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            panic!(
                "ctx::Context::with_cancellation_token must be called inside a tokio runtime: \
                 the token is watched by a task spawned on the current runtime"
            );
        };
        let (outer, cancel_outer) = self.with_cancel();
        let stop = CancellationToken::new();
        let (child, handle) =
            outer.with_value(StopWatching { _stop: stop.clone().drop_guard() }).with_cancel();
        if child.is_done() {
            return (child, handle);
        }
        if token.is_cancelled() {
            cancel_outer.cancel();
            return (child, handle);
        }
        let on_done = {
            let stop = stop.clone();
            child.after_func(move || stop.cancel())
        };
        let token = token.clone();
        // Made before the task and moved into it: a task dropped before its first poll drops
        // it too (invariant 4).
        let watcher = Watcher { cancel_outer, on_done: Some(on_done) };
        runtime.spawn(async move {
            let token_cancelled = first_cancelled(&token, &stop).await;
            watcher.finish(token_cancelled);
        });
        (child, handle)
    }
}

/// Waits until `token` or `stop` is cancelled; `true` if it was `token` (checked second, so a
/// watcher told to stop does not cancel a child that is gone anyway).
async fn first_cancelled(token: &CancellationToken, stop: &CancellationToken) -> bool {
    let mut token_cancelled = pin!(token.cancelled());
    let mut stop_cancelled = pin!(stop.cancelled());
    poll_fn(|cx| {
        if stop_cancelled.as_mut().poll(cx).is_ready() {
            Poll::Ready(false)
        } else if token_cancelled.as_mut().poll(cx).is_ready() {
            Poll::Ready(true)
        } else {
            Poll::Pending
        }
    })
    .await
}
