//! `after_func`: runs once after the context is done (soon, on the timer thread, if it already
//! is: never inside `after_func`), never after a successful `stop`, survives panics of its
//! neighbours, may cancel anything, and follows the ownership rules (moves to the parent when
//! its context is dropped, is dropped when nothing can finish it any more).

mod common;

use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::thread::{self, ThreadId};

use common::{Why, scaled, wait_for_count, why_of};
use ctx_core::{AfterFunc, Context, Error};

fn counter() -> Arc<AtomicUsize> {
    Arc::new(AtomicUsize::new(0))
}

fn count_into(c: &Arc<AtomicUsize>) -> impl FnOnce() + Send + 'static {
    let c = c.clone();
    move || {
        c.fetch_add(1, Ordering::SeqCst);
    }
}

#[test]
fn runs_once_after_cancel_on_the_cancelling_thread() {
    let (ctx, handle) = Context::background().with_cancel();
    let (child, _ch) = ctx.with_value(1u8).with_cancel();
    let ran_on: Arc<Mutex<Vec<(ThreadId, bool, bool)>>> = Arc::default();
    let (log, observed_ctx) = (ran_on.clone(), ctx.clone());
    let _registration = ctx.after_func(move || {
        let state = (thread::current().id(), observed_ctx.is_done(), child.is_done());
        log.lock().unwrap().push(state);
    });
    assert!(ran_on.lock().unwrap().is_empty(), "ran before the context was done");
    let canceller = thread::spawn(move || {
        handle.cancel();
        handle.cancel();
        thread::current().id()
    })
    .join()
    .unwrap();
    assert_eq!(
        *ran_on.lock().unwrap(),
        vec![(canceller, true, true)],
        "once, on the cancelling thread, after the context and its descendants are done"
    );
}

/// The thread a callback registered now on `ctx` runs on; checks that `stop()` finds it
/// started.
fn thread_of_a_callback_on(ctx: &Context) -> (ThreadId, Option<String>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let registration = ctx.after_func(move || {
        let me = thread::current();
        tx.send((me.id(), me.name().map(str::to_owned))).unwrap();
    });
    assert!(!registration.stop(), "f counts as started once handed over: too late to stop");
    rx.recv_timeout(common::GENEROUS).expect("the callback never ran")
}

#[test]
fn runs_soon_on_the_timer_thread_when_the_context_is_already_done() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    let here = thread::current().id();
    let (on, name) = thread_of_a_callback_on(&ctx);
    assert_ne!(on, here, "must not run inside after_func");
    assert_eq!(name.as_deref(), Some("ctx-timer"));
    // A child born done hands its callbacks over too.
    let (born_done, _h) = ctx.with_cancel();
    assert_eq!(thread_of_a_callback_on(&born_done).1.as_deref(), Some("ctx-timer"));
    // So does a deadline that had passed at creation.
    let (expired, _h) = Context::background().with_timeout(std::time::Duration::ZERO);
    assert_eq!(thread_of_a_callback_on(&expired).1.as_deref(), Some("ctx-timer"));
}

/// Go's `ExampleAfterFunc_cond`: wait on a condition variable until the context is done, the
/// callback taking the condition's lock so that its notification cannot come before the wait.
/// The callback is registered while that lock is held, so a context that is already done must
/// not run it inside `after_func`: that would take the lock on the thread holding it.
#[test]
fn a_callback_that_takes_the_registering_threads_lock_does_not_deadlock_on_a_done_context() {
    fn wait_on_condition(ctx: &Context, pair: &Arc<(Mutex<()>, Condvar)>) -> Error {
        let mut guard = pair.0.lock().unwrap();
        let notify = pair.clone();
        let registration = ctx.after_func(move || {
            let _locked = notify.0.lock().unwrap();
            notify.1.notify_all();
        });
        let err = loop {
            guard = pair.1.wait(guard).unwrap();
            if let Some(err) = ctx.err() {
                break err;
            }
        };
        drop(guard);
        registration.stop();
        err
    }
    let (expired, _h) = Context::background().with_timeout(std::time::Duration::ZERO);
    let (soon, _h2) = Context::background().with_timeout(std::time::Duration::from_millis(5));
    for ctx in [expired, soon] {
        let pair = Arc::new((Mutex::new(()), Condvar::new()));
        let err = common::within_generous_time("wait on a condition until done", move || {
            wait_on_condition(&ctx, &pair)
        });
        assert_eq!(err, Error::DeadlineExceeded);
    }
}

