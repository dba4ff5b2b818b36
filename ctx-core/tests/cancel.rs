//! Cancellation: how it flows down the tree (never up), which cause wins, how it behaves when
//! children are created, cancelled and waited on from many threads at once, and the handle's own
//! surface (`drop_guard`, `disarm`, clones, and which types are `Clone`, `Send`, `Sync` and
//! `'static`).

mod common;

use std::collections::HashSet;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::task::Poll;
use std::thread;
use std::time::Duration;

use common::{
    CountingWaker, FnWaker, Rng, Why, poll_once, scaled, wait_for_count, why_of,
    within_generous_time,
};
use ctx_core::{AfterFunc, CancelHandle, Cause, Context, Done, DropGuard, Error};

/// A label for a cause, so causes can be compared: a `Why`'s number, or a sentinel for the
/// plain errors.
fn label(ctx: &Context) -> Option<u64> {
    let cause = ctx.cause()?;
    if let Some(why) = cause.downcast_ref::<Why>() {
        return Some(why.0);
    }
    match cause.downcast_ref::<Error>() {
        Some(Error::Canceled) => Some(u64::MAX),
        Some(Error::DeadlineExceeded) => Some(u64::MAX - 1),
        None => panic!("unexpected cause type: {cause:?}"),
    }
}

#[test]
fn context_and_friends_have_the_promised_auto_traits() {
    fn clone_send_sync_static<T: Clone + Send + Sync + 'static>() {}
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    fn error_traits<T: std::error::Error + Clone + Copy + PartialEq + Eq + std::hash::Hash>() {}
    clone_send_sync_static::<Context>();
    clone_send_sync_static::<CancelHandle>();
    clone_send_sync_static::<Cause>();
    send_sync::<AfterFunc>();
    send::<Done>();
    send::<DropGuard>();
    error_traits::<Error>();
    send_sync::<Error>();
}

#[test]
fn roots_are_never_done_and_carry_nothing() {
    for root in [Context::background(), Context::todo(), Context::default()] {
        assert!(!root.is_done());
        assert_eq!(root.err(), None);
        assert!(root.cause().is_none());
        assert_eq!(root.check(), Ok(()));
        assert_eq!(root.deadline(), None);
        assert_eq!(root.value::<u32>(), None);
        assert!(!root.wait_timeout(Duration::from_millis(1)));
    }
    assert_eq!(Context::default().to_string(), Context::background().to_string());
}

#[test]
fn parent_cancel_finishes_children_through_value_layers() {
    let (root, handle) = Context::background().with_cancel();
    let v1 = root.with_value(1u8);
    let (c1, _h1) = v1.with_cancel();
    let v2 = c1.with_value("two");
    let v3 = v2.with_value(3u64);
    let (c2, _h2) = v3.with_cancel();
    let (sibling, _hs) = v1.with_cancel();
    let all = [&root, &v1, &c1, &v2, &v3, &c2, &sibling];
    assert!(all.iter().all(|c| !c.is_done()));

    handle.cancel_with_cause(Why(9));

    for ctx in all {
        assert!(ctx.is_done(), "{ctx} is not done");
        assert_eq!(ctx.err(), Some(Error::Canceled), "{ctx}");
        assert_eq!(ctx.check(), Err(Error::Canceled));
        assert_eq!(why_of(ctx), Some(9), "{ctx} has another cause");
    }
    // Values survive cancellation.
    assert_eq!(c2.value::<u8>(), Some(&1));
    assert_eq!(c2.value::<&str>(), Some(&"two"));
}

#[test]
fn plain_cancel_gives_canceled_as_the_cause() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _h) = ctx.with_value(()).with_cancel();
    handle.cancel();
    for c in [&ctx, &child] {
        let cause = c.cause().expect("a done context has a cause");
        assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::Canceled));
        assert_eq!(cause.to_string(), "context canceled");
    }
}

#[test]
fn child_cancel_leaves_parent_and_siblings_alone() {
    let (parent, parent_handle) = Context::background().with_cancel();
    let (child, child_handle) = parent.with_cancel();
    let (sibling, _sh) = parent.with_cancel();
    let (grandchild, _gh) = child.with_value(5i32).with_cancel();
    let parent_value = parent.with_value('p');

    child_handle.cancel_with_cause(Why(1));
    assert!(child.is_done() && grandchild.is_done());
    assert_eq!(why_of(&grandchild), Some(1));
    for untouched in [&parent, &sibling, &parent_value] {
        assert!(!untouched.is_done(), "{untouched} was cancelled by a child");
        assert_eq!(untouched.err(), None);
        assert!(untouched.cause().is_none());
    }
    // The parent still works as a parent after losing a child.
    let (late, _lh) = parent.with_cancel();
    assert!(!late.is_done());
    parent_handle.cancel();
    assert!(late.is_done() && sibling.is_done() && parent_value.is_done());
    assert_eq!(why_of(&child), Some(1), "a later parent cancel must not change the child's cause");
}

