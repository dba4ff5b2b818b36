//! Deadlines and timeouts: born done when already past, never early, a child never
//! extends its parent's deadline, causes, and the runtime-free timer waking thread and future
//! waiters. Timing assertions are one-sided or generous (seconds): the suite runs on small,
//! shared machines.
//!
//! The process-wide `pending_timers()` counter is checked in `timers.rs`, its own binary, because
//! the tests here run in parallel and would disturb it.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, ThreadId};
use std::time::{Duration, Instant};

use common::{
    GENEROUS, Rng, Why, pending_waiters, poll_once, scaled, why_of, within_generous_time,
};
use ctx_core::{Context, Error};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Waits for `ctx` and checks that it finished because of a deadline, not before `at`, and not
/// absurdly late.
fn wait_for_deadline(ctx: &Context, at: Instant) {
    assert!(ctx.wait_timeout(GENEROUS), "{ctx} never fired");
    let now = Instant::now();
    assert!(now >= at, "fired {:?} early", at - now);
    assert!(now - at < GENEROUS, "fired {:?} late", now - at);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}

#[test]
fn a_past_deadline_is_born_done() {
    let past = Instant::now().checked_sub(Duration::from_secs(1)).unwrap_or_else(Instant::now);
    let (ctx, handle) = Context::background().with_value(1u8).with_deadline(past);
    assert!(ctx.is_done());
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(ctx.cause().unwrap().downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
    assert_eq!(ctx.deadline(), Some(past));
    assert!(handle.is_done());
    handle.cancel();
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded), "a later cancel changes nothing");
    let (child, _h) = ctx.with_cancel();
    assert_eq!(child.err(), Some(Error::DeadlineExceeded), "children inherit the error");
    assert_eq!(child.value::<u8>(), Some(&1));
}

#[test]
fn a_deadline_equal_to_now_is_born_done() {
    let now = Instant::now();
    let (ctx, _h) = Context::background().with_deadline(now);
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    let (zero, _h) = Context::background().with_timeout(Duration::ZERO);
    assert_eq!(zero.err(), Some(Error::DeadlineExceeded));
    let (zero_cause, _h) = Context::background().with_timeout_cause(Duration::ZERO, Why(1));
    assert_eq!(why_of(&zero_cause), Some(1));
}

#[test]
fn a_deadline_fires_after_its_instant_never_before() {
    let at = Instant::now() + ms(40);
    let (ctx, _h) = Context::background().with_deadline(at);
    // Whenever the context is seen done, the clock read afterwards must be past the deadline.
    loop {
        let done = ctx.is_done();
        let now = Instant::now();
        if done {
            assert!(now >= at, "done {:?} before the deadline", at - now);
            break;
        }
        if now >= at + GENEROUS {
            panic!("the deadline did not fire within {GENEROUS:?}");
        }
        thread::sleep(Duration::from_micros(200));
    }
    wait_for_deadline(&ctx, at);
}

#[test]
fn many_deadlines_in_random_order_each_fire_after_their_instant() {
    let mut rng = Rng::new(3);
    let start = Instant::now();
    let contexts: Vec<_> = (0..scaled(300, 150))
        .map(|_| {
            let at = start + ms(rng.below(120) as u64);
            let (ctx, handle) = Context::background().with_deadline(at);
            (ctx, handle, at)
        })
        .collect();
    for (ctx, _h, at) in &contexts {
        wait_for_deadline(ctx, *at);
    }
}

#[test]
fn an_earlier_deadline_added_while_the_timer_sleeps_on_a_later_one_fires() {
    let (_late, _lh) = Context::background().with_timeout(Duration::from_secs(30));
    thread::sleep(ms(5)); // let the timer go to sleep on the late entry
    let at = Instant::now() + ms(20);
    let (early, _eh) = Context::background().with_deadline(at);
    wait_for_deadline(&early, at);
}

