//! Waiting: the `Done` future (ready at once when done, every waiter woken exactly once,
//! cancel-safe), blocking `wait` / `wait_timeout`, and `run`.

mod common;

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::task::{Context as TaskContext, Poll};
use std::thread;
use std::time::{Duration, Instant};

use common::{
    CountingWaker, Why, block_on, pending_waiters, poll_once, scaled, within_generous_time,
};
use ctx_core::{Context, Error};

#[test]
fn done_resolves_at_once_when_already_done() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    let (counter, waker) = CountingWaker::new();
    let mut done = ctx.done();
    assert_eq!(poll_once(&mut done, &waker), Poll::Ready(()));
    assert_eq!(poll_once(&mut done, &waker), Poll::Ready(()), "ready stays ready");
    drop(done);
    assert_eq!(counter.wakes(), 0);
    assert_eq!(Arc::strong_count(&counter), 2, "a ready Done must not keep the waker");
    block_on(ctx.done());
}

#[test]
fn every_waiter_is_woken_exactly_once() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_value(1u8).with_cancel();
    let waiters = pending_waiters(scaled(5000, 2000), &ctx, &child);
    assert!(waiters.iter().all(|(_, c, _)| c.wakes() == 0));
    handle.cancel();
    handle.cancel();
    for (mut done, counter, waker) in waiters {
        assert_eq!(counter.wakes(), 1);
        assert!(poll_once(&mut done, &waker).is_ready());
        drop(done);
        assert_eq!(counter.wakes(), 1, "woken more than once");
        assert_eq!(Arc::strong_count(&counter), 2, "the context kept a waker clone");
    }
}

#[test]
fn only_the_latest_waker_is_woken() {
    let (ctx, handle) = Context::background().with_cancel();
    let (first, first_waker) = CountingWaker::new();
    let (second, second_waker) = CountingWaker::new();
    let mut done = ctx.done();
    assert!(poll_once(&mut done, &first_waker).is_pending());
    assert!(poll_once(&mut done, &second_waker).is_pending());
    assert_eq!(Arc::strong_count(&first), 2, "the replaced waker must be released");
    handle.cancel();
    assert_eq!((first.wakes(), second.wakes()), (0, 1));
}

#[test]
fn repolling_with_the_same_waker_registers_once() {
    let (ctx, handle) = Context::background().with_cancel();
    let (counter, waker) = CountingWaker::new();
    let mut done = ctx.done();
    for _ in 0..10 {
        assert!(poll_once(&mut done, &waker).is_pending());
    }
    assert_eq!(Arc::strong_count(&counter), 3, "one stored clone, however often it is polled");
    handle.cancel();
    assert_eq!(counter.wakes(), 1);
}

#[test]
fn done_is_cancel_safe() {
    let (ctx, handle) = Context::background().with_cancel();
    let (counter, waker) = CountingWaker::new();
    let mut done = ctx.done();
    assert!(poll_once(&mut done, &waker).is_pending());
    assert_eq!(Arc::strong_count(&counter), 3);
    drop(done);
    assert_eq!(Arc::strong_count(&counter), 2, "dropping Done must unregister its waker");
    // Other waiters are unaffected by the removal.
    let (other, other_waker) = CountingWaker::new();
    let mut other_done = ctx.done();
    assert!(poll_once(&mut other_done, &other_waker).is_pending());
    handle.cancel();
    assert_eq!(counter.wakes(), 0, "a dropped Done must not be woken");
    assert_eq!(other.wakes(), 1);
}

#[test]
fn dropping_many_done_futures_in_any_order_keeps_the_rest_registered() {
    let (ctx, handle) = Context::background().with_cancel();
    let mut rng = common::Rng::new(7);
    let mut waiters: Vec<_> = (0..1000)
        .map(|_| {
            let (counter, waker) = CountingWaker::new();
            let mut done = ctx.done();
            assert!(poll_once(&mut done, &waker).is_pending());
            (Some(done), counter)
        })
        .collect();
    for _ in 0..600 {
        let i = rng.below(waiters.len());
        waiters[i].0 = None;
    }
    // Fresh waiters reuse freed slots; none may be confused with a dropped one.
    let fresh: Vec<_> = (0..300)
        .map(|_| {
            let (counter, waker) = CountingWaker::new();
            let mut done = ctx.done();
            assert!(poll_once(&mut done, &waker).is_pending());
            (done, counter)
        })
        .collect();
    handle.cancel();
    for (done, counter) in &waiters {
        assert_eq!(counter.wakes(), usize::from(done.is_some()));
    }
    assert!(fresh.iter().all(|(_, c)| c.wakes() == 1));
}