#[test]
fn child_of_a_cancelled_parent_is_born_done_with_the_parents_cause() {
    let (parent, handle) = Context::background().with_value(1u8).with_cancel();
    handle.cancel_with_cause(Why(42));
    let value = parent.with_value(2u16);
    let (cancel, cancel_handle) = value.with_cancel();
    let (deadline, _dh) = parent.with_timeout(Duration::from_secs(3600));
    let (merged, _mh) = parent.merge(&Context::background());
    let (merged_other, _moh) = Context::background().merge(&parent);
    let (grandchild, _gh) = cancel.with_cancel();
    for born in [&value, &cancel, &deadline, &merged, &merged_other, &grandchild] {
        assert!(born.is_done(), "{born} was born live under a done parent");
        assert_eq!(born.err(), Some(Error::Canceled), "{born}");
        assert_eq!(why_of(born), Some(42), "{born}");
    }
    assert!(cancel_handle.is_done());
    cancel_handle.cancel_with_cause(Why(43));
    assert_eq!(why_of(&cancel), Some(42), "the first cause stays");
}

#[test]
fn cancel_is_idempotent_and_the_first_cause_wins() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel_with_cause(Why(1));
    handle.cancel_with_cause(Why(2));
    handle.cancel();
    handle.clone().cancel_with_cause(Why(3));
    assert_eq!(why_of(&ctx), Some(1));
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn a_deadline_exceeded_cause_does_not_change_err() {
    // Go: WithCancelCause + cancel(DeadlineExceeded) still reports Canceled from Err().
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel_with_cause(Error::DeadlineExceeded);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause().unwrap().downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
}

#[test]
fn a_cause_passed_as_a_cause_is_stored_as_is() {
    let original = Cause::new(Why(5));
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel_with_cause(original.clone());
    let stored = ctx.cause().unwrap();
    assert_eq!(stored.downcast_ref::<Why>(), Some(&Why(5)), "a Cause must not be wrapped again");
    assert!(std::ptr::eq(
        stored.downcast_ref::<Why>().unwrap(),
        original.downcast_ref::<Why>().unwrap()
    ));
}

#[test]
fn cause_ordering_parent_first() {
    let (parent, parent_handle) = Context::background().with_cancel();
    let (child, child_handle) = parent.with_cancel();
    parent_handle.cancel_with_cause(Why(1));
    child_handle.cancel_with_cause(Why(2));
    assert_eq!(why_of(&parent), Some(1));
    assert_eq!(why_of(&child), Some(1));
}

#[test]
fn cause_ordering_child_first() {
    let (parent, parent_handle) = Context::background().with_cancel();
    let (child, child_handle) = parent.with_cancel();
    let (grandchild, _gh) = child.with_value(0u8).with_cancel();
    let (sibling, _sh) = parent.with_cancel();
    child_handle.cancel_with_cause(Why(2));
    parent_handle.cancel_with_cause(Why(1));
    assert_eq!(why_of(&parent), Some(1));
    assert_eq!(why_of(&sibling), Some(1));
    assert_eq!(why_of(&child), Some(2));
    assert_eq!(why_of(&grandchild), Some(2));
}

#[test]
fn the_handle_and_its_clones_cancel_the_same_context() {
    let (ctx, handle) = Context::background().with_cancel();
    let clone = handle.clone();
    assert!(!clone.is_done());
    let again = handle.context();
    drop(ctx);
    clone.cancel();
    assert!(handle.is_done());
    assert!(again.is_done());
}

/// The handle's `is_done` is its context's: true however the context finished (its own cancel,
/// an ancestor's, a merge partner's, a deadline), not only "this handle cancelled it".
#[test]
fn the_handles_is_done_reports_every_way_its_context_finishes() {
    let (parent, parent_handle) = Context::background().with_cancel();
    let (_child, child_handle) = parent.with_cancel();
    let (partner, partner_handle) = Context::background().with_cancel();
    let (_merged, merged_handle) = Context::background().merge(&partner);
    let (_expired, expired_handle) = Context::background().with_timeout(Duration::ZERO);
    let (_own, own_handle) = Context::background().with_cancel();
    assert!(![&child_handle, &merged_handle, &own_handle].iter().any(|h| h.is_done()));
    parent_handle.cancel();
    partner_handle.cancel();
    own_handle.cancel();
    for handle in [&child_handle, &merged_handle, &expired_handle, &own_handle] {
        assert!(handle.is_done(), "{handle:?}");
    }
    assert_eq!(format!("{own_handle:?}"), "CancelHandle { done: true }");
}

