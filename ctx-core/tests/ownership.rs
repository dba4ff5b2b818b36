//! Ownership, where ctx does better than Go: a context that is gone leaves nothing behind in its
//! parents, cancel removes the cancelled subtree from its parent, and neither dropping nor
//! cancelling a million-deep chain overflows the stack. Measured with a counting global
//! allocator; every test holds `heap::serial()` because the counter is process-wide.
//!
//! The million-child and million-deep checks run at full size in debug builds too (a few
//! seconds each).

mod common;
mod heap;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use common::{CountingWaker, DEFAULT_THREAD_STACK, on_thread_with_stack, poll_once};
use ctx_core::{CancelHandle, Context, Error};
use heap::{allocations, assert_back_to, deallocations, live_bytes, serial};

/// Room for the harness's own bookkeeping while a test runs; every leak checked here would be
/// megabytes.
const SLACK: isize = 16 * 1024;

const MILLION: usize = 1_000_000;

/// Runs `f` once to warm up lazily allocated state (thread-local handles, first-use buffers),
/// then returns the live-bytes baseline.
fn warmed_up(f: impl Fn()) -> isize {
    f();
    f();
    live_bytes()
}

#[test]
fn a_million_short_lived_children_leave_nothing_in_a_long_lived_parent() {
    let _serial = serial();
    let (server, server_handle) = Context::background().with_value("server").with_cancel();
    let (partner, _partner_handle) = Context::background().with_cancel();
    let child = |i: usize| match i % 5 {
        0 => drop(server.with_cancel()),
        1 => drop(server.with_value(i)),
        2 => drop(server.merge(&partner)),
        3 => {
            // Cancelled before being dropped: cancel unlinks it, drop must not unlink twice.
            let (c, h) = server.with_cancel();
            h.cancel();
            drop((c, h));
        }
        _ => {
            let (c, h) = server.with_cancel();
            let grandchild = c.with_value(i).with_cancel();
            drop((h, c));
            drop(grandchild);
        }
    };
    let baseline = warmed_up(|| (0..10).for_each(child));
    for i in 0..MILLION {
        child(i);
    }
    assert_back_to(baseline, SLACK, "a million children created and dropped");
    assert!(!server.is_done() && !partner.is_done());
    server_handle.cancel();
}

#[test]
fn a_million_live_children_are_all_released_when_dropped() {
    let _serial = serial();
    let (server, server_handle) = Context::background().with_cancel();
    let mut children: Vec<(Context, CancelHandle)> = Vec::with_capacity(MILLION);
    let baseline = warmed_up(|| drop(server.with_cancel()));
    for _ in 0..MILLION {
        children.push(server.with_cancel());
    }
    assert!(live_bytes() - baseline > MILLION as isize * 32, "the children take memory");
    children.clear(); // keeps the Vec's capacity, which is part of the baseline
    assert_back_to(baseline, SLACK, "a million live children dropped");
    server_handle.cancel();
}

/// Cancel removes the cancelled child from its parent at once, while the child itself is still
/// alive: a parent with N cancelled-but-alive children holds no more than a root would.
#[test]
fn a_cancelled_child_leaves_its_parent_while_still_alive() {
    let _serial = serial();
    const N: usize = 100_000;
    let cost_of_cancelled_children = |parent: &Context| {
        let mut children: Vec<(Context, CancelHandle)> = Vec::with_capacity(N);
        let baseline = live_bytes();
        for _ in 0..N {
            children.push(parent.with_cancel());
        }
        for (_, handle) in &children {
            handle.cancel();
        }
        assert!(children.iter().all(|(c, _)| c.is_done()));
        let cost = live_bytes() - baseline;
        drop(children);
        cost
    };
    let (parent, parent_handle) = Context::background().with_cancel();
    let root = Context::background();
    warmed_up(|| drop(parent.with_cancel()));
    let under_root = cost_of_cancelled_children(&root);
    let under_parent = cost_of_cancelled_children(&parent);
    assert!(
        under_parent - under_root <= SLACK,
        "the parent still holds {} bytes for {N} cancelled children",
        under_parent - under_root
    );
    assert!(!parent.is_done(), "cancelling children must not cancel the parent");
    parent_handle.cancel();
}

