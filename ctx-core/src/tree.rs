//! The cancellation tree: one [`Node`] per derived context, the dependents that wait on it, and
//! how cancellation flows down and ownership flows up.
//!
//! # Shape
//! Every derived context is one `Arc<Node>` (one allocation for `with_cancel`; 64 bytes with the
//! `Arc` header on 64-bit targets). A node holds its `parent` context strongly (values, deadlines
//! and `Display` walk up through it). A node that can become done because of its parent is
//! registered in the parent's dependents as a `Weak` child; waiters (`Waker`s and parked threads)
//! and `after_func` callbacks are dependents too. A merged node is a dependent of both parents.
//!
//! # Invariants
//! 1. **State is written once.** `state` goes from live to done exactly once, by a
//!    compare-exchange in [`Node::finish`], and never goes back. A node that has never had
//!    anything behind its lock (`GUARDED` clear: no dependent was ever added, no custom cause is
//!    being stored) is finished by that one compare-exchange from exactly `LIVE`, without the
//!    lock: there is nothing to record or take out. Any other node is finished under its lock,
//!    in the same critical section that records the cause and takes every dependent out.
//! 2. **Done nodes have no dependents.** Once done, the dependents slab is empty and every
//!    insertion is refused: the only way in is [`Node::with_live_dependents`], which checks the
//!    state under the lock it then inserts under and, before the first insertion, sets
//!    `GUARDED` with a compare-exchange. That compare-exchange and the lock-free finish of 1
//!    exclude each other (each expects the state the other changes), so either the node is
//!    finished first and the insertion is refused, or it is `GUARDED` first and its finish takes
//!    the lock and drains the slab. So a dependent is either in the slab when `finish` drains it
//!    (and is then woken, cancelled or run), or is added after and sees the node done: no lost
//!    wake-up, no child born live under a done parent.
//! 3. **One lock at a time.** No thread holds two node locks at once, nor a node lock and the timer
//!    lock. The single nesting is a node lock then the lock of an `after_func` callback it
//!    registers (`after_func.rs`), which never takes a node lock itself. Hence no deadlock.
//! 4. **No foreign code under a lock.** Callbacks run, wakers wake and threads unpark only after
//!    the lock is released; a callback may cancel, derive or drop any context.
//! 5. **Keys are removed once.** A dependent's slab entry is removed either by the drain in
//!    `finish` (after which the slab is dead, see 2) or by its owner, which first sets its stored
//!    key to `NOT_LINKED` (children: `parent_key`, `MergeLayer::other_key`), so a key is never
//!    removed twice and a reused key is never removed by a stale owner. A child's keys are
//!    written by one thread at a time: at derive (before anyone else can see the child), then
//!    by `unlink`, which only the cancel that finished the node and its `Drop` call, and `Drop`
//!    runs once nobody holds the node; so a plain load and store suffice, no swap.
//! 6. **Ownership flows up.** Children hold parents strongly; parents hold children weakly. When
//!    the last clone of a child context and its handle are dropped, `Drop` unlinks it from its
//!    parent(s) and its timer entry; a parent therefore holds nothing for children that are gone.
//!    Drop releases a chain of parents iteratively, so a million-deep chain does not recurse.
//! 7. **Cancel is linear and iterative, and completes before anyone is told.** `cancel` finishes
//!    the subtree with an explicit stack (a chain is followed in a loop, without it), visiting each
//!    node once, while the root of the cancel carries the `PROPAGATING` bit. Only once every linked
//!    descendant is done is the bit cleared and are waiters woken and callbacks run. A `cancel`
//!    that loses the race (another thread's, or one made from a waker or callback of the winner)
//!    waits for the `PROPAGATING` bits on its "finished by" path, so every `cancel` returns after
//!    the whole subtree is done, as in Go, where the parent's lock is held while its children are
//!    cancelled. Children reached are kept alive ("retired") until then, since a last drop may run
//!    foreign code; a leaf without a layer is the exception, dropped at once: its drop runs none
//!    and releases only its parent, which the cancel keeps alive (if the cancel held its last
//!    reference, that drop frees it there, with its emptied list if it had one, and unlinks it from
//!    the drained parent, under the parent's lock). No drained list is freed per node inside the
//!    cancel: a node's only dependent is taken out in place (the node keeps its emptied buffer),
//!    and a drained list small enough (`SPARE_CAPACITY`) is handed, empty, to the next node
//!    finished, which frees it when dropped.
//! 8. **Causes are not copied.** A node finished by its parent (or merge partner) records only
//!    "same cause as my parent (other)"; that node finished first and never changes its cause, so
//!    `cause()` follows the links (iteratively) and finds exactly the cause it would have copied.
//!    Cancelling a subtree therefore allocates nothing and clones no `Arc` per descendant.
//!
//! # Orderings
//! `state` becomes done with a `Release` compare-exchange and is loaded with `Acquire` by
//! `is_done`: a thread that sees a context done also sees its ancestors' state and everything
//! the canceller did before cancelling, as Go's channel close does. So does every other way of
//! learning "done": [`Node::with_live_dependents`] refuses with an `Acquire` load (or failed
//! exchange), because a lock-free finish publishes through the state alone, not the lock; a
//! woken waiter re-checks with `is_done`. Custom causes are written and read under the lock.
//! `GUARDED` is set `Relaxed` under the lock: it publishes nothing, it only has to come before
//! or after the lock-free finish in the state's modification order.