#[test]
fn done_on_a_never_done_context_stays_pending_without_keeping_the_waker() {
    for ctx in [
        Context::background(),
        Context::todo(),
        Context::background().with_value(1u8),
        Context::background().with_cancel().0.without_cancel(),
    ] {
        let (counter, waker) = CountingWaker::new();
        let mut done = ctx.done();
        assert!(poll_once(&mut done, &waker).is_pending());
        assert_eq!(Arc::strong_count(&counter), 2, "{ctx}: nothing will ever wake it");
    }
}

#[test]
fn done_is_woken_by_an_ancestor_and_by_a_merge_partner() {
    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = Context::background().with_cancel();
    let (m, _mh) = a.with_value(0u8).merge(&b);
    let (counter, waker) = CountingWaker::new();
    let mut done = m.done();
    assert!(poll_once(&mut done, &waker).is_pending());
    hb.cancel();
    assert_eq!(counter.wakes(), 1);
    ha.cancel();
    assert_eq!(counter.wakes(), 1);
}

#[test]
fn block_on_done_with_a_cancel_from_another_thread_never_loses_the_wake_up() {
    for i in 0..scaled(2000, 500) {
        let (ctx, handle) = Context::background().with_cancel();
        let barrier = Arc::new(Barrier::new(2));
        let b2 = barrier.clone();
        let canceller = thread::spawn(move || {
            b2.wait();
            if i % 3 == 0 {
                thread::yield_now();
            }
            handle.cancel_with_cause(Why(i as u64));
        });
        let waited = ctx.clone();
        within_generous_time("block_on(done)", move || {
            barrier.wait();
            block_on(waited.done());
        });
        canceller.join().unwrap();
        assert!(ctx.is_done());
    }
}

#[test]
fn wait_returns_at_once_when_done_and_blocks_until_cancelled() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_cancel();
    let waiter = {
        let child = child.clone();
        thread::spawn(move || {
            child.wait();
            child.err()
        })
    };
    thread::sleep(Duration::from_millis(30));
    assert!(!waiter.is_finished(), "wait returned before the context was done");
    handle.cancel();
    let err = within_generous_time("wait", move || waiter.join().unwrap());
    assert_eq!(err, Some(Error::Canceled));
    child.wait(); // done already: returns at once
}

#[test]
fn many_threads_waiting_on_one_context_are_all_released() {
    let (ctx, handle) = Context::background().with_cancel();
    let released = Arc::new(AtomicUsize::new(0));
    let waiters: Vec<_> = (0..64)
        .map(|i| {
            let (ctx, released) = (ctx.clone(), released.clone());
            thread::Builder::new()
                .stack_size(64 * 1024)
                .spawn(move || {
                    if i % 2 == 0 {
                        ctx.wait();
                    } else {
                        assert!(ctx.wait_timeout(Duration::from_secs(3600)));
                    }
                    released.fetch_add(1, Ordering::SeqCst);
                })
                .unwrap()
        })
        .collect();
    thread::sleep(Duration::from_millis(20));
    handle.cancel();
    within_generous_time("64 waiters", move || waiters.into_iter().for_each(|w| w.join().unwrap()));
    assert_eq!(released.load(Ordering::SeqCst), 64);
}

#[test]
fn wait_timeout_times_out_on_a_live_context() {
    let (ctx, _handle) = Context::background().with_cancel();
    let start = Instant::now();
    assert!(!ctx.wait_timeout(Duration::from_millis(30)));
    assert!(start.elapsed() >= Duration::from_millis(30), "returned early");
    assert!(!ctx.wait_timeout(Duration::ZERO));
    let start = Instant::now();
    assert!(!Context::background().wait_timeout(Duration::from_millis(20)));
    assert!(start.elapsed() >= Duration::from_millis(20));
}

