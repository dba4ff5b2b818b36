use ctx::{Context, cancellable};

#[cancellable(on_cancel = "stopped")]
fn count(ctx: &Context) -> u32 {
    let mut n = 0;
    while n < 10 {
        n += 1;
    }
    n
}

fn main() {}
