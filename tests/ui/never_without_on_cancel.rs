use ctx::{Context, cancellable};

#[cancellable]
fn serve(ctx: &Context) -> ! {
    loop {}
}

fn main() {}