use std::any::Any;
use std::mem;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Weak};
use std::task::Waker;

use crate::Context;
use crate::after_func::Callback;
use crate::deadline::DeadlineLayer;
use crate::error::{Cause, Error};
use crate::lock::{Lock, LockGuard};
use crate::slab::Slab;
use crate::sync::{AtomicU8, AtomicU32, Ordering, Thread, yield_now};

/// `state` of a node that is not done and has nothing behind its lock. A live state is `LIVE`
/// or `GUARDED`; a done state is `(err + 1) | source << 2` ([`Source::done_state`]), never 0 in
/// its `ERR_MASK` bits, plus `PROPAGATING` while this node is the root of a cancel still marking
/// its subtree.
pub(crate) const LIVE: u8 = 0;
const ERR_MASK: u8 = 0b11;
/// A live node that has had a dependent: it is finished under its lock only (invariants 1, 2).
/// Never cleared while the node is live.
const GUARDED: u8 = 0b10_0000;
const SOURCE_SHIFT: u8 = 2;
const SOURCE_MASK: u8 = 0b11;
const PROPAGATING: u8 = 0b1_0000;
/// The source field of a done state ([`Source`]), encoded by [`Source::bits`] and decoded by
/// [`source_of`]: the cause is the error itself, ...
const SOURCE_ERR: u8 = 0;
/// ... a cause of its own, ...
const SOURCE_CUSTOM: u8 = 1;
/// ... the parent's, ...
const SOURCE_PARENT: u8 = 2;
/// ... or the merge partner's.
const SOURCE_OTHER: u8 = 3;
/// The largest emptied dependents list a cancel hands on to the next node it finishes rather than
/// free (a slab's first buffers: 1, 2 or 4 slots, at most 96 bytes on 64-bit targets). So a done
/// node keeps at most one such empty buffer until it is dropped.
const SPARE_CAPACITY: usize = 4;
/// A `parent_key` / `other_key` that names no slab entry.
pub(crate) const NOT_LINKED: u32 = u32::MAX;

/// `flags`: the node has its own handle, or a parent that can finish it.
const CANCELLABLE: u8 = 1;
/// `flags`: the node is the process-wide `Context::todo()` root.
const TODO_ROOT: u8 = 2;
/// `flags`: the node is a `without_cancel` layer.
const WITHOUT_CANCEL: u8 = 4;

pub(crate) struct Node {
    /// `LIVE`, or how the node finished (invariant 1).
    state: AtomicU8,
    /// `CANCELLABLE | TODO_ROOT | WITHOUT_CANCEL`, fixed at creation.
    flags: u8,
    /// This node's key among its parent's dependents, or `NOT_LINKED` (invariant 5).
    parent_key: AtomicU32,
    /// Allocated on first use: most leaves never get a dependent nor a custom cause.
    inner: Lock<Option<Box<Inner>>>,
    /// The context this one was derived from.
    pub(crate) parent: Context,
    /// What this layer adds, beyond cancellation: a value, a deadline or a merge partner.
    layer: Option<Box<dyn Layer>>,
}

/// What a node's lock guards. Private to the tree: other modules reach the dependents only
/// through [`Node::with_live_dependents`] and [`remove_dependent`].
#[derive(Default)]
struct Inner {
    /// Set only when the node finished with a cause other than its own error (`Source::Custom`).
    cause: Option<Cause>,
    dependents: Slab<Dependent>,
}

/// The dependents of a node that is live, lent under its lock by [`Node::with_live_dependents`].
pub(crate) struct LiveDependents<'a> {
    slab: &'a mut Slab<Dependent>,
}

impl LiveDependents<'_> {
    /// Adds `dependent`, returning the key that [`remove_dependent`] takes.
    ///
    /// # Panics
    /// If the node has more than four billion live dependents at once.
    pub(crate) fn insert(&mut self, dependent: Dependent) -> u32 {
        to_key(self.slab.insert(dependent))
    }

    /// The dependent stored under `key`, if it is still there.
    pub(crate) fn get_mut(&mut self, key: u32) -> Option<&mut Dependent> {
        self.slab.get_mut(key as usize)
    }
}

/// What to build: the kinds of layer, as `Context`'s methods ask for them.
pub(crate) enum Kind {
    /// `with_cancel`, or a deadline strictly later than the parent's (Go returns a cancel context
    /// then).
    Cancel,
    Deadline(DeadlineLayer),
    Value(Box<dyn Layer>),
    WithoutCancel,
    Merge(Context),
}

