//! [`CancelHandle`], the right to cancel one context, and its [`DropGuard`].

use std::fmt;
use std::sync::Arc;

use crate::Context;
use crate::error::{Cause, Error};
use crate::tree::Node;

/// Cancels the context it was returned with (Go's `CancelFunc`).
///
/// `cancel` and `cancel_with_cause` are idempotent and may be called from any number of threads
/// at once: the first call wins and its cause is kept. They return only after the context and
/// every descendant linked to it report `is_done()` (also when another thread's cancel of this
/// context or of an ancestor or descendant is running at the same time); waiters are woken and
/// [`after_func`](Context::after_func) callbacks run on the calling thread right after.
///
/// One exception, with [merged](Context::merge) contexts only: when both parents of a merge are
/// cancelled concurrently, the cancel that reaches the merge second does not wait for the
/// first one to finish the merge's subtree (waiting across merges could make two cancels wait
/// on each other). The merge itself is done; its descendants follow within the other cancel.
///
/// Dropping a handle does **not** cancel (use [`drop_guard`](CancelHandle::drop_guard) for
/// Go's `defer cancel()`), but once the handle and every clone of the context are dropped the
/// context leaves its parent, so forgetting to cancel leaks nothing.
///
/// ```
/// let (ctx, handle) = ctx::Context::background().with_cancel();
/// let worker = std::thread::spawn(move || ctx.wait());
/// handle.cancel();
/// worker.join().unwrap();
/// ```
#[derive(Clone)]
pub struct CancelHandle {
    node: Arc<Node>,
}

impl CancelHandle {
    pub(crate) fn new(node: Arc<Node>) -> CancelHandle {
        CancelHandle { node }
    }

    /// Cancels the context with the cause [`Error::Canceled`]. Does nothing if it is already
    /// done. Never touches the parent.
    ///
    /// If an [`after_func`](Context::after_func) callback panics, every other callback still runs
    /// and every context is still done; then the first panic is resumed here.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// handle.cancel();
    /// handle.cancel(); // no effect
    /// assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    /// ```
    pub fn cancel(&self) {
        self.node.cancel_err(Error::Canceled);
    }

    /// Cancels the context with `cause` as its [`Context::cause`] (`err()` is still
    /// [`Error::Canceled`]). Does nothing if it is already done: the first cause is kept.
    /// Passing a [`Cause`] stores it as is, without wrapping it again.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// handle.cancel_with_cause(std::io::Error::other("shutdown"));
    /// assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "shutdown");
    /// ```
    pub fn cancel_with_cause<E>(&self, cause: E)
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.node.cancel(Error::Canceled, &Cause::new(cause));
    }

    /// Returns `true` once the context this handle cancels is done, for whatever reason: this
    /// handle's cancel, an ancestor's or a merge partner's, or a deadline. It is the context's
    /// [`Context::is_done`] (one atomic load), not "this handle cancelled it": to know why, read
    /// the context's [`err`](Context::err) and [`cause`](Context::cause).
    ///
    /// ```
    /// let (parent, cancel_parent) = ctx::Context::background().with_cancel();
    /// let (_ctx, handle) = parent.with_cancel();
    /// assert!(!handle.is_done());
    /// cancel_parent.cancel();
    /// assert!(handle.is_done(), "done by the parent's cancel, not by this handle");
    /// ```
    pub fn is_done(&self) -> bool {
        self.node.is_done()
    }

    /// A clone of the context this handle cancels.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// drop(ctx);
    /// let again = handle.context();
    /// handle.cancel();
    /// assert!(again.is_done());
    /// ```
    pub fn context(&self) -> Context {
        Context::from_node(self.node.clone())
    }

    /// Turns the handle into a guard that cancels when dropped: Go's `defer cancel()`.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// {
    ///     let _guard = handle.drop_guard();
    /// }
    /// assert!(ctx.is_done());
    /// ```
    pub fn drop_guard(self) -> DropGuard {
        DropGuard { handle: Some(self) }
    }
}

impl fmt::Debug for CancelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CancelHandle").field("done", &self.is_done()).finish()
    }
}

/// Cancels its context when dropped (including during a panic's unwinding). Made by
/// [`CancelHandle::drop_guard`].
///
/// ```
/// let (ctx, handle) = ctx::Context::background().with_cancel();
/// let guard = handle.drop_guard();
/// let handle = guard.disarm(); // keep the context alive after all
/// drop(handle);
/// assert!(!ctx.is_done());
/// ```
#[must_use = "dropping the guard at once cancels the context at once"]
pub struct DropGuard {
    handle: Option<CancelHandle>,
}

impl DropGuard {
    /// Gives the handle back without cancelling.
    ///
    /// ```
    /// let (_ctx, handle) = ctx::Context::background().with_cancel();
    /// let handle = handle.drop_guard().disarm();
    /// assert!(!handle.is_done());
    /// ```
    pub fn disarm(mut self) -> CancelHandle {
        self.handle.take().expect("a guard holds its handle until disarmed or dropped")
    }
}

impl Drop for DropGuard {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.cancel();
        }
    }
}

impl fmt::Debug for DropGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DropGuard").field("handle", &self.handle).finish()
    }
}