#[test]
fn drop_guard_cancels_on_drop_and_disarm_does_not() {
    let (ctx, handle) = Context::background().with_cancel();
    let disarmed = handle.clone().drop_guard().disarm();
    assert!(!ctx.is_done(), "disarm must not cancel");
    drop(disarmed);
    assert!(!ctx.is_done(), "dropping a handle must not cancel");
    {
        let _guard = handle.drop_guard();
        assert!(!ctx.is_done());
    }
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn drop_guard_cancels_while_unwinding() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    let result = panic::catch_unwind(AssertUnwindSafe(move || {
        let _guard = handle.drop_guard();
        panic!("the request failed");
    }));
    assert!(result.is_err());
    assert!(ctx.is_done() && child.is_done());
}

#[test]
fn dropping_a_handle_never_cancels() {
    let (parent, parent_handle) = Context::background().with_cancel();
    let (child, child_handle) = parent.with_cancel();
    drop(child_handle);
    drop(parent_handle);
    assert!(!parent.is_done() && !child.is_done());
}

#[test]
fn many_threads_cancel_one_handle_at_once() {
    for round in 0..scaled(200, 50) {
        let (ctx, handle) = Context::background().with_cancel();
        let (child, _ch) = ctx.with_value(round).with_cancel();
        let barrier = Arc::new(Barrier::new(4));
        let threads: Vec<_> = (0..4u64)
            .map(|t| {
                let handle = handle.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    handle.cancel_with_cause(Why(t));
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());
        let winner = why_of(&ctx).expect("one of the causes");
        assert!(winner < 4);
        assert_eq!(why_of(&child), Some(winner), "the child must carry the winning cause");
    }
}

/// While other threads keep deriving children (of every kind) from a parent, registering
/// callbacks and polling `done()` on it, the parent is cancelled: every child ends done with the
/// parent's cause, every callback runs once, every pending waker is woken once.
#[test]
fn parent_cancelled_while_children_are_created_from_other_threads() {
    const THREADS: usize = 4;
    for round in 0..scaled(20, 6) {
        let (parent, handle) = Context::background().with_cancel();
        let parent = parent.with_value(round);
        let (unrelated, _uh) = Context::background().with_cancel();
        let created = Arc::new(AtomicUsize::new(0));
        let ran = Arc::new(AtomicUsize::new(0));
        let barrier = Arc::new(Barrier::new(THREADS + 1));
        let workers: Vec<_> = (0..THREADS)
            .map(|t| {
                let parent = parent.clone();
                let unrelated = unrelated.clone();
                let created = created.clone();
                let ran = ran.clone();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    let mut children = Vec::new();
                    let mut handles = Vec::new();
                    let mut callbacks = Vec::new();
                    let mut waiters = Vec::new();
                    let mut born_done = 0;
                    barrier.wait();
                    let mut i = 0usize;
                    // Keep going for a while after the cancel, so both sides of the race happen.
                    while born_done < 50 {
                        let child = match (i + t) % 6 {
                            0 => {
                                let (c, h) = parent.with_cancel();
                                handles.push(h);
                                c
                            }
                            1 => parent.with_value(i),
                            2 => {
                                let (c, h) = parent.merge(&unrelated);
                                handles.push(h);
                                c
                            }
                            3 => {
                                let (c, h) = parent.with_timeout(Duration::from_secs(3600));
                                handles.push(h);
                                c
                            }
                            4 => {
                                let ran = ran.clone();
                                callbacks.push(parent.after_func(move || {
                                    ran.fetch_add(1, Ordering::SeqCst);
                                }));
                                parent.clone()
                            }
                            _ => {
                                let (counter, waker) = CountingWaker::new();
                                let mut done = parent.done();
                                let pending = poll_once(&mut done, &waker).is_pending();
                                waiters.push((done, counter, pending));
                                parent.clone()
                            }
                        };
                        if child.is_done() {
                            born_done += 1;
                        }
                        children.push(child);
                        created.fetch_add(1, Ordering::SeqCst);
                        i += 1;
                    }
                    (children, handles, callbacks, waiters)
                })
            })
            .collect();
        barrier.wait();
        while created.load(Ordering::SeqCst) < 200 {
            thread::yield_now();
        }
        handle.cancel_with_cause(Why(round as u64));
        let mut callbacks_registered = 0;
        for worker in workers {
            let (children, _handles, callbacks, waiters) = worker.join().unwrap();
            for child in &children {
                assert!(child.is_done(), "{child} stayed live after its parent was cancelled");
                assert_eq!(child.err(), Some(Error::Canceled));
                assert_eq!(why_of(child), Some(round as u64), "{child}");
            }
            callbacks_registered += callbacks.len();
            for (_done, counter, pending) in waiters {
                let expected = usize::from(pending);
                assert_eq!(counter.wakes(), expected, "pending waiters are woken exactly once");
            }
        }
        // Callbacks registered after the cancel run on the timer thread, soon.
        wait_for_count(&ran, callbacks_registered);
        assert!(!unrelated.is_done());
    }
}

