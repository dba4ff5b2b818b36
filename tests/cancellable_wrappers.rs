//! `#[cancellable]` next to other attributes, in both orders: `#[tokio::main]`,
//! `#[tokio::test]`, `#[tracing::instrument]` (plain, `err`, `ret`) and `#[async_trait]`. Above
//! `#[cancellable]`, the other attribute expands first and moves the body into an `async` block
//! or a closure; `#[cancellable]` finds the body there (`ctx-macros/src/wrappers.rs`), so both
//! orders behave the same: the normal result, the cancellation value for a done context, and a
//! stop at the first check after a cancel mid-way.
//!
//! A cancel mid-way comes from inside the loop, at a known iteration, so that a loop that is
//! not checked runs to its end and the test tells the two apart exactly.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use ctx::{CancelHandle, Context, Error, cancellable};

mod support;
use support::{done, live};

const ROUNDS: u32 = 10_000;
const CANCEL_AT: u32 = 10;
const PROMPTLY: Duration = Duration::from_millis(500);

/// Writes the function twice: `$above` with the wrapper attribute above `#[cancellable]`,
/// `$below` with it below, so that both orders run the same code.
macro_rules! both_orders {
    (#[$wrapper:meta] async fn ($above:ident, $below:ident) $($rest:tt)*) => {
        #[$wrapper]
        #[cancellable]
        async fn $above $($rest)*

        #[cancellable]
        #[$wrapper]
        async fn $below $($rest)*
    };
    (#[$wrapper:meta] fn ($above:ident, $below:ident) $($rest:tt)*) => {
        #[$wrapper]
        #[cancellable]
        fn $above $($rest)*

        #[cancellable]
        #[$wrapper]
        fn $below $($rest)*
    };
}

/// One round of a CPU loop: counts, and cancels at `CANCEL_AT` if given a handle.
fn round(n: &mut u32, cancel: Option<&CancelHandle>) {
    *n += 1;
    if *n == CANCEL_AT {
        cancel.inspect(|cancel| cancel.cancel());
    }
}

/// Runs `f` for the three cases and checks each result: runs to `ROUNDS`, never starts, stops at
/// the iteration after the cancel.
fn three_ways(name: &str, f: impl Fn(&Context, Option<&CancelHandle>, &mut u32) -> Option<u32>) {
    let mut n = 0;
    assert_eq!(f(&Context::background(), None, &mut n), Some(ROUNDS), "{name}: normal result");
    let mut n = 0;
    assert_eq!(f(&done(), None, &mut n), None, "{name}: done before the call");
    assert_eq!(n, 0, "{name}: the body did not run");
    let (ctx, cancel) = live();
    let mut n = 0;
    assert_eq!(f(&ctx, Some(&cancel), &mut n), None, "{name}: cancelled mid-way");
    assert_eq!(n, CANCEL_AT, "{name}: stopped at the next check");
}

// ---------------------------------------------------------------------------------------------
// `#[tokio::main]` on a function that is not `main`: it blocks on its own runtime.

both_orders! {
    #[tokio::main(flavor = "current_thread")]
    async fn (main_above, main_below)(
        ctx: &Context,
        cancel: Option<&CancelHandle>,
        n: &mut u32,
    ) -> Option<u32> {
        while *n < ROUNDS {
            round(n, cancel);
            tokio::task::yield_now().await;
        }
        Some(*n)
    }
}

#[tokio::main(flavor = "current_thread")]
#[cancellable(on_cancel = None)]
async fn main_above_sleeping(ctx: Context) -> Option<()> {
    tokio::time::sleep(Duration::from_secs(60)).await;
    Some(())
}

#[test]
fn tokio_main_in_both_orders() {
    three_ways("main above", main_above);
    three_ways("main below", main_below);

    let (ctx, cancel) = live();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        cancel.cancel();
    });
    let started = Instant::now();
    assert_eq!(main_above_sleeping(ctx), None);
    assert!(started.elapsed() < PROMPTLY, "the sleep was raced");
    canceller.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// `#[tokio::test]`: a test takes no parameters, so the context is `ctx = ..`. A test that
// ignored the cancel would sleep out its 3 s and then panic.

fn cancelled_soon() -> Context {
    let (ctx, cancel) = live();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        cancel.cancel();
    });
    ctx
}

#[tokio::test]
#[cancellable(ctx = cancelled_soon())]
async fn tokio_test_above() {
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cancel was ignored");
}

#[cancellable(ctx = cancelled_soon())]
#[tokio::test]
async fn tokio_test_below() {
    for _ in 0..300 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the cancel was ignored");
}

// ---------------------------------------------------------------------------------------------
// `#[tracing::instrument]`, plain, `err` and `ret`, on sync and async fns, in both orders.

both_orders! {
    #[tracing::instrument(skip_all)]
    fn (plain_above, plain_below)(
        ctx: &Context,
        cancel: Option<&CancelHandle>,
        n: &mut u32,
    ) -> Option<u32> {
        while *n < ROUNDS {
            round(n, cancel);
        }
        Some(*n)
    }
}

both_orders! {
    #[tracing::instrument(err, skip_all)]
    fn (err_above, err_below)(
        ctx: &Context,
        cancel: Option<&CancelHandle>,
        n: &mut u32,
    ) -> Result<u32, Error> {
        while *n < ROUNDS {
            round(n, cancel);
        }
        Ok(*n)
    }
}