/// A node's kind, as the rest of the crate reads it.
pub(crate) enum KindRef<'a> {
    Cancel,
    Todo,
    WithoutCancel,
    Deadline(&'a DeadlineLayer),
    Value(&'a (dyn Any + Send + Sync), &'static str),
    Merge(&'a MergeLayer),
}

/// The data of a layer, behind one thin-enough box so a plain cancel node stays small.
pub(crate) trait Layer: Send + Sync {
    fn kind(&self) -> KindRef<'_>;

    /// A merge layer gives its second parent up when its node is dropped.
    fn take_other(&mut self) -> Option<Context> {
        None
    }
}

pub(crate) struct MergeLayer {
    pub(crate) other: Context,
    /// This node's key among `other`'s dependents, or `NOT_LINKED` (invariant 5).
    other_key: AtomicU32,
}

impl Layer for MergeLayer {
    fn kind(&self) -> KindRef<'_> {
        KindRef::Merge(self)
    }

    fn take_other(&mut self) -> Option<Context> {
        Some(mem::take(&mut self.other))
    }
}

/// Something that must hear about it when a node becomes done.
pub(crate) enum Dependent {
    Child(Weak<Node>),
    Waker(Waker),
    Thread(Thread),
    Callback(Arc<Callback>),
}

/// Where a done node's cause is found (invariant 8).
#[derive(Clone, Copy)]
enum Source<'a> {
    /// The cause is the error itself.
    Err,
    /// A cause of its own, stored in `Inner::cause`.
    Custom(&'a Cause),
    /// The parent's cause.
    Parent,
    /// The merge partner's cause.
    Other,
}

impl Source<'_> {
    fn bits(self) -> u8 {
        match self {
            Source::Err => SOURCE_ERR,
            Source::Custom(_) => SOURCE_CUSTOM,
            Source::Parent => SOURCE_PARENT,
            Source::Other => SOURCE_OTHER,
        }
    }

    /// The done state (without `PROPAGATING`) of a node finished with `err` from this source.
    fn done_state(self, err: Error) -> u8 {
        (err as u8 + 1) | (self.bits() << SOURCE_SHIFT)
    }
}

/// The source field of a done `state`: one of the `SOURCE_*` constants.
fn source_of(state: u8) -> u8 {
    (state >> SOURCE_SHIFT) & SOURCE_MASK
}

/// Whether `state` is a done state (its error bits are set; live states have none).
#[inline]
fn is_done_state(state: u8) -> bool {
    state & ERR_MASK != 0
}

/// What [`Node::finish`] did.
enum Finished {
    /// The node was done already: the first finish won.
    AlreadyDone,
    /// Finished, with no dependent to tell.
    Leaf,
    /// Finished, with dependents to tell.
    Drained(Batch),
}

/// The dependents a finish took out of a node, which its cancel must tell.
enum Batch {
    /// The only one, of a list of at most `SPARE_CAPACITY` slots: taken out in place, so the
    /// node keeps its emptied buffer and nothing moves (each level of a chain).
    One(Dependent),
    /// Two or more (or one, of a larger list), with the list that held them, replaced in the node
    /// by a spare or by nothing.
    Many(Slab<Dependent>),
}

impl Node {
    /// The `Context::todo()` root: never done, no parent.
    pub(crate) fn todo_root() -> Node {
        Node::new(TODO_ROOT, LIVE, NOT_LINKED, Context::background(), None)
    }

    fn new(flags: u8, state: u8, key: u32, parent: Context, layer: Option<Box<dyn Layer>>) -> Node {
        Node {
            state: AtomicU8::new(state),
            flags,
            parent_key: AtomicU32::new(key),
            inner: Lock::new(None),
            parent,
            layer,
        }
    }

    /// Creates a node under `parent`, linked to it if the parent can become done, and born done
    /// (with the parent's error, and its cause by reference) if the parent already is.
    pub(crate) fn derive(parent: &Context, kind: Kind) -> Arc<Node> {
        let (own_handle, flags, layer): (bool, u8, Option<Box<dyn Layer>>) = match kind {
            Kind::Cancel => (true, 0, None),
            Kind::Deadline(deadline) => (true, 0, Some(Box::new(deadline))),
            Kind::Merge(other) => (
                true,
                0,
                Some(Box::new(MergeLayer { other, other_key: AtomicU32::new(NOT_LINKED) })),
            ),
            Kind::Value(value) => (false, 0, Some(value)),
            Kind::WithoutCancel => (false, WITHOUT_CANCEL, None),
        };
        let own = if own_handle { CANCELLABLE } else { 0 };
        let linked = parent.node().filter(|p| p.cancellable() && flags & WITHOUT_CANCEL == 0);
        let flags = if linked.is_some() { flags | CANCELLABLE } else { flags | own };
        // Built (and allocated) before taking the parent's lock; nobody else can see it until the
        // `Weak` is in the parent's dependents, and a cancel that finds it there can upgrade it.
        let child = Arc::new(Node::new(flags, LIVE, NOT_LINKED, parent.clone(), layer));
        if let Some(p) = linked {
            let linked = p.with_live_dependents(|dependents| {
                let key = dependents.insert(Dependent::Child(Arc::downgrade(&child)));
                child.parent_key.store(key, Ordering::Relaxed);
            });
            if linked.is_none() {
                // Born done, with the parent's error and (by reference) its cause. The error
                // bits of a done state never change, so reading them after the lock is exact.
                let done = p.state.load(Ordering::Acquire);
                child.state.store(Source::Parent.done_state(error_of(done)), Ordering::Relaxed);
            }
        }
        child
    }