/// One node of the random tree below.
struct Built {
    ctx: Context,
    handle: Option<CancelHandle>,
    parent: Option<usize>,
    other: Option<usize>,
    follows_parent: bool,
}

fn build_random_tree(rng: &mut Rng, size: usize) -> Vec<Built> {
    let (root, root_handle) = Context::background().with_cancel();
    let mut nodes = vec![Built {
        ctx: root,
        handle: Some(root_handle),
        parent: None,
        other: None,
        follows_parent: true,
    }];
    for i in 1..size {
        let parent = rng.below(i);
        let base = nodes[parent].ctx.clone();
        let mut node = Built {
            ctx: base.clone(),
            handle: None,
            parent: Some(parent),
            other: None,
            follows_parent: true,
        };
        match rng.below(100) {
            0..=34 => {
                let (c, h) = base.with_cancel();
                (node.ctx, node.handle) = (c, Some(h));
            }
            35..=59 => node.ctx = base.with_value(i),
            60..=79 => {
                let other = rng.below(i);
                let (c, h) = base.merge(&nodes[other].ctx);
                (node.ctx, node.handle, node.other) = (c, Some(h), Some(other));
            }
            80..=94 => {
                let (c, h) = base.with_timeout(Duration::from_secs(3600));
                (node.ctx, node.handle) = (c, Some(h));
            }
            _ => {
                node.ctx = base.without_cancel();
                node.follows_parent = false;
            }
        }
        nodes.push(node);
    }
    nodes
}

/// Many threads cancel random nodes of a random tree (cancel children, values, merges, deadlines,
/// without_cancel) at the same moment, with distinct causes. Afterwards: exactly the nodes
/// reachable from a cancelled handle are done, each with `Canceled` and a cause that is either
/// its own handle's or the one of the parent (or merge partner) that finished it.
#[test]
fn simultaneous_cancels_of_a_random_tree_from_many_threads() {
    const THREADS: usize = 4;
    let size = scaled(3000, 1500);
    for seed in 0..scaled(40, 30) as u64 {
        let mut rng = Rng::new(seed);
        let nodes = build_random_tree(&mut rng, size);
        let cancellable: Vec<usize> = (0..size).filter(|&i| nodes[i].handle.is_some()).collect();
        // Each thread cancels its own random picks; picks overlap on purpose.
        let mut plans: Vec<Vec<(usize, u64)>> = vec![Vec::new(); THREADS];
        let mut causes_of: Vec<HashSet<u64>> = vec![HashSet::new(); size];
        for next_cause in 0..(size / 10) as u64 {
            let target = cancellable[rng.below(cancellable.len())];
            let thread = rng.below(THREADS);
            // One in four is a plain cancel(), whose cause is `Canceled` (label u64::MAX).
            let cause = if rng.chance(25) { u64::MAX } else { next_cause };
            plans[thread].push((target, cause));
            causes_of[target].insert(cause);
        }
        let barrier = Arc::new(Barrier::new(THREADS));
        let threads: Vec<_> = plans
            .into_iter()
            .map(|plan| {
                let handles: Vec<(CancelHandle, u64)> = plan
                    .into_iter()
                    .map(|(i, cause)| (nodes[i].handle.clone().unwrap(), cause))
                    .collect();
                let barrier = barrier.clone();
                thread::spawn(move || {
                    barrier.wait();
                    for (handle, cause) in handles {
                        if cause == u64::MAX {
                            handle.cancel();
                        } else {
                            handle.cancel_with_cause(Why(cause));
                        }
                    }
                })
            })
            .collect();
        threads.into_iter().for_each(|t| t.join().unwrap());

        let mut expected_done = vec![false; size];
        for i in 0..size {
            let n = &nodes[i];
            expected_done[i] = !causes_of[i].is_empty()
                || (n.follows_parent && n.parent.is_some_and(|p| expected_done[p]))
                || n.other.is_some_and(|o| expected_done[o]);
        }
        let mut done_count = 0;
        for i in 0..size {
            let n = &nodes[i];
            assert_eq!(n.ctx.is_done(), expected_done[i], "seed {seed}: node {i} ({})", n.ctx);
            if !expected_done[i] {
                assert_eq!(n.ctx.err(), None);
                assert!(n.ctx.cause().is_none());
                continue;
            }
            done_count += 1;
            assert_eq!(n.ctx.err(), Some(Error::Canceled), "seed {seed}: node {i}");
            let cause = label(&n.ctx).expect("a done context has a cause");
            let from_parent = n.follows_parent
                && n.parent
                    .is_some_and(|p| expected_done[p] && label(&nodes[p].ctx) == Some(cause));
            let from_other =
                n.other.is_some_and(|o| expected_done[o] && label(&nodes[o].ctx) == Some(cause));
            assert!(
                causes_of[i].contains(&cause) || from_parent || from_other,
                "seed {seed}: node {i} has cause {cause}, which is neither its own nor inherited"
            );
        }
        assert!(done_count > 0, "seed {seed}: the test cancelled nothing");
        // The first cause wins: cancelling everything again changes no cause.
        let before: Vec<_> = nodes.iter().map(|n| label(&n.ctx)).collect();
        for n in &nodes {
            if let Some(h) = &n.handle {
                h.cancel_with_cause(Why(u64::MAX - 7));
            }
        }
        for (i, n) in nodes.iter().enumerate() {
            if expected_done[i] {
                assert_eq!(label(&n.ctx), before[i], "seed {seed}: node {i} changed its cause");
            }
        }
    }
}

