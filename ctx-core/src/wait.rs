//! Waiting for a context: the [`Done`] future, blocking [`Context::wait`], and
//! [`Context::run`], which races a future against cancellation.
//!
//! A waiter registers as a dependent of the context's node through
//! `Node::with_live_dependents`, which checks the state under the lock it inserts under (tree
//! invariant 2): either it sees the node done, or the cancel that finishes the node will find it
//! and wake it. Each registration is woken at most once.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use crate::Context;
use crate::error::Error;
use crate::sync::{current, park};
use crate::tree::{Dependent, NOT_LINKED, remove_dependent};

/// A future that resolves once its context is done. Made by [`Context::done`].
///
/// It resolves at once if the context already is done, never if the context can never be done
/// (a root or a [`without_cancel`](Context::without_cancel) context, like Go's nil channel),
/// and otherwise is woken exactly once, by the cancel that finishes the context. It is
/// cancel-safe: dropping it unregisters its waker. It works on any executor.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, handle) = ctx::Context::background().with_cancel();
/// let done = ctx.done(); // a named, `Send`, `Unpin` future; it owns a clone of `ctx`
/// handle.cancel();
/// done.await; // resolves at once: the context is done
/// # }
/// ```
#[must_use = "futures do nothing unless polled"]
#[derive(Debug)]
pub struct Done {
    ctx: Context,
    key: u32,
}

impl Context {
    /// A future that resolves once this context is done. See [`Done`].
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// let server = tokio::spawn({
    ///     let ctx = ctx.clone();
    ///     async move {
    ///         ctx.done().await;
    ///         format!("stopping: {}", ctx.err().unwrap())
    ///     }
    /// });
    /// handle.cancel();
    /// assert_eq!(server.await.unwrap(), "stopping: context canceled");
    /// # }
    /// ```
    pub fn done(&self) -> Done {
        Done { ctx: self.clone(), key: NOT_LINKED }
    }

    /// Blocks the calling thread until this context is done. Blocks forever on a context that can
    /// never be done. For threads; in async code await [`done`](Context::done) instead.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// std::thread::spawn(move || handle.cancel());
    /// ctx.wait();
    /// assert!(ctx.is_done());
    /// ```
    pub fn wait(&self) {
        self.wait_until(None);
    }

