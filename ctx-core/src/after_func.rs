//! [`Context::after_func`]: run a function once a context is done (Go's `context.AfterFunc`).
//!
//! Invariants:
//! - A callback's function is taken out of its `Mutex` exactly once: by `run` (status `Ran`), by
//!   `stop` (`Stopped`) or by `release` (`Released`, the context can never be done). Whoever takes
//!   it decides; that is why "`stop()` returned true" and "f ran" exclude each other.
//! - `homes` lists every node whose dependents hold this callback. Usually one; when a context is
//!   dropped before it is done, its callbacks move to the parent(s) that could still finish it
//!   (both parents of a merge), and the callback is released only when no home is left.
//! - Lock order: a node's lock may be held while a callback's lock is taken (to record where the
//!   callback is registered); a callback's lock is never held while taking a node's lock.
//! - A function never runs inside the call that registers it (`after_func`, or the drop that
//!   moves it to a parent): when registration finds the context done, the function is taken
//!   (`Ran`) there and handed to the timer thread (`timer::run_soon`), because the registering
//!   thread may hold a lock the function takes.

use std::fmt;
use std::sync::{Arc, Weak};

use crate::Context;
use crate::sync::{Mutex, lock};
use crate::timer::Job;
use crate::tree::{Dependent, Node, remove_dependent};

/// The registration made by [`Context::after_func`]; [`stop`](AfterFunc::stop) unregisters it.
///
/// Dropping an `AfterFunc` neither stops nor detaches the function: calling `stop` is optional,
/// as in Go.
///
/// ```
/// use std::sync::mpsc;
///
/// let (ctx, handle) = ctx::Context::background().with_cancel();
/// let (tx, rx) = mpsc::channel();
/// drop(ctx.after_func(move || tx.send("closed the connection").unwrap()));
/// handle.cancel(); // runs the function on this thread, after the context is done
/// assert_eq!(rx.try_recv(), Ok("closed the connection"));
/// ```
pub struct AfterFunc {
    callback: Arc<Callback>,
}

pub(crate) struct Callback {
    inner: Mutex<Inner>,
}

struct Inner {
    f: Option<Job>,
    status: Status,
    /// The nodes whose dependents hold this callback, and its key in each.
    homes: Vec<(Weak<Node>, u32)>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Status {
    Pending,
    Ran,
    Stopped,
    Released,
}

impl Context {
    /// Arranges for `f` to run once, after this context is done. `f` never runs inside
    /// `after_func` itself, even if the context already is done: the caller may hold a lock that
    /// `f` takes (Go's `ExampleAfterFunc_cond` registers under the lock of a condition variable
    /// that `f` notifies).
    ///
    /// **Which thread** runs `f`:
    /// - the thread that finishes the context: the one calling
    ///   [`CancelHandle::cancel`](crate::CancelHandle::cancel) (after every descendant is marked
    ///   done, before `cancel` returns), or the ctx timer thread when a deadline expires;
    /// - the ctx timer thread, soon after the call, if the context is already done when
    ///   `after_func` is called (or when `f` moves to a parent that is, see below). `f` counts as
    ///   started then: [`stop`](AfterFunc::stop) returns `false`, as Go's does.
    ///
    /// Keep `f` short, or hand the work to another thread or task: a slow `f` delays the
    /// canceller or, on the timer thread, deadlines and other callbacks.
    ///
    /// No lock is held while `f` runs: it may cancel other contexts, derive children or register
    /// more callbacks. A panicking `f` does not stop other callbacks from running nor leave a
    /// context half-cancelled; the panic is resumed in the canceller once all callbacks ran (on
    /// the timer thread, the panic hook reports it and the thread carries on).
    ///
    /// If this context can never be done (a root, a [`without_cancel`](Context::without_cancel)
    /// context or values over one), `f` is dropped at once without running. If every clone of
    /// this context and its handle are dropped before it is done, `f` moves to the parent(s) that
    /// could still have finished it (a dropped context's own deadline goes with it; one that is
    /// done by then runs it on the timer thread), and is dropped when none could.
    ///
    /// **Do not capture this context (or a descendant) in `f`.** That is a reference cycle, as
    /// with `Rc`: the context then lives until `f` runs or is [stopped](AfterFunc::stop), even
    /// after its handle and every other clone are gone, and with it `f` and its captures. Capture
    /// what `f` needs instead (values, the parent, a channel), or call `stop()` when done.
    ///
    /// ```
    /// use std::sync::atomic::{AtomicBool, Ordering};
    /// use std::sync::Arc;
    ///
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// let closed = Arc::new(AtomicBool::new(false));
    /// let flag = closed.clone();
    /// let _registration = ctx.after_func(move || flag.store(true, Ordering::SeqCst));
    /// handle.cancel();
    /// assert!(closed.load(Ordering::SeqCst));
    /// ```
    pub fn after_func<F>(&self, f: F) -> AfterFunc
    where
        F: FnOnce() + Send + 'static,
    {
        let callback = Arc::new(Callback {
            inner: Mutex::new(Inner {
                f: Some(Box::new(f)),
                status: Status::Pending,
                homes: Vec::new(),
            }),
        });
        if !callback.attach(self) {
            callback.release();
        }
        AfterFunc { callback }
    }
}

impl AfterFunc {
    /// Prevents the function from running. Returns `true` if this call prevented it (it had not
    /// run and now never will); `false` if it has already run or started (also: was handed to the
    /// timer thread because its context was done when it was registered), or was already stopped.
    /// Calling it twice returns `false` the second time. Safe to call from any thread, concurrently
    /// with cancellation: exactly one of "stop returned true" and "f ran" happens.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// let registration = ctx.after_func(|| unreachable!("stopped before the cancel"));
    /// assert!(registration.stop());
    /// assert!(!registration.stop());
    /// handle.cancel();
    /// ```
    pub fn stop(&self) -> bool {
        let (f, homes) = {
            let mut inner = lock(&self.callback.inner);
            match inner.status {
                Status::Pending | Status::Released => {
                    inner.status = Status::Stopped;
                    (inner.f.take(), std::mem::take(&mut inner.homes))
                }
                Status::Ran | Status::Stopped => return false,
            }
        };
        for (node, key) in homes {
            if let Some(node) = node.upgrade() {
                remove_dependent(&node, key);
            }
        }
        drop(f);
        true
    }
}

impl fmt::Debug for AfterFunc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let status = lock(&self.callback.inner).status;
        f.debug_struct("AfterFunc").field("status", &status).finish()
    }
}