/// Random chains of layers (values of three types, cancels, without_cancel, merges with side
/// contexts that carry values of their own), then random cancels one at a time, checked against
/// a model after every step: which layers are done, with which cause, and which value each layer
/// sees for each type.
#[test]
fn random_layers_of_values_and_cancels_match_a_model() {
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct A(usize);
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct B(usize);
    #[derive(Clone, Copy, Debug, PartialEq)]
    struct C(usize);

    #[derive(Clone, Copy)]
    enum Layer {
        Cancel,
        ValueA(usize),
        ValueB(usize),
        ValueC(usize),
        WithoutCancel,
        /// Merge with side context `n` (which carries `A(1000 + n)` then `C(2000 + n)`).
        Merge(usize),
    }

    for seed in 0..scaled(300, 80) as u64 {
        let mut rng = Rng::new(1000 + seed);
        let sides: Vec<(Context, CancelHandle)> = (0..3)
            .map(|n| {
                let (side, handle) = Context::background().with_value(A(1000 + n)).with_cancel();
                (side.with_value(C(2000 + n)), handle)
            })
            .collect();
        let (root, root_handle) = Context::background().with_cancel();
        // Model per layer: parent index (layer i's parent is i - 1; layer 0 is the root).
        let mut layers = vec![Layer::Cancel];
        let mut ctxs = vec![root];
        let mut handles: Vec<Option<CancelHandle>> = vec![Some(root_handle)];
        let depth = 2 + rng.below(30);
        for i in 1..depth {
            let base = ctxs[i - 1].clone();
            let layer = match rng.below(6) {
                0 => Layer::Cancel,
                1 => Layer::ValueA(i),
                2 => Layer::ValueB(i),
                3 => Layer::ValueC(i),
                4 if rng.chance(40) => Layer::WithoutCancel,
                4 => Layer::Cancel,
                _ => Layer::Merge(rng.below(sides.len())),
            };
            let (ctx, handle) = match layer {
                Layer::Cancel => {
                    let (c, h) = base.with_cancel();
                    (c, Some(h))
                }
                Layer::ValueA(v) => (base.with_value(A(v)), None),
                Layer::ValueB(v) => (base.with_value(B(v)), None),
                Layer::ValueC(v) => (base.with_value(C(v)), None),
                Layer::WithoutCancel => (base.without_cancel(), None),
                Layer::Merge(s) => {
                    let (c, h) = base.merge(&sides[s].0);
                    (c, Some(h))
                }
            };
            layers.push(layer);
            ctxs.push(ctx);
            handles.push(handle);
        }

        // Values: the model walks the layers from the innermost, and a merge looks in its side
        // context after the rest of its own chain: order = own chain first, then the sides of the
        // merges met on the way, innermost merge last (a merge's `other` is searched after
        // everything `self` holds, including outer merges' sides).
        let expected_value = |i: usize| -> (Option<A>, Option<B>, Option<C>) {
            let (mut a, mut b, mut c) = (None, None, None);
            let mut sides_met = Vec::new();
            for j in (0..=i).rev() {
                match layers[j] {
                    Layer::ValueA(v) => a = a.or(Some(A(v))),
                    Layer::ValueB(v) => b = b.or(Some(B(v))),
                    Layer::ValueC(v) => c = c.or(Some(C(v))),
                    Layer::Merge(s) => sides_met.push(s),
                    _ => {}
                }
            }
            for s in sides_met.into_iter().rev() {
                a = a.or(Some(A(1000 + s)));
                c = c.or(Some(C(2000 + s)));
            }
            (a, b, c)
        };
        for (i, ctx) in ctxs.iter().enumerate() {
            let (a, b, c) = expected_value(i);
            assert_eq!(ctx.value::<A>().copied(), a, "seed {seed}: layer {i}: {ctx}");
            assert_eq!(ctx.value::<B>().copied(), b, "seed {seed}: layer {i}: {ctx}");
            assert_eq!(ctx.value::<C>().copied(), c, "seed {seed}: layer {i}: {ctx}");
        }

        // Cancels, one at a time, in random order: layer handles and side handles.
        let mut model_cause: Vec<Option<u64>> = vec![None; ctxs.len()];
        let mut side_cause: Vec<Option<u64>> = vec![None; sides.len()];
        let steps = 1 + rng.below(6);
        for step in 0..steps {
            let cause = 100 * seed + step as u64;
            if rng.chance(30) {
                let s = rng.below(sides.len());
                sides[s].1.cancel_with_cause(Why(cause));
                side_cause[s] = side_cause[s].or(Some(cause));
            } else {
                let i = rng.below(ctxs.len());
                let Some(h) = &handles[i] else { continue };
                h.cancel_with_cause(Why(cause));
                model_cause[i] = model_cause[i].or(Some(cause));
            }
            // Propagate in layer order: a live layer becomes done with this step's cause.
            for i in 0..ctxs.len() {
                if model_cause[i].is_some() {
                    continue;
                }
                let via_parent = match layers[i] {
                    Layer::WithoutCancel => None,
                    _ if i == 0 => None,
                    _ => model_cause[i - 1],
                };
                let via_side = match layers[i] {
                    Layer::Merge(s) => side_cause[s],
                    _ => None,
                };
                if via_parent.is_some() || via_side.is_some() {
                    // Anything finished now was finished by this step's cancel.
                    model_cause[i] = Some(cause);
                }
            }
            for (i, ctx) in ctxs.iter().enumerate() {
                assert_eq!(
                    why_of(ctx),
                    model_cause[i],
                    "seed {seed} step {step}: layer {i}: {ctx}"
                );
                assert_eq!(ctx.is_done(), model_cause[i].is_some());
            }
        }
        // A child derived from each layer now is born exactly as done as its layer.
        for (i, ctx) in ctxs.iter().enumerate() {
            let (child, _h) = ctx.with_cancel();
            assert_eq!(why_of(&child), model_cause[i], "seed {seed}: child of layer {i}");
        }
    }
}

