use ctx::cancellable;

#[cancellable]
struct Worker {
    rounds: u32,
}

fn main() {
    // The struct is still emitted: this line compiles.
    let _ = Worker { rounds: 1 }.rounds;
}
