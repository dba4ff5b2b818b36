//! Loom models of the cancellation tree, its waiters and `after_func` callbacks.
//!
//! Under `--cfg loom`, `ctx-core/src/sync.rs` and `lock.rs` swap the node lock (for loom's
//! blocking `Mutex`; the lock itself has the `spin_lock_*` models at the end), the state and key
//! atomics and thread parking for loom's, so each `loom::model` below runs its body under every
//! interleaving of those operations (up to `LOOM_MAX_PREEMPTIONS` preemptions per execution).
//!
//! ```text
//! bounded (CI):  RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=3 CARGO_TARGET_DIR=target/loom \
//!                    cargo test -p ctx-core --test loom --release
//! exhaustive:    RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!                    cargo test -p ctx-core --test loom --release
//! ```
//!
//! What loom cannot see, and these models therefore leave out (see RELIABILITY.md):
//! - the deadline timer: it is a real OS thread with std locks, so no model creates a pending
//!   deadline (deadline firing runs the same `Node::cancel` path as a handle);
//! - `wait_timeout`: it reads the real clock; the models use `wait()` (loom `park`/`unpark`);
//! - reference counts: `Arc`/`Weak` stay std's (loom has no `Weak`), so the models check states,
//!   dependents, wake-ups and callbacks, and the stress suite counts allocations instead.
#![cfg(loom)]

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::task::{Poll, Wake, Waker};

use ctx::{Cause, Context, Error};
use loom::thread;

/// A cause that names which thread cancelled.
#[derive(Debug)]
struct Tag(u8);

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tag {}", self.0)
    }
}

impl std::error::Error for Tag {}

fn tag(cause: Option<Cause>) -> Option<u8> {
    cause
        .map(|cause| cause.downcast_ref::<Tag>().expect("every cancel in these models is tagged").0)
}

/// A waker that records how often it was woken.
#[derive(Default)]
struct CountingWaker(AtomicUsize);

impl CountingWaker {
    fn wakes(&self) -> usize {
        self.0.load(SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, SeqCst);
    }
}

fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Arc<CountingWaker>) -> Poll<F::Output> {
    let waker = Waker::from(waker.clone());
    Pin::new(future).poll(&mut std::task::Context::from_waker(&waker))
}

/// Counts how often the `after_func` callbacks of a model ran.
fn counter() -> (Arc<AtomicUsize>, impl FnOnce() + Send + 'static) {
    let runs = Arc::new(AtomicUsize::new(0));
    let inc = runs.clone();
    (runs, move || {
        inc.fetch_add(1, SeqCst);
    })
}

/// Waits until the callbacks counted by `runs` ran `n` times in all. A callback that finds its
/// context done when it is registered, or moved to a parent that is done, runs on a thread of its
/// own (a loom thread here, the timer thread outside loom), soon but not before that call returns.
fn wait_for_runs(runs: &AtomicUsize, n: usize) {
    while runs.load(SeqCst) < n {
        thread::yield_now();
    }
    assert_eq!(runs.load(SeqCst), n, "a callback ran more than once");
}

/// A child derived while its parent is being cancelled ends up done, with the parent's cause;
/// so do a value layer over it and a merge that has the parent as its second parent.
#[test]
fn cancel_races_child_attach() {
    loom::model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (side, _side_handle) = Context::background().with_cancel();
        let from = parent.clone();
        let deriving = thread::spawn(move || {
            let (child, child_handle) = from.with_cancel();
            let value = child.with_value(7u8);
            let (merged, merged_handle) = side.merge(&from);
            (child, child_handle, value, merged, merged_handle)
        });
        handle.cancel_with_cause(Tag(1));
        let (child, _child_handle, value, merged, _merged_handle) = deriving.join().unwrap();
        for ctx in [&parent, &child, &value, &merged] {
            assert_eq!(ctx.err(), Some(Error::Canceled), "{ctx}");
            assert_eq!(tag(ctx.cause()), Some(1), "{ctx}");
        }
        assert_eq!(value.value::<u8>(), Some(&7));
    });
}

