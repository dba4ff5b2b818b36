use ctx::cancellable;

struct Worker {
    name: String,
}

impl Worker {
    #[cancellable(ctx = self.name)]
    fn run(&self) -> Option<()> {
        Some(())
    }
}

fn main() {}
