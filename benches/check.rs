//! The cost of asking "am I cancelled?": ctx's `is_done`, tokio-util's `is_cancelled` and the
//! floor, a bare `AtomicBool` load (benchmark 1 of BENCHMARKS.md); and what that check costs
//! inside a loop with a ~10 ns body (benchmark 2).
//!
//! Each measured iteration makes `CHECKS` checks through `black_box`, so the compiler must load
//! the flag every time and the per-iteration overhead of the harness does not dominate a
//! nanosecond-sized operation. Criterion reports the time per iteration and, from the
//! throughput, the checks per second; BENCHMARKS.md divides to ns per check.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ctx::Context;
use tokio_util::sync::CancellationToken;

/// Checks per measured iteration.
const CHECKS: u64 = 1_000;

/// Iterations of the loop in benchmark 2, per measured iteration.
const LOOP_LEN: u64 = 1_000;

/// Something that can be asked whether it is cancelled, so that every row runs the same loop.
trait Check: Clone + Send + Sync + 'static {
    fn is_set(&self) -> bool;
}

impl Check for Context {
    #[inline]
    fn is_set(&self) -> bool {
        self.is_done()
    }
}

impl Check for CancellationToken {
    #[inline]
    fn is_set(&self) -> bool {
        self.is_cancelled()
    }
}

/// The floor: what any cancellation check must at least do.
impl Check for Arc<AtomicBool> {
    #[inline]
    fn is_set(&self) -> bool {
        self.load(Ordering::Acquire)
    }
}

fn checks<C: Check>(flag: &C) -> u64 {
    let mut set = 0;
    for _ in 0..CHECKS {
        set += u64::from(black_box(flag).is_set());
    }
    set
}

/// Runs `f` while a second thread checks `flag` in a loop, as a worker pool sharing one request
/// context does. The checker is joined before returning.
fn with_second_checker<C: Check>(flag: &C, f: impl FnOnce()) {
    let stop = Arc::new(AtomicBool::new(false));
    let checker = {
        let (flag, stop) = (flag.clone(), stop.clone());
        thread::spawn(move || {
            let mut set = 0u64;
            while !stop.load(Ordering::Relaxed) {
                set += u64::from(black_box(&flag).is_set());
            }
            set
        })
    };
    f();
    stop.store(true, Ordering::Relaxed);
    black_box(checker.join().expect("the checker thread does not panic"));
}

fn bench_check(c: &mut Criterion) {
    let (ours, _handle) = Context::background().with_cancel();
    let peer = CancellationToken::new();
    let floor = Arc::new(AtomicBool::new(false));

    let mut group = c.benchmark_group("check");
    group.throughput(Throughput::Elements(CHECKS));
    group.bench_function("ours_is_done", |b| b.iter(|| checks(&ours)));
    group.bench_function("peer_is_cancelled", |b| b.iter(|| checks(&peer)));
    group.bench_function("floor_atomic_load", |b| b.iter(|| checks(&floor)));
    group.finish();

    let mut group = c.benchmark_group("check_with_second_thread");
    group.throughput(Throughput::Elements(CHECKS));
    with_second_checker(&ours, || {
        group.bench_function("ours_is_done", |b| b.iter(|| checks(&ours)));
    });
    with_second_checker(&peer, || {
        group.bench_function("peer_is_cancelled", |b| b.iter(|| checks(&peer)));
    });
    with_second_checker(&floor, || {
        group.bench_function("floor_atomic_load", |b| b.iter(|| checks(&floor)));
    });
    group.finish();
}

/// One iteration of the loop body: a chain of dependent multiply-rotates that takes about 10 ns
/// on a ~3 GHz core, so a check (an independent load) can overlap with it, as in real code.
#[inline(always)]
fn body(acc: u64, i: u64) -> u64 {
    let mut x = acc ^ i;
    for _ in 0..8 {
        x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(29);
    }
    x
}

#[inline(never)]
fn loop_unchecked(n: u64, seed: u64) -> u64 {
    let mut acc = seed;
    for i in 0..n {
        acc = body(acc, i);
    }
    acc
}

#[inline(never)]
fn loop_hand_checked(ctx: &Context, n: u64, seed: u64) -> Option<u64> {
    let mut acc = seed;
    for i in 0..n {
        if ctx.is_done() {
            return None;
        }
        acc = body(acc, i);
    }
    Some(acc)
}

#[inline(never)]
fn loop_peer_checked(token: &CancellationToken, n: u64, seed: u64) -> Option<u64> {
    let mut acc = seed;
    for i in 0..n {
        if token.is_cancelled() {
            return None;
        }
        acc = body(acc, i);
    }
    Some(acc)
}

/// The loop as a user writes it: `#[cancellable]` inserts the check at the top of each iteration.
#[ctx::cancellable]
#[inline(never)]
fn loop_macro_checked(ctx: &Context, n: u64, seed: u64) -> Option<u64> {
    let mut acc = seed;
    for i in 0..n {
        acc = body(acc, i);
    }
    Some(acc)
}

fn bench_loop(c: &mut Criterion) {
    let (ctx, _handle) = Context::background().with_cancel();
    let token = CancellationToken::new();
    // The rows must compute the same thing, and the checked ones must really check.
    let expected = Some(loop_unchecked(LOOP_LEN, 1));
    assert_eq!(loop_macro_checked(&ctx, LOOP_LEN, 1), expected);
    assert_eq!(loop_hand_checked(&ctx, LOOP_LEN, 1), expected);
    assert_eq!(loop_peer_checked(&token, LOOP_LEN, 1), expected);
    let (done, cancel) = Context::background().with_cancel();
    cancel.cancel();
    assert_eq!(loop_macro_checked(&done, LOOP_LEN, 1), None);
    assert_eq!(loop_hand_checked(&done, LOOP_LEN, 1), None);

    let mut group = c.benchmark_group("loop_10ns_body");
    group.throughput(Throughput::Elements(LOOP_LEN));
    group.bench_function("unchecked", |b| {
        b.iter(|| loop_unchecked(black_box(LOOP_LEN), black_box(1)))
    });
    group.bench_function("ours_cancellable_macro", |b| {
        b.iter(|| loop_macro_checked(black_box(&ctx), black_box(LOOP_LEN), black_box(1)))
    });
    group.bench_function("ours_hand_written_is_done", |b| {
        b.iter(|| loop_hand_checked(black_box(&ctx), black_box(LOOP_LEN), black_box(1)))
    });
    group.bench_function("peer_hand_written_is_cancelled", |b| {
        b.iter(|| loop_peer_checked(black_box(&token), black_box(LOOP_LEN), black_box(1)))
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_check, bench_loop
}
criterion_main!(benches);
