use ctx::cancellable;

#[cancellable]
fn spin(rounds: u32) -> Option<u32> {
    let mut n = 0;
    while n < rounds {
        n += 1;
    }
    Some(n)
}

fn main() {
    // The function is still emitted: this line compiles.
    let _ = spin(3);
}