#[test]
fn a_long_deadline_under_a_short_one_keeps_the_parents() {
    let at = Instant::now() + ms(50);
    let (parent, _ph) = Context::background().with_deadline(at);
    let (child, _ch) = parent.with_timeout(Duration::from_secs(3600));
    let (child_cause, _cch) = parent.with_timeout_cause(Duration::from_secs(3600), Why(5));
    assert_eq!(child.deadline(), Some(at));
    assert_eq!(child_cause.deadline(), Some(at));
    wait_for_deadline(&child, at);
    assert_eq!(child.cause().unwrap().downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
    assert_eq!(
        child_cause.cause().unwrap().downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded),
        "the parent fired: its cause, not the child's unused one"
    );
    assert!(parent.is_done());
}

#[test]
fn a_short_deadline_under_a_long_one_is_its_own() {
    let long = Instant::now() + Duration::from_secs(3600);
    let (parent, _ph) = Context::background().with_deadline(long);
    let short = Instant::now() + ms(30);
    let (child, _ch) = parent.with_deadline(short);
    assert_eq!(child.deadline(), Some(short));
    assert_eq!(parent.deadline(), Some(long));
    let (grandchild, _gh) = child.with_value(1u8).with_cancel();
    assert_eq!(grandchild.deadline(), Some(short));
    wait_for_deadline(&grandchild, short);
    assert!(child.is_done());
    assert!(!parent.is_done(), "the child's deadline must not reach the parent");
}

/// Go keeps a deadline layer when the parent's deadline is the same instant: only a strictly
/// earlier one makes the child a plain cancel layer. So the child keeps its own cause, and as
/// the timer fires equal deadlines newest first, it is the child's own deadline that finishes it.
#[test]
fn an_equal_deadline_keeps_its_own_layer_and_cause() {
    let at = Instant::now() + ms(30);
    let (parent, _ph) = Context::background().with_deadline(at);
    let (child, _ch) = parent.with_deadline_cause(at, Why(6));
    let (through_value, _vh) = parent.with_value(1u8).with_deadline_cause(at, Why(7));
    assert_eq!(child.to_string().matches(".WithDeadline(").count(), 2, "{child}");
    assert_eq!(child.deadline(), Some(at));
    wait_for_deadline(&child, at);
    wait_for_deadline(&through_value, at);
    assert_eq!(why_of(&child), Some(6), "{:?}", child.cause());
    assert_eq!(why_of(&through_value), Some(7), "{:?}", through_value.cause());
    // Newest first: the parent's own entry may still be firing on the timer thread.
    wait_for_deadline(&parent, at);
    assert_eq!(parent.cause().unwrap().downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
}

#[test]
fn cancel_before_the_deadline_gives_canceled_for_good() {
    let at = Instant::now() + ms(30);
    let (ctx, handle) = Context::background().with_deadline_cause(at, Why(1));
    let (child, _ch) = ctx.with_cancel();
    handle.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause().unwrap().downcast_ref::<Error>(), Some(&Error::Canceled));
    thread::sleep(ms(60));
    assert_eq!(ctx.err(), Some(Error::Canceled), "the deadline must not overwrite the cancel");
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause().unwrap().downcast_ref::<Error>(), Some(&Error::Canceled));
}

#[test]
fn deadline_cause_versus_cancel_cause() {
    let at = Instant::now() + ms(20);
    let (fired, _fh) = Context::background().with_deadline_cause(at, Why(1));
    let (cancelled, ch) = Context::background().with_deadline_cause(at, Why(2));
    ch.cancel_with_cause(Why(3));
    wait_for_deadline(&fired, at);
    assert_eq!(why_of(&fired), Some(1));
    let (child_of_fired, _h) = fired.with_cancel();
    assert_eq!(why_of(&child_of_fired), Some(1));
    assert_eq!(cancelled.err(), Some(Error::Canceled));
    assert_eq!(why_of(&cancelled), Some(3));
}

#[test]
fn a_parent_cancel_before_the_childs_deadline_wins() {
    let (parent, handle) = Context::background().with_cancel();
    let at = Instant::now() + ms(30);
    let (child, _ch) = parent.with_deadline_cause(at, Why(1));
    handle.cancel_with_cause(Why(2));
    thread::sleep(ms(50));
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(why_of(&child), Some(2));
}

