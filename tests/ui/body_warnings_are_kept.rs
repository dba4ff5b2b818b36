// The expansion allows `unreachable_code` on its own `return` only: the body's own unreachable
// code is still reported.
#![deny(unreachable_code)]

use ctx::{Context, cancellable};

#[cancellable]
fn early(ctx: &Context) -> Option<u32> {
    return Some(1);
    let late = 2;
    Some(late)
}

fn main() {}