    pub(crate) fn kind(&self) -> KindRef<'_> {
        match &self.layer {
            Some(layer) => layer.kind(),
            None if self.flags & TODO_ROOT != 0 => KindRef::Todo,
            None if self.flags & WITHOUT_CANCEL != 0 => KindRef::WithoutCancel,
            None => KindRef::Cancel,
        }
    }

    /// The merge layer, if this is a merge node. A plain cancel node (no layer) answers at once:
    /// it is asked on every unlink and drop.
    fn merge(&self) -> Option<&MergeLayer> {
        match self.layer.as_deref()?.kind() {
            KindRef::Merge(merge) => Some(merge),
            _ => None,
        }
    }

    /// Links a freshly derived merge node to its second parent, or finishes it at once if that
    /// parent is already done.
    pub(crate) fn link_other(self: &Arc<Node>) {
        let Some(merge) = self.merge() else { return };
        let Some(other) = merge.other.node().filter(|o| o.cancellable()) else { return };
        let linked = other.with_live_dependents(|dependents| {
            let key = dependents.insert(Dependent::Child(Arc::downgrade(self)));
            merge.other_key.store(key, Ordering::Relaxed);
        });
        if linked.is_none() {
            self.cancel_from(error_of(other.state.load(Ordering::Acquire)), Source::Other);
        }
    }

    /// Runs `f` on this node's dependents under its lock if the node is live, and returns what
    /// `f` returns; returns `None` without running `f` if the node is done. This is the one way
    /// to add a dependent, so invariant 2 ("check the state under the lock first") is kept here
    /// alone. `f` runs under the node's lock: it must not take another node's lock (invariant
    /// 3) nor run foreign code (invariant 4); it may take a callback's lock (the one nesting).
    /// What `f` takes out (a replaced waker) must be dropped by the caller, after this returns.
    pub(crate) fn with_live_dependents<R>(
        &self,
        f: impl FnOnce(&mut LiveDependents<'_>) -> R,
    ) -> Option<R> {
        let mut guard = self.lock();
        // Acquire, here and on the failed exchange: a caller told "done" (a waiter that returns,
        // a callback handed over to run) must see what the canceller did before, and a lock-free
        // finish publishes that only through the state (the lock does not order it).
        let state = self.state.load(Ordering::Acquire);
        if is_done_state(state) {
            return None;
        }
        // Before the first dependent goes in, the node stops being finishable without the lock.
        // Failing means a lock-free finish came first: the node is done (invariant 2).
        if state & GUARDED == 0
            && (self.state.compare_exchange(
                state,
                state | GUARDED,
                Ordering::Relaxed,
                Ordering::Acquire,
            ))
            .is_err()
        {
            return None;
        }
        let inner = guard.get_or_insert_with(Box::default);
        Some(f(&mut LiveDependents { slab: &mut inner.dependents }))
    }

    fn lock(&self) -> LockGuard<'_, Option<Box<Inner>>> {
        self.inner.lock()
    }

    #[inline]
    pub(crate) fn is_done(&self) -> bool {
        is_done_state(self.state.load(Ordering::Acquire))
    }

    /// Whether this node can ever become done (see `CANCELLABLE`).
    pub(crate) fn cancellable(&self) -> bool {
        self.flags & CANCELLABLE != 0
    }

    #[inline]
    pub(crate) fn err(&self) -> Option<Error> {
        match self.state.load(Ordering::Acquire) {
            state if is_done_state(state) => Some(error_of(state)),
            _ => None,
        }
    }

    /// Follows "same cause as" links up to the node that holds the cause (invariant 8).
    pub(crate) fn cause(&self) -> Option<Cause> {
        let mut node = self;
        loop {
            let state = node.state.load(Ordering::Acquire);
            if !is_done_state(state) {
                return None;
            }
            node = match source_of(state) {
                SOURCE_ERR => return Some(Cause::from(error_of(state))),
                SOURCE_CUSTOM => return node.lock().as_ref().and_then(|inner| inner.cause.clone()),
                _ => node.finished_by(state)?,
            };
        }
    }

    /// The node whose cancel finished this one (its parent or merge partner), for a done `state`
    /// whose source is `Parent` or `Other`.
    fn finished_by(&self, state: u8) -> Option<&Node> {
        match source_of(state) {
            SOURCE_PARENT => self.parent.node().map(|node| &**node),
            SOURCE_OTHER => self.merge()?.other.node().map(|node| &**node),
            _ => None,
        }
    }

    /// Marks this node done if it is live, and takes its dependents out (invariants 1 and 2).
    /// `root` marks the node where a cancel starts (invariant 7). The first call wins; later
    /// ones return `AlreadyDone`.
    ///
    /// `spare` (an emptied slab, see `SPARE_CAPACITY`) replaces the dependents taken out of a
    /// node that had any, instead of the empty default: it is freed with that node.
    #[inline(always)]
    fn finish(
        &self,
        err: Error,
        source: Source<'_>,
        root: bool,
        spare: &mut Option<Slab<Dependent>>,
    ) -> Finished {
        let done = source.done_state(err);
        // A plain load first, so that a `GUARDED` node does not pay a failing compare-exchange.
        let state = self.state.load(Ordering::Relaxed);
        if is_done_state(state) {
            return Finished::AlreadyDone;
        }
        if state == LIVE && !matches!(source, Source::Custom(_)) {
            match self.finish_lock_free(done) {
                Ok(()) => return Finished::Leaf,
                Err(state) if is_done_state(state) => return Finished::AlreadyDone,
                Err(_) => {} // Just `GUARDED`: dependents to take out, under the lock.
            }
        }
        let mut guard = self.lock();
        let state = self.state.load(Ordering::Relaxed);
        if is_done_state(state) {
            return Finished::AlreadyDone;
        }
        // A cancel root with nothing below it has no subtree to mark: no one needs to wait.
        let below = guard.as_ref().is_some_and(|inner| inner.dependents.len() > 0);
        let propagating = if root && below { PROPAGATING } else { 0 };
        if state & GUARDED != 0 {
            // Only a lock holder finishes a `GUARDED` node, and this thread holds the lock.
            self.state.store(done | propagating, Ordering::Release);
        } else if self
            .state
            .compare_exchange(LIVE, done | propagating, Ordering::Release, Ordering::Relaxed)
            .is_err()
        {
            // Not `GUARDED` (a custom cause): a lock-free finish may have come first, and then it
            // alone has finished the node.
            return Finished::AlreadyDone;
        }
        // Readers see `SOURCE_CUSTOM` only after the exchange, then wait for this lock.
        if let Source::Custom(cause) = source {
            guard.get_or_insert_with(Box::default).cause = Some(cause.clone());
        }
        let batch = guard.as_mut().and_then(|inner| match inner.dependents.len() {
            0 => None,
            // In place only from a small list, so the work under the lock stays O(1).
            1 if inner.dependents.fits_in(SPARE_CAPACITY) => {
                inner.dependents.take_single().map(Batch::One)
            }
            _ => {
                let replacement = spare.take().unwrap_or_default();
                Some(Batch::Many(mem::replace(&mut inner.dependents, replacement)))
            }
        });
        drop(guard);
        match batch {
            Some(batch) => Finished::Drained(batch),
            None => Finished::Leaf,
        }
    }

    /// Finishes a node that has nothing behind its lock with one compare-exchange from exactly
    /// `LIVE` (invariant 1); `Err` with the state found otherwise. Release: publishes what the
    /// canceller did before, as the locked path does.
    #[inline(always)]
    fn finish_lock_free(&self, done: u8) -> Result<(), u8> {
        match self.state.compare_exchange(LIVE, done, Ordering::Release, Ordering::Relaxed) {
            Ok(_) => Ok(()),
            Err(state) => Err(state),
        }
    }

    /// Cancels with `err` as its own cause: no custom cause to store or to inspect.
    pub(crate) fn cancel_err(&self, err: Error) {
        self.cancel_from(err, Source::Err);
    }

    /// Cancels this node and every linked descendant with `err` and `cause`. See
    /// [`CancelHandle::cancel`](crate::CancelHandle::cancel) for the contract.
    pub(crate) fn cancel(&self, err: Error, cause: &Cause) {
        let source = match cause.downcast_ref::<Error>() {
            Some(same) if *same == err => Source::Err,
            _ => Source::Custom(cause),
        };
        self.cancel_from(err, source);
    }

    /// Finishes this node and its subtree; once all of them are done, wakes their waiters and
    /// runs their callbacks on this thread (invariant 7). If this node was already done, waits
    /// until the cancel that finished it has finished the subtree too.
    fn cancel_from(&self, err: Error, source: Source<'_>) {
        let first = match self.finish(err, source, true, &mut None) {
            Finished::Drained(first) => first,
            Finished::AlreadyDone => {
                self.wait_for_propagation();
                return;
            }
            // A leaf with no waiter: nothing to mark, wake or run, and no `PROPAGATING` bit.
            Finished::Leaf => {
                self.unlink();
                return;
            }
        };
        self.propagate(err, first);
    }

    /// The rest of a cancel rooted here that found `first` below this node: marks the subtree,
    /// then tells it (invariant 7). Out of line, so the common leaf cancel stays small.
    #[inline(never)]
    fn propagate(&self, err: Error, first: Batch) {
        // No vector allocates unless there is a waiter, a callback or a child with dependents.
        let mut marking = Marking::new(err);
        let mut work = (self as *const Node, first);
        loop {
            let (owner, batch) = work;
            let follow = match batch {
                // A chain goes level by level, without the stack and without building a
                // `Work` per level (moving it costs a chain more time than its instructions say).
                Batch::One(mut dependent) => {
                    let mut owner = owner;
                    loop {
                        match marking.visit(owner, dependent) {
                            Some((next_owner, Batch::One(next))) => {
                                owner = next_owner;
                                dependent = next;
                            }
                            other => break other,
                        }
                    }
                }
                // Freeing each small drained list here would cost a tree one `free` per node
                // inside the cancel; it is handed to the next node finished instead, whose drop
                // frees it (the peer, too, frees its children's lists on drop, not on cancel).
                Batch::Many(mut dependents) if dependents.fits_in(SPARE_CAPACITY) => {
                    for dependent in dependents.drain() {
                        marking.visit_to_stack(owner, dependent);
                    }
                    marking.spare = Some(dependents);
                    None
                }
                // A large list is passed by value and freed as it goes: nothing written back.
                Batch::Many(dependents) => {
                    for dependent in dependents.into_values() {
                        marking.visit_to_stack(owner, dependent);
                    }
                    None
                }
            };
            work = match follow.or_else(|| marking.stack.pop()) {
                Some(next) => next,
                None => break,
            };
        }
        let Marking { wakeups, nested, .. } = marking;
        // Nested cancels are rooted strictly below this one and only ever wait further down, so
        // these waits cannot form a cycle. Foreign code has not run yet: none waits for us.
        for child in nested {
            child.wait_until_marked();
        }
        // Release: whoever sees the bit cleared sees every descendant's state stored above.
        self.state.fetch_and(!PROPAGATING, Ordering::Release);
        // The root of a cancel leaves its parents only now (Go's removeChild comes last too): an
        // ancestor cancelled meanwhile must find it, see the bit and wait for the subtree.
        // Descendants were drained by their parents and leave only on drop.
        self.unlink();
        wakeups.deliver();
    }

    fn is_propagating(&self) -> bool {
        self.state.load(Ordering::Acquire) & PROPAGATING != 0
    }

    /// Waits until the cancel rooted at this node (if any) has marked its subtree.
    fn wait_until_marked(&self) {
        while self.is_propagating() {
            yield_now();
        }
    }

    /// Waits until no cancel is still marking the subtree this node belongs to: follows the
    /// "finished by" links up and waits on every `PROPAGATING` bit it meets (invariant 7). The
    /// winner clears its bit before it runs any foreign code, so a cancel made from a waker or a
    /// callback never waits for its own caller.
    fn wait_for_propagation(&self) {
        let mut node = self;
        loop {
            node.wait_until_marked();
            match node.finished_by(node.state.load(Ordering::Acquire)) {
                Some(up) => node = up,
                None => return,
            }
        }
    }

    /// Removes this node from its parents' dependents and from the timer. Idempotent.
    #[inline]
    fn unlink(&self) {
        // Load and store, no swap: one writer at a time (invariant 5).
        let key = self.parent_key.load(Ordering::Relaxed);
        if key != NOT_LINKED {
            self.parent_key.store(NOT_LINKED, Ordering::Relaxed);
            if let Some(parent) = self.parent.node() {
                remove_dependent(parent, key);
            }
        }
        if let Some(merge) = self.merge() {
            let key = merge.other_key.load(Ordering::Relaxed);
            if key != NOT_LINKED {
                merge.other_key.store(NOT_LINKED, Ordering::Relaxed);
                if let Some(other) = merge.other.node() {
                    remove_dependent(other, key);
                }
            }
        }
        self.release_timer();
    }

    fn release_timer(&self) {
        if let Some(KindRef::Deadline(deadline)) = self.layer.as_deref().map(Layer::kind) {
            deadline.release();
        }
    }

    /// Everything `Drop` does to one node before its parent is released: leave the tree, and hand
    /// callbacks that have not run to the parent(s) that can still finish them.
    #[inline]
    fn detach(&mut self) {
        let was_linked = self.parent_key.load(Ordering::Relaxed) != NOT_LINKED;
        let other_linked =
            self.merge().is_some_and(|m| m.other_key.load(Ordering::Relaxed) != NOT_LINKED);
        self.unlink();
        let inner = self.inner.get_mut().take();
        let Some(mut inner) = inner.filter(|inner| inner.dependents.len() > 0) else {
            return;
        };
        // Children and waiters hold this node strongly, so only callbacks can be left. While this
        // node was linked, its parent(s) could still have finished it; they now run the callback.
        let parent = Some(&self.parent).filter(|_| was_linked);
        let other = self.merge().filter(|_| other_linked).map(|merge| &merge.other);
        for dependent in inner.dependents.drain() {
            if let Dependent::Callback(callback) = dependent {
                callback.move_out_of([parent, other]);
            }
        }
    }

    fn take_other(&mut self) -> Option<Context> {
        self.layer.as_mut().and_then(|layer| layer.take_other())
    }
}

