//! The deadline timer: one lazily started thread that cancels contexts whose deadline has
//! passed. It needs no async runtime, so deadlines work on plain threads, on tokio and on any
//! other executor alike. It also runs the `after_func` callbacks registered on contexts that are
//! already done (`run_soon`): they must not run inside the call that registers them, which may
//! hold a lock the callback takes (Go runs them on a goroutine of their own).
//!
//! Invariants:
//! - `entries` maps `(deadline, id)` to the deadline context, held weakly: a pending timer never
//!   keeps a context alive. Ids are unique, so a key names exactly one entry; insert and remove
//!   are O(log n) in the number of pending deadlines.
//! - A context removes its entry when it is cancelled, fires or is dropped (`DeadlineLayer::release`),
//!   so cancelled or dropped contexts leave nothing behind.
//! - The thread sleeps on the condition variable until the earliest deadline, or indefinitely
//!   while no deadline is pending and no callback is ready: it does no work and no polling when
//!   idle. An insert that
//!   becomes the earliest entry notifies it.
//! - It fires an entry only once `Instant::now() >= deadline`: deadlines never fire early.
//! - Entries due together fire in deadline order, equal deadlines newest first. A context is
//!   always newer than its ancestors, so a deadline equal to an ancestor's finishes its own
//!   context with its own cause before the ancestor's cancel reaches it (Go keeps that layer too).
//! - It never holds the timer lock while cancelling or running a callback (tree invariant 3): it
//!   takes the due entries and the ready callbacks out, unlocks, then runs them. Ready callbacks
//!   come first, each once, in the order they were handed over; `run_soon` always notifies.

use std::cmp::Reverse;
use std::collections::BTreeMap;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::time::Instant;

use crate::tree::Node;

/// Names one pending deadline.
pub(crate) type Key = (Instant, u64);

struct Timer {
    state: Mutex<State>,
    wake: Condvar,
}

/// A callback to run on the timer thread.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

#[derive(Default)]
struct State {
    entries: BTreeMap<Key, Weak<Node>>,
    /// Callbacks handed over by `run_soon`, not yet taken by the thread.
    ready: Vec<Job>,
    started: bool,
    /// When the timer thread will wake up by itself (`None`: it waits to be notified). An insert
    /// notifies it only if its deadline comes earlier.
    wakes_at: Option<Instant>,
}

static TIMER: OnceLock<Timer> = OnceLock::new();
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

fn timer() -> &'static Timer {
    TIMER.get_or_init(|| Timer { state: Mutex::new(State::default()), wake: Condvar::new() })
}

fn lock(timer: &Timer) -> MutexGuard<'_, State> {
    timer.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

pub(crate) fn key(deadline: Instant) -> Key {
    (deadline, NEXT_ID.fetch_add(1, Ordering::Relaxed))
}

/// Schedules `node` to be finished with `DeadlineExceeded` at `key.0`.
///
/// # Panics
/// If the operating system refuses to start the timer thread (the first time only).
pub(crate) fn insert(key: Key, node: Weak<Node>) {
    let timer = timer();
    let mut state = lock(timer);
    start_once(timer, &mut state);
    let earliest = state.wakes_at.is_none_or(|at| key.0 < at);
    state.entries.insert(key, node);
    if earliest {
        state.wakes_at = Some(key.0);
        timer.wake.notify_one();
    }
}

/// Runs `job` on the timer thread, soon and outside any lock of this crate. A panic in it is
/// reported by the panic hook; the thread carries on.
///
/// # Panics
/// If the operating system refuses to start the timer thread (the first time only).
pub(crate) fn run_soon(job: Job) {
    let timer = timer();
    let mut state = lock(timer);
    start_once(timer, &mut state);
    state.ready.push(job);
    timer.wake.notify_one();
}

/// Starts the timer thread if it is not running yet. Called before the first entry or job goes
/// in: if the OS refuses, nothing is left behind.
fn start_once(timer: &'static Timer, state: &mut State) {
    if !state.started {
        std::thread::Builder::new()
            .name("ctx-timer".into())
            .spawn(move || run(timer))
            .expect("ctx: cannot start the deadline timer thread");
        state.started = true;
    }
}

pub(crate) fn remove(key: Key) {
    if let Some(timer) = TIMER.get() {
        let removed = lock(timer).entries.remove(&key);
        drop(removed);
    }
}

/// How many deadlines are pending. For tests and diagnostics.
pub(crate) fn pending() -> usize {
    TIMER.get().map_or(0, |timer| lock(timer).entries.len())
}

fn run(timer: &'static Timer) {
    let mut state = lock(timer);
    loop {
        if !state.ready.is_empty() {
            let ready = std::mem::take(&mut state.ready);
            drop(state);
            for job in ready {
                // As for deadlines below: a panicking callback must not kill the thread.
                let _ = panic::catch_unwind(AssertUnwindSafe(job));
            }
            state = lock(timer);
            continue;
        }
        let now = Instant::now();
        let mut due = Vec::new();
        while let Some(entry) = state.entries.first_entry() {
            if entry.key().0 > now {
                break;
            }
            due.push(entry.remove_entry());
        }
        if !due.is_empty() {
            drop(state);
            due.sort_by_key(|&((at, id), _)| (at, Reverse(id)));
            for (_, node) in due {
                // A panicking callback, or a panicking `Drop` of a value released when this
                // thread drops the last clone, must not kill the timer: every later deadline
                // depends on it. The panic hook has already reported the panic.
                let _ = panic::catch_unwind(AssertUnwindSafe(move || {
                    if let Some(node) = node.upgrade() {
                        node.fire_deadline();
                    }
                }));
            }
            state = lock(timer);
            continue;
        }
        let next = state.entries.first_key_value().map(|(key, _)| key.0);
        state.wakes_at = next;
        state = match next {
            Some(at) => {
                timer.wake.wait_timeout(state, at - now).unwrap_or_else(|p| p.into_inner()).0
            }
            None => timer.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
        };
    }
}
