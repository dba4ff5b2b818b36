//! The `tasks` example on plain threads: a sync `#[cancellable]` function checks its context at
//! the top of every iteration, and its `thread::sleep` becomes a wait on the context, a sleep
//! that ends early when the context is cancelled. No async runtime anywhere.
//!
//! Run it with `cargo run --example threads`.

use std::{thread, time::Duration};

use ctx::{Context, cancellable};

#[cancellable(on_cancel = println!("{name} got the cancellation signal, stopping"))]
fn task(ctx: &Context, name: &str) {
    loop {
        println!("{name} is running");
        thread::sleep(Duration::from_millis(500));
    }
}

fn main() {
    let (ctx, cancel) = Context::background().with_cancel();
    let workers = ["task1", "task2", "task3"].map(|name| {
        let ctx = ctx.clone();
        thread::spawn(move || task(&ctx, name))
    });
    // Main waits on a context too: a 2-second deadline under the same root.
    ctx.with_timeout(Duration::from_secs(2)).0.wait();
    println!("Sending cancellation signal");
    cancel.cancel();
    for worker in workers {
        worker.join().expect("a task panicked");
    }
}