#[test]
fn a_deadline_under_a_done_parent_is_born_with_the_parents_error() {
    let (parent, handle) = Context::background().with_cancel();
    handle.cancel_with_cause(Why(4));
    let (child, _ch) = parent.with_timeout(Duration::from_secs(3600));
    assert_eq!(child.err(), Some(Error::Canceled));
    assert_eq!(why_of(&child), Some(4));
    let (expired_child, _eh) = parent.with_deadline(Instant::now());
    assert_eq!(expired_child.err(), Some(Error::Canceled), "the parent was done first");
}

#[test]
fn a_deadline_reaches_descendants_through_values_and_cancel_children() {
    let at = Instant::now() + ms(30);
    let (root, _rh) = Context::background().with_deadline_cause(at, Why(6));
    let value = root.with_value("v");
    let (child, _ch) = value.with_cancel();
    let (merged, _mh) = Context::background().merge(&child);
    for ctx in [&value, &child, &merged] {
        assert_eq!(ctx.deadline(), Some(at), "{ctx}");
    }
    wait_for_deadline(&merged, at);
    for ctx in [&root, &value, &child, &merged] {
        assert_eq!(ctx.err(), Some(Error::DeadlineExceeded), "{ctx}");
        assert_eq!(why_of(ctx), Some(6), "{ctx}");
    }
}

#[test]
fn without_cancel_has_no_deadline_and_is_not_finished_by_one() {
    let at = Instant::now() + ms(20);
    let (parent, _ph) = Context::background().with_value(1u8).with_deadline(at);
    let detached = parent.without_cancel();
    assert_eq!(detached.deadline(), None);
    let (own, _oh) = detached.with_timeout(Duration::from_secs(3600));
    assert!(own.deadline().unwrap() > at, "a child of without_cancel may have a later deadline");
    wait_for_deadline(&parent, at);
    thread::sleep(ms(10));
    assert!(!detached.is_done());
    assert!(!own.is_done());
    assert_eq!(own.value::<u8>(), Some(&1));
}

#[test]
fn a_merge_is_finished_by_the_earlier_deadline() {
    let early = Instant::now() + ms(30);
    let late = Instant::now() + Duration::from_secs(3600);
    let (a, _ah) = Context::background().with_deadline(late);
    let (b, _bh) = Context::background().with_deadline_cause(early, Why(7));
    let (m, _mh) = a.merge(&b);
    assert_eq!(m.deadline(), Some(early));
    wait_for_deadline(&m, early);
    assert_eq!(why_of(&m), Some(7));
    assert!(!a.is_done());
}