/// A merge linking to its second parent while that parent is cancelled ends up done with that
/// parent's cause, whether it linked first or found the parent already done.
#[test]
fn cancel_races_merge_link() {
    loom::model(|| {
        let (first, _first_handle) = Context::background().with_cancel();
        let (second, second_handle) = Context::background().with_cancel();
        let merging = thread::spawn(move || first.merge(&second));
        second_handle.cancel_with_cause(Tag(2));
        let (merged, _merged_handle) = merging.join().unwrap();
        assert_eq!(merged.err(), Some(Error::Canceled));
        assert_eq!(tag(merged.cause()), Some(2));
    });
}

/// A child dropped while its parent is cancelled: the parent's cancel skips or finishes it, the
/// child's drop unlinks it from a live or drained dependents list, and the sibling that shares
/// the parent's list is still cancelled. The child's `after_func` callback runs exactly once:
/// through the child's cancel, or after moving to the parent when the child is dropped first.
#[test]
fn cancel_races_child_drop() {
    loom::model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let (sibling, _sibling_handle) = parent.with_cancel();
        let (runs, callback) = counter();
        let _registration = child.after_func(callback);
        let dropping = thread::spawn(move || drop((child, child_handle)));
        handle.cancel_with_cause(Tag(1));
        dropping.join().unwrap();
        assert_eq!(tag(sibling.cause()), Some(1));
        // Exactly once: by the child's cancel, or handed over by a move to the done parent.
        wait_for_runs(&runs, 1);
    });
}

/// A chain dropped from its leaf while its root is cancelled: the leaf's callback, moving up the
/// chain as each node is released (or run by the cancel), runs exactly once.
#[test]
fn cancel_races_chain_drop() {
    loom::model(|| {
        let (root, handle) = Context::background().with_cancel();
        let (middle, middle_handle) = root.with_cancel();
        let leaf = middle.with_value(1u8);
        let (runs, callback) = counter();
        let _registration = leaf.after_func(callback);
        drop(middle);
        let dropping = thread::spawn(move || drop((leaf, middle_handle)));
        handle.cancel();
        dropping.join().unwrap();
        wait_for_runs(&runs, 1);
    });
}

/// Both parents of a merge cancelled, with different causes, while the merge is being created:
/// it ends up done with the cause of one of them.
#[test]
fn merge_parents_cancel_while_it_is_created() {
    loom::model(|| {
        let (first, first_handle) = Context::background().with_cancel();
        let (second, second_handle) = Context::background().with_cancel();
        let merging = thread::spawn(move || first.merge(&second));
        let cancelling = thread::spawn(move || first_handle.cancel_with_cause(Tag(1)));
        second_handle.cancel_with_cause(Tag(2));
        let (merged, _merged_handle) = merging.join().unwrap();
        cancelling.join().unwrap();
        assert_eq!(merged.err(), Some(Error::Canceled));
        let cause = tag(merged.cause());
        assert!(cause == Some(1) || cause == Some(2), "{cause:?}");
    });
}

/// Invariant 5 (keys are removed once): a child leaving its parent while another child joins
/// (possibly reusing the freed slot) never removes the newcomer's entry, so the newcomer is still
/// cancelled by the parent.
#[test]
fn child_drop_races_child_attach() {
    loom::model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (old, old_handle) = parent.with_cancel();
        let dropping = thread::spawn(move || drop((old, old_handle)));
        let (new, _new_handle) = parent.with_cancel();
        dropping.join().unwrap();
        handle.cancel();
        assert_eq!(new.err(), Some(Error::Canceled));
    });
}

/// Invariant 5 after a leaf's lock-free cancel: the cancel leaves both parents (freeing its keys
/// there), and the drop that follows must not remove those keys again once newcomers reuse them:
/// a child of the first parent and a merge with the second are still cancelled with them.
#[test]
fn a_cancelled_leaf_leaves_its_parents_once() {
    loom::model(|| {
        let (parent, parent_handle) = Context::background().with_cancel();
        let (other, other_handle) = Context::background().with_cancel();
        let (leaf, leaf_handle) = parent.merge(&other);
        let leaving = thread::spawn(move || {
            leaf_handle.cancel();
            drop((leaf, leaf_handle));
        });
        let (child, _child_handle) = parent.with_cancel();
        let (merged, _merged_handle) = Context::background().merge(&other);
        leaving.join().unwrap();
        parent_handle.cancel();
        other_handle.cancel();
        assert_eq!(child.err(), Some(Error::Canceled), "the child lost its entry in its parent");
        assert_eq!(merged.err(), Some(Error::Canceled), "the merge lost its entry in its partner");
    });
}

