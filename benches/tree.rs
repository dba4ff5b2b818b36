//! The cancellation tree: deriving a child and getting rid of it (benchmark 3 of
//! BENCHMARKS.md), and cancelling a wide tree and a deep chain (benchmark 4).
//!
//! ours is `Context::with_cancel`, the peer is tokio-util's `CancellationToken::child_token`.
//! The floor for benchmark 3 is the least any shared cancellation flag costs: allocate an
//! `Arc<AtomicBool>`, set it, free it; `unit_atomic_rmw` times one uncontended atomic
//! read-modify-write, the unit in which BENCHMARKS.md counts what remains of benchmark 3.
//!
//! In benchmark 4 only the cancel is timed: building the tree happens in criterion's setup and
//! dropping it after the measurement.

mod common;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ctx::{CancelHandle, Context};
use tokio_util::sync::CancellationToken;

fn bench_child(c: &mut Criterion) {
    let (parent, _parent_handle) = Context::background().with_cancel();
    let peer_parent = CancellationToken::new();

    let mut group = c.benchmark_group("child_create_cancel_drop");
    group.bench_function("ours_with_cancel", |b| {
        b.iter(|| {
            let (child, handle) = black_box(&parent).with_cancel();
            handle.cancel();
            drop(black_box(child));
            drop(handle);
        })
    });
    group.bench_function("peer_child_token", |b| {
        b.iter(|| {
            let child = black_box(&peer_parent).child_token();
            child.cancel();
            drop(black_box(child));
        })
    });
    group.bench_function("floor_arc_atomic_bool", |b| {
        b.iter(|| {
            let flag = Arc::new(AtomicBool::new(false));
            black_box(&flag).store(true, Ordering::Release);
            drop(black_box(flag));
        })
    });
    // Not a floor of the operation but of its parts: one uncontended atomic read-modify-write
    // (a reference count, a lock, a compare-exchange of a state), which BENCHMARKS.md counts.
    let counter = AtomicUsize::new(0);
    group.bench_function("unit_atomic_rmw", |b| {
        b.iter(|| black_box(&counter).fetch_add(1, Ordering::AcqRel))
    });
    group.finish();
}

/// A live root and `n` live children of it.
fn ours_wide(n: usize) -> (CancelHandle, Vec<Context>) {
    let (root, handle) = Context::background().with_cancel();
    let children = (0..n).map(|_| root.with_cancel().0).collect();
    (handle, children)
}

fn peer_wide(n: usize) -> (CancellationToken, Vec<CancellationToken>) {
    let root = CancellationToken::new();
    let children = (0..n).map(|_| root.child_token()).collect();
    (root, children)
}

/// A chain `depth` deep below a live root; the contexts are kept so that every level stays live.
fn ours_chain(depth: usize) -> (CancelHandle, Vec<Context>) {
    let (root, handle) = Context::background().with_cancel();
    let mut chain = Vec::with_capacity(depth);
    let mut last = root;
    for _ in 0..depth {
        let (child, _) = last.with_cancel();
        chain.push(last);
        last = child;
    }
    chain.push(last);
    (handle, chain)
}

fn peer_chain(depth: usize) -> (CancellationToken, Vec<CancellationToken>) {
    let root = CancellationToken::new();
    let mut chain = Vec::with_capacity(depth);
    let mut last = root.clone();
    for _ in 0..depth {
        let child = last.child_token();
        chain.push(last);
        last = child;
    }
    chain.push(last);
    (root, chain)
}

fn bench_cancel_tree(c: &mut Criterion) {
    let mut group = c.benchmark_group("cancel_root_with_children");
    group.sample_size(10);
    for n in [1_000, 10_000, 100_000] {
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("ours", n), &n, |b, &n| {
            b.iter_batched(
                || ours_wide(n),
                |tree| {
                    tree.0.cancel();
                    tree
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_with_input(BenchmarkId::new("peer", n), &n, |b, &n| {
            b.iter_batched(
                || peer_wide(n),
                |tree| {
                    tree.0.cancel();
                    tree
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();

    let mut group = c.benchmark_group("cancel_chain");
    group.sample_size(10);
    let depth = 1_000;
    group.throughput(Throughput::Elements(depth as u64));
    group.bench_with_input(BenchmarkId::new("ours", depth), &depth, |b, &depth| {
        b.iter_batched(
            || ours_chain(depth),
            |chain| {
                chain.0.cancel();
                chain
            },
            BatchSize::PerIteration,
        )
    });
    group.bench_with_input(BenchmarkId::new("peer", depth), &depth, |b, &depth| {
        b.iter_batched(
            || peer_chain(depth),
            |chain| {
                chain.0.cancel();
                chain
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = common::config();
    targets = bench_child, bench_cancel_tree
}
criterion_main!(benches);