/// Removes entry `key` from `node`'s dependents, dropping it outside the lock.
#[inline]
pub(crate) fn remove_dependent(node: &Node, key: u32) {
    let removed = node.lock().as_mut().and_then(|inner| inner.dependents.remove(key as usize));
    drop(removed);
}

/// Slab keys are stored in 32 bits to keep nodes small.
///
/// # Panics
/// If one context has more than four billion live dependents at once.
fn to_key(key: usize) -> u32 {
    match u32::try_from(key) {
        Ok(key) if key != NOT_LINKED => key,
        _ => panic!("ctx: more than 4 billion children and waiters on one context"),
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.detach();
        let parent = mem::take(&mut self.parent);
        match self.take_other() {
            // The usual case: one parent, which other contexts keep alive.
            None => {
                if let Some(parent) = parent.into_node().and_then(Arc::into_inner) {
                    release_chain_from(parent);
                }
            }
            Some(other) => release_chain(parent, Some(other)),
        }
    }
}

/// [`release_chain`] from a parent whose last reference was the dropped node's.
#[inline(never)]
fn release_chain_from(mut parent: Node) {
    parent.detach();
    release_chain(mem::take(&mut parent.parent), parent.take_other());
}

/// Drops the contexts a dropped node held, and every ancestor that only they kept alive, with a
/// loop instead of recursion (invariant 6).
fn release_chain(parent: Context, other: Option<Context>) {
    let mut pending: Vec<Context> = other.into_iter().collect();
    let mut next = Some(parent);
    while let Some(ctx) = next.take().or_else(|| pending.pop()) {
        let Some(arc) = ctx.into_node() else { continue };
        let Some(mut node) = Arc::into_inner(arc) else { continue };
        node.detach();
        next = Some(mem::take(&mut node.parent));
        pending.extend(node.take_other());
        // `node` drops here with nothing left to detach and no parents: no recursion.
    }
}

