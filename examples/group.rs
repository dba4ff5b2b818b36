//! Fan-out with a `Group`: twelve downloads, at most three at a time. Page 5 turns out corrupt:
//! its failure cancels the group's context, the downloads in flight stop at once, the ones still
//! queued stop before they start, and `wait` reports page 5's error. (The pages stopped by the
//! same cancel may print their lines in any order.)
//!
//! Run with `cargo run --example group`.

use std::fmt;
use std::time::Duration;

use ctx::{Context, Group};

const PAGES: usize = 12;
const LIMIT: usize = 3;

#[derive(Debug)]
enum FetchError {
    Corrupt(usize),
    Stopped(ctx::Error),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FetchError::Corrupt(page) => write!(f, "page {page} is corrupt (checksum mismatch)"),
            FetchError::Stopped(err) => write!(f, "stopped: {err}"),
        }
    }
}

impl From<ctx::Error> for FetchError {
    fn from(err: ctx::Error) -> FetchError {
        FetchError::Stopped(err)
    }
}

/// Downloads one page. The first three pages take 200, 300 and 400 ms, the others 300 ms, so that
/// with three at a time one download ends every 100 ms; page 5 fails 150 ms into its download.
async fn fetch(ctx: &Context, page: usize) -> Result<usize, FetchError> {
    let millis = match page {
        0..LIMIT => 200 + 100 * page as u64,
        5 => {
            ctx.run(tokio::time::sleep(Duration::from_millis(150))).await?;
            return Err(FetchError::Corrupt(page));
        }
        _ => 300,
    };
    ctx.run(tokio::time::sleep(Duration::from_millis(millis))).await?;
    Ok(1000 + 100 * page)
}

// One thread polls the queued downloads in spawn order, so the same pages finish, fail and stop
// on every run; a `Group` works the same way on the multi-thread runtime.
#[tokio::main(flavor = "current_thread")]
async fn main() {
    println!("fetching {PAGES} pages, at most {LIMIT} at a time");
    let mut group = Group::with_limit(&Context::background(), LIMIT);
    let group_ctx = group.context().clone();
    for page in 0..PAGES {
        group.spawn(move |ctx| async move {
            let result = fetch(&ctx, page).await;
            match &result {
                Ok(bytes) => println!("page {page} done: {bytes} bytes"),
                Err(err @ FetchError::Corrupt(_)) => println!("{err}"),
                Err(err @ FetchError::Stopped(_)) => println!("page {page} {err}"),
            }
            result
        });
    }
    match group.wait().await {
        Ok(sizes) => println!("all pages fetched: {} bytes", sizes.iter().sum::<usize>()),
        Err(err) => {
            println!("wait: {err}");
            println!("cause: {}", group_ctx.cause().expect("the group is done"));
        }
    }
}
