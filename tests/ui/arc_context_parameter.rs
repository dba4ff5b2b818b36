use std::sync::Arc;

use ctx::{Context, cancellable};

#[cancellable]
fn shared(ctx: Arc<Context>) -> Option<()> {
    Some(())
}

fn main() {}