/// No lost wake-up for futures: a `Done` polled while the context is cancelled either resolves
/// at once or is woken exactly once, and resolves when polled again.
#[test]
fn cancel_races_done_registration() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let waiting = thread::spawn(move || {
            let waker = Arc::new(CountingWaker::default());
            let mut done = ctx.done();
            let first = poll_once(&mut done, &waker);
            (first, done, waker)
        });
        handle.cancel();
        let (first, mut done, waker) = waiting.join().unwrap();
        match first {
            Poll::Ready(()) => assert_eq!(waker.wakes(), 0, "a resolved future is not registered"),
            Poll::Pending => assert_eq!(waker.wakes(), 1, "a registered waker is woken once"),
        }
        assert_eq!(poll_once(&mut done, &waker), Poll::Ready(()));
    });
}

/// A waker that unparks a loom thread.
struct Unparker(thread::Thread);

impl Wake for Unparker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Polls `future` to completion, parking (loom's `park`) while it is pending: if its waker is
/// never woken, the thread never runs again and loom fails the model with a deadlock.
fn block_on<F: Future + Unpin>(mut future: F) -> F::Output {
    let waker = Waker::from(Arc::new(Unparker(thread::current())));
    let mut cx = std::task::Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = Pin::new(&mut future).poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

/// The same race through a parking executor: the model deadlocks (and loom fails it) if the
/// waker registered by `Done` is never woken.
#[test]
fn cancel_races_done_block_on() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let waiting = thread::spawn(move || block_on(ctx.done()));
        handle.cancel();
        waiting.join().unwrap();
    });
}

/// No lost wake-up for threads: `wait()` registers the thread and parks (loom's `park`), the
/// cancel unparks it; loom reports a deadlock if the unpark can be missed.
#[test]
fn cancel_races_thread_wait() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let (child, _child_handle) = ctx.with_cancel();
        let waiting = thread::spawn(move || {
            child.wait();
            assert_eq!(child.err(), Some(Error::Canceled));
        });
        handle.cancel();
        waiting.join().unwrap();
    });
}

/// A `Done` dropped (unregistering its waker) while the context is cancelled: no double removal,
/// no wake for the dropped future's waker after its drop returned, and the other registered
/// future is woken exactly once.
#[test]
fn cancel_races_done_drop() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let dropped_waker = Arc::new(CountingWaker::default());
        let mut dropped = ctx.done();
        assert!(poll_once(&mut dropped, &dropped_waker).is_pending());
        let kept_waker = Arc::new(CountingWaker::default());
        let mut kept = ctx.done();
        assert!(poll_once(&mut kept, &kept_waker).is_pending());
        let dropping = thread::spawn(move || {
            drop(dropped);
        });
        handle.cancel();
        dropping.join().unwrap();
        assert!(dropped_waker.wakes() <= 1);
        assert_eq!(kept_waker.wakes(), 1);
    });
}

/// Two cancels with different causes: the first to finish the context wins, every reader sees
/// a cause consistent with `err()` (never `err()` set with no cause), and a descendant has the
/// cause of its ancestor.
#[test]
fn two_cancels_first_cause_wins() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let (child, _child_handle) = ctx.with_cancel();
        let other = handle.clone();
        let reader_ctx = ctx.clone();
        let cancelling = thread::spawn(move || {
            other.cancel_with_cause(Tag(1));
        });
        let reading = thread::spawn(move || {
            let err = reader_ctx.err();
            let seen = tag(reader_ctx.cause());
            if err.is_some() {
                assert!(seen.is_some(), "err() is set but cause() is not");
            }
            seen
        });
        handle.cancel_with_cause(Tag(2));
        cancelling.join().unwrap();
        let seen = reading.join().unwrap();
        let winner = tag(ctx.cause()).expect("cancelled");
        assert!(winner == 1 || winner == 2);
        assert_eq!(ctx.err(), Some(Error::Canceled));
        assert_eq!(tag(child.cause()), Some(winner), "a descendant has its ancestor's cause");
        if let Some(seen) = seen {
            assert_eq!(seen, winner, "the cause never changes once set");
        }
    });
}

