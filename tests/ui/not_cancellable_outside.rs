use ctx::not_cancellable;

// Not inside a `#[cancellable]` function: the attribute itself answers.
#[not_cancellable]
fn helper() -> u32 {
    1
}

fn main() {
    let _ = helper();
}
