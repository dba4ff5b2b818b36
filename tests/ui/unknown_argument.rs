use ctx::{Context, cancellable};

#[cancellable(on_cancle = None, timeout = 5, loops_only)]
async fn typo(ctx: Context) -> Option<()> {
    Some(())
}

fn main() {}
