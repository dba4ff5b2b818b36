//! Waking many async waiters (benchmark 5 of BENCHMARKS.md): 10,000 tokio tasks on a runtime
//! with 2 worker threads await the same context; the time is taken from just before `cancel` until
//! the last task has finished.
//!
//! Every task polls its wait future once and only then reports ready, so when the clock starts
//! every waiter is registered; the last task to finish wakes the measuring thread through a
//! channel, so the measuring thread does not steal a core from the workers while it waits.
//!
//! Three threads share the two cores here, so single rounds vary by a third or more; 30 samples
//! over 8 s per side narrow the spread of one run's median (BENCHMARKS.md gives the runs).

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::task::Poll;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ctx::Context;
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const TASKS: usize = 10_000;

/// Counts tasks that are registered and tasks that are finished, and tells the measuring thread
/// when the last one finishes.
struct Progress {
    registered: AtomicUsize,
    finished: AtomicUsize,
    all_finished: mpsc::SyncSender<()>,
}

impl Progress {
    fn finish(&self) {
        if self.finished.fetch_add(1, Ordering::AcqRel) + 1 == TASKS {
            self.all_finished.send(()).expect("the measuring thread waits for this");
        }
    }
}

/// Polls `wait` once (registering its waker), reports the task as registered, then awaits it.
async fn register_then_wait(wait: impl Future<Output = ()>, progress: Arc<Progress>) {
    let mut wait = pin!(wait);
    let first = std::future::poll_fn(|cx| Poll::Ready(wait.as_mut().poll(cx))).await;
    progress.registered.fetch_add(1, Ordering::AcqRel);
    if first.is_pending() {
        wait.await;
    }
    progress.finish();
}

/// Spawns `TASKS` waiters made by `spawn_one`, waits until all are registered, then times
/// `cancel` until the last one has finished.
fn one_round(
    runtime: &Runtime,
    spawn_one: impl Fn(Arc<Progress>),
    cancel: impl FnOnce(),
) -> Duration {
    let (all_finished, finished) = mpsc::sync_channel(1);
    let progress = Arc::new(Progress {
        registered: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        all_finished,
    });
    let _enter = runtime.enter();
    for _ in 0..TASKS {
        spawn_one(progress.clone());
    }
    while progress.registered.load(Ordering::Acquire) < TASKS {
        std::thread::sleep(Duration::from_micros(100));
    }
    let start = Instant::now();
    cancel();
    finished.recv().expect("the last task reports");
    start.elapsed()
}

fn bench_wake(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("a tokio runtime");

    let mut group = c.benchmark_group("wake_tasks");
    group.sample_size(30);
    group.throughput(Throughput::Elements(TASKS as u64));
    group.bench_function(BenchmarkId::new("ours_done", TASKS), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let (ctx, handle) = Context::background().with_cancel();
                    one_round(
                        &runtime,
                        |progress| {
                            let ctx = ctx.clone();
                            tokio::spawn(async move {
                                register_then_wait(ctx.done(), progress).await;
                            });
                        },
                        || handle.cancel(),
                    )
                })
                .sum()
        })
    });
    group.bench_function(BenchmarkId::new("peer_cancelled", TASKS), |b| {
        b.iter_custom(|iters| {
            (0..iters)
                .map(|_| {
                    let token = CancellationToken::new();
                    one_round(
                        &runtime,
                        |progress| {
                            let token = token.clone();
                            tokio::spawn(async move {
                                register_then_wait(token.cancelled(), progress).await;
                            });
                        },
                        || token.cancel(),
                    )
                })
                .sum()
        })
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(8))
}

criterion_group! {
    name = benches;
    config = config();
    targets = bench_wake
}
criterion_main!(benches);
