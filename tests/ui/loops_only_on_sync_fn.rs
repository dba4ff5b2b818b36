use ctx::{Context, cancellable};

#[cancellable(loops_only)]
fn sync(ctx: &Context) -> Option<()> {
    Some(())
}

fn main() {}
