//! Helpers shared by the `#[cancellable]` integration tests (`mod support;` in each).

// Each test crate uses some of them.
#![allow(dead_code)]

use ctx::{CancelHandle, Context};

/// A context and its handle.
pub fn live() -> (Context, CancelHandle) {
    Context::background().with_cancel()
}

/// A context that is already done.
pub fn done() -> Context {
    let (ctx, cancel) = live();
    cancel.cancel();
    ctx
}
