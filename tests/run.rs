//! `Context::run` on tokio's multi-thread runtime: the future's output when it finishes first,
//! the context's error (and the future dropped) when cancellation wins, and no poll at all when
//! the context is already done.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::{Duration, Instant};

use ctx::{Context, Error};

/// Generous: the point is "it does not hang", not how fast it is.
const NO_HANG: Duration = Duration::from_secs(10);

/// A future that never completes, records that it was polled, and records its drop.
struct Probe {
    polled: Arc<AtomicBool>,
    dropped: Arc<AtomicBool>,
}

impl Probe {
    fn new() -> (Probe, Arc<AtomicBool>, Arc<AtomicBool>) {
        let polled = Arc::new(AtomicBool::new(false));
        let dropped = Arc::new(AtomicBool::new(false));
        (Probe { polled: polled.clone(), dropped: dropped.clone() }, polled, dropped)
    }
}

impl Future for Probe {
    type Output = u32;
    fn poll(self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<u32> {
        self.polled.store(true, Ordering::SeqCst);
        Poll::Pending
    }
}

impl Drop for Probe {
    fn drop(&mut self) {
        self.dropped.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn returns_the_output_when_the_future_finishes_first() {
    let (ctx, _handle) = Context::background().with_cancel();
    let out = ctx
        .run(async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            7
        })
        .await;
    assert_eq!(out, Ok(7));
    assert!(!ctx.is_done());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_to_completion_on_a_context_that_is_never_done() {
    let out = Context::background().run(tokio::time::sleep(Duration::from_millis(5))).await;
    assert_eq!(out, Ok(()));
    let cleanup = Context::background().with_cancel().0.without_cancel();
    assert_eq!(cleanup.run(async { "done" }).await, Ok("done"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_mid_future_returns_err_and_drops_the_future() {
    let (ctx, handle) = Context::background().with_cancel();
    let (probe, polled, dropped) = Probe::new();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        handle.cancel_with_cause(std::io::Error::other("client went away"));
    });

    let started = Instant::now();
    let out = tokio::time::timeout(NO_HANG, ctx.run(probe)).await.expect("run hung");
    assert_eq!(out, Err(Error::Canceled));
    assert!(started.elapsed() < NO_HANG);
    assert!(polled.load(Ordering::SeqCst), "the future was polled while the context was live");
    assert!(dropped.load(Ordering::SeqCst), "run returned without dropping the future");
    assert_eq!(ctx.cause().unwrap().to_string(), "client went away");
    canceller.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadline_mid_future_returns_deadline_exceeded() {
    let (ctx, _handle) = Context::background().with_timeout(Duration::from_millis(30));
    let out = tokio::time::timeout(NO_HANG, ctx.run(tokio::time::sleep(Duration::from_secs(3600))))
        .await
        .expect("run hung");
    assert_eq!(out, Err(Error::DeadlineExceeded));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_already_done_context_never_polls_the_future() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel();
    let (probe, polled, dropped) = Probe::new();
    assert_eq!(ctx.run(probe).await, Err(Error::Canceled));
    assert!(!polled.load(Ordering::SeqCst), "a done context must not poll the future");
    assert!(dropped.load(Ordering::SeqCst));

    let (expired, _handle) = Context::background().with_timeout(Duration::ZERO);
    let (probe, polled, _dropped) = Probe::new();
    assert_eq!(expired.run(probe).await, Err(Error::DeadlineExceeded));
    assert!(!polled.load(Ordering::SeqCst));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_parent_wakes_runs_on_other_threads() {
    const TASKS: usize = 64;
    let (parent, handle) = Context::background().with_cancel();
    let started = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let (child, _) = parent.with_cancel();
        let started = started.clone();
        tasks.push(tokio::spawn(async move {
            child
                .run(async {
                    started.fetch_add(1, Ordering::SeqCst);
                    std::future::pending::<()>().await
                })
                .await
        }));
    }
    // Every future is suspended inside `run` before the cancel, so each must be woken by it.
    let deadline = Instant::now() + NO_HANG;
    while started.load(Ordering::SeqCst) < TASKS {
        assert!(Instant::now() < deadline, "tasks did not start");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    handle.cancel();
    for task in tasks {
        let out = tokio::time::timeout(NO_HANG, task).await.expect("a run was never woken");
        assert_eq!(out.unwrap(), Err(Error::Canceled));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_future_leaves_the_context_untouched() {
    let (ctx, handle) = Context::background().with_cancel();
    let out =
        tokio::time::timeout(Duration::from_millis(10), ctx.run(std::future::pending::<()>()))
            .await;
    assert!(out.is_err(), "the pending future cannot finish");
    assert!(!ctx.is_done());
    handle.cancel();
    assert_eq!(ctx.run(async { 1 }).await, Err(Error::Canceled));
}

/// Pending on its first poll, ready on every later one.
#[derive(Default)]
struct ReadyOnSecondPoll {
    polls: usize,
}

impl Future for ReadyOnSecondPoll {
    type Output = usize;
    fn poll(mut self: Pin<&mut Self>, _cx: &mut TaskContext<'_>) -> Poll<usize> {
        self.polls += 1;
        if self.polls == 1 { Poll::Pending } else { Poll::Ready(self.polls) }
    }
}

fn poll_once<F: Future>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut TaskContext::from_waker(std::task::Waker::noop()))
}

/// Completion wins a tie: once the future has been polled, a result that is ready in the same
/// poll as the cancel is returned, not thrown away (tokio-util's `run_until_cancelled` does the
/// same). Only a context done before the first poll skips the future.
#[test]
fn a_future_ready_in_the_poll_after_the_cancel_returns_its_output() {
    let (ctx, handle) = Context::background().with_cancel();
    let mut run = std::pin::pin!(ctx.run(ReadyOnSecondPoll::default()));
    assert_eq!(poll_once(run.as_mut()), Poll::Pending);
    handle.cancel();
    assert_eq!(poll_once(run.as_mut()), Poll::Ready(Ok(2)));
}

#[test]
fn a_future_still_pending_after_the_cancel_gives_the_error() {
    let (ctx, handle) = Context::background().with_cancel();
    let (probe, polled, dropped) = Probe::new();
    let mut run = std::pin::pin!(ctx.run(probe));
    assert_eq!(poll_once(run.as_mut()), Poll::Pending);
    polled.store(false, Ordering::SeqCst);
    handle.cancel_with_cause(std::io::Error::other("gone"));
    assert_eq!(poll_once(run.as_mut()), Poll::Ready(Err(Error::Canceled)));
    assert!(polled.load(Ordering::SeqCst), "the future is polled first, then the context");
    assert!(dropped.load(Ordering::SeqCst), "cancellation won: the future is dropped");
}

#[test]
fn a_future_that_cancels_its_own_context_and_finishes_returns_its_output() {
    let (ctx, handle) = Context::background().with_cancel();
    let mut run = std::pin::pin!(ctx.run(async move {
        handle.cancel();
        "finished anyway"
    }));
    assert_eq!(poll_once(run.as_mut()), Poll::Ready(Ok("finished anyway")));
}
