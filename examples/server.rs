//! An axum server whose every request has a context, the shape of Go's `r.Context()`: the
//! request's deadline comes from its `grpc-timeout` header, it is cancelled when the client
//! goes away, and Ctrl-C (or `kill`) stops accepting, cancels every in-flight request and
//! drains the server with a deadline.
//!
//! ```text
//! cargo run --example server --features http              # listens on 127.0.0.1:3000
//! curl localhost:3000/work/2000                          # works for 2 s
//! curl -H 'grpc-timeout: 500m' localhost:3000/work/2000  # 504 after 0.5 s
//! curl localhost:3000/work/60000                         # then Ctrl-C the server: 503
//! ```
//!
//! An address argument replaces the default one (`-- 127.0.0.1:0` picks a free port). It exits
//! successfully when the server drained within the deadline, with status 1 when it had to be
//! aborted.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use ctx::http::{ResponseDropped, ServerLayer};
use ctx::{Context, Group, cancellable};

/// How long in-flight requests get to answer once the server is told to stop.
const GRACE: Duration = Duration::from_secs(5);

/// `/work/{ms}`: works for `ms` milliseconds, in 10 ms steps, unless its context is done first.
async fn work(
    State(requests): State<Arc<AtomicU64>>,
    Path(ms): Path<u64>,
    Extension(ctx): Extension<Context>,
) -> (StatusCode, String) {
    let id = requests.fetch_add(1, Ordering::Relaxed) + 1;
    let deadline = match ctx.deadline() {
        Some(at) => {
            format!(", deadline in {} ms", at.saturating_duration_since(Instant::now()).as_millis())
        }
        None => String::new(),
    };
    println!("request {id}: working for {ms} ms{deadline}");
    // A client that goes away makes hyper drop this handler mid-await, so only a callback on
    // the context can still say so.
    let watched = ctx.clone();
    ctx.after_func(move || {
        if watched.cause().is_some_and(|cause| cause.is::<ResponseDropped>()) {
            println!("request {id}: client went away");
        }
    });
    crunch(ctx, id, ms).await
}

#[cancellable(on_cancel = cancelled(&ctx, id))]
async fn crunch(ctx: Context, id: u64, ms: u64) -> (StatusCode, String) {
    for _ in 0..ms.div_ceil(10) {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!("request {id}: done");
    (StatusCode::OK, format!("done in {ms} ms\n"))
}

/// The answer of a request whose context is done: 504 for its deadline, 503 for a shutdown.
fn cancelled(ctx: &Context, id: u64) -> (StatusCode, String) {
    let cause = ctx.cause().expect("a cancelled request has a cause");
    println!("request {id}: cancelled: {cause}");
    let status = match ctx.err() {
        Some(ctx::Error::DeadlineExceeded) => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::SERVICE_UNAVAILABLE,
    };
    (status, format!("cancelled: {cause}\n"))
}

#[tokio::main]
async fn main() -> std::io::Result<ExitCode> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    // SIGINT or SIGTERM cancels it: the server's lifetime, and so every request's root.
    let shutdown = ctx::signal::shutdown()?;
    let app = Router::new()
        .route("/work/{ms}", get(work))
        .layer(ServerLayer::new(&shutdown).max_timeout(Duration::from_secs(60)))
        .with_state(Arc::new(AtomicU64::new(0)));
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);

    let mut server = Group::<(), std::io::Error>::new(&shutdown);
    server.spawn(move |ctx| async move {
        // Stops accepting once the signal came, then waits for the connections to finish.
        axum::serve(listener, app).with_graceful_shutdown(ctx.done()).await
    });
    // Done at the signal, or if the server fails.
    server.context().done().await;
    println!("shutting down: {}", server.context().cause().expect("done, so it has a cause"));
    let report = server.shutdown(GRACE).await;
    println!("drained: {report}");
    Ok(if report.is_clean() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
