//! Memory that shrinks back (issue 13): a long-lived parent that saw a burst of a million live
//! children holds at most 64 KiB for its dependents once all but one are gone, wherever the
//! survivor's key is. Measured with a counting global allocator; every test holds
//! `heap::serial()` because the counter is process-wide.
//!
//! Runs at full size in debug builds too (a few seconds).

mod heap;

use ctx_core::{CancelHandle, Context};
use heap::{live_bytes, serial};

const MILLION: usize = 1_000_000;

/// What the parent may keep for its dependents after the burst.
const TARGET: isize = 64 * 1024;

/// The heap bytes a parent still holds after a burst of a million live children of which only
/// the one created `survivor`-th is left, counting the survivor's own node.
fn held_after_burst(survivor: usize) -> isize {
    let (parent, parent_handle) = Context::background().with_cancel();
    let mut children: Vec<Option<(Context, CancelHandle)>> = Vec::with_capacity(MILLION);
    // Warm up: the parent's lazily allocated dependents box, this thread's first-use state.
    drop(parent.with_cancel());
    let baseline = live_bytes();
    children.extend((0..MILLION).map(|_| Some(parent.with_cancel())));
    let peak = live_bytes() - baseline;
    assert!(peak > MILLION as isize * 64, "the children take memory: {peak} bytes");
    for (i, child) in children.iter_mut().enumerate() {
        if i != survivor {
            drop(child.take());
        }
    }
    let held = live_bytes() - baseline;
    let (survivor_ctx, _) = children[survivor].as_ref().expect("the survivor is kept");
    assert!(!survivor_ctx.is_done());
    // The survivor is still linked: cancelling the parent reaches it.
    parent_handle.cancel();
    assert!(survivor_ctx.is_done());
    held
}

#[test]
fn one_survivor_of_a_million_children_leaves_the_parent_at_most_64_kib() {
    let _serial = serial();
    for survivor in [0, MILLION / 2, MILLION - 1] {
        let held = held_after_burst(survivor);
        assert!(
            held <= TARGET,
            "survivor {survivor}: the parent holds {held} bytes after the burst (target {TARGET})"
        );
    }
}

#[test]
fn bursts_again_and_again_do_not_ratchet_memory_up() {
    let _serial = serial();
    let (parent, _parent_handle) = Context::background().with_cancel();
    let (_early, _early_handle) = parent.with_cancel();
    let baseline = live_bytes();
    for round in 0..5 {
        let burst: Vec<_> = (0..100_000).map(|_| parent.with_cancel()).collect();
        drop(burst);
        let held = live_bytes() - baseline;
        assert!(held <= TARGET, "round {round}: {held} bytes held after the burst");
    }
}
