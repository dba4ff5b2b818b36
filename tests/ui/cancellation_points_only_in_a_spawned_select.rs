use ctx::{Context, cancellable};
use tokio::sync::mpsc;

// The only awaits are those of a `select!` in an `async` block `#[cancellable]` does not enter:
// the function itself would never stop.
#[cancellable]
async fn forward(ctx: &Context, mut rx: mpsc::Receiver<u32>) -> Option<tokio::task::JoinHandle<u32>> {
    Some(tokio::spawn(async move {
        tokio::select! {
            Some(n) = rx.recv() => n,
            else => 0,
        }
    }))
}

fn main() {}
