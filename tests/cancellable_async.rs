//! `#[cancellable]` on `async fn`s: awaits raced against cancellation (in statements and in
//! loop conditions), the two opt-outs, cancellation before the start, async methods and trait
//! impls, a body that hands its context to a spawned child, and where the rewrite stops.
//!
//! Time bounds are generous on purpose: a task that is not raced would sleep for a minute, so a
//! few seconds tell the two apart without depending on the machine's speed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use ctx::{CancelHandle, Context, Error, cancellable};
use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, timeout};

mod support;
use support::{done, live};

/// Longer than any test may take: an await that is not raced would hang the test.
const FOREVER: Duration = Duration::from_secs(60);
/// Generous: the point is that the task stops at all, not how fast.
const PATIENCE: Duration = Duration::from_secs(10);

/// Waits until `counter` reaches `n`.
async fn reached(counter: &AtomicU32, n: u32) {
    while counter.load(Ordering::SeqCst) < n {
        tokio::task::yield_now().await;
    }
}

// ---------------------------------------------------------------------------------------------
// The flagship: a sleeping loop stops as soon as the context is cancelled.

#[cancellable(on_cancel = stopped.send(format!("{name} got the cancellation signal, stopping")).unwrap())]
async fn task(ctx: Context, name: &str, rounds: &AtomicU32, stopped: oneshot::Sender<String>) {
    loop {
        rounds.fetch_add(1, Ordering::SeqCst);
        sleep(FOREVER).await;
    }
}

