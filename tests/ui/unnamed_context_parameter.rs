use ctx::{Context, cancellable};

#[cancellable]
fn ignore(_: Context) -> Option<()> {
    Some(())
}

fn main() {}
