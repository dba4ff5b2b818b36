//! A request id carried through context values into nested calls, and `without_cancel` for the
//! cleanup that must still run after the client has gone away.
//!
//! Run with `cargo run --example values`.

use std::fmt;
use std::time::Duration;

use ctx::Context;

/// A value key is a type: a newtype nobody else will store by accident.
#[derive(Debug, Clone, Copy)]
struct RequestId(u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "req-{}", self.0)
    }
}

/// Logs with the request id of `ctx`, however deep the call that logs.
fn log(ctx: &Context, message: fmt::Arguments<'_>) {
    match ctx.value::<RequestId>() {
        Some(id) => println!("[{id}] {message}"),
        None => println!("[no request] {message}"),
    }
}

#[derive(Debug)]
struct ClientGone;

impl fmt::Display for ClientGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("client closed the connection")
    }
}

impl std::error::Error for ClientGone {}

async fn handle_request(ctx: Context) {
    log(&ctx, format_args!("GET /orders"));
    let user = load_user(&ctx).await;
    if let Err(err) = load_orders(&ctx, user).await {
        log(&ctx, format_args!("load_orders stopped: {err} ({})", ctx.cause().unwrap()));
    }

    // The request is over, but the lock it took must be released. On the request's context that
    // would fail at once; `without_cancel` keeps its values (the id) but not its cancellation,
    // and a timeout of its own bounds the cleanup.
    let failed = release_lock(&ctx).await;
    log(&ctx, format_args!("cleanup on the request context: {}", failed.unwrap_err()));
    let (cleanup, handle) = ctx.without_cancel().with_timeout(Duration::from_secs(5));
    let _guard = handle.drop_guard();
    match release_lock(&cleanup).await {
        Ok(()) => log(&cleanup, format_args!("cleanup with without_cancel: lock released")),
        Err(err) => log(&cleanup, format_args!("cleanup with without_cancel failed: {err}")),
    }
}

async fn load_user(ctx: &Context) -> u64 {
    log(ctx, format_args!("load_user: user 1001"));
    1001
}

async fn load_orders(ctx: &Context, user: u64) -> Result<(), ctx::Error> {
    log(ctx, format_args!("load_orders: querying orders of user {user}"));
    // A slow query: the client gives up long before it would finish.
    ctx.run(tokio::time::sleep(Duration::from_secs(30))).await
}

async fn release_lock(ctx: &Context) -> Result<(), ctx::Error> {
    ctx.run(tokio::time::sleep(Duration::from_millis(10))).await
}

#[tokio::main]
async fn main() {
    let (server, _shutdown) = Context::background().with_cancel();
    log(&server, format_args!("server started"));

    let (request, disconnect) = server.with_value(RequestId(7)).with_cancel();
    let handler = tokio::spawn(handle_request(request));

    tokio::time::sleep(Duration::from_millis(100)).await;
    disconnect.cancel_with_cause(ClientGone);
    handler.await.expect("the handler does not panic");
    log(&server, format_args!("server still running: {}", !server.is_done()));
}
