//! `to_cancellation_token` registers nothing on a context that can never be done, and what it
//! registers on a live context (a callback holding a clone of the token) is released by the
//! cancel: measured in live heap bytes with a counting allocator.
#![cfg(feature = "tokio-util")]

mod heap;

use ctx::Context;

const CALLS: usize = 10_000;

#[test]
fn a_never_done_context_registers_nothing() {
    let _serial = heap::serial();
    let (parent, _handle) = Context::background().with_cancel();
    for never_done in
        [Context::background(), Context::background().with_value(1u8), parent.without_cancel()]
    {
        let baseline = heap::live_bytes();
        for _ in 0..CALLS {
            drop(never_done.to_cancellation_token());
        }
        // Under a byte per call: the harness's own bookkeeping, not a registration (the control
        // below measures one at over 32 bytes).
        heap::assert_back_to(baseline, CALLS as isize, "tokens of a never-done context");
    }
}

/// The control for the test above: the same measurement sees each registration on a live
/// context, and sees them go when it is cancelled.
#[test]
fn a_live_context_holds_a_callback_per_token_until_it_is_done() {
    let _serial = heap::serial();
    let (ctx, handle) = Context::background().with_cancel();
    let baseline = heap::live_bytes();
    for _ in 0..CALLS {
        drop(ctx.to_cancellation_token());
    }
    let held = heap::live_bytes() - baseline;
    assert!(held >= (CALLS * 32) as isize, "{held} bytes for {CALLS} registrations");
    handle.cancel();
    heap::assert_back_to(baseline, CALLS as isize, "after the cancel");
    eprintln!("{} bytes held per registration until the cancel", held / CALLS as isize);
}