#[test]
fn stop_prevents_the_call_and_releases_the_function() {
    let (ctx, handle) = Context::background().with_cancel();
    let ran = counter();
    let token = Arc::new(());
    let held = token.clone();
    let c = ran.clone();
    let registration = ctx.after_func(move || {
        let _keep = &held;
        c.fetch_add(1, Ordering::SeqCst);
    });
    assert_eq!(Arc::strong_count(&token), 2);
    assert!(registration.stop(), "the first stop prevents the call");
    assert_eq!(Arc::strong_count(&token), 1, "stop must drop the function and what it captured");
    assert!(!registration.stop(), "stop twice: false the second time");
    handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
    assert!(!registration.stop());
}

#[test]
fn stop_after_the_call_returns_false() {
    let (ctx, handle) = Context::background().with_cancel();
    let ran = counter();
    let registration = ctx.after_func(count_into(&ran));
    handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(!registration.stop());
    assert!(!registration.stop());
}

#[test]
fn dropping_the_registration_neither_stops_nor_detaches() {
    let (ctx, handle) = Context::background().with_cancel();
    let ran = counter();
    drop(ctx.after_func(count_into(&ran)));
    handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn exactly_one_of_stop_true_and_ran_when_stop_races_cancel() {
    let rounds = scaled(3000, 1000);
    let (mut stopped, mut ran_count) = (0, 0);
    for _ in 0..rounds {
        let (ctx, handle) = Context::background().with_cancel();
        let ran = counter();
        let registration = Arc::new(ctx.after_func(count_into(&ran)));
        let barrier = Arc::new(Barrier::new(2));
        let (b2, r2) = (barrier.clone(), registration.clone());
        let stopper = thread::spawn(move || {
            b2.wait();
            r2.stop()
        });
        barrier.wait();
        handle.cancel();
        let stop_won = stopper.join().unwrap();
        let did_run = ran.load(Ordering::SeqCst);
        assert!(did_run <= 1, "ran twice");
        assert!(
            stop_won != (did_run == 1),
            "stop returned {stop_won} and the function ran {did_run} times"
        );
        stopped += usize::from(stop_won);
        ran_count += did_run;
    }
    // Not an assertion (it depends on scheduling), but useful when reading a failure.
    println!("stop won {stopped} times, the function ran {ran_count} times");
}

#[test]
fn a_callback_that_stops_a_sibling_excludes_its_run() {
    for _ in 0..scaled(200, 50) {
        let (ctx, handle) = Context::background().with_cancel();
        let ran = counter();
        let slot: Arc<Mutex<Option<AfterFunc>>> = Arc::default();
        let stop_result = Arc::new(Mutex::new(None));
        let (s, r) = (slot.clone(), stop_result.clone());
        let _first = ctx.after_func(move || {
            let stopped = s.lock().unwrap().as_ref().map(AfterFunc::stop);
            *r.lock().unwrap() = stopped;
        });
        *slot.lock().unwrap() = Some(ctx.after_func(count_into(&ran)));
        handle.cancel();
        let stopped = stop_result.lock().unwrap().expect("the first callback ran");
        assert!(stopped != (ran.load(Ordering::SeqCst) == 1));
    }
}

#[test]
fn a_panicking_callback_does_not_stop_the_others_and_cancel_resumes_it() {
    let (root, handle) = Context::background().with_cancel();
    let (child, _ch) = root.with_value(1u8).with_cancel();
    let (grandchild, _gh) = child.with_cancel();
    let healthy = counter();
    let mut registrations = Vec::new();
    registrations.push(root.after_func(count_into(&healthy)));
    registrations.push(root.after_func(|| panic!("first bad callback")));
    registrations.push(root.after_func(count_into(&healthy)));
    registrations.push(child.after_func(|| panic!("second bad callback")));
    registrations.push(child.after_func(count_into(&healthy)));
    registrations.push(grandchild.after_func(count_into(&healthy)));

    let result = panic::catch_unwind(AssertUnwindSafe(|| handle.cancel()));
    let payload = result.expect_err("cancel must resume the callback's panic");
    let message = payload.downcast_ref::<&str>().copied().unwrap_or("<not a &str>");
    assert!(message.ends_with("bad callback"), "resumed panic: {message}");
    assert_eq!(healthy.load(Ordering::SeqCst), 4, "every healthy callback ran");
    for ctx in [&root, &child, &grandchild] {
        assert_eq!(ctx.err(), Some(Error::Canceled), "{ctx} was left half-cancelled");
        assert!(ctx.cause().is_some());
    }
    // Nothing is left in a broken state: the contexts still work.
    let (late, _lh) = grandchild.with_cancel();
    assert!(late.is_done());
    let _r = grandchild.after_func(count_into(&healthy));
    wait_for_count(&healthy, 5);
    assert!(grandchild.wait_timeout(std::time::Duration::from_millis(1)));
}

#[test]
fn a_callback_registered_on_a_done_context_that_panics_leaves_the_timer_thread_running() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    let registration = ctx.after_func(|| panic!("on the timer thread"));
    assert!(!registration.stop());
    let (next, _h) = Context::background().with_timeout(std::time::Duration::from_millis(5));
    assert!(next.wait_timeout(common::GENEROUS), "deadlines still fire");
    assert_eq!(thread_of_a_callback_on(&ctx).1.as_deref(), Some("ctx-timer"));
}

