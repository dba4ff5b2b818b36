//! Memory per context (benchmark 8 of BENCHMARKS.md) and allocations per operation for
//! benchmarks 3 and 6, counted by an instrumented global allocator.
//!
//! The allocator counts every allocation of the process, so each figure is taken on the main
//! thread while no other thread of ours allocates (no deadline fires during the run: they are an
//! hour long). The counting allocator is the `stats_alloc` crate because implementing
//! `GlobalAlloc` needs `unsafe`, which the workspace forbids. Not a criterion benchmark: the
//! figures are exact counts, not timings, so one pass suffices.

use std::alloc::System;
use std::hint::black_box;
use std::mem::size_of;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ctx::{CancelHandle, Context};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, Stats, StatsAlloc};
use tokio_util::sync::CancellationToken;

#[cfg(feature = "http")]
#[path = "common/requests.rs"]
mod requests;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const LONG: Duration = Duration::from_secs(3600);

/// Allocations and bytes per operation, over `ops` operations.
struct PerOp {
    allocations: f64,
    /// Growths of an existing block (a parent's list of children growing), per operation.
    reallocations: f64,
    /// Bytes requested, counting the growth of reallocated blocks.
    bytes: f64,
    /// Bytes still allocated afterwards, per operation (what the operation's result keeps).
    live_bytes: f64,
}

impl PerOp {
    fn of(stats: Stats, ops: usize) -> PerOp {
        let ops = ops as f64;
        // `stats_alloc` adds a reallocation's growth to `bytes_allocated` (and a shrink to
        // `bytes_deallocated`), so this difference is what is still allocated.
        let live = stats.bytes_allocated as f64 - stats.bytes_deallocated as f64;
        PerOp {
            allocations: stats.allocations as f64 / ops,
            reallocations: stats.reallocations as f64 / ops,
            bytes: stats.bytes_allocated as f64 / ops,
            live_bytes: live / ops,
        }
    }
}

/// Runs `op` `ops` times and counts what it allocates.
fn per_op(ops: usize, mut op: impl FnMut()) -> PerOp {
    let region = Region::new(GLOBAL);
    for _ in 0..ops {
        op();
    }
    PerOp::of(region.change(), ops)
}

/// Creates `n` children with `make` and keeps them: bytes and allocations per live child,
/// including what the parent spends to remember them.
fn per_live_child<T>(n: usize, mut make: impl FnMut() -> T) -> PerOp {
    let mut children = Vec::with_capacity(n);
    let region = Region::new(GLOBAL);
    for _ in 0..n {
        children.push(make());
    }
    let stats = region.change();
    drop(children);
    PerOp::of(stats, n)
}

