//! Work under a deadline: a call that fits in its budget, one that does not
//! (`DeadlineExceeded`), and one whose timeout carries a cause saying why it matters.
//!
//! Run with `cargo run --example deadline`.

use std::fmt;
use std::time::Duration;

use ctx::{Context, Error};

/// A backend call that takes `latency`, unless the context ends it first.
async fn fetch(ctx: &Context, latency: Duration) -> Result<&'static str, Error> {
    ctx.run(tokio::time::sleep(latency)).await?;
    Ok("42 rows")
}

/// Why the lookup's deadline matters, for whoever reads the cause later.
#[derive(Debug)]
struct SlowBackend {
    budget: Duration,
}

impl fmt::Display for SlowBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "inventory service did not answer within {:?}", self.budget)
    }
}

impl std::error::Error for SlowBackend {}

fn report(what: &str, ctx: &Context, result: Result<&str, Error>) {
    match result {
        Ok(rows) => println!("{what}: ok, {rows}"),
        Err(err) => {
            println!("{what}: {err}");
            println!("  timeout: {}", err.is_timeout());
            println!("  cause:   {}", ctx.cause().expect("a failed call's context is done"));
        }
    }
}

#[tokio::main]
async fn main() {
    let budget = Duration::from_millis(250);

    // Dropping the guard at the end of each block releases the deadline's timer early.
    {
        let (ctx, handle) = Context::background().with_timeout(budget);
        let _guard = handle.drop_guard();
        report("fast call", &ctx, fetch(&ctx, Duration::from_millis(10)).await);
    }
    {
        let (ctx, handle) = Context::background().with_timeout(budget);
        let _guard = handle.drop_guard();
        report("slow call", &ctx, fetch(&ctx, Duration::from_secs(30)).await);
    }
    {
        let (ctx, handle) =
            Context::background().with_timeout_cause(budget, SlowBackend { budget });
        let _guard = handle.drop_guard();
        report("slow call with a cause", &ctx, fetch(&ctx, Duration::from_secs(30)).await);
        let cause = ctx.cause().unwrap();
        let slow = cause.downcast_ref::<SlowBackend>().expect("the cause we gave");
        println!("  budget:  {:?} (downcast from the cause)", slow.budget);
    }
}