/// Dependents a cancel took out of a node, with that node (compared with each child's parent to
/// tell a parent from a merge partner, never dereferenced).
type Work = (*const Node, Batch);

/// A cancel's marking pass (invariant 7): what is left to visit, and what to tell once the whole
/// subtree is done.
struct Marking {
    err: Error,
    /// Dependents still to visit.
    stack: Vec<Work>,
    /// An emptied small list, for the next node finished with two or more dependents.
    spare: Option<Slab<Dependent>>,
    /// Children whose own concurrent cancel is still marking below them.
    nested: Vec<Arc<Node>>,
    wakeups: Wakeups,
}

impl Marking {
    fn new(err: Error) -> Marking {
        Marking {
            err,
            stack: Vec::new(),
            spare: None,
            nested: Vec::new(),
            wakeups: Wakeups::default(),
        }
    }

    /// Visits one dependent of `owner`; what it leaves to visit goes on the stack.
    #[inline(always)]
    fn visit_to_stack(&mut self, owner: *const Node, dependent: Dependent) {
        if let Some(work) = self.visit(owner, dependent) {
            self.stack.push(work);
        }
    }

    /// Finishes one dependent of `owner` (a node this cancel has finished), or records it to be
    /// told. Returns a finished child's own dependents, to visit next.
    #[inline(always)]
    fn visit(&mut self, owner: *const Node, dependent: Dependent) -> Option<Work> {
        let child = match dependent {
            Dependent::Child(weak) => weak.upgrade()?,
            Dependent::Waker(waker) => {
                self.wakeups.wakers.push(waker);
                return None;
            }
            Dependent::Thread(thread) => {
                self.wakeups.threads.push(thread);
                return None;
            }
            Dependent::Callback(callback) => {
                self.wakeups.callbacks.push(callback);
                return None;
            }
        };
        let from_parent = child.parent.node().is_some_and(|p| std::ptr::eq(Arc::as_ptr(p), owner));
        let source = if from_parent { Source::Parent } else { Source::Other };
        // Most children of a wide cancel are leaves: one compare-exchange, here, inline.
        if child.state.load(Ordering::Relaxed) == LIVE
            && child.finish_lock_free(source.done_state(self.err)).is_ok()
        {
            self.retire_leaf(child);
            return None;
        }
        let mut work = None;
        match child.finish(self.err, source, false, &mut self.spare) {
            Finished::Drained(batch) => {
                child.release_timer();
                work = Some((Arc::as_ptr(&child), batch));
            }
            Finished::Leaf => {
                self.retire_leaf(child);
                return None;
            }
            // A concurrent cancel started at this child is marking its subtree.
            Finished::AlreadyDone if from_parent && child.is_propagating() => {
                self.nested.push(child.clone());
            }
            Finished::AlreadyDone => {}
        }
        // If this is the last clone, dropping it runs user code (values' `Drop`, moved
        // callbacks) that may cancel inside this very subtree: it must not run before the
        // marking is over (invariant 7). It also keeps the node alive while its dependents wait
        // on the stack, so that `owner` names it.
        self.wakeups.retired.push(child);
        work
    }

