use ctx::{Context, cancellable};

#[cancellable(on_cancel = progress)]
fn count(ctx: &Context, to: u32) -> u32 {
    let mut progress = 0;
    while progress < to {
        progress += 1;
    }
    progress
}

fn main() {}
