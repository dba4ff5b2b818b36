//! Deadlines under tokio's paused clock, with the `tokio-clock` feature (enabled for this test
//! through the facade's dev-dependency on `ctx-core`).

use std::time::{Duration, Instant};

use ctx::{Context, Error};

/// An hour-long timeout fires as soon as the paused clock auto-advances to it: the test takes
/// milliseconds of real time.
#[tokio::test(start_paused = true)]
async fn an_hour_timeout_fires_on_the_paused_clock() {
    let real_start = Instant::now();
    let (ctx, _handle) = Context::background().with_timeout(Duration::from_secs(3600));
    ctx.done().await;
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert!(
        real_start.elapsed() < Duration::from_secs(30),
        "fired on tokio's clock, not the wall's"
    );
}

/// `tokio::time::advance` moves deadlines; before the deadline the context is live.
#[tokio::test(start_paused = true)]
async fn advance_fires_exactly_at_the_deadline() {
    let (ctx, _handle) = Context::background()
        .with_timeout_cause(Duration::from_secs(10), std::io::Error::other("too slow"));
    tokio::time::advance(Duration::from_secs(9)).await;
    tokio::task::yield_now().await;
    assert!(!ctx.is_done(), "one second before the deadline");
    tokio::time::advance(Duration::from_secs(1)).await;
    tokio::time::timeout(Duration::from_secs(1), ctx.done()).await.expect("fired at the deadline");
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
    assert_eq!(ctx.cause().unwrap().to_string(), "too slow");
}

/// Cancelling first aborts the tokio sleep and releases the timer entry.
#[tokio::test(start_paused = true)]
async fn cancel_before_the_deadline_wins() {
    let (ctx, handle) = Context::background().with_timeout(Duration::from_secs(5));
    handle.cancel();
    tokio::time::advance(Duration::from_secs(10)).await;
    assert_eq!(ctx.err(), Some(Error::Canceled));
}

/// Outside a runtime the feature changes nothing: the timer thread fires on the real clock.
#[test]
fn outside_a_runtime_the_timer_thread_fires() {
    let (ctx, _handle) = Context::background().with_timeout(Duration::from_millis(20));
    assert!(ctx.wait_timeout(Duration::from_secs(10)));
    assert_eq!(ctx.err(), Some(Error::DeadlineExceeded));
}
