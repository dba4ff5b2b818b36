//! The cancellation tree: one [`Node`] per derived context, the dependents that wait on it, and
//! how cancellation flows down and ownership flows up.
//!
//! # Shape
//! Every derived context is one `Arc<Node>`. A node holds its `parent` context strongly (values,
//! deadlines and `Display` walk up through it). A node that can become done because of its parent
//! is registered in the parent's `dependents` slab as a `Weak` child; waiters (`Waker`s and parked
//! threads) and `after_func` callbacks are dependents too. A merged node is a dependent of both
//! of its parents.
//!
//! # Invariants
//! 1. **State is written once.** `state` goes from `LIVE` to `Error as u8` exactly once, by
//!    [`Node::finish`], while holding the node's lock, in the same critical section that stores
//!    `cause` and takes every dependent out. It never goes back.
//! 2. **Done nodes have no dependents.** Once `state != LIVE`, the `dependents` slab is empty and
//!    every insertion is refused (callers check `state` under the lock first). So a dependent is
//!    either in the slab when `finish` drains it (and is then woken, cancelled or run), or is added
//!    after and sees the node done: no lost wake-up, no child born live under a done parent.
//! 3. **One lock at a time.** No thread holds two node locks at once, nor a node lock and the timer
//!    lock. The single nesting is a node lock then the lock of an `after_func` callback it
//!    registers (`after_func.rs`), which never takes a node lock itself. Hence no deadlock.
//! 4. **No foreign code under a lock.** Callbacks run, wakers wake and threads unpark only after
//!    the lock is released; a callback may cancel, derive or drop any context.
//! 5. **Keys are removed once.** A dependent's slab entry is removed either by the drain in
//!    `finish` (after which the slab is dead, see 2) or by its owner, which first swaps its stored
//!    key to `NOT_LINKED` (children: `parent_key` / `other_key`), so a key is never removed twice
//!    and a reused key is never removed by a stale owner.
//! 6. **Ownership flows up.** Children hold parents strongly; parents hold children weakly. When
//!    the last clone of a child context and its handle are dropped, `Drop` unlinks it from its
//!    parent(s) and its timer entry; a parent therefore holds nothing for children that are gone.
//!    Drop releases a chain of parents iteratively, so a million-deep chain does not recurse.
//! 7. **Cancel is linear and iterative.** `cancel` finishes the subtree with an explicit stack,
//!    visiting each node once; it returns only after every linked descendant reports done.
//!
//! # Orderings
//! `state` is stored with `Release` inside the lock and loaded with `Acquire` by `is_done`; the
//! `Acquire` load publishes the `cause` written before it (readers still take the lock to clone
//! the cause, so the lock alone would suffice for that; the ordering is for callers that act on a
//! done context's side effects, as Go's channel close does).

use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::task::Waker;

use crate::Context;
use crate::after_func::Callback;
use crate::deadline::DeadlineLayer;
use crate::error::{Cause, Error};
use crate::slab::Slab;
use crate::sync::{AtomicU8, AtomicUsize, Mutex, MutexGuard, Ordering, Thread, lock};
use crate::values::ValueLayer;

/// `state` of a node that is not done.
pub(crate) const LIVE: u8 = 0;
/// A `parent_key` / `other_key` that names no slab entry.
pub(crate) const NOT_LINKED: usize = usize::MAX;

pub(crate) struct Node {
    /// `LIVE`, or the [`Error`] the node finished with (invariant 1).
    state: AtomicU8,
    /// Whether this node can ever become done: false only for values over a context that can
    /// never be done, and for `without_cancel`. Children of such a node are not linked to it.
    cancellable: bool,
    inner: Mutex<Inner>,
    /// The context this one was derived from.
    pub(crate) parent: Context,
    /// This node's key among its parent's dependents, or `NOT_LINKED` (invariant 5).
    parent_key: AtomicUsize,
    pub(crate) kind: Kind,
}

pub(crate) struct Inner {
    cause: Option<Cause>,
    pub(crate) dependents: Slab<Dependent>,
}

/// What a layer adds to its parent.
pub(crate) enum Kind {
    /// `with_cancel`, or a deadline later than the parent's (Go returns a cancel context too).
    Cancel,
    Deadline(DeadlineLayer),
    Value(ValueLayer),
    WithoutCancel,
    Merge(MergeLayer),
}

pub(crate) struct MergeLayer {
    pub(crate) other: Context,
    /// This node's key among `other`'s dependents, or `NOT_LINKED` (invariant 5).
    other_key: AtomicUsize,
}