    /// A child this cancel finished with nothing below it. Without a layer its last drop runs no
    /// foreign code (no value; no callback, since nothing was behind it) and releases only its
    /// parent, which this cancel keeps alive (its root, or a retired node): a child without a
    /// layer is always reached from its parent, since only a merge (a layer) is a dependent of
    /// another node. It is dropped at once, with no retired entry to push and drop later. Any
    /// other is retired.
    #[inline(always)]
    fn retire_leaf(&mut self, child: Arc<Node>) {
        if child.layer.is_some() {
            child.release_timer();
            self.wakeups.retired.push(child);
        }
    }
}

/// What a finished subtree must be told, collected while marking it (invariant 7).
#[derive(Default)]
struct Wakeups {
    /// Children reached during the marking, dropped only once it is over.
    retired: Vec<Arc<Node>>,
    wakers: Vec<Waker>,
    threads: Vec<Thread>,
    callbacks: Vec<Arc<Callback>>,
    first_panic: Option<Box<dyn Any + Send>>,
}

impl Wakeups {
    /// Runs foreign code, keeping its panic (the first one) for the end.
    fn guard(&mut self, f: impl FnOnce()) {
        if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
            self.first_panic.get_or_insert(payload);
        }
    }

    /// Drops the retired children, wakes every waiter, then runs every callback, outside any
    /// lock. A panic in one (a `Drop`, a `Waker::wake` or a callback) does not keep the others
    /// from running; the first panic is resumed at the end, unless this thread is already
    /// panicking (the hook has reported it).
    fn deliver(mut self) {
        for child in mem::take(&mut self.retired) {
            self.guard(move || drop(child));
        }
        for waker in mem::take(&mut self.wakers) {
            self.guard(|| waker.wake());
        }
        for thread in mem::take(&mut self.threads) {
            thread.unpark();
        }
        for callback in mem::take(&mut self.callbacks) {
            self.guard(|| callback.run());
        }
        if let Some(payload) = self.first_panic {
            if !std::thread::panicking() {
                panic::resume_unwind(payload);
            }
        }
    }
}

