//! `#[cancellable]` on the methods of an `#[async_trait]` impl.
//!
//! `#[async_trait]` on the impl expands first and turns each `async fn` into a sync fn returning
//! `Pin<Box<dyn Future<Output = T> + Send>>` whose body is `Box::pin(async move { .. })`; the
//! method's `#[cancellable]`, kept in place, then sees that shape and rewrites the inside of the
//! `async move` block, with `T` as the return type. No ordering to remember.

use std::time::Duration;

use async_trait::async_trait;
use ctx::{Context, Error, cancellable};
use tokio::time::{sleep, timeout};

#[async_trait]
trait Store {
    async fn get(&self, ctx: &Context, key: u32) -> Result<u32, Error>;
    async fn scan(&mut self, ctx: Context) -> Option<u32>;
    async fn flush(&self) -> u32;
    async fn drain(&mut self, rounds: u32) -> u32;
}

struct Slow {
    ctx: Context,
    scanned: u32,
    stopped: u32,
}

#[async_trait]
impl Store for Slow {
    #[cancellable]
    async fn get(&self, ctx: &Context, key: u32) -> Result<u32, Error> {
        sleep(Duration::from_secs(60)).await;
        Ok(key)
    }

    #[cancellable]
    async fn scan(&mut self, ctx: Context) -> Option<u32> {
        loop {
            self.scanned += 1;
            tokio::task::yield_now().await;
            if self.scanned == 1_000_000 {
                return Some(self.scanned);
            }
        }
    }

    #[cancellable(ctx = self.ctx, on_cancel = u32::MAX)]
    async fn flush(&self) -> u32 {
        sleep(Duration::from_secs(60)).await;
        0
    }

    // `#[async_trait]` moves `self` into the future as `__self`; `on_cancel` follows it.
    #[cancellable(ctx = self.ctx, on_cancel = { self.stopped += 1; self.stopped })]
    async fn drain(&mut self, rounds: u32) -> u32 {
        for _ in 0..rounds {
            self.scanned += 1;
        }
        self.scanned
    }
}

#[tokio::test]
async fn on_cancel_may_use_self_in_an_async_trait_method() {
    let (ctx, cancel) = Context::background().with_cancel();
    let mut store = Slow { ctx, scanned: 0, stopped: 0 };
    assert_eq!(store.drain(3).await, 3);
    cancel.cancel();
    assert_eq!(store.drain(3).await, 1);
    assert_eq!(store.drain(3).await, 2);
    assert_eq!(store.scanned, 3);
}

#[tokio::test]
async fn async_trait_methods_are_raced() {
    let (ctx, cancel) = Context::background().with_cancel();
    let store = std::sync::Arc::new(Slow { ctx: ctx.clone(), scanned: 0, stopped: 0 });
    let get = tokio::spawn({
        let (store, ctx) = (store.clone(), ctx.clone());
        async move { store.get(&ctx, 1).await }
    });
    let flush = tokio::spawn({
        let store = store.clone();
        async move { store.flush().await }
    });
    sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    let patience = Duration::from_secs(10);
    assert_eq!(timeout(patience, get).await.expect("get stops").unwrap(), Err(Error::Canceled));
    assert_eq!(timeout(patience, flush).await.expect("flush stops").unwrap(), u32::MAX);
}

#[tokio::test]
async fn async_trait_loops_are_checked_and_the_future_stays_send() {
    let (ctx, cancel) = Context::background().with_cancel();
    let mut store = Slow { ctx: Context::background(), scanned: 0, stopped: 0 };
    let scan = tokio::spawn(async move {
        let stopped = store.scan(ctx).await;
        (stopped, store.scanned)
    });
    sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    let (stopped, scanned) =
        timeout(Duration::from_secs(10), scan).await.expect("scan stops").unwrap();
    assert_eq!(stopped, None);
    assert!(scanned > 0);
}

#[tokio::test]
async fn a_done_context_does_not_start_an_async_trait_method() {
    let (ctx, cancel) = Context::background().with_cancel();
    cancel.cancel();
    let mut store = Slow { ctx: Context::background(), scanned: 0, stopped: 0 };
    assert_eq!(store.scan(ctx).await, None);
    assert_eq!(store.scanned, 0);
}
