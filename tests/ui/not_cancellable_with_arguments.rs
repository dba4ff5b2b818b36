use ctx::{Context, cancellable};

#[cancellable]
async fn save(ctx: &Context) -> Option<()> {
    #[not_cancellable(commit)]
    tokio::task::yield_now().await;
    Some(())
}

fn main() {}
