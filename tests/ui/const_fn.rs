use ctx::{Context, cancellable};

#[cancellable]
const fn fixed(ctx: &Context) -> Option<u32> {
    Some(1)
}

fn main() {}
