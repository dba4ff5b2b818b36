//! Deadlines and timeouts: [`Context::with_deadline`], [`Context::with_timeout`], their `_cause`
//! forms and [`Context::deadline`]. The timer that fires them lives in `timer.rs`.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::Context;
use crate::error::{Cause, Error};
use crate::handle::CancelHandle;
use crate::timer;
use crate::tree::{Kind, KindRef, Layer, Node};

pub(crate) struct DeadlineLayer {
    at: Instant,
    cause: Option<Cause>,
    key: timer::Key,
    /// Set by the first `release`: later ones (the drop after a cancel) skip the timer's lock.
    released: std::sync::atomic::AtomicBool,
    /// The tokio sleep that fires this deadline on tokio's clock, if any.
    #[cfg(feature = "tokio-clock")]
    pub(crate) tokio_sleep: crate::tokio_clock::Sleep,
}

impl Layer for DeadlineLayer {
    fn kind(&self) -> KindRef<'_> {
        KindRef::Deadline(self)
    }
}

impl DeadlineLayer {
    /// Removes this deadline's timer entry, if it still has one. Idempotent.
    pub(crate) fn release(&self) {
        if !self.released.load(std::sync::atomic::Ordering::Relaxed)
            && !self.released.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            timer::remove(self.key);
        }
        #[cfg(feature = "tokio-clock")]
        self.tokio_sleep.abort();
    }

    pub(crate) fn fmt_layer(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let remaining = self.at.saturating_duration_since(Instant::now());
        write!(f, ".WithDeadline({:?} [{:?}])", self.at, remaining)
    }

    fn cause(&self) -> Cause {
        self.cause.clone().unwrap_or(Cause::from(Error::DeadlineExceeded))
    }
}

impl Node {
    /// Called by the timer once the deadline has passed.
    pub(crate) fn fire_deadline(&self) {
        if let KindRef::Deadline(deadline) = self.kind() {
            self.cancel(Error::DeadlineExceeded, &deadline.cause());
        }
    }
}

impl Context {
    /// The earliest deadline on the path to the root (for a merged context, the earlier of its
    /// parents'), or `None` if no deadline applies.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, _h) = ctx::Context::background().with_timeout(Duration::from_secs(60));
    /// let (child, _h2) = ctx.with_timeout(Duration::from_secs(3600));
    /// assert_eq!(child.deadline(), ctx.deadline(), "a later deadline keeps the parent's");
    /// assert_eq!(ctx::Context::background().deadline(), None);
    /// ```
    pub fn deadline(&self) -> Option<Instant> {
        let mut earliest: Option<Instant> = None;
        self.walk_up(|node| match node.kind() {
            // A deadline layer exists only when it is no later than every ancestor's: this
            // chain can add nothing earlier above it.
            KindRef::Deadline(deadline) => {
                earliest = Some(earliest.map_or(deadline.at, |e| e.min(deadline.at)));
                ControlFlow::Continue(false)
            }
            // No deadline applies above these.
            KindRef::WithoutCancel | KindRef::Todo => ControlFlow::Continue(false),
            KindRef::Cancel | KindRef::Value(..) | KindRef::Merge(_) => ControlFlow::Continue(true),
        });
        earliest
    }

    /// Derives a child that is done with [`Error::DeadlineExceeded`] once `Instant::now()`
    /// reaches `deadline` (never earlier), or when the returned handle cancels it (then
    /// [`Error::Canceled`], and the timer entry is released at once), or when this context is
    /// done, whichever comes first.
    ///
    /// If this context's deadline is already strictly earlier, the child keeps it (Go returns a
    /// plain cancel context then, and so does this; a cause given to
    /// [`with_deadline_cause`](Context::with_deadline_cause) is then never used). An equal
    /// deadline gives the child a deadline of its own, as in Go: when the instant comes, equal
    /// deadlines fire newest first, so the child finishes with its own cause (with `tokio-clock`,
    /// when tokio's clock fires them, in tokio's order). A deadline that has
    /// passed gives a child that is born done.
    ///
    /// The deadline is fired by the ctx timer thread, started on first use and idle (no polling)
    /// while no deadline is pending; no async runtime is needed. Deadlines follow the real
    /// monotonic clock (`std::time::Instant`): by default a paused tokio clock
    /// (`tokio::time::pause`, `#[tokio::test(start_paused = true)]`) neither delays nor advances
    /// them. With the `tokio-clock` feature, a deadline created inside a tokio runtime (with
    /// time enabled) is also armed on tokio's clock, and fires on whichever clock reaches it
    /// first: under a paused clock, auto-advance and `tokio::time::advance` fire it, which is
    /// what tests of timeouts want. The timer thread still arms it, so nothing depends on the
    /// runtime staying alive.
    ///
    /// ```
    /// use std::time::{Duration, Instant};
    /// let (ctx, _handle) = ctx::Context::background().with_deadline(Instant::now());
    /// assert_eq!(ctx.err(), Some(ctx::Error::DeadlineExceeded));
    /// ```
    pub fn with_deadline(&self, deadline: Instant) -> (Context, CancelHandle) {
        self.deadline_layer(deadline, None)
    }