/// `err()` is `Some` only when `is_done()` is, the cause is readable, and a descendant seen done
/// implies its ancestors are seen done too (cancel flows down), as observed by a reader thread
/// racing the canceller.
#[test]
fn err_implies_done_for_a_concurrent_reader() {
    for round in 0..scaled(400, 100) {
        let (root, handle) = Context::background().with_cancel();
        let mut chain = vec![root.clone()];
        for i in 0..8 {
            let last = chain.last().unwrap().clone();
            let next = match i % 3 {
                0 => last.with_value(i),
                1 => last.with_cancel().0,
                _ => last.merge(&Context::background()).0,
            };
            chain.push(next);
        }
        let chain = Arc::new(chain);
        let reader_chain = chain.clone();
        let started = Arc::new(Barrier::new(2));
        let reader_started = started.clone();
        let reader = thread::spawn(move || {
            reader_started.wait();
            let mut seen_done = vec![false; reader_chain.len()];
            loop {
                // Innermost first: if a descendant is done, every ancestor read after must be.
                let mut descendant_done = false;
                for (i, ctx) in reader_chain.iter().enumerate().rev() {
                    let err = ctx.err();
                    if let Some(err) = err {
                        assert!(ctx.is_done(), "err() without is_done()");
                        assert!(ctx.cause().is_some(), "err() without a cause");
                        assert_eq!(ctx.check(), Err(err));
                        assert_eq!(err, Error::Canceled);
                        seen_done[i] = true;
                    } else {
                        assert!(!seen_done[i], "a done context became live again");
                        assert!(!descendant_done, "a descendant was done before its ancestor");
                    }
                    descendant_done |= err.is_some();
                }
                if seen_done.iter().all(|&d| d) {
                    return;
                }
            }
        });
        started.wait();
        if round % 2 == 0 {
            thread::yield_now();
        }
        handle.cancel();
        within_generous_time("reader", move || reader.join().unwrap());
    }
}

/// A `Done` waker whose `wake()` cancels a child of the context being cancelled: no deadlock,
/// every context ends done, the cause of the child is one of the two, consistent below it.
#[test]
fn a_waker_that_cancels_a_child_from_inside_its_wake_up() {
    for waker_first in [true, false] {
        let (parent, parent_handle) = Context::background().with_cancel();
        let child_slot: Arc<Mutex<Option<CancelHandle>>> = Arc::new(Mutex::new(None));
        let slot = child_slot.clone();
        let (waker_state, waker) = FnWaker::new(move || {
            if let Some(h) = slot.lock().unwrap().as_ref() {
                h.cancel_with_cause(Why(2));
            }
        });
        let mut done = parent.done();
        let register = |done: &mut Done| assert!(poll_once(done, &waker).is_pending());
        if waker_first {
            register(&mut done);
        }
        let (child, child_handle) = parent.with_cancel();
        let (grandchild, _gh) = child.with_value(1u8).with_cancel();
        *child_slot.lock().unwrap() = Some(child_handle);
        if !waker_first {
            register(&mut done);
        }
        let canceller = parent_handle.clone();
        within_generous_time("cancel with a re-entrant waker", move || {
            canceller.cancel_with_cause(Why(1))
        });
        assert_eq!(waker_state.wakes(), 1, "the waker is woken exactly once");
        assert!(child.is_done() && grandchild.is_done());
        let cause = why_of(&child).unwrap();
        assert!(cause == 1 || cause == 2, "cause {cause}");
        assert_eq!(why_of(&grandchild), Some(cause));
        assert_eq!(why_of(&parent), Some(1));
        assert!(poll_once(&mut done, &waker).is_ready());
    }
}

