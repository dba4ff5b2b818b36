//! `#[cancellable]` on the return types and parameters that once needed help: `-> !`,
//! `Option<impl Iterator>` and `Result<impl Future, E>` (the cancellation value by inference),
//! `crate = "ctx"` as a string, an `Arc<Context>` named with `ctx = ..`; and the sync body's
//! blocking sleeps, which become interruptible waits on the context.
//!
//! Each shape runs to its normal result, returns its cancellation value when called with a
//! done context, and stops promptly when cancelled mid-way. Bounds are generous: the point is
//! "stops at once rather than after its sleep", not a latency figure.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ctx::{CancelHandle, Context, Error, cancellable};

mod support;
use support::{done, live};

/// Cancels `cancel` from another thread after `after`.
fn cancel_after(cancel: CancelHandle, after: Duration) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        std::thread::sleep(after);
        cancel.cancel();
    })
}

/// What a blocking sleep would take if it were not interrupted.
const LONG: Duration = Duration::from_secs(30);
/// Generous: an interrupted sleep returns within microseconds of the cancel.
const PROMPTLY: Duration = Duration::from_millis(500);

// ---------------------------------------------------------------------------------------------
// Blocking sleeps in a sync fn.

#[cancellable]
fn nap(ctx: &Context, naps: u32, each: Duration) -> Option<u32> {
    let mut slept = 0;
    for _ in 0..naps {
        std::thread::sleep(each);
        slept += 1;
    }
    Some(slept)
}

mod imported {
    use super::*;
    use std::thread;

    #[cancellable(on_cancel = Err(ctx.err().unwrap()))]
    pub fn nap_once(ctx: Context, each: Duration) -> Result<&'static str, Error> {
        thread::sleep(each);
        Ok("rested")
    }

    #[cancellable]
    pub fn nap_bare(ctx: &mut Context, each: Duration) -> Option<&'static str> {
        use std::thread::sleep;
        sleep(each);
        Some("rested")
    }

    #[cancellable]
    pub fn nap_anyway(ctx: &Context, each: Duration) -> Option<&'static str> {
        #[not_cancellable]
        thread::sleep(each);
        Some("rested")
    }
}

/// A function of the user's own named `sleep`, a test clock's: the attribute cannot resolve the
/// name, and must call it as written rather than replace it with a real wait.
mod test_clock {
    use super::*;
    use std::cell::Cell;

    thread_local!(static NOW: Cell<Duration> = const { Cell::new(Duration::ZERO) });

    pub fn now() -> Duration {
        NOW.with(Cell::get)
    }

    fn sleep(by: Duration) {
        NOW.with(|now| now.set(now.get() + by));
    }

    /// Ticks the test clock by two seconds `ticks` times (`None`: forever).
    #[cancellable]
    pub fn tick(ctx: &Context, ticks: Option<u64>) -> Option<Duration> {
        let mut ticked = 0;
        while ticks.is_none_or(|ticks| ticked < ticks) {
            sleep(Duration::from_secs(2));
            ticked += 1;
        }
        Some(now())
    }
}

#[test]
fn a_sleep_of_your_own_runs_as_written() {
    let started = Instant::now();
    let before = test_clock::now();
    assert_eq!(test_clock::tick(&Context::background(), Some(3)), Some(before + 3 * 2 * SECOND));
    assert!(started.elapsed() < PROMPTLY, "the test clock's sleep waited {:?}", started.elapsed());

    let before = test_clock::now();
    assert_eq!(test_clock::tick(&done(), Some(3)), None);
    assert_eq!(test_clock::now(), before, "a done context does not run the body");

    let (ctx, cancel) = live();
    let canceller = cancel_after(cancel, Duration::from_millis(20));
    assert_eq!(test_clock::tick(&ctx, None), None, "the loop check still stops it");
    assert!(started.elapsed() < PROMPTLY, "stopped after {:?}", started.elapsed());
    canceller.join().unwrap();
}

const SECOND: Duration = Duration::from_secs(1);

/// tokio's `sleep`, imported by its name into a sync fn that blocks on the future it makes: it is
/// called as written (only `std::thread::sleep` becomes an interruptible wait).
#[cancellable]
fn block_on_naps(ctx: &Context, runtime: &tokio::runtime::Runtime, naps: u32) -> Option<u32> {
    use tokio::time::sleep;
    let _in_the_runtime = runtime.enter(); // where tokio's `sleep` may be called
    let mut napped = 0;
    for _ in 0..naps {
        runtime.block_on(sleep(Duration::from_millis(1)));
        napped += 1;
    }
    Some(napped)
}

#[test]
fn tokio_sleep_in_a_sync_fn_is_called_as_written() {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    assert_eq!(block_on_naps(&Context::background(), &runtime, 3), Some(3));
    assert_eq!(block_on_naps(&done(), &runtime, 3), None);

    let (ctx, cancel) = live();
    let canceller = cancel_after(cancel, Duration::from_millis(20));
    let started = Instant::now();
    assert_eq!(block_on_naps(&ctx, &runtime, 100_000), None);
    assert!(started.elapsed() < PROMPTLY, "stopped after {:?}", started.elapsed());
    canceller.join().unwrap();
}

#[test]
fn a_blocking_sleep_ends_normally() {
    let ctx = Context::background();
    assert_eq!(nap(&ctx, 3, Duration::from_millis(1)), Some(3));
    assert_eq!(imported::nap_once(ctx.clone(), Duration::from_millis(1)), Ok("rested"));
    assert_eq!(imported::nap_bare(&mut ctx.clone(), Duration::from_millis(1)), Some("rested"));
}