    /// Like [`with_deadline`](Context::with_deadline), with `cause` as the
    /// [`cause`](Context::cause) when the deadline expires (`err()` is still
    /// `DeadlineExceeded`). A cancel through the handle keeps its own cause.
    ///
    /// ```
    /// use std::time::Instant;
    /// let (ctx, _h) = ctx::Context::background()
    ///     .with_deadline_cause(Instant::now(), std::io::Error::other("backend too slow"));
    /// assert_eq!(ctx.err(), Some(ctx::Error::DeadlineExceeded));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "backend too slow");
    /// ```
    pub fn with_deadline_cause<E>(&self, deadline: Instant, cause: E) -> (Context, CancelHandle)
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.deadline_layer(deadline, Some(Cause::new(cause)))
    }

    /// [`with_deadline`](Context::with_deadline)`(Instant::now() + timeout)`. A zero timeout gives a
    /// child that is born done; a timeout too large to represent as an `Instant` means no
    /// deadline (a plain [`with_cancel`](Context::with_cancel)).
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, _handle) = ctx::Context::background().with_timeout(Duration::from_millis(10));
    /// ctx.wait();
    /// assert_eq!(ctx.err(), Some(ctx::Error::DeadlineExceeded));
    /// ```
    pub fn with_timeout(&self, timeout: Duration) -> (Context, CancelHandle) {
        self.timeout_layer(timeout, None)
    }

    /// Like [`with_timeout`](Context::with_timeout), with `cause` as the cause when it expires.
    ///
    /// ```
    /// use std::time::Duration;
    /// let (ctx, _h) = ctx::Context::background()
    ///     .with_timeout_cause(Duration::ZERO, std::io::Error::other("no time left"));
    /// assert_eq!(ctx.cause().unwrap().to_string(), "no time left");
    /// ```
    pub fn with_timeout_cause<E>(&self, timeout: Duration, cause: E) -> (Context, CancelHandle)
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        self.timeout_layer(timeout, Some(Cause::new(cause)))
    }

    /// A timeout too large to represent as an `Instant` means no deadline.
    fn timeout_layer(&self, timeout: Duration, cause: Option<Cause>) -> (Context, CancelHandle) {
        match Instant::now().checked_add(timeout) {
            Some(deadline) => self.deadline_layer(deadline, cause),
            None => self.with_cancel(),
        }
    }

    fn deadline_layer(&self, at: Instant, cause: Option<Cause>) -> (Context, CancelHandle) {
        if self.deadline().is_some_and(|current| current < at) {
            return self.with_cancel();
        }
        let key = timer::key(at);
        let layer = DeadlineLayer {
            at,
            cause,
            key,
            released: std::sync::atomic::AtomicBool::new(false),
            #[cfg(feature = "tokio-clock")]
            tokio_sleep: Default::default(),
        };
        let (ctx, handle) = self.derive_cancellable(Kind::Deadline(layer));
        let node = ctx.node().expect("a derived context has a node");
        if !node.is_done() {
            if Instant::now() >= at {
                node.fire_deadline();
            } else {
                timer::insert(key, Arc::downgrade(node));
                #[cfg(feature = "tokio-clock")]
                crate::tokio_clock::spawn(node, at);
                // A cancel that raced the inserts has already tried to release the entries.
                // Its first release may have come before the insert, so remove directly.
                if node.is_done() {
                    timer::remove(key);
                    if let KindRef::Deadline(deadline) = node.kind() {
                        deadline.release();
                    }
                }
            }
        }
        (ctx, handle)
    }
}

/// How many deadlines are waiting in the timer, across the process. For leak checks in tests and
/// diagnostics; not a stable API.
#[doc(hidden)]
pub fn pending_timers() -> usize {
    timer::pending()
}
