use std::future::Future;

use ctx::{Context, cancellable};

// The loop runs when `prepare` is called, before the future it returns (which is what
// `#[cancellable]` rewrites): it would never be checked.
#[cancellable]
fn prepare(ctx: &Context, parts: Vec<u32>) -> impl Future<Output = Option<u32>> {
    let mut sum = 0;
    for part in parts {
        sum += part;
    }
    async move { Some(sum) }
}

fn main() {}