#[test]
fn merged_contexts_leave_both_parents_when_dropped_or_cancelled() {
    let _serial = serial();
    let (a, ha) = Context::background().with_value(1u8).with_cancel();
    let (b, hb) = Context::background().with_cancel();
    let round = |i: usize| {
        let (m, h) = if i % 2 == 0 { a.merge(&b) } else { b.merge(&a) };
        let (child, _ch) = m.with_cancel();
        if i % 3 == 0 {
            h.cancel();
        }
        drop((m, h, child));
    };
    let baseline = warmed_up(|| (0..6).for_each(round));
    (0..200_000).for_each(round);
    assert_back_to(baseline, SLACK, "200,000 merges");
    ha.cancel();
    hb.cancel();
}

#[test]
fn dropped_waiters_leave_nothing() {
    let _serial = serial();
    let (ctx, handle) = Context::background().with_cancel();
    let (counter, waker) = CountingWaker::new();
    let round = || {
        let mut done = ctx.done();
        assert_eq!(poll_once(&mut done, &waker), Poll::Pending);
        drop(done);
    };
    let baseline = warmed_up(round);
    (0..200_000).for_each(|_| round());
    // Keeping many alive at once, then dropping them, frees the grown slab too.
    let mut many: Vec<_> = (0..100_000).map(|_| ctx.done()).collect();
    for done in &mut many {
        assert_eq!(poll_once(done, &waker), Poll::Pending);
    }
    drop(many);
    assert_back_to(baseline, SLACK, "Done futures polled and dropped");
    for _ in 0..1000 {
        assert!(!ctx.wait_timeout(Duration::ZERO));
    }
    assert_back_to(baseline, SLACK, "timed-out thread waiters");
    handle.cancel();
    assert_eq!(counter.wakes(), 0, "dropped waiters are not woken");
}

