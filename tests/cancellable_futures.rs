//! `#[cancellable]` on sync fns that return a future: `-> impl Future<Output = T>` (without
//! `+ '_`), `-> Pin<Box<dyn Future<Output = T> + Send>>` (`'static`), `-> BoxFuture<'static, T>`
//! with a `.boxed()` tail, and a tower-style `-> Self::Future`, each taking a `&Context`. The
//! rewrite applies inside the returned `async` block, with the future's output as the return
//! type; the context is cloned before the block, so the future does not borrow the parameter
//! and may outlive it. `on_cancel` gives the future's output.
//!
//! The same file is compiled in edition 2024 here and in edition 2021 by the workspace member
//! `tests/edition2021`, where `impl Future` does not capture the parameter's lifetime.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use ctx::{Context, Error, cancellable};
use futures::FutureExt as _;
use futures::future::BoxFuture;
use tokio::time::sleep;

mod support;
use support::{done, live};

const FOREVER: Duration = Duration::from_secs(60);
const PROMPTLY: Duration = Duration::from_millis(500);

/// The future made by `make`, awaited with a cancel after 20 ms; returns the output and how
/// long it took.
async fn cancelled_mid_way<F: Future>(make: impl FnOnce(&Context) -> F) -> (F::Output, Duration) {
    let (ctx, cancel) = live();
    let future = make(&ctx);
    let started = Instant::now();
    tokio::spawn(async move {
        sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let output = future.await;
    drop(ctx);
    (output, started.elapsed())
}

/// Made from a context that is dropped before the future is awaited: the future does not
/// borrow it (`F` cannot borrow from the closure's argument).
fn detached<F: Future>(ctx: Context, make: impl FnOnce(&Context) -> F) -> F {
    make(&ctx)
}

// In edition 2024, an `impl Future` return captures the `&Context` parameter's lifetime
// whatever the body does; in 2021 it does not, and `tests/edition2021` detaches this future too.

#[cancellable]
fn ticks(
    ctx: &Context,
    count: Arc<AtomicU32>,
    wait: Duration,
) -> impl Future<Output = Option<u32>> {
    async move {
        loop {
            let n = count.fetch_add(1, Ordering::SeqCst) + 1;
            if n == 3 {
                return Some(n);
            }
            sleep(wait).await;
        }
    }
}

#[tokio::test]
async fn an_impl_future_return() {
    let count = Arc::new(AtomicU32::new(0));
    assert_eq!(
        ticks(&Context::background(), count.clone(), Duration::from_millis(1)).await,
        Some(3)
    );
    let count = Arc::new(AtomicU32::new(0));
    assert_eq!(ticks(&done(), count.clone(), FOREVER).await, None);
    assert_eq!(count.load(Ordering::SeqCst), 0, "the body did not run");
    let (ctx, cancel) = live();
    let stopper = tokio::spawn(async move {
        sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    assert_eq!(ticks(&ctx, Arc::new(AtomicU32::new(0)), FOREVER).await, None);
    assert!(started.elapsed() < PROMPTLY, "stopped after {:?}", started.elapsed());
    stopper.await.unwrap();
}

#[cancellable(on_cancel = Err(format!("{label}: {}", ctx.err().unwrap())))]
fn boxed_static(
    ctx: &Context,
    label: &'static str,
    wait: Duration,
) -> Pin<Box<dyn Future<Output = Result<u32, String>> + Send>> {
    Box::pin(async move {
        let mut rounds = 0;
        while rounds < 3 {
            sleep(wait).await;
            rounds += 1;
        }
        Ok(rounds)
    })
}

#[tokio::test]
async fn a_pinned_box_return_and_on_cancel() {
    let future =
        detached(Context::background(), |ctx| boxed_static(ctx, "box", Duration::from_millis(1)));
    assert_eq!(tokio::spawn(future).await.unwrap(), Ok(3));
    assert_eq!(
        detached(done(), |ctx| boxed_static(ctx, "box", FOREVER)).await,
        Err("box: context canceled".to_owned())
    );
    let (output, took) = cancelled_mid_way(|ctx| boxed_static(ctx, "box", FOREVER)).await;
    assert_eq!(output, Err("box: context canceled".to_owned()));
    assert!(took < PROMPTLY, "stopped after {took:?}");
}

#[cancellable(on_cancel = Err(Error::Canceled))]
fn box_future(ctx: &Context, wait: Duration) -> BoxFuture<'static, Result<&'static str, Error>> {
    async move {
        sleep(wait).await;
        Ok("done")
    }
    .boxed()
}

#[cancellable]
fn box_future_default(ctx: &Context, wait: Duration) -> BoxFuture<'static, Option<&'static str>> {
    async move {
        sleep(wait).await;
        Some("done")
    }
    .boxed()
}

#[tokio::test]
async fn a_box_future_return_with_a_boxed_tail() {
    let short = Duration::from_millis(1);
    assert_eq!(detached(Context::background(), |ctx| box_future(ctx, short)).await, Ok("done"));
    assert_eq!(
        detached(Context::background(), |ctx| box_future_default(ctx, short)).await,
        Some("done")
    );
    assert_eq!(detached(done(), |ctx| box_future(ctx, FOREVER)).await, Err(Error::Canceled));
    assert_eq!(detached(done(), |ctx| box_future_default(ctx, FOREVER)).await, None);
    let (output, took) = cancelled_mid_way(|ctx| box_future(ctx, FOREVER)).await;
    assert_eq!(output, Err(Error::Canceled));
    assert!(took < PROMPTLY, "stopped after {took:?}");
    let (output, took) = cancelled_mid_way(|ctx| box_future_default(ctx, FOREVER)).await;
    assert_eq!(output, None);
    assert!(took < PROMPTLY, "stopped after {took:?}");
}

/// A tower-style service: `call` returns `Self::Future`, whose output the signature does not
/// spell, so the cancellation value is inferred from the body.
trait Service {
    type Future: Future;
    fn call(&mut self, request: Duration) -> Self::Future;
}

struct Slow {
    ctx: Context,
    calls: u32,
}

impl Service for Slow {
    type Future = Pin<Box<dyn Future<Output = Result<u32, Error>> + Send>>;

    #[cancellable(ctx = self.ctx)]
    fn call(&mut self, wait: Duration) -> Self::Future {
        self.calls += 1;
        let calls = self.calls;
        Box::pin(async move {
            sleep(wait).await;
            Ok::<u32, Error>(calls)
        })
    }
}

#[tokio::test]
async fn a_self_future_return() {
    let mut service = Slow { ctx: Context::background(), calls: 0 };
    assert_eq!(service.call(Duration::from_millis(1)).await, Ok(1));
    let mut service = Slow { ctx: done(), calls: 0 };
    assert_eq!(service.call(FOREVER).await, Err(Error::Canceled));
    let (ctx, cancel) = live();
    let mut service = Slow { ctx, calls: 0 };
    let future = service.call(FOREVER);
    drop(service);
    tokio::spawn(async move {
        sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    assert_eq!(future.await, Err(Error::Canceled));
    assert!(started.elapsed() < PROMPTLY);
}

// The statements before the returned future run when the function is called, outside the
// future that is rewritten: a loop there is a compile error unless marked
// (`tests/ui/loop_before_the_returned_future.rs`).

#[cancellable]
fn summed_then_slept(
    ctx: &Context,
    parts: Vec<u32>,
    wait: Duration,
) -> impl Future<Output = Option<u32>> {
    let mut sum = 0;
    #[not_cancellable]
    for part in parts {
        sum += part;
    }
    async move {
        sleep(wait).await;
        Some(sum)
    }
}

#[tokio::test]
async fn a_marked_loop_before_the_returned_future() {
    let short = Duration::from_millis(1);
    assert_eq!(summed_then_slept(&Context::background(), vec![1, 2, 3], short).await, Some(6));
    assert_eq!(summed_then_slept(&done(), vec![1, 2, 3], short).await, None);
    let (ctx, cancel) = live();
    let stopper = tokio::spawn(async move {
        sleep(Duration::from_millis(20)).await;
        cancel.cancel();
    });
    let started = Instant::now();
    assert_eq!(summed_then_slept(&ctx, vec![1, 2, 3], FOREVER).await, None);
    assert!(started.elapsed() < PROMPTLY, "stopped after {:?}", started.elapsed());
    stopper.await.unwrap();
}

/// A job whose field is named like the context parameter: `on_cancel` reads the field, while
/// its `ctx` is the context (the clone the future holds).
#[derive(Clone, Copy)]
struct Job {
    ctx: &'static str,
}

#[cancellable(on_cancel = Err(format!("{} {}", job.ctx, ctx.err().unwrap())))]
fn run_job(ctx: &Context, job: Job, wait: Duration) -> BoxFuture<'static, Result<u32, String>> {
    async move {
        sleep(wait).await;
        Ok(job.ctx.len() as u32)
    }
    .boxed()
}

#[tokio::test]
async fn on_cancel_may_read_a_field_named_like_the_context() {
    let job = Job { ctx: "job" };
    let short = Duration::from_millis(1);
    assert_eq!(detached(Context::background(), |ctx| run_job(ctx, job, short)).await, Ok(3));
    let stopped = Err("job context canceled".to_owned());
    assert_eq!(detached(done(), |ctx| run_job(ctx, job, short)).await, stopped);
    let (output, took) = cancelled_mid_way(|ctx| run_job(ctx, job, FOREVER)).await;
    assert_eq!(output, stopped);
    assert!(took < PROMPTLY, "stopped after {took:?}");
}