/// Something that must hear about it when a node becomes done.
pub(crate) enum Dependent {
    Child(Weak<Node>),
    Waker(Waker),
    Thread(Thread),
    Callback(Arc<Callback>),
}

impl Kind {
    fn has_own_cancel(&self) -> bool {
        matches!(self, Kind::Cancel | Kind::Deadline(_) | Kind::Merge(_))
    }
}

impl Node {
    /// Creates a node under `parent`, linked to it if the parent can become done, and born done
    /// (with the parent's error and cause) if the parent already is.
    pub(crate) fn derive(parent: &Context, kind: Kind) -> Arc<Node> {
        let own = kind.has_own_cancel();
        let build =
            |state: u8, cause: Option<Cause>, key: usize, cancellable: bool, kind: Kind| Node {
                state: AtomicU8::new(state),
                cancellable,
                inner: Mutex::new(Inner { cause, dependents: Slab::default() }),
                parent: parent.clone(),
                parent_key: AtomicUsize::new(key),
                kind,
            };
        let follows_parent = !matches!(kind, Kind::WithoutCancel);
        match parent.node() {
            Some(p) if p.cancellable && follows_parent => {
                // The parent's lock is held until the child is fully built: a concurrent cancel
                // of the parent must not find a `Weak` it cannot upgrade yet (invariant 2).
                let mut guard = p.lock();
                Arc::new_cyclic(|weak| match p.state.load(Ordering::Relaxed) {
                    LIVE => {
                        let key = guard.dependents.insert(Dependent::Child(weak.clone()));
                        build(LIVE, None, key, true, kind)
                    }
                    done => build(done, guard.cause.clone(), NOT_LINKED, true, kind),
                })
            }
            _ => Arc::new(build(LIVE, None, NOT_LINKED, own, kind)),
        }
    }

    pub(crate) fn merge_layer(other: &Context) -> Kind {
        Kind::Merge(MergeLayer { other: other.clone(), other_key: AtomicUsize::new(NOT_LINKED) })
    }

