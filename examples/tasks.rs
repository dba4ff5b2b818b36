//! The program ctx was born from (Go's `context.WithCancel` example), in Rust: three tasks
//! print every 500 ms; after 2 s main cancels them, and each stops at once, mid-sleep. No
//! `select!`, and no guessed sleep at the end: `wait` returns when the last task has stopped.
//!
//! Run it with `cargo run --example tasks`.

use std::{convert::Infallible, time::Duration};

use ctx::{Context, Group, cancellable};

#[cancellable(on_cancel = println!("{name} got the cancellation signal, stopping"))]
async fn task(ctx: Context, name: &str) {
    loop {
        println!("{name} is running");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() {
    let mut tasks = Group::<(), Infallible>::new(&Context::background());
    for name in ["task1", "task2", "task3"] {
        tasks.spawn(move |ctx| async move {
            task(ctx, name).await;
            Ok(())
        });
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("Sending cancellation signal");
    tasks.cancel();
    tasks.wait().await.expect("the tasks cannot fail");
}