/// The cause of `ctx`: `Some(tag)` for a tagged cause, `None` for the plain `Error::Canceled`.
fn tag_or_plain(ctx: &Context) -> Option<Option<u8>> {
    ctx.cause().map(|cause| match cause.downcast_ref::<Tag>() {
        Some(tag) => Some(tag.0),
        None => {
            assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
            None
        }
    })
}

/// A plain cancel of a leaf (nothing ever behind its lock: one compare-exchange, no lock) racing
/// a cancel with a cause (which stores the cause under the lock): exactly one wins, and a
/// reader never sees `err()` without a cause, nor the cause change.
#[test]
fn lock_free_leaf_cancel_races_a_cancel_with_a_cause() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let other = handle.clone();
        let reader = ctx.clone();
        let cancelling = thread::spawn(move || other.cancel_with_cause(Tag(1)));
        let reading = thread::spawn(move || {
            let err = reader.err();
            let seen = tag_or_plain(&reader);
            if err.is_some() {
                assert!(seen.is_some(), "err() is set but cause() is not");
            }
            seen
        });
        handle.cancel();
        cancelling.join().unwrap();
        let seen = reading.join().unwrap();
        let winner = tag_or_plain(&ctx).expect("cancelled");
        assert_eq!(ctx.err(), Some(Error::Canceled));
        if let Some(seen) = seen {
            assert_eq!(seen, winner, "the cause never changes once set");
        }
    });
}

/// A plain cancel of a leaf racing its first dependents (a child, then a `Done` registration):
/// the lock-free finish and the first insertion exclude each other, so the child is done with
/// the cancel's cause and the waiter is ready at once or woken exactly once.
#[test]
fn lock_free_leaf_cancel_races_its_first_dependents() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let deriving = thread::spawn(move || {
            let (child, child_handle) = ctx.with_cancel();
            let waker = Arc::new(CountingWaker::default());
            let mut done = ctx.done();
            let first = poll_once(&mut done, &waker);
            (child, child_handle, first, done, waker)
        });
        handle.cancel();
        let (child, _child_handle, first, mut done, waker) = deriving.join().unwrap();
        assert_eq!(child.err(), Some(Error::Canceled));
        assert_eq!(tag_or_plain(&child), Some(None), "the child has the plain cancel's cause");
        match first {
            Poll::Ready(()) => assert_eq!(waker.wakes(), 0, "a resolved future is not registered"),
            Poll::Pending => assert_eq!(waker.wakes(), 1, "a registered waker is woken once"),
        }
        assert_eq!(poll_once(&mut done, &waker), Poll::Ready(()));
    });
}

