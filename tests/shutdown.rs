//! `Group::shutdown`: tasks that stop within the grace period are joined with their outputs;
//! tasks that ignore the cancellation are aborted at the drain deadline (never before it) and
//! counted; errors and panics during the drain are reported as `wait` reports them.
#![cfg(feature = "tokio")]

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ctx::{Context, Group, GroupError};

/// Generous: the point is "it does not hang", not how fast it is.
const NO_HANG: Duration = Duration::from_secs(10);

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(NO_HANG, future).await.expect("the shutdown hung")
}

/// Counts drops: an aborted task's future is dropped, and with it what it owns.
struct Dropped(Arc<AtomicUsize>);

impl Drop for Dropped {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A task that ignores its context: it only ever stops by being aborted.
async fn stubborn(guard: Dropped) -> Result<usize, String> {
    let _guard = guard;
    loop {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_stop_in_time_are_joined_with_their_outputs() {
    let mut group = Group::new(&Context::background());
    for n in 0..5usize {
        group.spawn(move |ctx| async move {
            ctx.done().await;
            tokio::time::sleep(Duration::from_millis(20)).await; // a short cleanup
            Ok::<_, String>(n * 10)
        });
    }
    let report = within(group.shutdown(NO_HANG)).await;
    assert!(report.is_clean(), "{report}");
    assert_eq!((report.tasks(), report.aborted(), report.grace()), (5, 0, NO_HANG));
    assert!(report.elapsed() >= Duration::from_millis(20), "{:?}", report.elapsed());
    assert!(report.elapsed() < NO_HANG);
    assert!(report.to_string().starts_with("all 5 tasks stopped in "), "{report}");
    assert_eq!(report.into_result().unwrap(), [0, 10, 20, 30, 40]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_that_ignore_cancellation_are_aborted_at_the_deadline_and_counted() {
    let grace = Duration::from_millis(200);
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group = Group::new(&Context::background());
    for n in 0..5usize {
        let guard = Dropped(dropped.clone());
        group.spawn(move |ctx| async move {
            if n % 2 == 1 {
                return stubborn(guard).await;
            }
            let _guard = guard;
            ctx.done().await;
            Ok(n)
        });
    }
    let report = within(group.shutdown(grace)).await;
    assert_eq!((report.tasks(), report.aborted()), (5, 2), "{report}");
    assert!(!report.is_clean());
    // Never before the deadline: the stubborn tasks had the whole grace period.
    assert!(report.elapsed() >= grace, "aborted after {:?}", report.elapsed());
    assert!(report.elapsed() < NO_HANG);
    assert_eq!(report.to_string(), "2 of 5 tasks aborted after 200ms");
    assert_eq!(dropped.load(Ordering::SeqCst), 5, "every task's future is gone");
    match report.into_result() {
        Err(err @ GroupError::Join(_)) => assert!(err.is_aborted()),
        other => panic!("expected the abort, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_during_the_drain_wins_over_aborts() {
    let dropped = Arc::new(AtomicUsize::new(0));
    let mut group = Group::new(&Context::background());
    let ctx = group.context().clone();
    let guard = Dropped(dropped.clone());
    group.spawn(move |_ctx| stubborn(guard));
    group.spawn(|ctx| async move {
        ctx.done().await;
        panic!("cleanup failed");
    });
    let report = within(group.shutdown(Duration::from_millis(100))).await;
    assert_eq!(report.aborted(), 1, "{report}");
    assert_eq!(dropped.load(Ordering::SeqCst), 1);
    // The group was cancelled by the shutdown before the panic: the first cause is kept.
    assert_eq!(ctx.cause().unwrap().to_string(), "context canceled");
    match report.into_result() {
        Err(GroupError::Join(err)) => {
            assert!(err.is_panic());
            let payload = err.into_panic();
            assert_eq!(payload.downcast_ref::<&str>(), Some(&"cleanup failed"));
        }
        other => panic!("expected the panic, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_error_during_the_drain_is_reported_as_wait_reports_it() {
    let mut group = Group::new(&Context::background());
    group.spawn(|ctx| async move {
        ctx.done().await;
        Ok(1)
    });
    group.spawn(|ctx| async move {
        ctx.done().await;
        Err("flush failed".to_string())
    });
    let report = within(group.shutdown(NO_HANG)).await;
    assert!(report.is_clean());
    assert!(matches!(report.result(), Err(GroupError::Task(err)) if err == "flush failed"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zero_grace_aborts_at_once_what_has_not_finished() {
    let mut group = Group::new(&Context::background());
    group.spawn(|_ctx| async { Ok::<_, String>(1) });
    group.spawn(|_ctx| std::future::pending());
    // Let the first one finish before the shutdown.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let started = Instant::now();
    let report = within(group.shutdown(Duration::ZERO)).await;
    assert!(started.elapsed() < NO_HANG);
    assert_eq!((report.tasks(), report.aborted()), (2, 1), "{report}");
    assert_eq!(report.to_string(), "1 of 2 tasks aborted after 0ns");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_cancels_with_the_parent_cause_kept() {
    let (parent, cancel_parent) = Context::background().with_cancel();
    let mut group = Group::new(&parent);
    let ctx = group.context().clone();
    group.spawn(|ctx| async move {
        ctx.done().await;
        Ok::<_, String>(())
    });
    cancel_parent.cancel_with_cause(std::io::Error::other("maintenance"));
    let report = within(group.shutdown(NO_HANG)).await;
    assert!(report.is_clean());
    assert_eq!(ctx.cause().unwrap().to_string(), "maintenance");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_line_reads_right_for_no_task_and_for_one() {
    let empty = Group::<(), String>::new(&Context::background());
    assert_eq!(within(empty.shutdown(NO_HANG)).await.to_string(), "no task to stop");
    let mut one = Group::new(&Context::background());
    one.spawn(|ctx| async move {
        ctx.done().await;
        Ok::<_, String>(())
    });
    let line = within(one.shutdown(NO_HANG)).await.to_string();
    assert!(line.starts_with("the 1 task stopped in "), "{line}");
    let mut stubborn_one = Group::new(&Context::background());
    stubborn_one.spawn(|_ctx| std::future::pending::<Result<(), String>>());
    let line = within(stubborn_one.shutdown(Duration::from_millis(10))).await.to_string();
    assert_eq!(line, "1 of 1 task aborted after 10ms");
}