impl Callback {
    /// Registers this callback on `ctx`, or hands it to the timer thread if `ctx` is already
    /// done. Returns `false` (doing nothing) if `ctx` can never be done.
    pub(crate) fn attach(self: &Arc<Self>, ctx: &Context) -> bool {
        let Some(node) = ctx.node() else { return false };
        if !node.cancellable() && !node.is_done() {
            return false;
        }
        // Node lock, then callback lock (the one allowed nesting): checking the status,
        // inserting and recording the home in one critical section, so a concurrent `stop`
        // either sees the new home or makes this a no-op.
        let registered = node.with_live_dependents(|dependents| {
            let mut inner = lock(&self.inner);
            if inner.status == Status::Pending {
                let key = dependents.insert(Dependent::Callback(self.clone()));
                inner.homes.push((Arc::downgrade(node), key));
            }
        });
        if registered.is_some() {
            return true;
        }
        if let Some(f) = self.take_to_run() {
            run_soon(f);
        }
        true
    }

    /// Called while a node is dropped before it was done: registers this callback on `targets`
    /// (the parents that could still have finished that node), forgets one home that is being
    /// dropped (each dying home makes this call once, so each forgets one), and releases the
    /// callback if no home is left.
    ///
    /// Homes are recognised by their strong count, not their address: the dropped node may have
    /// been moved out of its `Arc` (`release_chain`) before it gets here. The dying home was
    /// registered recently, so the search starts from the end: moving a callback up a
    /// million-deep chain of merges, whose partners all stay homes, is linear, not quadratic.
    pub(crate) fn move_out_of(self: &Arc<Self>, targets: [Option<&Context>; 2]) {
        for target in targets.into_iter().flatten() {
            self.attach(target);
        }
        let released = {
            let mut inner = lock(&self.inner);
            if let Some(dead) = inner.homes.iter().rposition(|(home, _)| home.strong_count() == 0) {
                inner.homes.swap_remove(dead);
            }
            if inner.homes.is_empty() && inner.status == Status::Pending {
                inner.status = Status::Released;
                inner.f.take()
            } else {
                None
            }
        };
        drop(released);
    }

    /// Runs the function if nobody took it yet. Called outside any lock.
    pub(crate) fn run(&self) {
        if let Some(f) = self.take_to_run() {
            f();
        }
    }

    /// Takes the function to run it, if nobody took it yet (`Ran` from here on). Called outside
    /// any lock.
    fn take_to_run(&self) -> Option<Job> {
        let (f, homes) = {
            let mut inner = lock(&self.inner);
            if inner.status != Status::Pending {
                return None;
            }
            inner.status = Status::Ran;
            (inner.f.take(), std::mem::take(&mut inner.homes))
        };
        // The home that finished this callback has drained it already; any other home (the
        // second parent of a dropped merge) must not keep an inert entry for its whole life.
        for (node, key) in homes {
            if let Some(node) = node.upgrade() {
                remove_dependent(&node, key);
            }
        }
        f
    }

    /// Drops the function: the context it waited on can no longer be done.
    pub(crate) fn release(&self) {
        let f = {
            let mut inner = lock(&self.inner);
            if inner.status != Status::Pending {
                return;
            }
            inner.status = Status::Released;
            inner.homes.clear();
            inner.f.take()
        };
        drop(f);
    }
}

/// Runs a function whose context was done when it was registered: on the timer thread. Under
/// loom, on a loom thread of its own instead (the timer thread is a real OS thread that loom can
/// neither see nor schedule).
#[cfg(not(loom))]
fn run_soon(f: Job) {
    crate::timer::run_soon(f);
}

#[cfg(loom)]
fn run_soon(f: Job) {
    drop(loom::thread::spawn(f));
}
