use ctx::{Context, cancellable};

#[cancellable]
async fn pick(ctx: &Context, which: Option<u32>) -> Option<u32> {
    match which {
        #[not_cancellable]
        Some(n) => Some(n),
        None => None,
    }
}

fn main() {}