#[test]
fn a_callback_may_cancel_its_own_contexts_parent() {
    let (parent, parent_handle) = Context::background().with_cancel();
    let (child, child_handle) = parent.with_cancel();
    let (sibling, _sh) = parent.with_cancel();
    let _r = child.after_func(move || parent_handle.cancel_with_cause(Why(9)));
    common::within_generous_time("callback cancels the parent", move || child_handle.cancel());
    assert!(parent.is_done() && sibling.is_done());
    assert_eq!(why_of(&parent), Some(9));
    assert_eq!(why_of(&sibling), Some(9));
    assert_eq!(child.cause().unwrap().downcast_ref::<Error>(), Some(&Error::Canceled));
}

#[test]
fn a_callback_may_cancel_its_own_context_and_register_more_callbacks() {
    let (ctx, handle) = Context::background().with_cancel();
    let ran = counter();
    let (inner_ctx, inner_ran, inner_handle) = (ctx.clone(), ran.clone(), handle.clone());
    let _r = ctx.after_func(move || {
        inner_handle.cancel(); // already done: a no-op, and no deadlock
        let nested = inner_ctx.after_func(count_into(&inner_ran));
        assert!(!nested.stop(), "a callback on a done context is handed over at once");
        let (child, _h) = inner_ctx.with_cancel();
        assert!(child.is_done());
    });
    common::within_generous_time("re-entrant callback", move || handle.cancel());
    wait_for_count(&ran, 1);
}

#[test]
fn the_callback_moves_to_the_parent_when_the_context_is_dropped_before_cancel() {
    let (parent, handle) = Context::background().with_cancel();
    let ran = counter();
    let (child, child_handle) = parent.with_cancel();
    let registration = child.after_func(count_into(&ran));
    drop(child);
    drop(child_handle);
    assert_eq!(ran.load(Ordering::SeqCst), 0, "dropping the context must not run the callback");
    handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 1, "the parent's cancel must run the moved callback");
    assert!(!registration.stop());
}

#[test]
fn the_callback_moves_up_several_dropped_levels() {
    let (root, handle) = Context::background().with_cancel();
    let ran = counter();
    let (a, ha) = root.with_cancel();
    let b = a.with_value(1u8);
    let (c, hc) = b.with_cancel();
    let registration = c.after_func(count_into(&ran));
    drop((c, hc));
    drop(b);
    drop((a, ha));
    handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert!(!registration.stop());
}

