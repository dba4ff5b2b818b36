//! A counting global allocator for the leak checks, and a lock that serialises the tests of a
//! binary that uses it (tests run on parallel threads, and every allocation of every thread is
//! counted).
//!
//! Include it with `mod heap;` in a test binary whose tests all start with
//! `let _serial = heap::serial();`.
#![allow(dead_code)]

use std::alloc::System;
use std::sync::{Mutex, MutexGuard};

use stats_alloc::{INSTRUMENTED_SYSTEM, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

static SERIAL: Mutex<()> = Mutex::new(());

/// Holds every other test of this binary off while a measurement runs. A failed (panicked) test
/// must not block the others, hence the poison is ignored.
pub fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Bytes currently allocated by the whole process (a reallocation counts its growth or shrink).
pub fn live_bytes() -> isize {
    let stats = GLOBAL.stats();
    stats.bytes_allocated as isize - stats.bytes_deallocated as isize
}

/// Allocation calls so far (reallocations included: each may move the block).
pub fn allocations() -> usize {
    let stats = GLOBAL.stats();
    stats.allocations + stats.reallocations
}

/// Deallocation calls so far.
pub fn deallocations() -> usize {
    GLOBAL.stats().deallocations
}

/// Asserts that live bytes came back to `baseline`, give or take `slack` (the test harness's own
/// bookkeeping, thread-local first-use allocations of other threads).
#[track_caller]
pub fn assert_back_to(baseline: isize, slack: isize, what: &str) {
    let now = live_bytes();
    let grown = now - baseline;
    assert!(
        grown <= slack,
        "{what}: {grown} bytes still live (slack {slack}); baseline {baseline}, now {now}"
    );
}
