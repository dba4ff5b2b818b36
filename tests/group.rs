//! `Group` on tokio's multi-thread runtime: outputs in spawn order, the first error cancels the
//! others and is returned, panics are surfaced (and win over errors), every task is awaited, the
//! limit holds, and dropping the group cancels its context and aborts its tasks.
#![cfg(feature = "tokio")]

use std::fmt;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ctx::{Context, Group, GroupError, TaskFailed};
use tokio::sync::{Barrier, oneshot};

/// Generous: the point is "it does not hang", not how fast it is.
const NO_HANG: Duration = Duration::from_secs(10);

async fn within<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(NO_HANG, future).await.expect("the group hung")
}

#[derive(Debug, PartialEq)]
enum JobError {
    Bad(usize),
    Stopped(ctx::Error),
}

impl fmt::Display for JobError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JobError::Bad(id) => write!(f, "job {id} is bad"),
            JobError::Stopped(err) => write!(f, "stopped: {err}"),
        }
    }
}

impl std::error::Error for JobError {}

impl From<ctx::Error> for JobError {
    fn from(err: ctx::Error) -> JobError {
        JobError::Stopped(err)
    }
}

fn task_failed(ctx: &Context) -> TaskFailed {
    let cause = ctx.cause().expect("the group's context is done");
    cause.downcast_ref::<TaskFailed>().expect("the cause is a TaskFailed").clone()
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .expect("a string payload")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outputs_come_back_in_spawn_order() {
    let mut group = Group::new(&Context::background());
    for i in 0..8u64 {
        group.spawn(move |_ctx| async move {
            // Later tasks finish first, so completion order is the reverse of spawn order.
            tokio::time::sleep(Duration::from_millis(2 * (8 - i))).await;
            Ok::<_, JobError>(i * 10)
        });
    }
    assert_eq!(group.len(), 8);
    assert_eq!(within(group.wait()).await.unwrap(), vec![0, 10, 20, 30, 40, 50, 60, 70]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_group_waits_for_nothing_and_ends_cancelled() {
    let group: Group<(), JobError> = Group::new(&Context::background());
    assert!(group.is_empty());
    let ctx = group.context().clone();
    assert!(!ctx.is_done());
    assert_eq!(within(group.wait()).await.unwrap(), Vec::<()>::new());
    assert_eq!(ctx.err(), Some(ctx::Error::Canceled), "wait cancels the context, as Go's Wait");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_first_error_cancels_the_others_and_is_returned() {
    let mut group = Group::new(&Context::background());
    let ctx = group.context().clone();
    let saw_cancel = Arc::new(AtomicUsize::new(0));
    group.spawn(|_ctx| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        Err::<(), _>(JobError::Bad(0))
    });
    for _ in 1..=5 {
        let saw_cancel = saw_cancel.clone();
        group.spawn(move |ctx| async move {
            // Only the failure can end this wait: nothing else cancels the group.
            ctx.done().await;
            saw_cancel.fetch_add(1, Ordering::SeqCst);
            Err(JobError::Stopped(ctx.err().unwrap()))
        });
    }
    match within(group.wait()).await {
        Err(GroupError::Task(err)) => assert_eq!(err, JobError::Bad(0)),
        other => panic!("expected the first error, got {other:?}"),
    }
    assert_eq!(saw_cancel.load(Ordering::SeqCst), 5);
    assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    let failed = task_failed(&ctx);
    assert_eq!((failed.task(), failed.is_panic(), failed.message()), (0, false, "job 0 is bad"));
    assert_eq!(ctx.cause().unwrap().to_string(), "task 0 failed: job 0 is bad");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_returned_error_is_the_one_that_cancelled_the_group() {
    // Many tasks fail at about the same time on two threads: whichever wins, `wait` and the
    // cause must name the same task.
    for _round in 0..20 {
        let mut group = Group::new(&Context::background());
        let ctx = group.context().clone();
        for id in 0..16 {
            group.spawn(move |_ctx| async move { Err::<(), _>(JobError::Bad(id)) });
        }
        let Err(GroupError::Task(JobError::Bad(id))) = within(group.wait()).await else {
            panic!("every task failed")
        };
        assert_eq!(task_failed(&ctx).task(), id);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_waits_for_every_task_even_after_a_failure() {
    let mut group = Group::new(&Context::background());
    let finished = Arc::new(AtomicUsize::new(0));
    group.spawn(|_ctx| async { Err(JobError::Bad(0)) });
    for _ in 1..=3 {
        let finished = finished.clone();
        group.spawn(move |_ctx| async move {
            // Ignores the cancellation on purpose: `wait` must still wait for it.
            tokio::time::sleep(Duration::from_millis(50)).await;
            finished.fetch_add(1, Ordering::SeqCst);
            Ok(())
        });
    }
    assert!(matches!(within(group.wait()).await, Err(GroupError::Task(JobError::Bad(0)))));
    assert_eq!(finished.load(Ordering::SeqCst), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_is_surfaced_and_cancels_the_group() {
    let mut group = Group::new(&Context::background());
    let ctx = group.context().clone();
    group.spawn(|_ctx| async {
        tokio::time::sleep(Duration::from_millis(10)).await;
        if true {
            panic!("boom");
        }
        Ok::<u32, JobError>(0)
    });
    group.spawn(|ctx| async move {
        ctx.done().await; // only the panic can cancel the group
        Ok(1)
    });
    let err = match within(group.wait()).await {
        Err(GroupError::Join(err)) => err,
        other => panic!("expected the panic, got {other:?}"),
    };
    assert!(err.is_panic());
    assert_eq!(panic_text(&*err.into_panic()), "boom");
    let failed = task_failed(&ctx);
    assert_eq!((failed.task(), failed.is_panic(), failed.message()), (0, true, "boom"));
    assert_eq!(ctx.cause().unwrap().to_string(), "task 0 panicked: boom");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_takes_precedence_over_an_earlier_error() {
    let mut group = Group::new(&Context::background());
    let ctx = group.context().clone();
    group.spawn(|_ctx| async { Err::<(), _>(JobError::Bad(0)) });
    group.spawn(|ctx| async move {
        ctx.done().await; // after the error above
        panic!("a bug found while stopping")
    });
    match within(group.wait()).await {
        Err(GroupError::Join(err)) => {
            assert_eq!(panic_text(&*err.into_panic()), "a bug found while stopping")
        }
        other => panic!("a panic must never be hidden behind an error, got {other:?}"),
    }
    assert_eq!(task_failed(&ctx).task(), 0, "the cause is still the first failure");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_in_the_closure_itself_is_caught_too() {
    let mut group = Group::new(&Context::background());
    let ctx = group.context().clone();
    group.spawn(|_ctx| {
        if true {
            panic!("the closure panicked");
        }
        std::future::ready(Ok::<(), JobError>(()))
    });
    assert!(matches!(within(group.wait()).await, Err(GroupError::Join(err)) if err.is_panic()));
    assert_eq!(task_failed(&ctx).message(), "the closure panicked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_panic_returns_the_error_or_resumes_the_original_panic() {
    let mut group = Group::new(&Context::background());
    group.spawn(|_ctx| async { Err::<(), _>(JobError::Bad(3)) });
    let err = within(group.wait()).await.unwrap_err();
    assert_eq!(err.to_string(), "job 3 is bad");
    assert_eq!(err.resume_panic(), JobError::Bad(3));

    let mut group = Group::new(&Context::background());
    group.spawn(|_ctx| async {
        if true {
            std::panic::panic_any("original payload");
        }
        Ok::<(), JobError>(())
    });
    let err = within(group.wait()).await.unwrap_err();
    let payload = std::panic::catch_unwind(AssertUnwindSafe(|| err.resume_panic())).unwrap_err();
    assert_eq!(panic_text(&*payload), "original payload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_limit_caps_how_many_tasks_run_at_once() {
    const LIMIT: usize = 3;
    let mut group = Group::with_limit(&Context::background(), LIMIT);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    // A barrier of LIMIT parties: the limit must let LIMIT tasks in together (or this hangs), and
    // any task beyond the limit would push `most` above it.
    let barrier = Arc::new(Barrier::new(LIMIT));
    for i in 0..10 * LIMIT {
        let (running, most, barrier) = (running.clone(), most.clone(), barrier.clone());
        group.spawn(move |_ctx| async move {
            let now = running.fetch_add(1, Ordering::SeqCst) + 1;
            most.fetch_max(now, Ordering::SeqCst);
            barrier.wait().await;
            tokio::time::sleep(Duration::from_millis(1)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, JobError>(i)
        });
    }
    let outputs = within(group.wait()).await.unwrap();
    assert_eq!(outputs, (0..10 * LIMIT).collect::<Vec<_>>());
    assert_eq!(most.load(Ordering::SeqCst), LIMIT);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_of_one_runs_tasks_one_at_a_time() {
    let mut group = Group::with_limit(&Context::background(), 1);
    let running = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    for _ in 0..10 {
        let (running, most) = (running.clone(), most.clone());
        group.spawn(move |_ctx| async move {
            most.fetch_max(running.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(2)).await;
            running.fetch_sub(1, Ordering::SeqCst);
            Ok::<_, JobError>(())
        });
    }
    within(group.wait()).await.unwrap();
    assert_eq!(most.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_limit_every_task_runs_at_once() {
    for mut group in
        [Group::new(&Context::background()), Group::with_limit(&Context::background(), usize::MAX)]
    {
        const TASKS: usize = 32;
        // Hangs unless all TASKS are running together.
        let barrier = Arc::new(Barrier::new(TASKS));
        for _ in 0..TASKS {
            let barrier = barrier.clone();
            group.spawn(move |_ctx| async move {
                barrier.wait().await;
                Ok::<_, JobError>(())
            });
        }
        assert_eq!(within(group.wait()).await.unwrap().len(), TASKS);
    }
}

#[test]
#[should_panic(expected = "the limit must be at least 1")]
fn a_limit_of_zero_panics() {
    let _group: Group<(), JobError> = Group::with_limit(&Context::background(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_group_cancels_its_context_and_aborts_its_tasks() {
    let mut group = Group::new(&Context::background());
    let ctx = group.context().clone();
    let (started_tx, started_rx) = oneshot::channel::<()>();
    let (alive_tx, alive_rx) = oneshot::channel::<()>();
    group.spawn(move |_ctx| async move {
        let _alive = alive_tx; // dropped only when the task is
        started_tx.send(()).unwrap();
        std::future::pending::<()>().await; // ignores the context: only an abort stops it
        Ok::<_, JobError>(())
    });
    within(started_rx).await.unwrap();
    drop(group);
    assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
    assert!(ctx.cause().unwrap().is::<ctx::Error>(), "a plain cancel, not a task failure");
    assert!(within(alive_rx).await.is_err(), "the task was aborted, dropping its sender");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_wait_future_drops_the_group() {
    let mut group = Group::new(&Context::background());
    let ctx = group.context().clone();
    let (alive_tx, alive_rx) = oneshot::channel::<()>();
    group.spawn(move |_ctx| async move {
        let _alive = alive_tx;
        std::future::pending::<()>().await;
        Ok::<_, JobError>(())
    });
    let (outer, stop) = Context::background().with_cancel();
    stop.cancel();
    assert_eq!(outer.run(group.wait()).await.unwrap_err(), ctx::Error::Canceled);
    assert!(ctx.is_done());
    assert!(within(alive_rx).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_lets_tasks_stop_by_themselves() {
    let mut group = Group::new(&Context::background());
    for _ in 0..3 {
        group.spawn(|ctx| async move {
            ctx.done().await;
            Ok::<_, JobError>(ctx.err())
        });
    }
    group.cancel();
    group.cancel(); // idempotent
    assert_eq!(within(group.wait()).await.unwrap(), vec![Some(ctx::Error::Canceled); 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_the_parent_reaches_the_tasks() {
    let (parent, stop) = Context::background().with_timeout(Duration::from_secs(3600));
    let mut group = Group::new(&parent);
    let ctx = group.context().clone();
    for _ in 0..4 {
        group.spawn(|ctx| async move {
            ctx.run(std::future::pending::<()>()).await?;
            Ok::<_, JobError>(())
        });
    }
    tokio::time::sleep(Duration::from_millis(5)).await;
    stop.cancel();
    match within(group.wait()).await {
        Err(GroupError::Task(err)) => assert_eq!(err, JobError::Stopped(ctx::Error::Canceled)),
        other => panic!("expected the tasks' Stopped error, got {other:?}"),
    }
    // The parent's cancel came first, so it is the cause, not a TaskFailed.
    assert!(ctx.cause().unwrap().is::<ctx::Error>());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tasks_spawned_into_a_done_group_still_run() {
    let (parent, stop) = Context::background().with_cancel();
    stop.cancel();
    let mut group = Group::with_limit(&parent, 2);
    for _ in 0..5 {
        group.spawn(|ctx| async move { Ok::<_, JobError>(ctx.is_done()) });
    }
    assert_eq!(within(group.wait()).await.unwrap(), vec![true; 5]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_error_is_transparent() {
    use std::error::Error as _;

    #[derive(Debug)]
    struct Outer(std::io::Error);
    impl fmt::Display for Outer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("outer")
        }
    }
    impl std::error::Error for Outer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    let mut group = Group::new(&Context::background());
    group.spawn(|_ctx| async { Err::<(), _>(Outer(std::io::Error::other("inner"))) });
    let err = within(group.wait()).await.unwrap_err();
    assert_eq!(err.to_string(), "outer");
    assert_eq!(err.source().unwrap().to_string(), "inner");
}

#[test]
fn spawning_outside_a_runtime_panics_and_leaves_the_group_usable() {
    let mut group = Group::new(&Context::background());
    let outside = std::panic::catch_unwind(AssertUnwindSafe(|| {
        group.spawn(|_ctx| async { Ok::<_, JobError>("never runs") });
    }));
    assert!(outside.is_err(), "tokio's spawn panics without a runtime");
    assert!(group.is_empty());

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let outputs = runtime.block_on(async move {
        group.spawn(|_ctx| async { Ok::<_, JobError>("runs") });
        within(group.wait()).await
    });
    assert_eq!(outputs.unwrap(), vec!["runs"]);
}