    /// Links a freshly derived merge node to its second parent, or finishes it at once if that
    /// parent is already done.
    pub(crate) fn link_other(self: &Arc<Node>) {
        let Kind::Merge(merge) = &self.kind else { return };
        let Some(other) = merge.other.node().filter(|o| o.cancellable) else { return };
        let finished = {
            let mut guard = other.lock();
            match other.state.load(Ordering::Relaxed) {
                LIVE => {
                    let key = guard.dependents.insert(Dependent::Child(Arc::downgrade(self)));
                    merge.other_key.store(key, Ordering::Relaxed);
                    None
                }
                done => Some((done, guard.cause.clone())),
            }
        };
        if let Some((done, Some(cause))) = finished {
            self.cancel(error_of(done), cause);
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Inner> {
        lock(&self.inner)
    }

    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        self.state.load(Ordering::Acquire) != LIVE
    }

    /// The state, read under the node's lock by callers that hold it.
    pub(crate) fn state_locked(&self, _proof: &Inner) -> u8 {
        self.state.load(Ordering::Relaxed)
    }

    pub(crate) fn cancellable(&self) -> bool {
        self.cancellable
    }

    pub(crate) fn err(&self) -> Option<Error> {
        match self.state.load(Ordering::Acquire) {
            LIVE => None,
            done => Some(error_of(done)),
        }
    }

    pub(crate) fn cause(&self) -> Option<Cause> {
        if !self.is_done() {
            return None;
        }
        self.lock().cause.clone()
    }

    /// Marks this node done if it is live, and takes its dependents out (invariants 1 and 2).
    /// Returns `None` if it was already done: the first call wins.
    fn finish(&self, err: Error, cause: &Cause) -> Option<Slab<Dependent>> {
        let mut inner = self.lock();
        if self.state.load(Ordering::Relaxed) != LIVE {
            return None;
        }
        inner.cause = Some(cause.clone());
        self.state.store(err as u8 + 1, Ordering::Release);
        Some(mem::take(&mut inner.dependents))
    }

    /// Cancels this node and every linked descendant. Returns after all of them are done; then
    /// wakes their waiters and runs their callbacks on this thread. If a callback panicked, the
    /// first panic is resumed once everything else has run (unless this thread is already
    /// panicking, in which case it is dropped: the panic hook has reported it).
    pub(crate) fn cancel(&self, err: Error, cause: Cause) {
        let Some(first) = self.finish(err, &cause) else { return };
        // The root of a cancel leaves its parents at once (Go's removeChild); descendants were
        // drained by their parents and leave only on drop.
        self.unlink();
        let mut callbacks = Vec::new();
        let mut stack = vec![first];
        while let Some(mut dependents) = stack.pop() {
            for dependent in dependents.drain() {
                match dependent {
                    Dependent::Child(weak) => {
                        let Some(child) = weak.upgrade() else { continue };
                        if let Some(more) = child.finish(err, &cause) {
                            child.release_timer();
                            stack.push(more);
                        }
                    }
                    Dependent::Waker(waker) => waker.wake(),
                    Dependent::Thread(thread) => thread.unpark(),
                    Dependent::Callback(callback) => callbacks.push(callback),
                }
            }
        }
        run_callbacks(callbacks);
    }

    /// Removes this node from its parents' dependents and from the timer. Idempotent.
    fn unlink(&self) {
        let key = self.parent_key.swap(NOT_LINKED, Ordering::Relaxed);
        if key != NOT_LINKED {
            if let Some(parent) = self.parent.node() {
                drop(parent.lock().dependents.remove(key));
            }
        }
        if let Kind::Merge(merge) = &self.kind {
            let key = merge.other_key.swap(NOT_LINKED, Ordering::Relaxed);
            if key != NOT_LINKED {
                if let Some(other) = merge.other.node() {
                    drop(other.lock().dependents.remove(key));
                }
            }
        }
        self.release_timer();
    }

    fn release_timer(&self) {
        if let Kind::Deadline(deadline) = &self.kind {
            deadline.release();
        }
    }

    /// Everything `Drop` does to one node before its parent is released: leave the tree, and hand
    /// callbacks that have not run to the parent(s) that can still finish them.
    fn detach(&mut self) {
        let was_linked = self.parent_key.load(Ordering::Relaxed) != NOT_LINKED;
        let other_linked = match &self.kind {
            Kind::Merge(merge) => merge.other_key.load(Ordering::Relaxed) != NOT_LINKED,
            _ => false,
        };
        self.unlink();
        let inner = match self.inner.get_mut() {
            Ok(inner) => inner,
            Err(poisoned) => poisoned.into_inner(),
        };
        if inner.dependents.len() == 0 {
            return;
        }
        // Children and waiters hold this node strongly, so only callbacks can be left. While this
        // node was linked, its parent(s) could still have finished it; they now run the callback.
        for dependent in inner.dependents.drain() {
            let Dependent::Callback(callback) = dependent else { continue };
            let mut attached = was_linked && callback.attach(&self.parent);
            if let (true, Kind::Merge(merge)) = (other_linked, &self.kind) {
                attached |= callback.attach(&merge.other);
            }
            if !attached {
                callback.release();
            }
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.detach();
        release_chain(mem::take(&mut self.parent), self.take_other());
    }
}

impl Node {
    fn take_other(&mut self) -> Context {
        match &mut self.kind {
            Kind::Merge(merge) => mem::take(&mut merge.other),
            _ => Context::background(),
        }
    }
}

/// Drops the contexts a dropped node held, and every ancestor that only they kept alive, with a
/// loop instead of recursion (invariant 6).
fn release_chain(parent: Context, other: Context) {
    let mut pending = Vec::new();
    let mut next = Some(parent);
    if other.node().is_some() {
        pending.push(other);
    }
    while let Some(ctx) = next.take().or_else(|| pending.pop()) {
        let Some(arc) = ctx.into_node() else { continue };
        let Some(mut node) = Arc::into_inner(arc) else { continue };
        node.detach();
        next = Some(mem::take(&mut node.parent));
        let other = node.take_other();
        if other.node().is_some() {
            pending.push(other);
        }
        // `node` drops here with nothing left to detach and background parents: no recursion.
    }
}

/// Runs callbacks outside any lock; a panic in one does not keep the others from running.
pub(crate) fn run_callbacks(callbacks: Vec<Arc<Callback>>) {
    let mut first_panic = None;
    for callback in callbacks {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| callback.run())) {
            first_panic.get_or_insert(payload);
        }
    }
    if let Some(payload) = first_panic {
        if !std::thread::panicking() {
            panic::resume_unwind(payload);
        }
    }
}

pub(crate) fn error_of(state: u8) -> Error {
    match state {
        1 => Error::Canceled,
        _ => Error::DeadlineExceeded,
    }
}

const _: () = assert!(Error::Canceled as u8 + 1 == 1 && Error::DeadlineExceeded as u8 + 1 == 2);
