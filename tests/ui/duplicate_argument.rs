use ctx::{Context, cancellable};

#[cancellable(on_cancel = None, loops_only, on_cancel = Some(1), loops_only)]
async fn twice(ctx: Context) -> Option<u32> {
    Some(0)
}

fn main() {}