/// The thread-waiter variant: a thread blocked in `wait()` cancels a child as soon as it wakes.
#[test]
fn a_thread_waiter_that_cancels_a_child_when_woken() {
    for _ in 0..scaled(100, 30) {
        let (parent, parent_handle) = Context::background().with_cancel();
        let (child, child_handle) = parent.with_cancel();
        let (grandchild, _gh) = child.with_cancel();
        let waiting = parent.clone();
        let waiter = thread::spawn(move || {
            waiting.wait();
            child_handle.cancel_with_cause(Why(2));
        });
        parent_handle.cancel_with_cause(Why(1));
        within_generous_time("thread waiter", move || waiter.join().unwrap());
        assert!(child.is_done() && grandchild.is_done());
        let cause = why_of(&child).unwrap();
        assert!(cause == 1 || cause == 2);
        assert_eq!(why_of(&grandchild), Some(cause));
    }
}

/// A waker that derives children and registers more waiters on the context being cancelled,
/// from inside its wake-up: they are born done / ready.
#[test]
fn a_waker_that_derives_from_the_cancelled_context() {
    let (parent, handle) = Context::background().with_cancel();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (inner_parent, inner_seen) = (parent.clone(), seen.clone());
    let (_state, waker) = FnWaker::new(move || {
        let (child, _h) = inner_parent.with_cancel();
        let (counter, w) = CountingWaker::new();
        let ready = poll_once(&mut inner_parent.done(), &w).is_ready();
        inner_seen.lock().unwrap().push((child.is_done(), ready, counter.wakes()));
    });
    let mut done = parent.done();
    assert!(poll_once(&mut done, &waker).is_pending());
    within_generous_time("derive inside wake", move || handle.cancel());
    assert_eq!(*seen.lock().unwrap(), vec![(true, true, 0)]);
}

/// API.md: `cancel()` returns only after the context and every linked descendant report done.
/// A waker on the parent that calls the parent's `cancel()` again from inside its wake-up (a
/// second call while the first is still running) must not return before the subtree is done.
#[test]
fn a_second_cancel_from_inside_a_wake_returns_after_the_subtree_is_done() {
    let (parent, handle) = Context::background().with_cancel();
    let again = handle.clone();
    let child_slot = Arc::new(Mutex::new(None::<Context>));
    let observed = Arc::new(Mutex::new(None));
    let (inner_slot, inner_observed) = (child_slot.clone(), observed.clone());
    // Registered before the child exists, so it is woken before the child is reached.
    let (_state, waker) = FnWaker::new(move || {
        again.cancel();
        let child_done = inner_slot.lock().unwrap().as_ref().map(Context::is_done);
        *inner_observed.lock().unwrap() = child_done;
    });
    let mut done = parent.done();
    assert!(poll_once(&mut done, &waker).is_pending());
    let (child, _ch) = parent.with_cancel();
    *child_slot.lock().unwrap() = Some(child.clone());
    handle.cancel();
    assert!(child.is_done());
    assert_eq!(
        *observed.lock().unwrap(),
        Some(true),
        "cancel() returned (inside the wake) while a child of the cancelled context was live"
    );
}

/// The thread version of the same contract: two threads cancel the same context; the one that
/// loses must still return only after the whole (deep) subtree is done.
#[test]
fn a_losing_concurrent_cancel_returns_after_the_subtree_is_done() {
    let depth = scaled(200_000, 100_000);
    let mut failures = 0;
    for _ in 0..5 {
        let (root, handle) = Context::background().with_cancel();
        let mut leaf = root.clone();
        for _ in 0..depth {
            leaf = leaf.with_cancel().0;
        }
        let loser_handle = handle.clone();
        let watched = root.clone();
        let loser = thread::spawn(move || {
            while !watched.is_done() {
                std::hint::spin_loop();
            }
            loser_handle.cancel();
            leaf.is_done()
        });
        handle.cancel();
        if !loser.join().unwrap() {
            failures += 1;
        }
    }
    assert_eq!(failures, 0, "{failures}/5 losing cancels returned while the leaf was live");
}