both_orders! {
    #[tracing::instrument(ret, skip_all)]
    fn (ret_above, ret_below)(
        ctx: &Context,
        cancel: Option<&CancelHandle>,
        n: &mut u32,
    ) -> Option<u32> {
        while *n < ROUNDS {
            round(n, cancel);
        }
        Some(*n)
    }
}

#[test]
fn sync_instrument_in_both_orders() {
    three_ways("plain above", plain_above);
    three_ways("plain below", plain_below);
    three_ways("err above", |ctx, cancel, n| err_above(ctx, cancel, n).ok());
    three_ways("err below", |ctx, cancel, n| err_below(ctx, cancel, n).ok());
    three_ways("ret above", ret_above);
    three_ways("ret below", ret_below);
    assert_eq!(err_above(&done(), None, &mut 0), Err(Error::Canceled));
}

// A CPU loop in an async fn: no await to race, only the loop's check.
both_orders! {
    #[tracing::instrument(skip_all)]
    async fn (crunch_above, crunch_below)(
        ctx: &Context,
        cancel: Option<&CancelHandle>,
        n: &mut u32,
    ) -> Option<u32> {
        while *n < ROUNDS {
            round(n, cancel);
        }
        Some(*n)
    }
}

both_orders! {
    #[tracing::instrument(err, ret, skip_all)]
    async fn (both_above, both_below)(
    ctx: &Context,
    cancel: Option<&CancelHandle>,
    n: &mut u32,
) -> Result<u32, Error> {
    while *n < ROUNDS {
        round(n, cancel);
        tokio::task::yield_now().await;
    }
    Ok(*n)
    }
}

/// Runs a future to its end on a fresh current-thread runtime.
fn block_on<F: Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(future)
}

#[test]
fn async_instrument_in_both_orders() {
    three_ways("crunch above", |ctx, cancel, n| block_on(crunch_above(ctx, cancel, n)));
    three_ways("crunch below", |ctx, cancel, n| block_on(crunch_below(ctx, cancel, n)));
    three_ways("err, ret above", |ctx, cancel, n| block_on(both_above(ctx, cancel, n)).ok());
    three_ways("err, ret below", |ctx, cancel, n| block_on(both_below(ctx, cancel, n)).ok());
}

// ---------------------------------------------------------------------------------------------
// `#[async_trait]` methods with `#[instrument]` in both orders.

#[async_trait]
trait Crunch {
    async fn above(&self, ctx: &Context, cancel: Option<&CancelHandle>) -> Option<u32>;
    async fn below(&self, ctx: &Context, cancel: Option<&CancelHandle>) -> Option<u32>;
}

struct Cruncher {
    rounds: AtomicU32,
}

#[async_trait]
impl Crunch for Cruncher {
    #[tracing::instrument(skip_all)]
    #[cancellable]
    async fn above(&self, ctx: &Context, cancel: Option<&CancelHandle>) -> Option<u32> {
        let mut n = 0;
        while n < ROUNDS {
            round(&mut n, cancel);
            self.rounds.store(n, Ordering::SeqCst);
        }
        Some(n)
    }

    #[cancellable]
    #[tracing::instrument(skip_all)]
    async fn below(&self, ctx: &Context, cancel: Option<&CancelHandle>) -> Option<u32> {
        let mut n = 0;
        while n < ROUNDS {
            round(&mut n, cancel);
            self.rounds.store(n, Ordering::SeqCst);
        }
        Some(n)
    }
}

#[test]
fn async_trait_with_instrument_in_both_orders() {
    let cruncher = &Cruncher { rounds: AtomicU32::new(0) };
    let run = |below: bool| {
        move |ctx: &Context, cancel: Option<&CancelHandle>, n: &mut u32| {
            let out = if below {
                block_on(cruncher.below(ctx, cancel))
            } else {
                block_on(cruncher.above(ctx, cancel))
            };
            *n = cruncher.rounds.swap(0, Ordering::SeqCst);
            out
        }
    };
    three_ways("async_trait, instrument above", run(false));
    three_ways("async_trait, instrument below", run(true));
}

// ---------------------------------------------------------------------------------------------
// Not a wrapper: the user's own immediately called closure or `let body = async { .. }` in a
// sync fn is code of the function's own body, whose loops stay checked.

#[cancellable]
fn parsed_then_counted(
    ctx: &Context,
    text: &str,
    cancel: Option<&CancelHandle>,
    n: &mut u32,
) -> Option<u32> {
    let start = (|| {
        let start: u32 = text.trim().parse().ok()?;
        Some(start)
    })();
    let start = start?;
    for _ in start..ROUNDS {
        round(n, cancel);
    }
    Some(*n)
}

#[cancellable]
fn blocked_on_then_counted(
    ctx: &Context,
    runtime: &tokio::runtime::Runtime,
    cancel: Option<&CancelHandle>,
    n: &mut u32,
) -> Option<u32> {
    let body = async { Some(0) };
    let start = runtime.block_on(body)?;
    for _ in start..ROUNDS {
        round(n, cancel);
    }
    Some(*n)
}

#[test]
fn a_closure_or_async_block_of_your_own_is_not_taken_for_a_wrapper() {
    three_ways("an immediately called closure", |ctx, cancel, n| {
        parsed_then_counted(ctx, " 0 ", cancel, n)
    });
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    three_ways("let body = async { .. }", |ctx, cancel, n| {
        blocked_on_then_counted(ctx, &runtime, cancel, n)
    });
}
