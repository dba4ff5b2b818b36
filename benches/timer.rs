//! Deadlines under load (benchmark 6 of BENCHMARKS.md): derive a `with_timeout` context, cancel
//! it and drop it, while 100,000 other timeouts are pending; and the same with none pending, to
//! show what the pending ones cost. Allocations per operation come from `benches/alloc.rs`.
//!
//! Every timeout here is an hour long, so none fires during the run and each new one is the
//! latest: the shape of a server that gives every request the same timeout.

mod common;

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ctx::{CancelHandle, Context};

const LONG: Duration = Duration::from_secs(3600);

fn create_cancel_drop(parent: &Context) {
    let (ctx, handle) = black_box(parent).with_timeout(LONG);
    handle.cancel();
    drop(black_box(ctx));
    drop(handle);
}

fn bench_timeout(c: &mut Criterion) {
    let parent = Context::background();
    let mut group = c.benchmark_group("with_timeout_create_cancel_drop");
    for pending in [0, 100_000] {
        let timers: Vec<(Context, CancelHandle)> =
            (0..pending).map(|_| parent.with_timeout(LONG)).collect();
        group.bench_function(BenchmarkId::new("ours_pending", pending), |b| {
            b.iter(|| create_cancel_drop(&parent))
        });
        drop(timers);
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_timeout
}
criterion_main!(benches);