pub(crate) fn error_of(state: u8) -> Error {
    match state & ERR_MASK {
        1 => Error::Canceled,
        _ => Error::DeadlineExceeded,
    }
}

const _: () = assert!(Error::Canceled as u8 + 1 == 1 && Error::DeadlineExceeded as u8 + 1 == 2);

#[cfg(test)]
mod tests {
    /// The per-child footprint the benchmarks promise: one 64-byte allocation on 64-bit targets.
    #[test]
    #[cfg(all(target_pointer_width = "64", not(loom)))]
    fn a_cancel_node_fits_in_64_bytes_with_its_arc_header() {
        assert_eq!(std::mem::size_of::<crate::Context>(), 8);
        assert!(
            std::mem::size_of::<super::Node>() + 16 <= 64,
            "{}",
            std::mem::size_of::<super::Node>()
        );
    }

    /// Every done state decodes, through the same constants, to the error and source it was
    /// encoded from, is not live and carries no `PROPAGATING` or `GUARDED` bit of its own.
    #[test]
    fn done_states_decode_to_what_they_encode() {
        use super::{GUARDED, PROPAGATING, Source, error_of, is_done_state, source_of};
        use crate::{Cause, Error};
        let cause = Cause::from(Error::Canceled);
        let sources = [Source::Err, Source::Custom(&cause), Source::Parent, Source::Other];
        let mut seen = std::collections::HashSet::new();
        for err in [Error::Canceled, Error::DeadlineExceeded] {
            for source in sources {
                let state = source.done_state(err);
                assert!(is_done_state(state) && is_done_state(state | PROPAGATING));
                assert!(!is_done_state(GUARDED) && !is_done_state(super::LIVE));
                assert_eq!(state & (PROPAGATING | GUARDED), 0);
                assert_eq!(error_of(state), err);
                assert_eq!(error_of(state | PROPAGATING), err);
                assert_eq!(source_of(state), source.bits());
                assert_eq!(source_of(state | PROPAGATING), source.bits());
                assert!(seen.insert(state), "two done states share an encoding");
            }
        }
    }

    /// Invariant 2, kept by `with_live_dependents` alone: dependents are lent while the node is
    /// live, and never once it is done (`f` does not even run).
    #[test]
    #[cfg(not(loom))]
    fn dependents_are_lent_only_while_the_node_is_live() {
        use super::Dependent;
        let (ctx, handle) = crate::Context::background().with_cancel();
        let node = ctx.node().expect("a derived context has a node");
        let waiter = || Dependent::Thread(std::thread::current());
        let first = node.with_live_dependents(|dependents| dependents.insert(waiter()));
        let second = node.with_live_dependents(|dependents| dependents.insert(waiter()));
        assert_eq!((first, second), (Some(0), Some(1)));
        let lent_again = node.with_live_dependents(|dependents| dependents.get_mut(1).is_some());
        assert_eq!(lent_again, Some(true));
        handle.cancel();
        let mut ran = false;
        assert!(node.with_live_dependents(|_| ran = true).is_none());
        assert!(!ran, "a done node lends nothing");
        assert!(node.lock().as_ref().is_some_and(|inner| inner.dependents.len() == 0));
    }

    /// Invariant 8: descendants report the cause of the node the cancel started at, through
    /// parents and merge partners, without holding a copy.
    #[test]
    fn causes_are_found_through_links() {
        use crate::{Context, Error};
        let (root, cancel_root) = Context::background().with_cancel();
        let (other, cancel_other) = Context::background().with_cancel();
        let (child, _h) = root.with_value(1u8).with_cancel();
        let (merged, _h2) = other.merge(&Context::background());
        cancel_root.cancel_with_cause(std::io::Error::other("root went away"));
        cancel_other.cancel_with_cause(Error::DeadlineExceeded);
        assert_eq!(child.cause().unwrap().to_string(), "root went away");
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(merged.cause().unwrap().downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
        let (born_done, _h3) = child.with_cancel();
        assert_eq!(born_done.cause().unwrap().to_string(), "root went away");
        let (late_merge, _h4) = Context::background().merge(&child);
        assert_eq!(late_merge.cause().unwrap().to_string(), "root went away");
    }
}