#[test]
fn a_moved_callback_can_still_be_stopped() {
    let (parent, handle) = Context::background().with_cancel();
    let ran = counter();
    let child = parent.with_value(1u8);
    let registration = child.after_func(count_into(&ran));
    drop(child);
    assert!(registration.stop());
    handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 0);
}

#[test]
fn the_callback_of_a_dropped_merge_runs_once_when_either_parent_finishes() {
    for first_is_self in [true, false] {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let ran = counter();
        let (m, hm) = a.merge(&b);
        let registration = m.after_func(count_into(&ran));
        drop((m, hm));
        if first_is_self {
            ha.cancel();
        } else {
            hb.cancel();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 1);
        if first_is_self {
            hb.cancel();
        } else {
            ha.cancel();
        }
        assert_eq!(ran.load(Ordering::SeqCst), 1, "ran twice");
        assert!(!registration.stop());
    }
}

#[test]
fn a_callback_that_nothing_can_finish_is_dropped_at_once() {
    let roots = [
        Context::background(),
        Context::todo(),
        Context::background().with_value(1u8),
        Context::background().with_cancel().0.without_cancel(),
    ];
    for ctx in roots {
        let token = Arc::new(());
        let held = token.clone();
        let ran = Arc::new(AtomicBool::new(false));
        let flag = ran.clone();
        let registration = ctx.after_func(move || {
            let _keep = &held;
            flag.store(true, Ordering::SeqCst);
        });
        assert_eq!(Arc::strong_count(&token), 1, "{ctx}: the function must be dropped at once");
        assert!(!ran.load(Ordering::SeqCst));
        assert!(registration.stop(), "{ctx}: stop on a never-done context returns true");
        assert!(!registration.stop());
    }
}

#[test]
fn a_callback_on_an_orphaned_context_is_dropped_with_it() {
    // The child of a root: once it and its handle are gone, nothing can ever finish it.
    let (ctx, handle) = Context::background().with_cancel();
    let token = Arc::new(());
    let held = token.clone();
    let ran = Arc::new(AtomicBool::new(false));
    let flag = ran.clone();
    let registration = ctx.after_func(move || {
        let _keep = &held;
        flag.store(true, Ordering::SeqCst);
    });
    drop((ctx, handle));
    assert_eq!(Arc::strong_count(&token), 1, "the function outlived every way to run it");
    assert!(!ran.load(Ordering::SeqCst));
    drop(registration);
}

#[test]
fn a_deadline_childs_callback_moves_to_a_cancellable_parent_only() {
    // A dropped deadline context takes its own deadline with it: its callback waits for the
    // parent instead.
    let (parent, handle) = Context::background().with_cancel();
    let ran = counter();
    let (child, child_handle) = parent.with_timeout(std::time::Duration::from_millis(200));
    let _r = child.after_func(count_into(&ran));
    let fired_before_drop = child.is_done();
    drop((child, child_handle));
    std::thread::sleep(std::time::Duration::from_millis(400));
    if fired_before_drop {
        // The machine stalled for 200 ms: the deadline legitimately won; nothing to check.
        return;
    }
    assert_eq!(ran.load(Ordering::SeqCst), 0, "the dropped deadline must not fire the callback");
    handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 1);
}

#[test]
fn callbacks_registered_from_many_threads_each_run_exactly_once() {
    let (ctx, handle) = Context::background().with_cancel();
    let ran = counter();
    let per_thread = scaled(2000, 500);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (ctx, ran) = (ctx.clone(), ran.clone());
            thread::spawn(move || {
                (0..per_thread).map(|_| ctx.after_func(count_into(&ran))).collect::<Vec<_>>()
            })
        })
        .collect();
    let registrations: Vec<AfterFunc> =
        threads.into_iter().flat_map(|t| t.join().unwrap()).collect();
    handle.cancel();
    assert_eq!(ran.load(Ordering::SeqCst), 4 * per_thread);
    assert!(registrations.iter().all(|r| !r.stop()));
}
