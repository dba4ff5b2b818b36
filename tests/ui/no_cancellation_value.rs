use ctx::{Context, cancellable};

struct Report {
    lines: u32,
}

#[cancellable]
fn report(ctx: &Context) -> Report {
    Report { lines: 0 }
}

fn main() {}