#[tokio::test]
async fn a_sleeping_task_stops_without_finishing_its_sleep() {
    let (ctx, cancel) = live();
    let rounds = Arc::new(AtomicU32::new(0));
    let (stopped_tx, stopped) = oneshot::channel();
    let worker = tokio::spawn({
        let rounds = rounds.clone();
        async move { task(ctx, "worker", &rounds, stopped_tx).await }
    });
    reached(&rounds, 1).await;
    cancel.cancel();
    timeout(PATIENCE, worker).await.expect("the task stops").unwrap();
    assert_eq!(stopped.await.unwrap(), "worker got the cancellation signal, stopping");
    assert_eq!(rounds.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// Awaits in loop conditions, in `let`, with `?`, nested in expressions.

#[cancellable]
async fn consume(
    ctx: &Context,
    rx: &mut mpsc::Receiver<u32>,
    seen: &AtomicU32,
) -> Result<u32, Error> {
    let mut total = 0;
    while let Some(n) = rx.recv().await {
        total += n;
        seen.fetch_add(1, Ordering::SeqCst);
    }
    Ok(total)
}

#[tokio::test]
async fn an_await_in_a_while_let_condition_is_raced() {
    let (ctx, cancel) = live();
    let (tx, mut rx) = mpsc::channel(4);
    let seen = Arc::new(AtomicU32::new(0));
    let worker = tokio::spawn({
        let seen = seen.clone();
        async move { consume(&ctx, &mut rx, &seen).await }
    });
    tx.send(2).await.unwrap();
    tx.send(3).await.unwrap();
    reached(&seen, 2).await;
    // `tx` stays open: without the race, `recv` would wait forever.
    cancel.cancel();
    let result = timeout(PATIENCE, worker).await.expect("the task stops").unwrap();
    assert_eq!(result, Err(Error::Canceled));
    drop(tx);
}

#[tokio::test]
async fn the_loop_ends_normally_when_the_channel_closes() {
    let (tx, mut rx) = mpsc::channel(4);
    tx.send(2).await.unwrap();
    tx.send(3).await.unwrap();
    drop(tx);
    let seen = AtomicU32::new(0);
    assert_eq!(consume(&Context::background(), &mut rx, &seen).await, Ok(5));
}

#[cancellable(on_cancel = Err(ctx.err().unwrap().to_string()))]
async fn awaits_everywhere(ctx: &Context, rx: oneshot::Receiver<u32>) -> Result<u32, String> {
    let doubled = async { 2 }.await * 2;
    let received = rx.await.map_err(|err| err.to_string())?;
    let sum = std::future::ready(doubled).await + std::future::ready(received).await;
    Ok(sum)
}

#[tokio::test]
async fn awaits_in_let_try_and_arithmetic_are_raced() {
    let (tx, rx) = oneshot::channel();
    tx.send(10).unwrap();
    assert_eq!(awaits_everywhere(&Context::background(), rx).await, Ok(14));

    let (ctx, cancel) = live();
    let (_tx, rx) = oneshot::channel();
    let worker = tokio::spawn(async move { awaits_everywhere(&ctx, rx).await });
    sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    let result = timeout(PATIENCE, worker).await.expect("the task stops").unwrap();
    assert_eq!(result, Err("context canceled".to_string()));
}

// ---------------------------------------------------------------------------------------------
// Cancellation before the start: the body is never polled.

#[cancellable]
async fn never_started(ctx: Context, started: &AtomicU32) -> Option<()> {
    started.fetch_add(1, Ordering::SeqCst);
    Some(())
}

#[tokio::test]
async fn a_done_context_never_runs_the_body() {
    let started = AtomicU32::new(0);
    assert_eq!(never_started(done(), &started).await, None);
    assert_eq!(started.load(Ordering::SeqCst), 0);
    assert_eq!(never_started(Context::background(), &started).await, Some(()));
    assert_eq!(started.load(Ordering::SeqCst), 1);
}

// ---------------------------------------------------------------------------------------------
// Opt-outs: `loops_only` for the whole function, `#[not_cancellable]` for one await.

#[cancellable(loops_only)]
async fn loops_only(ctx: &Context, rx: oneshot::Receiver<u32>, got: &AtomicU32) -> Option<u32> {
    let mut total = 0;
    let value = rx.await.unwrap();
    got.store(value, Ordering::SeqCst);
    for n in 0..3 {
        total += n;
    }
    Some(total + value)
}

#[tokio::test]
async fn loops_only_lets_awaits_finish_and_stops_at_the_next_loop() {
    let (ctx, cancel) = live();
    let (tx, rx) = oneshot::channel();
    let got = Arc::new(AtomicU32::new(0));
    let worker = tokio::spawn({
        let got = got.clone();
        async move { loops_only(&ctx, rx, &got).await }
    });
    sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    sleep(Duration::from_millis(10)).await;
    tx.send(7).unwrap();
    let result = timeout(PATIENCE, worker).await.expect("the task stops").unwrap();
    assert_eq!(result, None, "the `for` loop noticed the cancellation");
    assert_eq!(got.load(Ordering::SeqCst), 7, "the await was not cut short");
}

#[cancellable]
async fn commit(
    ctx: &Context,
    rx: oneshot::Receiver<u32>,
    committed: &AtomicU32,
) -> Result<u32, Error> {
    // Must not be dropped half-way: it is not raced.
    #[not_cancellable]
    let value = rx.await.unwrap();
    committed.store(value, Ordering::SeqCst);
    // This one is raced again, and the context is done: the function stops here.
    std::future::pending::<()>().await;
    Ok(value)
}

#[tokio::test]
async fn a_not_cancellable_await_runs_to_completion() {
    let (ctx, cancel) = live();
    let (tx, rx) = oneshot::channel();
    let committed = Arc::new(AtomicU32::new(0));
    let worker = tokio::spawn({
        let committed = committed.clone();
        async move { commit(&ctx, rx, &committed).await }
    });
    sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    sleep(Duration::from_millis(10)).await;
    tx.send(42).unwrap();
    let result = timeout(PATIENCE, worker).await.expect("the task stops").unwrap();
    assert_eq!(result, Err(Error::Canceled));
    assert_eq!(committed.load(Ordering::SeqCst), 42);
}

#[cancellable]
async fn marked_expression(ctx: &Context, cancel: &CancelHandle) -> Option<u32> {
    cancel.cancel();
    let value = #[not_cancellable]
    std::future::ready(5).await;
    Some(value)
}

#[tokio::test]
async fn not_cancellable_on_an_expression() {
    let (ctx, cancel) = live();
    assert_eq!(marked_expression(&ctx, &cancel).await, Some(5));
}

// ---------------------------------------------------------------------------------------------
// A body that hands its context to a spawned child.

async fn child(ctx: Context, stopped: oneshot::Sender<Error>) {
    ctx.done().await;
    stopped.send(ctx.err().unwrap()).unwrap();
}

#[cancellable]
async fn parent(ctx: Context, stopped: oneshot::Sender<Error>) -> Option<()> {
    tokio::spawn(child(ctx, stopped));
    sleep(FOREVER).await;
    Some(())
}

#[tokio::test]
async fn the_body_may_move_its_context_into_a_spawned_child() {
    let (ctx, cancel) = live();
    let (stopped_tx, stopped) = oneshot::channel();
    let worker = tokio::spawn(parent(ctx, stopped_tx));
    sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    assert_eq!(timeout(PATIENCE, worker).await.expect("the parent stops").unwrap(), None);
    assert_eq!(
        timeout(PATIENCE, stopped).await.expect("the child stops").unwrap(),
        Error::Canceled
    );
}

// ---------------------------------------------------------------------------------------------
// Async methods and native async trait methods.

struct Server {
    ctx: Context,
    served: u32,
}

impl Server {
    #[cancellable(ctx = self.ctx)]
    async fn serve(&mut self, requests: u32) -> Option<u32> {
        for _ in 0..requests {
            tokio::task::yield_now().await;
            self.served += 1;
        }
        Some(self.served)
    }

    #[cancellable(ctx = self.ctx)]
    async fn served(&self) -> Option<u32> {
        tokio::task::yield_now().await;
        Some(self.served)
    }

    #[cancellable(ctx = self.ctx, on_cancel = self.served)]
    async fn into_served(self) -> u32 {
        std::future::pending::<u32>().await
    }
}

#[tokio::test]
async fn async_methods_on_self_ref_and_mut() {
    let (ctx, cancel) = live();
    let mut server = Server { ctx, served: 0 };
    assert_eq!(server.serve(3).await, Some(3));
    assert_eq!(server.served().await, Some(3));
    cancel.cancel();
    assert_eq!(server.serve(3).await, None);
    assert_eq!(server.served().await, None);
    assert_eq!(timeout(PATIENCE, server.into_served()).await.expect("it stops"), 3);
}

trait Fetch {
    async fn fetch(&self, ctx: &Context, key: u32) -> Result<u32, Error>;
}

struct Slow;

impl Fetch for Slow {
    #[cancellable]
    async fn fetch(&self, ctx: &Context, key: u32) -> Result<u32, Error> {
        sleep(FOREVER).await;
        Ok(key)
    }
}

#[tokio::test]
async fn native_async_trait_methods() {
    let (ctx, cancel) = live();
    let worker = tokio::spawn(async move { Slow.fetch(&ctx, 1).await });
    sleep(Duration::from_millis(10)).await;
    cancel.cancel();
    let result = timeout(PATIENCE, worker).await.expect("the fetch stops").unwrap();
    assert_eq!(result, Err(Error::Canceled));
}

#[cancellable(on_cancel = Err(format!("{label}: {}", ctx.err().unwrap())))]
async fn generic<'a, T>(ctx: &'a Context, label: &'a str, items: Vec<T>) -> Result<Vec<T>, String>
where
    T: Send + 'a,
{
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        tokio::task::yield_now().await;
        out.push(item);
    }
    Ok(out)
}

#[tokio::test]
async fn generics_lifetimes_and_on_cancel_with_parameters() {
    assert_eq!(generic(&Context::background(), "copy", vec![1, 2]).await, Ok(vec![1, 2]));
    assert_eq!(generic(&done(), "copy", vec![1, 2]).await, Err("copy: context canceled".into()));
}

// ---------------------------------------------------------------------------------------------
// Where it stops: an `async` block inside the function is a future of its own.

#[cancellable]
async fn inner_block(
    ctx: &Context,
    cancel: &CancelHandle,
    rx: oneshot::Receiver<u32>,
) -> Option<u32> {
    let inner = async move {
        // Not raced: this block could be spawned and outlive the function.
        rx.await.unwrap()
    };
    cancel.cancel();
    #[not_cancellable]
    let value = inner.await;
    Some(value)
}

#[tokio::test]
async fn awaits_inside_async_blocks_are_not_raced() {
    let (ctx, cancel) = live();
    let (tx, rx) = oneshot::channel();
    tx.send(9).unwrap();
    assert_eq!(inner_block(&ctx, &cancel, rx).await, Some(9));
}
