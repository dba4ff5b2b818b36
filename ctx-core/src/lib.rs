//! The [`Context`] type of the [`ctx`](https://docs.rs/ctx) crate: Go's `context` package done
//! properly in Rust. Depend on `ctx`, which re-exports everything here.
//!
//! A [`Context`] carries a cancellation signal, an optional deadline and request-scoped values
//! across API boundaries and threads. Contexts form a tree: cancelling one cancels everything
//! derived from it, never its parent.
//!
//! | Go | ctx |
//! |---|---|
//! | `context.Background()`, `context.TODO()` | [`Context::background`], [`Context::todo`] |
//! | `WithCancel`, `WithCancelCause` | [`Context::with_cancel`] + [`CancelHandle::cancel`] / [`CancelHandle::cancel_with_cause`] |
//! | `WithDeadline(Cause)`, `WithTimeout(Cause)` | [`Context::with_deadline`], [`Context::with_timeout`] and their `_cause` forms |
//! | `WithValue`, `ctx.Value(key)` | [`Context::with_value`], [`Context::value`] (keyed by type) |
//! | `WithoutCancel`, `AfterFunc` | [`Context::without_cancel`], [`Context::after_func`] |
//! | `ctx.Done()`, `ctx.Err()`, `context.Cause(ctx)` | [`Context::done`] / [`Context::wait`] / [`Context::is_done`], [`Context::err`], [`Context::cause`] |
//! | (none: golang/go#36503) | [`Context::merge`] |
//!
//! What Rust lets us do better:
//! - **No leak without cancel.** When every clone of a derived context and its handle are
//!   dropped, it leaves its parent; `CancelHandle::drop_guard` gives `defer cancel()` as RAII.
//! - **A check is one atomic load** ([`Context::is_done`]): cheap enough for every loop iteration.
//! - **Threads and futures alike:** [`Context::done`] is a runtime-free future,
//!   [`Context::wait`] blocks a thread, and deadlines need no runtime.
//!
//! With the feature `tokio-util` (off by default), `Context::to_cancellation_token` and
//! `Context::with_cancellation_token` bridge to tokio-util's `CancellationToken`, both ways.
//!
//! ```
//! use ctx::{Context, Error};
//! use std::time::Duration;
//!
//! #[derive(Debug)]
//! struct RequestId(u64);
//!
//! let (server, shutdown) = Context::background().with_cancel();
//! let request = server.with_value(RequestId(7));
//! let (call, _guard) = request.with_timeout(Duration::from_secs(5));
//!
//! assert_eq!(call.value::<RequestId>().unwrap().0, 7);
//! shutdown.cancel();
//! assert_eq!(call.err(), Some(Error::Canceled));
//! ```

mod after_func;
mod context;
mod deadline;
mod error;
mod handle;
// The crate's only `unsafe` code (issue 13 allows it there, with loom models): a lock whose
// unlock is one store. Everywhere else `unsafe_code` is denied (ctx-core's Cargo.toml).
#[allow(unsafe_code)]
mod lock;
mod slab;
mod sync;
mod timer;
#[cfg(feature = "tokio-util")]
mod token;
#[cfg(feature = "tokio-util")]
pub use token::TokenWatcherGone;
#[cfg(feature = "tokio-clock")]
mod tokio_clock;
#[cfg(feature = "tonic")]
mod tonic_status;
mod tree;
mod values;
mod wait;

pub use after_func::AfterFunc;
pub use context::Context;
#[doc(hidden)]
pub use deadline::pending_timers;
pub use error::{Cause, Error};
pub use handle::{CancelHandle, DropGuard};
/// For the lock's own loom models (`tests/loom.rs`); not part of the API.
#[cfg(loom)]
#[doc(hidden)]
pub use lock::SpinLock;
pub use wait::Done;