/// The same contract from the other side: while thread B is still cancelling a descendant D
/// (and its deep subtree), thread A cancels the root. A wins the root, finds D already done and
/// skips it; A's `cancel()` must still not return before D's subtree is done, since that subtree
/// is part of the root's.
#[test]
fn an_ancestor_cancel_returns_after_a_descendants_concurrent_cancel_is_done() {
    let depth = scaled(200_000, 100_000);
    let mut failures = 0;
    for _ in 0..5 {
        let (root, root_handle) = Context::background().with_cancel();
        let (descendant, descendant_handle) = root.with_cancel();
        let mut leaf = descendant.clone();
        for _ in 0..depth {
            leaf = leaf.with_cancel().0;
        }
        let b = thread::spawn(move || descendant_handle.cancel_with_cause(Why(2)));
        while !descendant.is_done() {
            std::hint::spin_loop();
        }
        root_handle.cancel_with_cause(Why(1));
        if !leaf.is_done() {
            failures += 1;
        }
        b.join().unwrap();
        assert_eq!(why_of(&leaf), Some(2));
    }
    assert_eq!(failures, 0, "{failures}/5 root cancels returned while a leaf of the root was live");
}

/// While a cancel marks a subtree, it holds each child it finishes by a strong reference; if the
/// user drops the child's last clone at that moment, the child is dropped on the cancelling
/// thread, in the middle of the propagation. A value whose `Drop` cancels a context of that
/// subtree (here a `DropGuard` kept as a value, Go's `defer cancel()` tied to a context's
/// lifetime) then calls `cancel()` from inside the propagation: it must not wait for the
/// propagation it is part of. A second thread drops the child right when it sees it done, so
/// the race is hit within a few hundred rounds (of 20,000) when it exists.
#[test]
fn a_drop_on_the_cancelling_thread_that_cancels_inside_the_subtree_does_not_deadlock() {
    within_generous_time("20,000 rounds", || {
        let rounds = 20_000;
        let slot: Arc<Mutex<Option<Context>>> = Arc::default();
        let handed = Arc::new(AtomicUsize::new(0));
        let dropped = Arc::new(AtomicUsize::new(0));
        let (theirs, their_handed, their_dropped) = (slot.clone(), handed.clone(), dropped.clone());
        let dropper = thread::spawn(move || {
            for round in 1..=rounds {
                while their_handed.load(Ordering::Acquire) < round {
                    std::hint::spin_loop();
                }
                let tied = theirs.lock().unwrap().take().expect("handed over");
                while !tied.is_done() {
                    std::hint::spin_loop();
                }
                drop(tied); // races the canceller's own reference to `tied`
                their_dropped.store(round, Ordering::Release);
            }
        });
        for round in 1..=rounds {
            let (root, root_handle) = Context::background().with_cancel();
            let (child, child_handle) = root.with_cancel();
            *slot.lock().unwrap() = Some(child.with_value(child_handle.drop_guard()));
            handed.store(round, Ordering::Release);
            root_handle.cancel();
            assert!(child.is_done());
            while dropped.load(Ordering::Acquire) < round {
                std::hint::spin_loop();
            }
        }
        dropper.join().unwrap();
    });
}

/// A waker may cancel another context (allowed: no lock is held while waking), and that
/// context's `after_func` may panic (allowed: cancel resumes the panic). The panic then unwinds
/// out of the outer cancel: the outer context's other children must still end done, not be left
/// drained-but-live forever.
#[test]
fn a_panic_escaping_a_wake_does_not_leave_the_subtree_half_cancelled() {
    let (parent, handle) = Context::background().with_cancel();
    let (other, other_handle) = Context::background().with_cancel();
    let _registration = other.after_func(|| panic!("callback of the other context"));
    let (_state, waker) = FnWaker::new(move || other_handle.cancel());
    let mut done = parent.done();
    assert!(poll_once(&mut done, &waker).is_pending());
    let (child, _ch) = parent.with_cancel();
    let (grandchild, _gh) = child.with_cancel();

    let result = panic::catch_unwind(AssertUnwindSafe(|| handle.cancel()));
    assert!(result.is_err(), "the callback's panic is resumed somewhere up the stack");
    assert!(parent.is_done());
    assert!(other.is_done());
    assert!(child.is_done(), "a child of the cancelled context was left live");
    assert!(grandchild.is_done());
    assert!(child.wait_timeout(Duration::from_secs(1)), "waiting on the child would hang");
}

/// A cancelled context never makes any later-created context of an unrelated tree done.
#[test]
fn cancellation_never_crosses_to_unrelated_trees() {
    let (a, ha) = Context::background().with_cancel();
    let (b, _hb) = Context::background().with_cancel();
    let wo = a.without_cancel();
    let (wo_child, _wh) = wo.with_cancel();
    ha.cancel();
    assert!(!b.is_done());
    assert!(!wo.is_done() && !wo_child.is_done());
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let _r = b.after_func(move || flag.store(true, Ordering::SeqCst));
    assert!(!ran.load(Ordering::SeqCst));
    let (counter, waker) = CountingWaker::new();
    assert_eq!(poll_once(&mut b.done(), &waker), Poll::Pending);
    assert_eq!(counter.wakes(), 0);
}
