//! The synchronisation primitives of the crate, swapped for loom's under `--cfg loom` so that the
//! loom models in `tests/loom.rs` explore every interleaving of the tree and its waiters.
//!
//! `Arc` and `Weak` stay std's: loom has no `Weak`, and reference counts are not what the models
//! check (they check the state flag, the dependents lists and wake-ups).

#[cfg(loom)]
pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU8, AtomicU32};
#[cfg(loom)]
pub(crate) use loom::sync::{Mutex, MutexGuard};
#[cfg(loom)]
pub(crate) use loom::thread::{Thread, current, park, yield_now};

#[cfg(not(loom))]
pub(crate) use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32};
#[cfg(not(loom))]
pub(crate) use std::sync::{Mutex, MutexGuard};
#[cfg(not(loom))]
pub(crate) use std::thread::{Thread, current, park, park_timeout, yield_now};

/// Loom has no timed park; the models never wait with a timeout, so a yield is enough.
#[cfg(loom)]
pub(crate) fn park_timeout(_: std::time::Duration) {
    loom::thread::yield_now();
}

pub(crate) use std::sync::atomic::Ordering;

/// Locks `mutex`, ignoring poisoning: no code of this crate panics while it holds a lock, and the
/// only foreign code run under one (cloning or dropping a `Waker`) cannot break the invariants of
/// the data it guards.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}
