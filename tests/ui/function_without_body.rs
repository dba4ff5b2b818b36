use ctx::{Context, cancellable};

trait Job {
    #[cancellable]
    fn run(&self, ctx: &Context);
}

fn main() {}
