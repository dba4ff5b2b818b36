//! The flagship's three tasks, stopped by Ctrl-C (or `kill`) instead of a timer: the shape of a
//! server's `main`. The first SIGINT or SIGTERM cancels every task; each prints its stop line,
//! cleans up for a moment, and the group is drained with a deadline. A second Ctrl-C during the
//! cleanup kills the process at once (the operating system's default), as well-behaved CLIs do.
//!
//! ```text
//! cargo run --example signals                    # press Ctrl-C after a few rounds
//! cargo run --example signals -- --slow-cleanup  # cleanups outlast the 3 s drain deadline
//! ```
//!
//! It exits successfully when every task stopped by itself, with status 1 when the deadline had
//! to abort some.

use std::convert::Infallible;
use std::process::ExitCode;
use std::time::Duration;

use ctx::{Context, Group, cancellable};

/// How long the tasks get to stop by themselves once cancelled.
const GRACE: Duration = Duration::from_secs(3);

#[cancellable(on_cancel = println!("{name} got the cancellation signal, stopping"))]
async fn task(ctx: Context, name: &str) {
    loop {
        println!("{name} is running");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::main]
async fn main() -> std::io::Result<ExitCode> {
    let cleanup = match std::env::args().nth(1).as_deref() {
        Some("--slow-cleanup") => Duration::from_secs(60),
        _ => Duration::from_millis(200),
    };
    let ctx = ctx::signal::shutdown()?;
    let mut tasks = Group::<(), Infallible>::new(&ctx);
    for name in ["task1", "task2", "task3"] {
        tasks.spawn(move |ctx| async move {
            task(ctx, name).await;
            // Flushing, closing connections...: not cancellable, it must finish.
            tokio::time::sleep(cleanup).await;
            println!("{name} cleaned up");
            Ok(())
        });
    }
    ctx.done().await;
    println!("shutting down: {}", ctx.cause().expect("done, so it has a cause"));
    let report = tasks.shutdown(GRACE).await;
    println!("{report}");
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