#[test]
fn wait_timeout_reports_done() {
    let (ctx, handle) = Context::background().with_cancel();
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(20));
        handle.cancel();
    });
    let start = Instant::now();
    assert!(ctx.wait_timeout(Duration::from_secs(60)));
    assert!(start.elapsed() < common::GENEROUS);
    canceller.join().unwrap();
    assert!(ctx.wait_timeout(Duration::ZERO), "already done: true even with no time");
}

#[test]
fn wait_timeout_with_an_unrepresentable_timeout_waits_for_the_cancel() {
    let (ctx, handle) = Context::background().with_cancel();
    let waited = ctx.clone();
    let waiter = thread::spawn(move || waited.wait_timeout(Duration::MAX));
    thread::sleep(Duration::from_millis(10));
    handle.cancel();
    assert!(within_generous_time("wait_timeout(MAX)", move || waiter.join().unwrap()));
}

#[test]
fn a_timed_out_waiter_is_not_confused_with_later_waiters() {
    let (ctx, handle) = Context::background().with_cancel();
    for _ in 0..50 {
        assert!(!ctx.wait_timeout(Duration::from_micros(100)));
    }
    let waited = ctx.clone();
    let waiter = thread::spawn(move || waited.wait());
    thread::sleep(Duration::from_millis(10));
    handle.cancel();
    within_generous_time("waiter after timeouts", move || waiter.join().unwrap());
}

/// A future that is pending until told otherwise, and records whether it was polled / dropped.
struct Probe {
    polled: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
    ready: Arc<AtomicBool>,
}

impl Future for Probe {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<u32> {
        self.polled.store(true, Ordering::SeqCst);
        if self.ready.load(Ordering::SeqCst) {
            Poll::Ready(5)
        } else {
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

fn probe(ready: bool) -> (Probe, Arc<AtomicBool>, Arc<AtomicBool>) {
    let (polled, dropped) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let probe = Probe {
        polled: polled.clone(),
        dropped: dropped.clone(),
        ready: Arc::new(AtomicBool::new(ready)),
    };
    (probe, polled, dropped)
}

#[test]
fn run_on_a_done_context_does_not_poll_the_future() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    let (future, polled, dropped) = probe(true);
    assert_eq!(block_on(ctx.run(future)), Err(Error::Canceled));
    assert!(!polled.load(Ordering::SeqCst));
    assert!(dropped.load(Ordering::SeqCst));
}

#[test]
fn run_returns_the_output_when_the_future_wins() {
    let (ctx, _handle) = Context::background().with_cancel();
    let (future, polled, _dropped) = probe(true);
    assert_eq!(block_on(ctx.run(future)), Ok(5));
    assert!(polled.load(Ordering::SeqCst));
}

#[test]
fn run_drops_the_future_when_cancellation_wins() {
    let (ctx, handle) = Context::background().with_timeout(Duration::from_secs(3600));
    let (future, polled, dropped) = probe(false);
    let canceller = thread::spawn(move || {
        thread::sleep(Duration::from_millis(10));
        handle.cancel();
    });
    let result = within_generous_time("run", move || block_on(ctx.run(future)));
    canceller.join().unwrap();
    assert_eq!(result, Err(Error::Canceled));
    assert!(polled.load(Ordering::SeqCst));
    assert!(dropped.load(Ordering::SeqCst));
}

/// Invariant 4 of `tree.rs`: no foreign code runs under a node's lock. Re-polling a `Done` with
/// a new waker drops the old one; if that old waker was the last owner of a child of the same
/// context (as a task that only its waker keeps alive would be), dropping it drops the child,
/// which unlinks itself from the parent, which takes the parent's lock.
#[test]
fn replacing_a_waker_whose_drop_releases_a_child_does_not_deadlock() {
    let (parent, handle) = Context::background().with_cancel();
    let poller = parent.clone();
    within_generous_time("re-poll with a new waker", move || {
        let child = poller.with_cancel().0;
        // The first waker owns the only clone of the child (its handle is gone).
        let (state, first) = common::FnWaker::new(move || {
            let _ = child.is_done();
        });
        drop(state);
        let mut done = poller.done();
        assert!(poll_once(&mut done, &first).is_pending());
        drop(first); // now the clone stored in `done`'s registration is the child's last owner
        let (_counter, second) = CountingWaker::new();
        assert!(poll_once(&mut done, &second).is_pending());
    });
    handle.cancel();
}
