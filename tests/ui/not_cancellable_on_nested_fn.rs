use ctx::{Context, cancellable};

#[cancellable]
fn outer(ctx: &Context) -> Option<u32> {
    #[not_cancellable]
    fn inner() -> u32 {
        loop {}
    }
    Some(inner())
}

fn main() {}
