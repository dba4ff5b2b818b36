//! The `CancellationToken` bridges (feature `tokio-util`), both ways: a context drives a token
//! for every way it can finish; a token drives a context; neither direction leaves a callback,
//! a task or a registration behind (100,000 bridges with their children dropped leave no task
//! alive, counted with tokio's runtime metrics).
#![cfg(feature = "tokio-util")]

use std::time::{Duration, Instant};

use ctx::{Context, Error};
use tokio_util::sync::CancellationToken;

/// Generous: the point is "it does not hang", not how fast it is.
const NO_HANG: Duration = Duration::from_secs(10);

/// Waits (yielding to the runtime) until no task is alive but the test's own.
async fn until_no_task_is_alive() -> usize {
    let metrics = tokio::runtime::Handle::current().metrics();
    let started = Instant::now();
    while metrics.num_alive_tasks() > 0 {
        assert!(started.elapsed() < NO_HANG, "{} tasks still alive", metrics.num_alive_tasks());
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    metrics.num_alive_tasks()
}

#[test]
fn a_context_cancels_its_token_for_every_way_it_finishes() {
    let (ctx, handle) = Context::background().with_cancel();
    let token = ctx.to_cancellation_token();
    assert!(!token.is_cancelled());
    handle.cancel();
    assert!(token.is_cancelled(), "cancelled within the cancel");

    let (parent, cancel_parent) = Context::background().with_cancel();
    let (child, _child_handle) = parent.with_value(1u8).with_cancel();
    let token = child.to_cancellation_token();
    cancel_parent.cancel();
    assert!(token.is_cancelled(), "cancelled through an ancestor");

    let (ctx, _guard) = Context::background().with_timeout(Duration::from_millis(10));
    let token = ctx.to_cancellation_token();
    let started = Instant::now();
    while !token.is_cancelled() {
        assert!(started.elapsed() < NO_HANG, "the deadline did not cancel the token");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));

    assert!(ctx.to_cancellation_token().is_cancelled(), "of a done context: cancelled");
}

#[test]
fn cancelling_the_token_does_not_cancel_the_context() {
    let (ctx, _handle) = Context::background().with_cancel();
    ctx.to_cancellation_token().cancel();
    assert!(!ctx.is_done());
}