#[test]
fn a_done_context_does_not_sleep_at_all() {
    let started = Instant::now();
    assert_eq!(nap(&done(), 3, LONG), None);
    assert_eq!(imported::nap_once(done(), LONG), Err(Error::Canceled));
    assert_eq!(imported::nap_bare(&mut done(), LONG), None);
    assert!(started.elapsed() < PROMPTLY);
}

#[test]
fn a_blocking_sleep_is_cut_short_by_a_cancel() {
    for (name, call) in [
        (
            "std::thread::sleep",
            (|ctx: Context| nap(&ctx, 1, LONG).is_none()) as fn(Context) -> bool,
        ),
        ("thread::sleep", |ctx| imported::nap_once(ctx, LONG) == Err(Error::Canceled)),
        ("sleep", |mut ctx| imported::nap_bare(&mut ctx, LONG).is_none()),
    ] {
        let (ctx, cancel) = live();
        let canceller = cancel_after(cancel, Duration::from_millis(20));
        let started = Instant::now();
        assert!(call(ctx), "{name}: the cancellation value");
        let took = started.elapsed();
        canceller.join().unwrap();
        assert!(took < PROMPTLY, "{name}: stopped after {took:?}");
    }
}

#[test]
fn a_deadline_cuts_a_blocking_sleep_short_too() {
    let (ctx, _cancel) = Context::background().with_timeout(Duration::from_millis(20));
    let started = Instant::now();
    assert_eq!(imported::nap_once(ctx, LONG), Err(Error::DeadlineExceeded));
    assert!(started.elapsed() < PROMPTLY);
}

#[test]
fn a_marked_sleep_is_left_alone() {
    let (ctx, cancel) = live();
    let canceller = cancel_after(cancel, Duration::from_millis(5));
    let started = Instant::now();
    assert_eq!(imported::nap_anyway(&ctx, Duration::from_millis(100)), Some("rested"));
    assert!(started.elapsed() >= Duration::from_millis(100));
    canceller.join().unwrap();
}

// ---------------------------------------------------------------------------------------------
// `-> !`: the body's type is `!`, and `on_cancel` says what to do instead of returning.

#[cancellable(on_cancel = panic!("stopped: {}", ctx.err().unwrap()))]
fn serve_forever(ctx: &Context, served: &mut u64) -> ! {
    loop {
        *served += 1;
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn a_never_returning_fn_runs_its_on_cancel() {
    let (ctx, cancel) = live();
    let canceller = cancel_after(cancel, Duration::from_millis(20));
    let started = Instant::now();
    let worker = std::thread::spawn(move || {
        let mut served = 0;
        serve_forever(&ctx, &mut served)
    });
    let panic = worker.join().expect_err("it can only end by panicking");
    assert!(started.elapsed() < PROMPTLY);
    assert_eq!(panic.downcast_ref::<String>().unwrap(), "stopped: context canceled");
    canceller.join().unwrap();

    let panic = std::thread::spawn(|| serve_forever(&done(), &mut 0)).join().unwrap_err();
    assert_eq!(panic.downcast_ref::<String>().unwrap(), "stopped: context canceled");
}

// ---------------------------------------------------------------------------------------------
// `impl Trait` inside a type with a cancellation value: `None` and `Err` by inference.

#[cancellable]
fn evens(
    ctx: &Context,
    cancel: Option<&CancelHandle>,
    up_to: u32,
) -> Option<impl Iterator<Item = u32>> {
    let mut kept = Vec::new();
    for n in 0..up_to {
        if n == 2 {
            cancel.inspect(|cancel| cancel.cancel());
        }
        if n % 2 == 0 {
            kept.push(n);
        }
    }
    Some(kept.into_iter())
}

#[test]
fn option_of_impl_iterator_returns_none() {
    let ctx = Context::background();
    assert_eq!(evens(&ctx, None, 7).unwrap().collect::<Vec<_>>(), [0, 2, 4, 6]);
    assert!(evens(&done(), None, 7).is_none());
    let (ctx, cancel) = live();
    assert!(evens(&ctx, Some(&cancel), 7).is_none());
}

#[cancellable]
fn prepared(ctx: &Context, value: u32) -> Result<impl Future<Output = u32>, Error> {
    for _ in 0..3 {}
    Ok(async move { value * 2 })
}

#[tokio::test]
async fn result_of_impl_future_returns_err() {
    assert_eq!(prepared(&Context::background(), 21).unwrap().await, 42);
    assert_eq!(prepared(&done(), 21).err(), Some(Error::Canceled));
}

// ---------------------------------------------------------------------------------------------
// Arguments.

#[cancellable(crate = "ctx")]
fn by_string_path(ctx: &Context) -> Option<()> {
    Some(())
}

#[test]
fn crate_may_be_given_as_a_string() {
    assert_eq!(by_string_path(&Context::background()), Some(()));
    assert_eq!(by_string_path(&done()), None);
}

#[cancellable(ctx = ctx)]
fn shared(ctx: Arc<Context>, cancel: &CancelHandle) -> Option<u32> {
    let mut n = 0;
    loop {
        n += 1;
        if n == 3 {
            cancel.cancel();
        }
        if n == 10 {
            return Some(n);
        }
    }
}

#[test]
fn an_arc_context_is_named_with_ctx() {
    let (ctx, cancel) = live();
    assert_eq!(shared(Arc::new(ctx), &cancel), None);
    let (ctx, cancel) = live();
    let ctx = Arc::new(ctx);
    drop(cancel);
    assert_eq!(shared(ctx, &live().1), Some(10));
}
