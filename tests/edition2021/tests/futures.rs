//! `#[cancellable]` future-returning fns in edition 2021: the facade's edition-2024 tests,
//! compiled here again, and a bare `-> impl Future<Output = T>` (no `+ '_`) whose future
//! outlives the `&Context` it was made from.

#[path = "../../cancellable_futures.rs"]
mod shared;

use std::future::Future;
use std::time::{Duration, Instant};

use ctx::{Context, cancellable};

#[cancellable]
fn later(ctx: &Context, value: u32, wait: Duration) -> impl Future<Output = Option<u32>> {
    async move {
        tokio::time::sleep(wait).await;
        Some(value)
    }
}

/// The future is made from a context that is gone before it is awaited.
fn detached(ctx: Context, value: u32, wait: Duration) -> impl Future<Output = Option<u32>> {
    later(&ctx, value, wait)
}

#[tokio::test]
async fn an_impl_future_without_lifetime_outlives_its_context_parameter() {
    assert_eq!(detached(Context::background(), 7, Duration::from_millis(1)).await, Some(7));
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    assert_eq!(detached(ctx, 7, Duration::from_secs(60)).await, None);

    let (ctx, cancel) = Context::background().with_cancel();
    let future = detached(ctx, 7, Duration::from_secs(60));
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    assert_eq!(future.await, None);
    assert!(started.elapsed() < Duration::from_millis(500));
}
