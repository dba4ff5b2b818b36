use ctx::{Context, cancellable};

#[cancellable(crate = "my ctx")]
fn renamed(ctx: &Context) -> Option<()> {
    Some(())
}

fn main() {}