    /// Blocks the calling thread until this context is done or `timeout` has passed. Returns
    /// `true` if the context is done when it returns, `false` if the time ran out first.
    ///
    /// ```
    /// use std::time::Duration;
    /// let ctx = ctx::Context::background();
    /// assert!(!ctx.wait_timeout(Duration::from_millis(1)));
    /// ```
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        self.wait_until(Instant::now().checked_add(timeout))
    }

    /// Runs `future` until it completes or this context is done, whichever comes first:
    /// `Ok(output)`, or `Err(err())` after dropping the future. No runtime needed; allocates
    /// nothing (the waker registration lives in the returned future).
    ///
    /// # Fairness
    /// Biased towards completion, as tokio-util's `run_until_cancelled` is:
    /// - A context that is already done when `run` is first polled does not poll the future at
    ///   all: `Err` at once.
    /// - After that, every poll polls the future first and looks at the context only if the
    ///   future is still pending. A result that is ready in the same poll as a cancel (the cancel
    ///   came between two polls, or the future itself cancelled the context) is returned as
    ///   `Ok`, not thrown away.
    ///
    /// So a future that is always ready when polled (a busy loop of ready awaits) is never
    /// interrupted by `run`; check [`is_done`](Context::is_done) in such loops (`#[cancellable]`
    /// does, at the top of every iteration).
    ///
    /// # Cancel safety
    /// `run` itself is cancel-safe: dropping it drops the future and unregisters from the
    /// context, nothing else. When cancellation wins, the future is dropped where it was
    /// suspended, exactly as the losing branch of a `select!`: whether that loses data is the
    /// future's own cancel safety (a channel `recv` loses nothing; a multi-step write may stop
    /// half-way). A completed result is never lost to a cancel, by the bias above.
    ///
    /// ```
    /// use std::time::Duration;
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() {
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// assert_eq!(ctx.run(async { 42 }).await, Ok(42));
    ///
    /// // Completion wins a tie: the future finishes in the poll that sees the cancel.
    /// let finishing = ctx.run(async {
    ///     handle.cancel();
    ///     "saved"
    /// });
    /// assert_eq!(finishing.await, Ok("saved"));
    ///
    /// // Done before the first poll: the future is not polled at all.
    /// let slow = tokio::time::sleep(Duration::from_secs(3600));
    /// assert_eq!(ctx.run(slow).await, Err(ctx::Error::Canceled)); // returns at once
    /// # }
    /// ```
    pub async fn run<F>(&self, future: F) -> Result<F::Output, Error>
    where
        F: IntoFuture,
    {
        self.check()?;
        let mut future = std::pin::pin!(future.into_future());
        let mut done = self.done();
        std::future::poll_fn(|cx| {
            // The future first (see "Fairness"); `Done` then checks the state before registering.
            if let Poll::Ready(output) = future.as_mut().poll(cx) {
                return Poll::Ready(Ok(output));
            }
            match Pin::new(&mut done).poll(cx) {
                Poll::Ready(()) => Poll::Ready(Err(self.finished_err())),
                Poll::Pending => Poll::Pending,
            }
        })
        .await
    }

    fn wait_until(&self, deadline: Option<Instant>) -> bool {
        let node = match self.node() {
            Some(node) if node.is_done() => return true,
            Some(node) if node.cancellable() => node,
            // Nothing can ever finish this context: just let the time pass.
            _ => return park_until(deadline, || false),
        };
        let registered =
            node.with_live_dependents(|dependents| dependents.insert(Dependent::Thread(current())));
        let Some(key) = registered else { return true };
        if park_until(deadline, || node.is_done()) {
            return true;
        }
        // If a cancel drained the entry meanwhile, removing the key finds a dead slab: harmless.
        remove_dependent(node, key);
        node.is_done()
    }
}

/// Parks this thread until `done()` holds (true) or `deadline` passes (false); no deadline means
/// no time limit. Spurious wake-ups and stray unparks only cost one more check.
fn park_until(deadline: Option<Instant>, done: impl Fn() -> bool) -> bool {
    loop {
        if done() {
            return true;
        }
        match deadline {
            None => park(),
            Some(deadline) => {
                let now = Instant::now();
                if now >= deadline {
                    return done();
                }
                crate::sync::park_timeout(deadline - now);
            }
        }
    }
}

impl Future for Done {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        let this = &mut *self;
        let node = match this.ctx.node() {
            Some(node) if node.is_done() => return Poll::Ready(()),
            Some(node) if node.cancellable() => node,
            _ => return Poll::Pending,
        };
        let key = &mut this.key;
        let registered = node.with_live_dependents(|dependents| {
            if *key == NOT_LINKED {
                *key = dependents.insert(Dependent::Waker(cx.waker().clone()));
            } else if let Some(Dependent::Waker(waker)) = dependents.get_mut(*key) {
                if !waker.will_wake(cx.waker()) {
                    return Some(std::mem::replace(waker, cx.waker().clone()));
                }
            }
            None
        });
        match registered {
            None => Poll::Ready(()),
            // The old waker may own the last clone of a context: dropped here, outside the lock.
            Some(replaced) => {
                drop(replaced);
                Poll::Pending
            }
        }
    }
}

impl Drop for Done {
    fn drop(&mut self) {
        if self.key == NOT_LINKED {
            return;
        }
        if let Some(node) = self.ctx.node() {
            if !node.is_done() {
                remove_dependent(node, self.key);
            }
        }
    }
}