fn row(what: &str, figures: &PerOp) {
    println!(
        "| {what} | {:.2} | {:.2} | {:.1} | {:.1} |",
        figures.allocations, figures.reallocations, figures.bytes, figures.live_bytes
    );
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // A criterion-style filter that does not name this benchmark skips it.
    if args.iter().any(|a| !a.starts_with('-') && !"alloc".contains(a.as_str())) {
        return;
    }
    let quick = !args.iter().any(|a| a == "--bench") || args.iter().any(|a| a == "--quick");
    let (ops, wide, pending) =
        if quick { (1_000, 10_000, 10_000) } else { (10_000, 100_000, 100_000) };

    let (parent, _parent_handle) = Context::background().with_cancel();
    let peer_parent = CancellationToken::new();
    // Warm up: let each parent grow the storage it keeps for children, so that one more child
    // costs only itself.
    drop(parent.with_cancel());
    drop(peer_parent.child_token());
    // The first deadline starts the timer thread and its map; that is paid once per process.
    drop(Context::background().with_timeout(LONG));

    println!(
        "Sizes of the handles (stack bytes): Context {} B, CancelHandle {} B, CancellationToken {} B",
        size_of::<Context>(),
        size_of::<CancelHandle>(),
        size_of::<CancellationToken>()
    );
    println!();
    println!(
        "| operation | allocations/op | reallocations/op | bytes allocated/op | bytes still live/op |"
    );
    println!("|---|---|---|---|---|");

    let mut kept = Vec::with_capacity(1);
    row(
        "one cancellable child: ours `with_cancel` (parent warmed up)",
        &per_op(1, || kept.push(parent.with_cancel())),
    );
    drop(kept);
    let mut kept = Vec::with_capacity(1);
    row(
        "one cancellable child: peer `child_token` (parent warmed up)",
        &per_op(1, || kept.push(peer_parent.child_token())),
    );
    drop(kept);
    let mut kept = Vec::with_capacity(1);
    row(
        "one `with_timeout` child of background: ours",
        &per_op(1, || kept.push(Context::background().with_timeout(LONG))),
    );
    drop(kept);
    let mut kept = Vec::with_capacity(1);
    row(
        "one `with_value` child of the cancellable parent: ours",
        &per_op(1, || kept.push(parent.with_value(7u64))),
    );
    drop(kept);

    row(
        &format!("{wide} live cancellable children of one parent, per child: ours"),
        &per_live_child(wide, || parent.with_cancel()),
    );
    row(
        &format!("{wide} live cancellable children of one parent, per child: peer"),
        &per_live_child(wide, || peer_parent.child_token()),
    );

    row(
        "child create + cancel + drop: ours `with_cancel`",
        &per_op(ops, || {
            let (child, handle) = black_box(&parent).with_cancel();
            handle.cancel();
            drop(black_box(child));
        }),
    );
    row(
        "child create + cancel + drop: peer `child_token`",
        &per_op(ops, || {
            let child = black_box(&peer_parent).child_token();
            child.cancel();
            drop(black_box(child));
        }),
    );
    row(
        "child create + cancel + drop: floor `Arc<AtomicBool>`",
        &per_op(ops, || {
            let flag = Arc::new(AtomicBool::new(false));
            black_box(&flag).store(true, Ordering::Release);
            drop(black_box(flag));
        }),
    );

    let timers: Vec<(Context, CancelHandle)> =
        (0..pending).map(|_| Context::background().with_timeout(LONG)).collect();
    row(
        &format!("`with_timeout` create + cancel + drop, {pending} timers pending: ours"),
        &per_op(ops, || {
            let (ctx, handle) = Context::background().with_timeout(LONG);
            handle.cancel();
            drop(black_box(ctx));
        }),
    );
    drop(timers);

    #[cfg(feature = "http")]
    http_rows(ops);
}

/// Benchmark 9's allocations: one request served start to end (built, served, its body read to
/// the end and dropped) with and without `ctx::http`'s layers. Each figure includes what the
/// request itself allocates; the layer's share is the difference between a row and its
/// baseline.
#[cfg(feature = "http")]
fn http_rows(ops: usize) {
    use ctx::http::{ClientLayer, ServerLayer};
    use http::{HeaderValue, Request};
    use tower::Layer;

    #[derive(Clone)]
    struct Earlier;

    let timeout_header = || {
        let mut request = Request::new(());
        request.headers_mut().insert("grpc-timeout", HeaderValue::from_static("200m"));
        request
    };
    let with_extension = || {
        let mut request = Request::new(());
        request.extensions_mut().insert(Earlier);
        request
    };
    let (root, _shutdown) = Context::background().with_cancel();
    let mut bare = requests::handler();
    let mut server = ServerLayer::new(&root).layer(requests::handler());
    // Warm up: `root` grows the storage it keeps for children once.
    requests::serve(&mut server, Request::new(()));

    let served = |what: &str, service: &mut dyn FnMut()| row(what, &per_op(ops, service));
    served("HTTP request, no header: without a layer", &mut || {
        requests::serve(&mut bare, Request::new(()))
    });
    served("HTTP request, no header: `ServerLayer`", &mut || {
        requests::serve(&mut server, Request::new(()))
    });
    served("HTTP request, `grpc-timeout: 200m`: without a layer", &mut || {
        requests::serve(&mut bare, timeout_header())
    });
    served("HTTP request, `grpc-timeout: 200m`: `ServerLayer`", &mut || {
        requests::serve(&mut server, timeout_header())
    });
    served("HTTP request with one extension already: without a layer", &mut || {
        requests::serve(&mut bare, with_extension())
    });
    served("HTTP request with one extension already: `ServerLayer`", &mut || {
        requests::serve(&mut server, with_extension())
    });

    let (ctx, _cancel) = Context::background().with_timeout(LONG);
    let carrying_ctx = || {
        let mut request = Request::new(());
        request.extensions_mut().insert(ctx.clone());
        request
    };
    let mut client = ClientLayer::new().layer(requests::handler());
    served("HTTP request carrying a context with a deadline: without a layer", &mut || {
        requests::serve(&mut bare, carrying_ctx())
    });
    served("HTTP request carrying a context with a deadline: `ClientLayer`", &mut || {
        requests::serve(&mut client, carrying_ctx())
    });
}
