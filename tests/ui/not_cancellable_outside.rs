use ctx::not_cancellable;

// Not inside a `#[cancellable]` function: the attribute itself answers.
#[not_cancellable]
fn helper() -> u32 {
    1
}

fn main() {
    // On a statement outside a `#[cancellable]` fn, rustc itself refuses the attribute.
    #[not_cancellable]
    let value = helper();
    let _ = value;
}
