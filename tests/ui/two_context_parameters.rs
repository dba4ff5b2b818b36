use ctx::{Context, cancellable};

#[cancellable]
fn pick(request: &Context, server: &Context) -> Option<()> {
    Some(())
}

fn main() {}
