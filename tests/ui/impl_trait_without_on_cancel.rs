use ctx::{Context, cancellable};

#[cancellable]
fn evens(ctx: &Context) -> impl Iterator<Item = u32> {
    (0..10).filter(|n| n % 2 == 0)
}

fn main() {}
