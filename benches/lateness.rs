//! How late deadlines fire (benchmark 7 of BENCHMARKS.md). Not a criterion benchmark: the
//! quantity is a distribution of delays, not the speed of a function, so this binary records
//! every delay and prints percentiles and a histogram.
//!
//! Four measurements:
//! - **one at a time, seen by a waiter**: a thread derives a short timeout, blocks in
//!   `wait()`, and records `Instant::now() - deadline` when it wakes (timer thread firing + the
//!   unpark of the waiter: what a user sees);
//! - **many at once, seen at firing**: thousands of deadlines spread over 200 ms are pending
//!   together; an `after_func` callback records the delay when the timer thread fires each one;
//! - **the floor**: `std::thread::sleep` until the same deadline, one at a time: how late the
//!   operating system wakes a sleeping thread on this machine, under its current load;
//! - **tokio's timer, for reference**: `tokio::time::sleep_until` on a current-thread runtime,
//!   one at a time, the same durations (tokio's timer has a 1 ms resolution).
//!
//! `--quick` (as in `cargo bench --bench '*' -- --quick`) takes fewer samples. Without `--bench`
//! (as under `cargo test --benches`) it takes very few, to check that it runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ctx::Context;

/// The timeouts used one at a time: 1 ms to 3 ms in steps of 0.25 ms.
fn timeout(i: usize) -> Duration {
    Duration::from_micros(1_000 + 250 * (i % 9) as u64)
}

fn sequential_ours(samples: usize) -> Vec<Duration> {
    let root = Context::background();
    (0..samples)
        .map(|i| {
            let (ctx, _handle) = root.with_timeout(timeout(i));
            let deadline = ctx.deadline().expect("a timeout has a deadline");
            ctx.wait();
            Instant::now().saturating_duration_since(deadline)
        })
        .collect()
}

/// The floor: how late the operating system wakes a thread that sleeps until the same deadline.
/// A deadline fired by the timer thread cannot beat this; it adds a second wake-up (the waiter's).
fn sequential_sleep(samples: usize) -> Vec<Duration> {
    (0..samples)
        .map(|i| {
            let deadline = Instant::now() + timeout(i);
            std::thread::sleep(deadline.saturating_duration_since(Instant::now()));
            Instant::now().saturating_duration_since(deadline)
        })
        .collect()
}

fn sequential_tokio(samples: usize) -> Vec<Duration> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let mut late = Vec::with_capacity(samples);
        for i in 0..samples {
            let deadline = Instant::now() + timeout(i);
            tokio::time::sleep_until(deadline.into()).await;
            late.push(Instant::now().saturating_duration_since(deadline));
        }
        late
    })
}

/// The delay slot of a deadline whose callback has not run.
const NOT_FIRED: u64 = u64::MAX;

/// `count` deadlines spread evenly over 200 ms, all pending at once; each records its delay from
/// an `after_func` callback, which the timer thread runs as it fires the deadline.
fn concurrent_ours(count: usize) -> Vec<Duration> {
    let root = Context::background();
    let delays: Arc<Vec<AtomicU64>> =
        Arc::new((0..count).map(|_| AtomicU64::new(NOT_FIRED)).collect());
    let start = Instant::now() + Duration::from_millis(10);
    let spread = Duration::from_millis(200);
    let contexts: Vec<_> = (0..count)
        .map(|i| {
            let deadline = start + spread.mul_f64(i as f64 / count as f64);
            let (ctx, handle) = root.with_deadline(deadline);
            let delays = delays.clone();
            let _stop = ctx.after_func(move || {
                let late = Instant::now().saturating_duration_since(deadline);
                let nanos = u64::try_from(late.as_nanos()).unwrap_or(u64::MAX);
                delays[i].store(nanos, Ordering::Relaxed);
            });
            (ctx, handle)
        })
        .collect();
    // Sleep rather than wait on each context: a waiter would add an unpark to every firing and
    // compete with the timer thread for the CPU; this measures the timer alone.
    std::thread::sleep((start + spread).saturating_duration_since(Instant::now()));
    for (ctx, _) in &contexts {
        ctx.wait();
    }
    // `after_func` callbacks run right after the cancel that fired them; give the timer thread a
    // moment to run the last few before reading.
    std::thread::sleep(Duration::from_millis(20));
    let fired: Vec<Duration> = delays
        .iter()
        .map(|nanos| nanos.load(Ordering::Relaxed))
        .filter(|&nanos| nanos != NOT_FIRED)
        .map(Duration::from_nanos)
        .collect();
    assert_eq!(fired.len(), count, "every deadline fired and ran its callback");
    fired
}

fn report(name: &str, mut late: Vec<Duration>) {
    late.sort();
    let n = late.len();
    let at = |q: f64| late[((n as f64 * q) as usize).min(n - 1)];
    let mean = late.iter().sum::<Duration>() / n as u32;
    println!("{name} ({n} samples)");
    println!(
        "  p50 {:?}  p90 {:?}  p99 {:?}  p99.9 {:?}  max {:?}  mean {:?}",
        at(0.50),
        at(0.90),
        at(0.99),
        at(0.999),
        late[n - 1],
        mean
    );
    let bounds_us = [10, 50, 100, 250, 500, 1_000, 2_000, 5_000];
    let mut below = 0;
    let mut line = String::from("  late by");
    for bound in bounds_us {
        let count = late.partition_point(|d| *d < Duration::from_micros(bound)) - below;
        below += count;
        line += &format!("  <{bound}us: {count}");
    }
    line += &format!("  >=5ms: {}", n - below);
    println!("{line}");
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A criterion-style filter that does not name this benchmark skips it.
    if args.iter().any(|a| !a.starts_with('-') && !"lateness".contains(a.as_str())) {
        return;
    }
    let (sequential, concurrent) = if !args.iter().any(|a| a == "--bench") {
        (10, 100)
    } else if args.iter().any(|a| a == "--quick") {
        (200, 2_000)
    } else {
        (1_000, 10_000)
    };
    println!("deadline lateness: how long after its deadline a context is done");
    report("ours, one at a time, seen by the waiter", sequential_ours(sequential));
    report(
        "ours, 200 ms of deadlines pending at once, seen at firing",
        concurrent_ours(concurrent),
    );
    report("floor: std::thread::sleep, one at a time", sequential_sleep(sequential));
    report("tokio sleep_until, one at a time (reference)", sequential_tokio(sequential));
}