/// A parent cancelled while its child is cancelled with another cause: the parent keeps its own
/// cause, and the child and grandchild agree on one of the two.
#[test]
fn parent_and_child_cancels_race() {
    loom::model(|| {
        let (parent, parent_handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let (grandchild, _grandchild_handle) = child.with_cancel();
        let cancelling = thread::spawn(move || child_handle.cancel_with_cause(Tag(2)));
        parent_handle.cancel_with_cause(Tag(1));
        cancelling.join().unwrap();
        assert_eq!(tag(parent.cause()), Some(1));
        let child_cause = tag(child.cause()).expect("cancelled");
        assert_eq!(tag(grandchild.cause()), Some(child_cause));
    });
}

/// `CancelHandle::cancel` promises to return only once every linked descendant is done. A cancel
/// that finds its own context already finished by another cancel (here the child's, finished by
/// the parent's) waits until that cancel has finished the subtree.
#[test]
fn a_cancel_that_loses_its_context_returns_after_the_subtree_is_done() {
    loom::model(|| {
        let (parent, parent_handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let (grandchild, _grandchild_handle) = child.with_cancel();
        let cancelling = thread::spawn(move || parent_handle.cancel_with_cause(Tag(1)));
        child_handle.cancel_with_cause(Tag(2));
        assert!(grandchild.is_done(), "the child's cancel returned too early");
        cancelling.join().unwrap();
    });
}

/// The same promise when the overlap is further down: the parent's cancel wins the parent, then
/// finds the child already finished by the child's own cancel, which may not have reached the
/// grandchild yet. (Found by this model: the parent's cancel used to skip the child's subtree and
/// return with the grandchild still live.)
#[test]
fn a_cancel_that_meets_a_descendant_taken_by_another_cancel_returns_after_its_subtree() {
    loom::model(|| {
        let (parent, parent_handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let (grandchild, _grandchild_handle) = child.with_cancel();
        let cancelling = thread::spawn(move || child_handle.cancel_with_cause(Tag(2)));
        parent_handle.cancel_with_cause(Tag(1));
        assert!(grandchild.is_done(), "the parent's cancel returned too early");
        cancelling.join().unwrap();
    });
}

/// The same promise when the descendant was taken by a cancel that reached it through a merge:
/// the merge is the parent's child, and its other parent is cancelled at the same time. The
/// parent's cancel finds the merge done (not the root of a cancel, so there is no mark to wait
/// for) and returns while the merge's own child may still be live.
#[test]
#[ignore = "documented exception (CancelHandle): a cancel that reaches a merge second does not wait for its partner's concurrent cancel"]
fn a_cancel_that_meets_a_merge_taken_by_its_partner_returns_after_its_subtree() {
    loom::model(|| {
        let (parent, parent_handle) = Context::background().with_cancel();
        let (partner, partner_handle) = Context::background().with_cancel();
        let (merged, _merged_handle) = parent.merge(&partner);
        let (grandchild, _grandchild_handle) = merged.with_cancel();
        let cancelling = thread::spawn(move || partner_handle.cancel_with_cause(Tag(2)));
        parent_handle.cancel_with_cause(Tag(1));
        assert!(grandchild.is_done(), "the parent's cancel returned too early");
        cancelling.join().unwrap();
        drop(partner);
    });
}

/// `stop()` racing the cancel: exactly one of "stop returned true" and "f ran".
#[test]
fn after_func_stop_races_cancel() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let (runs, callback) = counter();
        let registration = ctx.after_func(callback);
        let stopping = thread::spawn(move || registration.stop());
        handle.cancel();
        let stopped = stopping.join().unwrap();
        let ran = runs.load(SeqCst);
        assert!(ran <= 1);
        assert!(stopped != (ran == 1), "stopped: {stopped}, ran: {ran}");
    });
}

/// `after_func` registering while the context is cancelled: the function runs exactly once,
/// either from the cancel or, handed over by a registration that found the context done, on a
/// thread of its own (never inside `after_func`).
#[test]
fn after_func_register_races_cancel() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let (runs, callback) = counter();
        let registering = thread::spawn(move || ctx.after_func(callback));
        handle.cancel();
        let registration = registering.join().unwrap();
        assert!(!registration.stop(), "run or handed over: too late to stop");
        wait_for_runs(&runs, 1);
    });
}

