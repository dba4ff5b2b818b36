//! The deadline timer's bookkeeping: a cancelled, dropped or fired deadline leaves no
//! timer entry and no memory. `pending_timers()` and the allocation counter are process-wide,
//! so this binary serialises its tests (`heap::serial()`) and no other binary's tests share the
//! process.

mod common;
mod heap;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{GENEROUS, scaled};
use ctx_core::{CancelHandle, Context, Error, pending_timers};
use heap::{assert_back_to, live_bytes, serial};

const HOUR: Duration = Duration::from_secs(3600);
const SLACK: isize = 16 * 1024;

/// Starts the timer thread and its lazily allocated state, so baselines do not include them.
fn warm_up() {
    let (ctx, _h) = Context::background().with_timeout(Duration::from_millis(1));
    assert!(ctx.wait_timeout(GENEROUS));
    drop(Context::background().with_timeout(HOUR));
}

#[test]
fn cancel_before_the_deadline_removes_the_entry_at_once() {
    let _serial = serial();
    warm_up();
    let base = pending_timers();
    let (ctx, handle) = Context::background().with_timeout(HOUR);
    assert_eq!(pending_timers(), base + 1);
    handle.cancel();
    assert_eq!(pending_timers(), base, "cancel must release the timer entry at once");
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn dropping_a_deadline_context_removes_the_entry() {
    let _serial = serial();
    warm_up();
    let base = pending_timers();
    let (ctx, handle) = Context::background().with_value(1u8).with_timeout(HOUR);
    let clone = ctx.clone();
    drop(ctx);
    drop(handle);
    assert_eq!(pending_timers(), base + 1, "a live clone keeps the deadline");
    drop(clone);
    assert_eq!(pending_timers(), base);
}

#[test]
fn a_fired_deadline_leaves_no_entry() {
    let _serial = serial();
    warm_up();
    let base = pending_timers();
    let (ctx, _handle) = Context::background().with_timeout(Duration::from_millis(5));
    assert!(ctx.wait_timeout(GENEROUS));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(pending_timers(), base);
}

#[test]
fn a_parent_cancel_removes_the_entries_of_its_deadline_descendants() {
    let _serial = serial();
    warm_up();
    let base = pending_timers();
    let (parent, handle) = Context::background().with_cancel();
    let children: Vec<_> = (0..1000)
        .map(|i| parent.with_value(i).with_timeout(HOUR + Duration::from_millis(i as u64)))
        .collect();
    // Nested deadlines, each earlier than its parent's, have entries of their own.
    let (nested, _nh) = children[0].0.with_timeout(HOUR / 2);
    assert_eq!(pending_timers(), base + 1001);
    handle.cancel();
    assert_eq!(
        pending_timers(),
        base,
        "descendants keep timer entries after their parent's cancel"
    );
    assert!(nested.is_done());
    drop(children);
}

#[test]
fn deadlines_that_need_no_timer_get_none() {
    let _serial = serial();
    warm_up();
    let base = pending_timers();
    let (expired, _eh) = Context::background().with_deadline(Instant::now());
    assert!(expired.is_done());
    let (parent, _ph) = Context::background().with_timeout(HOUR);
    let (later, _lh) = parent.with_timeout(2 * HOUR);
    let (unbounded, _uh) = Context::background().with_timeout(Duration::MAX);
    let (done_parent, dh) = Context::background().with_cancel();
    dh.cancel();
    let (under_done, _udh) = done_parent.with_timeout(HOUR);
    assert!(under_done.is_done());
    assert_eq!(pending_timers(), base + 1, "only `parent` needs a timer entry");
    drop((later, unbounded));
}

#[test]
fn a_hundred_thousand_hour_long_timeouts_cancelled_leave_no_entries_and_no_memory() {
    let _serial = serial();
    warm_up();
    const N: usize = 100_000;
    let (server, server_handle) = Context::background().with_cancel();
    let mut contexts: Vec<(Context, CancelHandle)> = Vec::with_capacity(N);
    let base = pending_timers();
    let baseline = live_bytes();
    for _ in 0..N {
        contexts.push(server.with_timeout(HOUR));
    }
    assert_eq!(pending_timers(), base + N);
    for (_, handle) in &contexts {
        handle.cancel();
    }
    assert_eq!(pending_timers(), base);
    contexts.clear();
    assert_back_to(baseline, SLACK, "100,000 cancelled one-hour timeouts");
    server_handle.cancel();
}

#[test]
fn a_hundred_thousand_hour_long_timeouts_dropped_leave_no_entries_and_no_memory() {
    let _serial = serial();
    warm_up();
    const N: usize = 100_000;
    let mut contexts: Vec<(Context, CancelHandle)> = Vec::with_capacity(N);
    let base = pending_timers();
    let baseline = live_bytes();
    for i in 0..N {
        contexts.push(Context::background().with_timeout(HOUR + Duration::from_nanos(i as u64)));
    }
    assert_eq!(pending_timers(), base + N);
    contexts.clear();
    assert_eq!(pending_timers(), base);
    assert_back_to(baseline, SLACK, "100,000 dropped one-hour timeouts");
}

/// Insertion and removal are O(log n): with 100,000 deadlines pending, 10,000 more created and
/// cancelled take a small fraction of the (very generous) bound, which a linear scan per
/// operation would blow in a debug build.
#[test]
fn creating_and_cancelling_stays_cheap_with_a_hundred_thousand_pending() {
    let _serial = serial();
    warm_up();
    let pending: Vec<_> = (0..100_000u64)
        .map(|i| Context::background().with_timeout(HOUR + Duration::from_micros(i)))
        .collect();
    let start = Instant::now();
    for i in 0..10_000u64 {
        let (_ctx, handle) =
            Context::background().with_timeout(HOUR / 2 + Duration::from_micros(i));
        handle.cancel();
    }
    let took = start.elapsed();
    assert!(
        took < Duration::from_secs(5),
        "10,000 create+cancel with 100,000 pending took {took:?}"
    );
    drop(pending);
}

/// Children with timeouts created on several threads while their parent is cancelled: whether a
/// child's entry was inserted before or after the parent's cancel reached it, none is left.
#[test]
fn timeouts_created_while_the_parent_is_cancelled_leave_no_entries() {
    let _serial = serial();
    warm_up();
    let base = pending_timers();
    for _ in 0..scaled(20, 8) {
        let (parent, handle) = Context::background().with_cancel();
        let barrier = Arc::new(Barrier::new(4));
        let creators: Vec<_> = (0..3)
            .map(|_| {
                let (parent, barrier) = (parent.clone(), barrier.clone());
                thread::spawn(move || {
                    barrier.wait();
                    let mut made = Vec::new();
                    let mut born_done = 0;
                    while born_done < 100 {
                        let (child, h) = parent.with_timeout(HOUR);
                        born_done += usize::from(child.is_done());
                        made.push((child, h));
                    }
                    made
                })
            })
            .collect();
        barrier.wait();
        thread::yield_now();
        handle.cancel();
        let made: Vec<_> = creators.into_iter().flat_map(|c| c.join().unwrap()).collect();
        assert!(made.iter().all(|(c, _)| c.is_done()));
        assert_eq!(pending_timers(), base, "an entry survived its context's cancel");
    }
}