#[test]
fn a_never_done_context_gives_a_token_that_is_never_cancelled() {
    let (ctx, handle) = Context::background().with_cancel();
    let never_done = [
        Context::background(),
        Context::todo(),
        Context::background().with_value(3u8),
        ctx.without_cancel(),
    ];
    let tokens: Vec<_> = never_done.iter().map(Context::to_cancellation_token).collect();
    handle.cancel();
    assert!(tokens.iter().all(|token| !token.is_cancelled()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cancels_its_context() {
    let token = CancellationToken::new();
    let (parent, _parent_handle) = Context::background().with_cancel();
    let (ctx, _handle) = parent.with_cancellation_token(&token);
    let grandchild = ctx.with_value("request");
    assert!(!ctx.is_done());
    token.cancel();
    tokio::time::timeout(NO_HANG, grandchild.done()).await.expect("the token cancelled it");
    assert_eq!(ctx.err(), Some(Error::Canceled));
    assert_eq!(ctx.cause().unwrap().to_string(), "context canceled");
    assert!(!parent.is_done(), "the parent is not touched");
    until_no_task_is_alive().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_child_token_of_a_bridged_token_still_cancels_the_context() {
    let root = CancellationToken::new();
    let (ctx, _handle) = Context::background().with_cancellation_token(&root.child_token());
    root.cancel();
    tokio::time::timeout(NO_HANG, ctx.done()).await.expect("the root token cancelled it");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_context_is_also_done_by_its_parent_and_its_handle_and_the_task_ends() {
    let token = CancellationToken::new();
    let (parent, cancel_parent) = Context::background().with_cancel();
    let (by_parent, _h1) = parent.with_cancellation_token(&token);
    let (by_handle, h2) = Context::background().with_cancellation_token(&token);
    assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), 2);
    cancel_parent.cancel();
    h2.cancel();
    assert!(by_parent.is_done() && by_handle.is_done());
    until_no_task_is_alive().await;
    assert!(!token.is_cancelled(), "a context never cancels the token it watches");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_cancelled_already_or_a_done_parent_gives_a_done_child_and_no_task() {
    let token = CancellationToken::new();
    token.cancel();
    let (ctx, _handle) = Context::background().with_cancellation_token(&token);
    assert_eq!(ctx.err(), Some(Error::Canceled));
    let (parent, cancel_parent) = Context::background().with_cancel();
    cancel_parent.cancel_with_cause(std::io::Error::other("gone"));
    let (ctx, _handle) = parent.with_cancellation_token(&CancellationToken::new());
    assert_eq!(ctx.cause().unwrap().to_string(), "gone");
    assert_eq!(tokio::runtime::Handle::current().metrics().num_alive_tasks(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_dropped_children_leave_no_task_running() {
    let token = CancellationToken::new();
    let (parent, _parent_handle) = Context::background().with_cancel();
    let metrics = tokio::runtime::Handle::current().metrics();
    let mut peak = 0;
    for round in 0..100_000 {
        let (child, handle) = parent.with_cancellation_token(&token);
        if round % 1_000 == 0 {
            peak = peak.max(metrics.num_alive_tasks());
        }
        // Half of them keep a grandchild for a moment: the watcher stays until it is gone too.
        if round % 2 == 0 {
            let grandchild = child.with_value(round);
            drop((child, handle));
            assert!(!grandchild.is_done());
        }
    }
    assert!(peak >= 1, "a watcher runs while its child lives");
    until_no_task_is_alive().await;
    // That nothing is left registered on the parent either is measured in live heap bytes by
    // tests/edge_leaks.rs (a task count cannot see a callback).
    eprintln!("peak of {peak} watcher tasks alive at once; none left after the drops");
}

#[test]
#[should_panic(expected = "must be called inside a tokio runtime")]
fn outside_a_runtime_it_panics_with_a_clear_message() {
    let _ = Context::background().with_cancellation_token(&CancellationToken::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_bridges_in_a_round_trip() {
    // context → token → context: cancelling the first context reaches the last one.
    let (first, cancel_first) = Context::background().with_cancel();
    let token = first.to_cancellation_token();
    let (last, _handle) = Context::background().with_cancellation_token(&token);
    cancel_first.cancel();
    tokio::time::timeout(NO_HANG, last.done()).await.expect("reached the last context");
    // token → context → token.
    let source = CancellationToken::new();
    let (middle, _handle) = Context::background().with_cancellation_token(&source);
    let sink = middle.to_cancellation_token();
    source.cancel();
    tokio::time::timeout(NO_HANG, sink.cancelled()).await.expect("reached the last token");
    until_no_task_is_alive().await;
}

/// A child whose watcher task is dropped unfinished, because its runtime shut down, is
/// cancelled then, with a cause that says so: it is not left waiting for a token that nothing
/// watches any more (here the task never even ran: `block_on` returned first).
#[test]
fn a_child_whose_watcher_runtime_shuts_down_is_cancelled_then() {
    let token = CancellationToken::new();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    let (parent, _parent_handle) = Context::background().with_cancel();
    let (child, _handle) = runtime.block_on(async { parent.with_cancellation_token(&token) });
    assert!(!child.is_done());
    drop(runtime);
    assert!(child.wait_timeout(Duration::from_secs(2)), "left waiting for an unwatched token");
    assert_eq!(child.err(), Some(Error::Canceled));
    let cause = child.cause().unwrap();
    assert!(cause.downcast_ref::<ctx::TokenWatcherGone>().is_some(), "{cause}");
    assert_eq!(cause.to_string(), "the tokio runtime watching the cancellation token shut down");
    assert!(!parent.is_done() && !token.is_cancelled(), "neither side is touched");
}

/// A watcher that finished (here: the token was cancelled) does not cancel anything when its
/// runtime shuts down later.
#[test]
fn a_finished_watcher_leaves_its_cause_alone_at_runtime_shutdown() {
    let token = CancellationToken::new();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    let (child, _handle) = runtime.block_on(async {
        let (child, handle) = Context::background().with_cancellation_token(&token);
        token.cancel();
        tokio::time::timeout(NO_HANG, child.done()).await.expect("the token cancelled it");
        (child, handle)
    });
    drop(runtime);
    assert_eq!(child.cause().unwrap().to_string(), "context canceled");
}
