use ctx::{Context, cancellable};

// The own body has no cancellation point; the loop is in a closure `#[cancellable]` does not
// enter (as when another attribute has wrapped the body before `#[cancellable]` ran).
#[cancellable]
fn spawn_worker(ctx: &Context) -> std::thread::JoinHandle<u32> {
    std::thread::spawn(move || {
        let mut n = 0;
        loop {
            n += 1;
        }
    })
}

fn main() {}
