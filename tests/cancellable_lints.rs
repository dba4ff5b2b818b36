//! The expansions raise no lint the user did not cause: every shape `#[cancellable]` rewrites,
//! compiled under `#![deny(warnings)]` here and under clippy (`cargo clippy --all-targets -- -D
//! warnings`, with the pedantic group denied too). Each function also runs once, so the test
//! is not only a compile check: with a live context each returns its normal value.

#![deny(warnings, clippy::all, clippy::pedantic)]

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use ctx::{Context, Error, cancellable};
use futures::FutureExt as _;
use futures::future::BoxFuture;

#[cancellable]
fn loops(ctx: &Context, queue: &mut Vec<u32>, rows: &[Vec<u32>]) -> Option<u32> {
    let mut sum = 0;
    while let Some(job) = queue.pop() {
        sum += job;
    }
    'rows: for row in rows {
        for cell in row {
            if *cell == 0 {
                continue 'rows;
            }
            sum += cell;
        }
    }
    let first = loop {
        if sum > 10 {
            break sum;
        }
        sum += 1;
    };
    Some(first)
}

#[cancellable]
fn unit(ctx: &Context, naps: u32) {
    use std::thread::sleep;
    for _ in 0..naps {
        sleep(Duration::from_millis(1));
    }
}

#[cancellable(on_cancel = std::process::abort())]
fn never(ctx: &mut Context) -> ! {
    loop {
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[cancellable]
fn evens(ctx: &Context, up_to: u32) -> Option<impl Iterator<Item = u32>> {
    Some((0..up_to).filter(|n| n % 2 == 0))
}

#[cancellable]
async fn awaits(ctx: &Context, choose: bool) -> Result<u32, Error> {
    let mut fut = std::future::ready(1);
    let by_ref = (&mut fut).await;
    let boxed = Box::new(std::future::ready(2));
    let unboxed = (*boxed).await;
    let chosen = (if choose { std::future::ready(3) } else { std::future::ready(4) }).await;
    let (first, second) = tokio::join!(async { 1 }, async { 2 });
    let selected = tokio::select! {
        biased;
        value = std::future::ready(5) => value,
        else => 0,
    };
    Ok(by_ref + unboxed + chosen + first + second + selected)
}

/// Parentheses around a `join!` argument, a select branch's future and its precondition, which
/// the rewrite binds with `let`s: no `unused_parens` from it.
#[cancellable]
async fn parenthesized_arguments(ctx: &Context, ready: bool) -> Option<u32> {
    let mut first = Box::pin(async { 1 });
    let (first, second) = tokio::join!((&mut first), (async { 2 }));
    let selected = tokio::select! {
        value = (async { 3 }), if (ready && first > 0) => value,
        () = (tokio::time::sleep(Duration::from_secs(60))) => 0,
    };
    Some(first + second + selected)
}

#[cancellable(on_cancel = Err(Error::Canceled))]
fn boxed_future(ctx: &Context, value: u32) -> BoxFuture<'static, Result<u32, Error>> {
    async move { Ok(value) }.boxed()
}

#[cancellable]
fn pinned(ctx: &Context, value: u32) -> Pin<Box<dyn Future<Output = Option<u32>> + Send>> {
    Box::pin(async move { Some(value) })
}

#[tracing::instrument(err, skip_all)]
#[cancellable]
fn instrumented(ctx: &Context, rounds: u32) -> Result<u32, Error> {
    let mut n = 0;
    while n < rounds {
        n += 1;
    }
    Ok(n)
}

#[tracing::instrument(skip_all)]
#[cancellable]
async fn instrumented_async(ctx: &Context) -> Option<u32> {
    tokio::task::yield_now().await;
    Some(1)
}

#[tokio::test]
async fn every_shape_runs_to_its_normal_value() {
    let ctx = Context::background();
    assert_eq!(loops(&ctx, &mut vec![1, 2], &[vec![3, 0, 9], vec![4]]), Some(11));
    unit(&ctx, 2);
    assert_eq!(evens(&ctx, 5).map(Iterator::count), Some(3));
    assert_eq!(awaits(&ctx, true).await, Ok(14));
    assert_eq!(parenthesized_arguments(&ctx, true).await, Some(6));
    assert_eq!(boxed_future(&ctx, 7).await, Ok(7));
    assert_eq!(pinned(&ctx, 8).await, Some(8));
    assert_eq!(instrumented(&ctx, 3), Ok(3));
    assert_eq!(instrumented_async(&ctx).await, Some(1));
    let _: fn(&mut Context) -> ! = never;
}