#[test]
fn stopped_and_moved_callbacks_leave_nothing() {
    let _serial = serial();
    let (server, server_handle) = Context::background().with_cancel();
    let ran = Arc::new(AtomicUsize::new(0));
    let round = |i: usize| {
        let ran = ran.clone();
        let f = move || {
            ran.fetch_add(1, Ordering::SeqCst);
        };
        if i % 2 == 0 {
            assert!(server.after_func(f).stop());
        } else {
            // Registered on a child that is dropped: the callback moves to the server; stopping
            // it there must remove it from the server.
            let (child, h) = server.with_cancel();
            let registration = child.after_func(f);
            drop((child, h));
            assert!(registration.stop());
        }
    };
    let baseline = warmed_up(|| (0..4).for_each(round));
    (0..100_000).for_each(round);
    assert_back_to(baseline, SLACK, "stopped callbacks");
    server_handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

/// A callback on a merged context that is dropped before it is done moves to both parents.
/// Once it has run (one parent finished) or been stopped, the other, long-lived parent must not
/// keep its registration: per request, that is a leak in the server.
#[test]
fn a_dropped_merges_callback_leaves_nothing_in_the_long_lived_parent() {
    let _serial = serial();
    let (server, server_handle) = Context::background().with_cancel();
    let ran = Arc::new(AtomicUsize::new(0));
    let round = |i: usize| {
        let (request, request_handle) = Context::background().with_cancel();
        // Both orientations: the server as the merge's `other`, and as its `self`.
        let (merged, merged_handle) =
            if i % 4 < 2 { request.merge(&server) } else { server.merge(&request) };
        let ran = ran.clone();
        let registration = merged.after_func(move || {
            ran.fetch_add(1, Ordering::SeqCst);
        });
        drop((merged, merged_handle));
        if i % 2 == 0 {
            request_handle.cancel(); // runs the callback
            assert!(!registration.stop());
        } else {
            assert!(registration.stop());
        }
        drop((request, request_handle, registration));
    };
    let baseline = warmed_up(|| (0..4).for_each(round));
    let rounds = 20_000;
    (0..rounds).for_each(round);
    assert_eq!(ran.load(Ordering::SeqCst), rounds / 2 + 4, "warm-up ran 4 of its 8 rounds");
    assert_back_to(baseline, SLACK, "callbacks of dropped merges");
    server_handle.cancel();
}

/// A callback that captures its own context makes a cycle (the context's dependents hold the
/// callback, the callback holds the context), as with `Rc`; `Context::after_func` documents it
/// and its remedies, which these rounds pin: `stop()` breaks the cycle, and capturing what the
/// callback needs (here the parent) instead of the context makes none.
#[test]
fn a_callback_that_captures_its_own_context_is_released_by_the_documented_remedies() {
    let _serial = serial();
    let (parent, parent_handle) = Context::background().with_cancel();
    let stopped = || {
        let (ctx, handle) = parent.with_cancel();
        let captured = ctx.clone();
        let registration = ctx.after_func(move || {
            let _ = captured.cause();
        });
        drop((ctx, handle));
        assert!(registration.stop(), "not run yet: stop() prevents it and breaks the cycle");
    };
    let baseline = warmed_up(stopped);
    (0..10_000).for_each(|_| stopped());
    assert_back_to(baseline, SLACK, "contexts captured by their own, stopped, callbacks");

    let captures_the_parent = || {
        let (ctx, handle) = parent.with_cancel();
        let captured = parent.clone();
        let _registration = ctx.after_func(move || {
            let _ = captured.cause();
        });
        drop((ctx, handle));
    };
    let baseline = warmed_up(captures_the_parent);
    (0..10_000).for_each(|_| captures_the_parent());
    // The callbacks moved to the long-lived parent, which can still finish them: they stay,
    // without their contexts (a callback is far smaller than a context and its layers).
    let (ctx, handle) = parent.with_cancel();
    drop((ctx, handle));
    parent_handle.cancel();
    assert_back_to(baseline, SLACK, "callbacks that captured the parent, run by its cancel");
}

fn chain_of_cancels(depth: usize) -> (Context, CancelHandle) {
    let (root, handle) = Context::background().with_cancel();
    let mut leaf = root;
    for _ in 0..depth {
        leaf = leaf.with_cancel().0;
    }
    (leaf, handle)
}

/// A cancel hands each small drained dependents list on to the next node it finishes instead of
/// freeing it: cancelling a deep chain frees nothing per level (each list now goes with its node),
/// and nothing is left once the chain is dropped.
#[test]
fn cancelling_a_deep_chain_frees_nothing_per_level() {
    let _serial = serial();
    const DEPTH: usize = 10_000;
    let baseline = warmed_up(|| drop(chain_of_cancels(2)));
    let (leaf, handle) = chain_of_cancels(DEPTH);
    let before = deallocations();
    handle.cancel();
    let freed = deallocations() - before;
    assert!(leaf.is_done());
    assert!(freed < 100, "{freed} frees to cancel a chain {DEPTH} deep");
    drop((leaf, handle));
    assert_back_to(baseline, SLACK, "a cancelled chain dropped");
}

#[test]
fn a_million_deep_chain_dropped_without_cancel_does_not_overflow_the_stack() {
    let _serial = serial();
    let baseline = warmed_up(|| drop(chain_of_cancels(2)));
    on_thread_with_stack(DEFAULT_THREAD_STACK, || {
        let (leaf, handle) = chain_of_cancels(MILLION);
        assert!(!leaf.is_done());
        drop(handle);
        drop(leaf);
    });
    assert_back_to(baseline, SLACK, "a million-deep chain dropped");
}

#[test]
fn a_million_deep_chain_cancelled_then_dropped_does_not_overflow_the_stack() {
    let _serial = serial();
    let baseline = warmed_up(|| drop(chain_of_cancels(2)));
    on_thread_with_stack(DEFAULT_THREAD_STACK, || {
        let (leaf, handle) = chain_of_cancels(MILLION);
        handle.cancel_with_cause(common::Why(1));
        assert_eq!(leaf.err(), Some(Error::Canceled));
        assert_eq!(common::why_of(&leaf), Some(1), "the cause is found from a million levels down");
        drop(handle);
        drop(leaf);
    });
    assert_back_to(baseline, SLACK, "a million-deep chain cancelled and dropped");
}

#[test]
fn a_million_deep_chain_dropped_from_the_root_side_does_not_overflow_the_stack() {
    let _serial = serial();
    // Here the last owner of the chain is the root's handle: every level is kept alive by its
    // child, so the whole chain goes when the leaf does, on the thread that drops the leaf.
    on_thread_with_stack(DEFAULT_THREAD_STACK, || {
        let (leaf, root_handle) = chain_of_cancels(MILLION);
        let root = root_handle.context();
        drop(root_handle);
        drop(root);
        drop(leaf);
    });
}

#[test]
fn a_million_deep_nest_of_merges_does_not_overflow_the_stack() {
    let _serial = serial();
    // Each merge's *other* parent is the previous merge: the chain runs through `other`.
    let baseline = live_bytes();
    on_thread_with_stack(DEFAULT_THREAD_STACK, || {
        let (root, handle) = Context::background().with_cancel();
        let mut ctx = root;
        for _ in 0..MILLION {
            ctx = Context::background().merge(&ctx).0;
        }
        assert_eq!(ctx.value::<u8>(), None);
        assert_eq!(ctx.deadline(), None);
        handle.cancel();
        assert!(ctx.is_done());
        assert!(ctx.cause().is_some());
        drop(ctx);
    });
    assert_back_to(baseline, SLACK, "a million nested merges");
}

/// The hot paths allocate nothing: `is_done`, `err`, `check`, `cause` of a plain cancel,
/// `clone`, the roots, `value` and `deadline` on a chain without merges.
#[test]
fn checks_clones_and_roots_allocate_nothing() {
    let _serial = serial();
    const CALLS: usize = 100_000;
    let (live, _h) = Context::background().with_value(1u8).with_cancel();
    let (done, dh) = live.with_cancel();
    dh.cancel();
    let mut acc = 0usize;
    let before = allocations();
    for _ in 0..CALLS {
        acc += usize::from(live.is_done()) + usize::from(done.is_done());
        acc += usize::from(live.err().is_some()) + usize::from(done.check().is_err());
        acc += usize::from(done.cause().is_some());
        let clone = done.clone();
        acc += usize::from(clone.is_done());
        acc +=
            usize::from(Context::background().is_done()) + usize::from(Context::todo().is_done());
        acc += usize::from(live.value::<u8>().is_some()) + usize::from(live.deadline().is_some());
    }
    let made = allocations() - before;
    assert_eq!(acc, CALLS * 5);
    // Allow the harness a few; any per-call allocation would be 100,000.
    assert!(made < 50, "{made} allocations in {CALLS} rounds of checks");
}

/// Cancelling a subtree allocates nothing per descendant (tree invariant 8).
#[test]
fn cancelling_a_wide_subtree_allocates_nothing_per_descendant() {
    let _serial = serial();
    const N: usize = 100_000;
    let (root, handle) = Context::background().with_cancel();
    let children: Vec<_> = (0..N).map(|i| root.with_value(i).with_cancel()).collect();
    let before = allocations();
    handle.cancel_with_cause(common::Why(3));
    let made = allocations() - before;
    assert!(children.iter().all(|(c, _)| c.is_done()));
    assert!(made < 200, "{made} allocations to cancel {} descendants", 2 * N);
}

/// `with_cancel` costs one allocation (the doc comment's promise), under a root and, amortised,
/// under a cancellable parent.
#[test]
fn with_cancel_costs_one_allocation() {
    let _serial = serial();
    const N: usize = 10_000;
    let mut keep: Vec<(Context, CancelHandle)> = Vec::with_capacity(2 * N);
    let (parent, _h) = Context::background().with_cancel();
    let before = allocations();
    for _ in 0..N {
        keep.push(Context::background().with_cancel());
    }
    let under_root = allocations() - before;
    let before = allocations();
    for _ in 0..N {
        keep.push(parent.with_cancel());
    }
    let under_parent = allocations() - before;
    assert!(under_root <= N + 20, "{under_root} allocations for {N} children of a root");
    // The parent's dependents list grows by doubling: a few dozen more in all.
    assert!(under_parent <= N + 64, "{under_parent} allocations for {N} children of a parent");
}
