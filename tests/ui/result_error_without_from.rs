use ctx::{Context, cancellable};

#[cancellable]
async fn fetch(ctx: Context) -> Result<u32, String> {
    Ok(1)
}

fn main() {}
