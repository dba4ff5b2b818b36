//! Helpers shared by the behaviour tests: a runtime-free `block_on`, wakers that count their
//! wake-ups, a seeded RNG (no dependency), a custom error type and a thread runner with a chosen
//! stack size.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::thread::{self, Thread};
use std::time::Duration;

/// "It does not hang" bound for tests that wait on other threads: generous on purpose, the
/// machines running the suite are small and shared.
pub const GENEROUS: Duration = Duration::from_secs(20);

/// Wakes a parked thread: the waker of [`block_on`].
struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the calling thread, parking between polls.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut future = pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        thread::park();
    }
}

/// A waker that only counts how often it was woken.
#[derive(Default)]
pub struct CountingWaker {
    wakes: AtomicUsize,
}

impl CountingWaker {
    /// The counter and a `Waker` that bumps it.
    pub fn new() -> (Arc<CountingWaker>, Waker) {
        let counter = Arc::new(CountingWaker::default());
        let waker = Waker::from(counter.clone());
        (counter, waker)
    }

    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl Wake for CountingWaker {
    fn wake(self: Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
    }
}

/// A waker that runs a closure on every wake-up (after counting it).
pub struct FnWaker<F> {
    wakes: AtomicUsize,
    on_wake: F,
}

impl<F: Fn() + Send + Sync + 'static> FnWaker<F> {
    pub fn new(on_wake: F) -> (Arc<FnWaker<F>>, Waker) {
        let this = Arc::new(FnWaker { wakes: AtomicUsize::new(0), on_wake });
        let waker = Waker::from(this.clone());
        (this, waker)
    }

    pub fn wakes(&self) -> usize {
        self.wakes.load(Ordering::SeqCst)
    }
}

impl<F: Fn() + Send + Sync + 'static> Wake for FnWaker<F> {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.fetch_add(1, Ordering::SeqCst);
        (self.on_wake)();
    }
}

/// `count` pending `done()` futures, alternately on `a` and `b`, each polled once with its own
/// counting waker: the futures (to keep them registered), their counters and their wakers.
pub fn pending_waiters(
    count: usize,
    a: &ctx_core::Context,
    b: &ctx_core::Context,
) -> Vec<(ctx_core::Done, Arc<CountingWaker>, Waker)> {
    (0..count)
        .map(|i| {
            let (counter, waker) = CountingWaker::new();
            let mut done = if i % 2 == 0 { a.done() } else { b.done() };
            assert!(poll_once(&mut done, &waker).is_pending());
            (done, counter, waker)
        })
        .collect()
}

/// Polls `future` once with `waker`.
pub fn poll_once<F: Future + Unpin>(future: &mut F, waker: &Waker) -> Poll<F::Output> {
    let mut cx = TaskContext::from_waker(waker);
    std::pin::Pin::new(future).poll(&mut cx)
}

/// SplitMix64: a tiny, good-enough seeded generator, so that failures are reproducible by seed.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`); the modulo bias is irrelevant here.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `true` with probability `percent / 100`.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

/// A custom cause that carries a number, so tests can tell causes apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Why(pub u64);

impl fmt::Display for Why {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "why #{}", self.0)
    }
}

impl std::error::Error for Why {}

/// The number a context's cause carries, if it is a [`Why`].
pub fn why_of(ctx: &ctx_core::Context) -> Option<u64> {
    ctx.cause().and_then(|cause| cause.downcast_ref::<Why>().map(|why| why.0))
}

/// Runs `f` on a new thread with `stack` bytes of stack and returns its result (resuming its
/// panic, if any). A stack overflow aborts the whole test binary, which also fails the run.
pub fn on_thread_with_stack<R: Send + 'static>(
    stack: usize,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let handle = thread::Builder::new().stack_size(stack).spawn(f).expect("spawn a test thread");
    match handle.join() {
        Ok(value) => value,
        Err(payload) => std::panic::resume_unwind(payload),
    }
}

/// The default stack of a spawned Rust thread (when `RUST_MIN_STACK` is not set).
pub const DEFAULT_THREAD_STACK: usize = 2 * 1024 * 1024;

/// Waits until `count` reaches `n`, failing after [`GENEROUS`] or if it goes past `n`: for
/// `after_func` callbacks registered on a done context, which run soon on the timer thread, not
/// before `after_func` returns.
pub fn wait_for_count(count: &AtomicUsize, n: usize) {
    let start = std::time::Instant::now();
    while count.load(Ordering::SeqCst) < n {
        assert!(
            start.elapsed() < GENEROUS,
            "still {} of {n} after {GENEROUS:?}",
            count.load(Ordering::SeqCst)
        );
        thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(count.load(Ordering::SeqCst), n, "counted too many");
}

/// Runs `f` on another thread and fails (instead of hanging the suite) if it does not finish
/// within [`GENEROUS`]. The thread is leaked on failure.
pub fn within_generous_time<R: Send + 'static>(
    what: &str,
    f: impl FnOnce() -> R + Send + 'static,
) -> R {
    let (tx, rx) = std::sync::mpsc::channel();
    let handle = thread::spawn(move || {
        let value = f();
        let _ = tx.send(());
        value
    });
    match rx.recv_timeout(GENEROUS) {
        Ok(()) => match handle.join() {
            Ok(value) => value,
            Err(payload) => std::panic::resume_unwind(payload),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(_) => unreachable!("the thread sends before returning"),
            Err(payload) => std::panic::resume_unwind(payload),
        },
        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
            panic!("{what}: did not finish within {GENEROUS:?} (deadlock or lost wake-up?)")
        }
    }
}

/// Whether the test binary is an optimised build: heavy counts are scaled down in debug builds.
pub const RELEASE: bool = !cfg!(debug_assertions);

/// Picks `full` in release builds and `debug` in debug builds.
pub const fn scaled(full: usize, debug: usize) -> usize {
    if RELEASE { full } else { debug }
}
