use ctx::{Context, cancellable};

#[cancellable(on_cancel)]
fn no_value(ctx: &Context) -> Option<()> {
    Some(())
}

#[cancellable(loops_only = true)]
async fn flag_with_value(ctx: &Context) -> Option<()> {
    Some(())
}

fn main() {}
