//! Churn under a parent of a given size (benchmark 10 of BENCHMARKS.md): one child created and
//! cancelled and dropped, or created and dropped, while the parent already has 0, 1,000 or
//! 100,000 live children. This is the cost the parent's dependents slab adds to every
//! short-lived request context of a busy server root, so it shows that a slab which gives its
//! memory back after a burst did not make the steady state slower.
//!
//! ours is `Context::with_cancel`, the peer is tokio-util's `CancellationToken::child_token`.

mod common;

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use ctx::Context;
use tokio_util::sync::CancellationToken;

const SIZES: [usize; 3] = [0, 1_000, 100_000];

fn bench_churn(c: &mut Criterion) {
    for cancel in [true, false] {
        let name = if cancel { "churn_create_cancel_drop" } else { "churn_create_drop" };
        let mut group = c.benchmark_group(name);
        for size in SIZES {
            let (parent, _handle) = Context::background().with_cancel();
            let others: Vec<_> = (0..size).map(|_| parent.with_cancel()).collect();
            group.bench_with_input(BenchmarkId::new("ours", size), &size, |b, _| {
                b.iter(|| {
                    let (child, handle) = black_box(&parent).with_cancel();
                    if cancel {
                        handle.cancel();
                    }
                    drop(black_box(child));
                    drop(handle);
                })
            });
            drop(others);
            let peer_parent = CancellationToken::new();
            let peer_others: Vec<_> = (0..size).map(|_| peer_parent.child_token()).collect();
            group.bench_with_input(BenchmarkId::new("peer", size), &size, |b, _| {
                b.iter(|| {
                    let child = black_box(&peer_parent).child_token();
                    if cancel {
                        child.cancel();
                    }
                    drop(black_box(child));
                })
            });
            drop(peer_others);
        }
        group.finish();
    }
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_churn
}
criterion_main!(benches);