/// `stop()` racing the move of a callback from a dropped child to its parent, then a cancel of
/// the parent: still exactly one of "stop returned true" and "f ran".
#[test]
fn after_func_stop_races_move_to_parent() {
    loom::model(|| {
        let (parent, handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let (runs, callback) = counter();
        let registration = child.after_func(callback);
        let dropping = thread::spawn(move || drop((child, child_handle)));
        let stopped = registration.stop();
        dropping.join().unwrap();
        handle.cancel();
        let ran = runs.load(SeqCst);
        assert!(ran <= 1);
        assert!(stopped != (ran == 1), "stopped: {stopped}, ran: {ran}");
        assert!(!registration.stop(), "a second stop returns false");
    });
}

/// A number the canceller writes with a `Relaxed` store before it cancels, for a thread that
/// learns of the cancel to read with a `Relaxed` load. Loom lets that load return the old value
/// unless the cancel happens before the reader learned of it: the models below fail if a way of
/// learning "done" does not synchronise with the cancel (tree.rs, "Orderings").
fn written_before_the_cancel() -> (Arc<loom::sync::atomic::AtomicUsize>, impl Fn() -> usize) {
    let written = Arc::new(loom::sync::atomic::AtomicUsize::new(0));
    let read = written.clone();
    (written, move || read.load(std::sync::atomic::Ordering::Relaxed))
}

/// A model where a thread waits with `learn` until a context is done, then reads what the
/// canceller wrote before cancelling: it must see it (see [`written_before_the_cancel`]).
fn check_the_cancellers_writes_are_seen_after(learn: fn(&Context)) {
    loom::model(move || {
        let (ctx, handle) = Context::background().with_cancel();
        let (written, read) = written_before_the_cancel();
        let waiting = thread::spawn(move || {
            learn(&ctx);
            read()
        });
        written.store(1, std::sync::atomic::Ordering::Relaxed);
        handle.cancel();
        assert_eq!(waiting.join().unwrap(), 1, "learned of the cancel before it happened");
    });
}

/// `wait()` returns after the cancel: whether it found the context done at once, had its
/// registration refused (a leaf's lock-free finish came first) or was unparked by the cancel,
/// it sees what the canceller did before cancelling. (Found by this model: a refused
/// registration returned without synchronising with the lock-free finish.)
#[test]
fn a_thread_that_waited_sees_what_the_canceller_did_before() {
    check_the_cancellers_writes_are_seen_after(Context::wait);
}

/// The same for a `Done` future, polled by a parking executor: once it resolves, its task sees
/// what the canceller did before cancelling.
#[test]
fn a_resolved_done_future_sees_what_the_canceller_did_before() {
    check_the_cancellers_writes_are_seen_after(|ctx| block_on(ctx.done()));
}

/// The same for an `after_func` callback registered during the cancel: run by the cancel, or
/// handed over to a thread of its own by a registration that found the context done, it sees
/// what the canceller did before cancelling.
#[test]
fn an_after_func_callback_sees_what_the_canceller_did_before() {
    loom::model(|| {
        let (ctx, handle) = Context::background().with_cancel();
        let (written, read) = written_before_the_cancel();
        let in_callback = Arc::new(AtomicUsize::new(usize::MAX));
        let registering = thread::spawn({
            let in_callback = in_callback.clone();
            move || drop(ctx.after_func(move || in_callback.store(read(), SeqCst)))
        });
        written.store(1, std::sync::atomic::Ordering::Relaxed);
        handle.cancel();
        registering.join().unwrap();
        while in_callback.load(SeqCst) == usize::MAX {
            thread::yield_now();
        }
        assert_eq!(in_callback.load(SeqCst), 1, "a callback ran before the cancel");
    });
}

/// The node lock (`ctx-core/src/lock.rs`), invariants 1 and 2: two threads take it in turn, each
/// reads the pair the other wrote whole (loom's `UnsafeCell` also fails the model on any access
/// that is not ordered after the previous holder's) and writes it back incremented.
#[test]
fn spin_lock_excludes_and_publishes() {
    loom::model(|| {
        let lock = loom::sync::Arc::new(ctx_core::SpinLock::new((0u32, 0u32)));
        let other = lock.clone();
        let racing = thread::spawn(move || {
            let mut pair = other.lock();
            assert_eq!(pair.0, pair.1, "a holder saw a half-written pair");
            pair.0 += 1;
            pair.1 += 1;
        });
        {
            let mut pair = lock.lock();
            assert_eq!(pair.0, pair.1, "a holder saw a half-written pair");
            pair.0 += 1;
            pair.1 += 1;
        }
        racing.join().unwrap();
        assert_eq!(*lock.lock(), (2, 2));
    });
}

/// A waiter that finds the lock taken (the holder yields to the model while it holds it) waits,
/// then gets the lock with the holder's write visible; `get_mut` afterwards sees both writes.
#[test]
fn spin_lock_contended_waiter_sees_the_holders_write() {
    loom::model(|| {
        let lock = loom::sync::Arc::new(ctx_core::SpinLock::new(Vec::new()));
        let held = lock.clone();
        let holder = thread::spawn(move || {
            let mut items = held.lock();
            thread::yield_now();
            items.push(1);
        });
        let seen = {
            let mut items = lock.lock();
            let seen = items.clone();
            items.push(2);
            seen
        };
        holder.join().unwrap();
        assert!(seen.is_empty() || seen == [1], "saw {seen:?}");
        let mut lock = loom::sync::Arc::try_unwrap(lock).ok().expect("the holder is gone");
        let mut all = lock.get_mut().clone();
        all.sort();
        assert_eq!(all, [1, 2]);
    });
}
