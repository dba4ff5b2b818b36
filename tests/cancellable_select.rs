//! `select!` and `join!` in a `#[cancellable]` async fn: a `tokio::select!` (or `futures::select!`)
//! in the function's own body is raced as a whole while its handlers stay in the function, so
//! `biased;`, preconditions, refutable patterns and `else`/`default`/`complete` keep their
//! meaning, and `break`, `continue`, `return` and `?` in a handler still leave the function's own
//! loops. `join!`/`try_join!` are raced as a whole. A select with its own branch on `.done()`
//! (Go's style) is left as written; awaits after it are still raced, and `on_cancel` may await.
//!
//! Each shape: its normal result, a done context before the call, and a cancel mid-way that
//! stops it promptly (a generous bound: an un-raced select would wait a minute).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ctx::{Context, Error, cancellable};
use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio::time::{interval, sleep};

mod support;
use support::{done, live};

const FOREVER: Duration = Duration::from_secs(60);
const PROMPTLY: Duration = Duration::from_millis(500);

/// Runs `call` with a context cancelled after 20 ms; returns its result and how long it took.
async fn cancelled_mid_way<T, F: Future<Output = T>>(
    call: impl FnOnce(Context) -> F,
) -> (T, Duration) {
    let (ctx, cancel) = live();
    let started = Instant::now();
    tokio::spawn(async move {
        sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let value = call(ctx).await;
    (value, started.elapsed())
}

// ---------------------------------------------------------------------------------------------
// The loop: no branch fires, and the select still stops.

#[cancellable]
async fn serve(
    ctx: &Context,
    rx: &mut mpsc::Receiver<u32>,
    ticks: &AtomicU32,
) -> Result<u32, Error> {
    let mut tick = interval(FOREVER);
    let mut total = 0;
    loop {
        tokio::select! {
            message = rx.recv() => match message {
                Some(n) => total += n,
                None => break,
            },
            _ = tick.tick() => {
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    Ok(total)
}

#[tokio::test]
async fn a_select_loop_ends_normally_when_its_channel_closes() {
    let (tx, mut rx) = mpsc::channel(4);
    for n in [1, 2, 3] {
        tx.send(n).await.unwrap();
    }
    drop(tx);
    let ticks = AtomicU32::new(0);
    assert_eq!(serve(&Context::background(), &mut rx, &ticks).await, Ok(6));
}

#[tokio::test]
async fn a_select_loop_with_no_branch_firing_stops_at_a_cancel() {
    let (_tx, mut rx) = mpsc::channel::<u32>(4);
    let ticks = AtomicU32::new(0);
    assert_eq!(serve(&done(), &mut rx, &ticks).await, Err(Error::Canceled));
    assert_eq!(ticks.load(Ordering::SeqCst), 0);

    let (result, took) =
        cancelled_mid_way(|ctx| async move { serve(&ctx, &mut rx, &ticks).await }).await;
    assert_eq!(result, Err(Error::Canceled));
    assert!(took < PROMPTLY, "stopped after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// `else` still runs when every branch is disabled; `biased;` keeps the written order;
// preconditions and `mut` bindings work; handlers keep their control flow and are rewritten.

#[cancellable]
async fn drain(
    ctx: Context,
    mut a: mpsc::Receiver<u32>,
    mut b: mpsc::Receiver<u32>,
    order: &mut Vec<u32>,
) -> Option<u32> {
    let mut b_open = true;
    loop {
        tokio::select! {
            biased;
            Some(mut n) = a.recv() => {
                n *= 10;
                order.push(n);
            }
            got = b.recv(), if b_open => match got {
                Some(0) => continue,
                Some(n) => order.push(n),
                None => b_open = false,
            },
            else => break,
        }
    }
    Some(order.iter().sum())
}

#[tokio::test]
async fn else_biased_preconditions_and_handlers_keep_their_meaning() {
    let (a_tx, a) = mpsc::channel(4);
    let (b_tx, b) = mpsc::channel(4);
    a_tx.send(1).await.unwrap();
    a_tx.send(2).await.unwrap();
    b_tx.send(0).await.unwrap();
    b_tx.send(5).await.unwrap();
    drop((a_tx, b_tx));
    let mut order = Vec::new();
    // `biased;`: both channels are ready, `a` is written first and drains first; then `b`, its
    // `continue` skipping the 0; then both are disabled (a refutable pattern, a precondition),
    // and `else` breaks the loop.
    assert_eq!(drain(Context::background(), a, b, &mut order).await, Some(35));
    assert_eq!(order, [10, 20, 5]);

    let (_a_tx, a) = mpsc::channel::<u32>(4);
    let (_b_tx, b) = mpsc::channel::<u32>(4);
    let mut order = Vec::new();
    assert_eq!(drain(done(), a, b, &mut order).await, None);
    let (_a_tx, a) = mpsc::channel::<u32>(4);
    let (_b_tx, b) = mpsc::channel::<u32>(4);
    let (result, took) =
        cancelled_mid_way(|ctx| async move { drain(ctx, a, b, &mut order).await }).await;
    assert_eq!(result, None);
    assert!(took < PROMPTLY, "stopped after {took:?}");
}

#[cancellable]
async fn handler_awaits(ctx: &Context, started: &AtomicBool) -> Option<&'static str> {
    tokio::select! {
        _ = sleep(Duration::from_millis(1)) => {
            started.store(true, Ordering::SeqCst);
            // Raced: the handler is the function's own code.
            sleep(FOREVER).await;
            Some("slept")
        }
    }
}

#[tokio::test]
async fn an_await_in_a_handler_is_raced() {
    let started = AtomicBool::new(false);
    let (result, took) =
        cancelled_mid_way(|ctx| async move { handler_awaits(&ctx, &started).await }).await;
    assert_eq!(result, None);
    assert!(took < PROMPTLY, "stopped after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// Go's style: a select with its own `.done()` branch is left as written. Awaits after it are
// still raced, so a cleanup await is marked; `on_cancel` may await too.

#[cancellable(on_cancel = {
    flushed.fetch_add(1, Ordering::SeqCst);
    sleep(Duration::from_millis(1)).await;
    Some(0)
})]
async fn go_style(
    ctx: &Context,
    stopped_by_arm: &AtomicBool,
    cleaned: &AtomicBool,
    flushed: &AtomicU32,
) -> Option<u32> {
    loop {
        tokio::select! {
            _ = ctx.done() => {
                stopped_by_arm.store(true, Ordering::SeqCst);
                break;
            }
            _ = sleep(FOREVER) => {}
        }
    }
    #[not_cancellable]
    sleep(Duration::from_millis(1)).await;
    cleaned.store(true, Ordering::SeqCst);
    // Raced, and the context is done: the function leaves here, through `on_cancel`.
    sleep(Duration::from_millis(1)).await;
    Some(1)
}

#[tokio::test]
async fn a_go_style_done_branch_is_kept_and_on_cancel_may_await() {
    let (arm, cleaned, flushed) =
        (AtomicBool::new(false), AtomicBool::new(false), AtomicU32::new(0));
    let (result, took) = cancelled_mid_way(|ctx| {
        let (arm, cleaned, flushed) = (&arm, &cleaned, &flushed);
        async move { go_style(&ctx, arm, cleaned, flushed).await }
    })
    .await;
    assert!(took < PROMPTLY, "stopped after {took:?}");
    assert!(arm.load(Ordering::SeqCst), "the function's own done branch ran");
    assert!(cleaned.load(Ordering::SeqCst), "the marked cleanup ran");
    assert_eq!(result, Some(0), "the next raced await stopped it, through on_cancel");
    assert_eq!(flushed.load(Ordering::SeqCst), 1);
}

/// `futures::select!` needs fused futures, so its Go-style branch is `ctx.done().fuse()`: left
/// as written too, so that its own arm runs even when the context is already done when the
/// select starts (a raced select would leave through `on_cancel` without polling it).
#[cancellable(on_cancel = "on_cancel")]
async fn go_style_fused(
    ctx: &Context,
    cancel_first: Option<&ctx::CancelHandle>,
    wait: Duration,
) -> &'static str {
    if let Some(cancel) = cancel_first {
        cancel.cancel();
    }
    futures::select! {
        _ = ctx.done().fuse() => "its own arm",
        _ = Box::pin(sleep(wait)).fuse() => "slept",
    }
}

#[tokio::test]
async fn a_fused_go_style_done_branch_is_kept() {
    let short = Duration::from_millis(1);
    assert_eq!(go_style_fused(&Context::background(), None, short).await, "slept");
    assert_eq!(go_style_fused(&done(), None, short).await, "on_cancel");
    let (ctx, cancel) = live();
    assert_eq!(go_style_fused(&ctx, Some(&cancel), FOREVER).await, "its own arm");
    let (result, took) =
        cancelled_mid_way(|ctx| async move { go_style_fused(&ctx, None, FOREVER).await }).await;
    assert_eq!(result, "its own arm");
    assert!(took < PROMPTLY, "stopped after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// `join!` and `try_join!`, tokio's and futures'.

#[cancellable]
async fn both(ctx: &Context, a: Duration, b: Duration) -> Option<(u32, u32)> {
    let pair = tokio::join!(
        async {
            sleep(a).await;
            1
        },
        async {
            sleep(b).await;
            2
        }
    );
    let (x, y) = futures::join!(async { pair.0 * 10 }, async { pair.1 * 10 });
    Some((x, y))
}

#[cancellable]
async fn both_or_error(ctx: &Context, wait: Duration) -> Result<u32, Error> {
    let (a, b) = tokio::try_join!(async { Ok::<_, Error>(1) }, async {
        sleep(wait).await;
        Ok(2)
    })?;
    let (c, d) = futures::try_join!(async { Ok::<_, Error>(a) }, async { Ok(b) })?;
    Ok(c + d)
}

#[tokio::test]
async fn join_and_try_join_are_raced_as_a_whole() {
    let short = Duration::from_millis(1);
    assert_eq!(both(&Context::background(), short, short).await, Some((10, 20)));
    assert_eq!(both_or_error(&Context::background(), short).await, Ok(3));
    assert_eq!(both(&done(), short, short).await, None);
    assert_eq!(both_or_error(&done(), short).await, Err(Error::Canceled));

    let (result, took) =
        cancelled_mid_way(|ctx| async move { both(&ctx, short, FOREVER).await }).await;
    assert_eq!(result, None);
    assert!(took < PROMPTLY, "join! stopped after {took:?}");
    let (result, took) =
        cancelled_mid_way(|ctx| async move { both_or_error(&ctx, FOREVER).await }).await;
    assert_eq!(result, Err(Error::Canceled));
    assert!(took < PROMPTLY, "try_join! stopped after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// `?` in a `join!` argument and in a select branch's future or precondition: the macros evaluate
// those in the function, so the `?` leaves the function, with or without the attribute.

#[derive(Debug, PartialEq)]
enum Failure {
    NotANumber,
    Stopped(Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Failure {
        Failure::Stopped(err)
    }
}

fn number(text: &str) -> Result<u32, Failure> {
    text.parse().map_err(|_| Failure::NotANumber)
}

async fn fetch(n: u32, wait: Duration) -> u32 {
    sleep(wait).await;
    n
}

#[cancellable]
async fn sum_of(ctx: &Context, a: &str, b: &str, wait: Duration) -> Result<u32, Failure> {
    let (x, y) = tokio::join!(biased; fetch(number(a)?, wait), fetch(number(b)?, Duration::ZERO));
    let z = tokio::select! {
        z = fetch(number(a)? + number(b)?, wait), if number(b)? > 0 => z,
        else => 0,
    };
    // Not `Unpin`, and not a path: `futures::select!` still pins it in place.
    let w = futures::select! { w = fetch(x * 10, Duration::ZERO).fuse() => w };
    Ok(x + y + z + w)
}

#[tokio::test]
async fn a_question_mark_in_join_and_select_arguments_leaves_the_function() {
    let short = Duration::from_millis(1);
    let background = Context::background();
    assert_eq!(sum_of(&background, "1", "2", short).await, Ok(1 + 2 + 3 + 10));
    assert_eq!(sum_of(&background, "x", "2", FOREVER).await, Err(Failure::NotANumber));
    assert_eq!(sum_of(&background, "1", "x", FOREVER).await, Err(Failure::NotANumber));
    assert_eq!(sum_of(&background, "1", "0", short).await, Ok(1 + 10));
    assert_eq!(sum_of(&done(), "1", "2", short).await, Err(Failure::Stopped(Error::Canceled)));

    let (result, took) =
        cancelled_mid_way(|ctx| async move { sum_of(&ctx, "1", "2", FOREVER).await }).await;
    assert_eq!(result, Err(Failure::Stopped(Error::Canceled)));
    assert!(took < PROMPTLY, "stopped after {took:?}");
}

// ---------------------------------------------------------------------------------------------
// `futures::select!` with `default` and `complete`, and `select_biased!`.

#[cancellable]
async fn futures_select(ctx: &Context, wait: Duration, polls: &AtomicU32) -> Option<u32> {
    let mut ready = futures::future::ready(5).fuse();
    let mut slow = Box::pin(sleep(wait).fuse());
    let mut total = 0;
    loop {
        futures::select! {
            n = ready => total += n,
            () = slow => total += 100,
            default => {
                polls.fetch_add(1, Ordering::SeqCst);
                sleep(Duration::from_millis(1)).await;
            }
            complete => break,
        }
    }
    futures::select_biased! {
        n = futures::future::ready(1).fuse() => total += n,
        n = futures::future::ready(2).fuse() => total += n,
    }
    Some(total)
}

#[tokio::test]
async fn futures_select_keeps_default_and_complete() {
    let polls = Arc::new(AtomicU32::new(0));
    assert_eq!(
        futures_select(&Context::background(), Duration::from_millis(5), &polls).await,
        Some(106)
    );
    assert!(polls.load(Ordering::SeqCst) > 0, "default ran while nothing was ready");
    assert_eq!(futures_select(&done(), Duration::from_millis(5), &polls).await, None);
    let polls = AtomicU32::new(0);
    let (result, took) =
        cancelled_mid_way(|ctx| async move { futures_select(&ctx, FOREVER, &polls).await }).await;
    assert_eq!(result, None);
    assert!(took < PROMPTLY, "stopped after {took:?}");
}