#[test]
fn an_unrepresentable_timeout_means_no_deadline() {
    let (ctx, handle) = Context::background().with_timeout(Duration::MAX);
    assert_eq!(ctx.deadline(), None);
    assert!(!ctx.is_done());
    let (with_cause, _h) = Context::background().with_timeout_cause(Duration::MAX, Why(1));
    assert_eq!(with_cause.deadline(), None);
    handle.cancel();
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

#[test]
fn deadline_callbacks_run_on_the_timer_thread_after_the_instant() {
    let at = Instant::now() + ms(20);
    let (ctx, _h) = Context::background().with_deadline(at);
    let (ctx2, _h2) = Context::background().with_deadline(at + ms(5));
    let seen: Arc<Mutex<Vec<(ThreadId, Instant)>>> = Arc::default();
    for c in [&ctx, &ctx2] {
        let seen = seen.clone();
        let _r = c.after_func(move || {
            seen.lock().unwrap().push((thread::current().id(), Instant::now()))
        });
    }
    wait_for_deadline(&ctx2, at + ms(5));
    let deadline = Instant::now() + GENEROUS;
    while seen.lock().unwrap().len() < 2 && Instant::now() < deadline {
        thread::sleep(ms(1));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    assert!(seen.iter().all(|(id, when)| *id != thread::current().id() && *when >= at));
    assert_eq!(seen[0].0, seen[1].0, "one timer thread");
}

#[test]
fn the_timer_survives_a_panicking_deadline_callback() {
    let (bad, _bh) = Context::background().with_timeout(ms(5));
    let _r = bad.after_func(|| panic!("deadline callback panics (expected by this test)"));
    wait_for_deadline(&bad, Instant::now() - ms(5));
    let at = Instant::now() + ms(10);
    let (good, _gh) = Context::background().with_deadline(at);
    wait_for_deadline(&good, at);
}

/// A few hundred threads block in `wait()` (and `wait_timeout`) on one deadline. Hundreds, not
/// thousands: the suite runs on 2-core machines, and the point (every parked thread is released
/// by one timer firing, none early) does not need more.
#[test]
fn a_deadline_releases_hundreds_of_blocked_threads() {
    let threads = scaled(400, 200);
    let at = Instant::now() + ms(300);
    let (ctx, _h) = Context::background().with_deadline(at);
    let (child, _ch) = ctx.with_value(()).with_cancel();
    let waiters: Vec<_> = (0..threads)
        .map(|i| {
            let waited = if i % 2 == 0 { ctx.clone() } else { child.clone() };
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    if i % 3 == 0 {
                        assert!(waited.wait_timeout(Duration::from_secs(3600)));
                    } else {
                        waited.wait();
                    }
                    Instant::now()
                })
                .expect("spawn a waiter")
        })
        .collect();
    let woken: Vec<Instant> = within_generous_time("waiters", move || {
        waiters.into_iter().map(|w| w.join().unwrap()).collect()
    });
    assert_eq!(woken.len(), threads);
    assert!(woken.iter().all(|&t| t >= at), "a waiter woke before the deadline");
    assert_eq!(child.err(), Some(Error::DeadlineExceeded));
}

/// Thousands of `done()` futures, each with its own counting waker: the timer wakes each exactly
/// once.
#[test]
fn a_deadline_wakes_thousands_of_done_futures_once_each() {
    let count = scaled(10_000, 5_000);
    let at = Instant::now() + ms(100);
    let (ctx, _h) = Context::background().with_deadline(at);
    let (child, _ch) = ctx.with_cancel();
    let mut waiters = pending_waiters(count, &ctx, &child);
    let total = || waiters.iter().map(|(_, c, _)| c.wakes()).sum::<usize>();
    let give_up = Instant::now() + GENEROUS;
    while total() < count && Instant::now() < give_up {
        thread::sleep(ms(5));
    }
    assert!(Instant::now() >= at);
    assert_eq!(total(), count, "every waiter woken");
    thread::sleep(ms(20));
    for (done, counter, waker) in &mut waiters {
        assert_eq!(counter.wakes(), 1, "woken more than once");
        assert!(poll_once(done, waker).is_ready());
    }
}

/// Children with long deadlines created from another thread while their parent's short deadline
/// fires: every one of them ends done with `DeadlineExceeded`.
#[test]
fn deadline_children_created_while_the_parent_fires() {
    for _ in 0..scaled(10, 4) {
        let (parent, _ph) = Context::background().with_timeout(ms(5));
        let creator_parent = parent.clone();
        let born_done = Arc::new(AtomicUsize::new(0));
        let counter = born_done.clone();
        let children = within_generous_time("creator", move || {
            let mut children = Vec::new();
            while counter.load(Ordering::SeqCst) < 50 {
                let (child, handle) = creator_parent.with_timeout(Duration::from_secs(3600));
                if child.is_done() {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                children.push((child, handle));
            }
            children
        });
        // The creator saw the parent done, but the timer thread may still be finishing the
        // children it had drained: wait for each (is_done of a parent does not imply its
        // descendants are done yet, in Go either).
        for (child, _h) in &children {
            assert!(child.wait_timeout(GENEROUS), "{child} never finished");
            assert_eq!(child.err(), Some(Error::DeadlineExceeded), "{child}");
        }
    }
}
