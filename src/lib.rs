//! # ctx: Go's `context`, done properly in Rust
//!
//! Cancellation, deadlines and request-scoped values for threads and async code alike, with a
//! check that costs one atomic load. See [`Context`] to start.
//!
//! - [`Context`]: the cancellation tree (`with_cancel`, `with_timeout`, `with_value`, `merge`,
//!   `without_cancel`, `after_func`), its state (`is_done`, `err`, `cause`, `check`) and waiting
//!   (`done().await`, `wait()`, `run(future)`). No async runtime is needed.
//! - [`macro@cancellable`] (feature `macros`, default): put it on a function that takes a
//!   `Context`, and every loop iteration checks the context and every `.await` races it.
//! - [`Group`] (feature `tokio`, default): Go's errgroup on tokio; the first failure cancels the
//!   others. [`Group::shutdown`] is the graceful stop: cancel, drain up to a deadline, abort and
//!   count the rest ([`ShutdownReport`]).
//! - [`signal`] (feature `signal`, default): contexts cancelled by SIGINT / SIGTERM / SIGHUP /
//!   SIGQUIT, Go's `signal.NotifyContext`; [`signal::shutdown`] is the one line a server's `main`
//!   starts with. A second signal gets the operating system's default (it kills).
//! - Feature `tokio-util` (off by default): `Context::to_cancellation_token` hands a
//!   `tokio_util::sync::CancellationToken` to crates that take one (cancelled within the cancel
//!   that finishes the context), and `Context::with_cancellation_token` takes one in (watched
//!   by a task on the current tokio runtime).
//! - Feature `tokio-clock` (off by default): deadlines created inside a tokio runtime also follow
//!   tokio's clock, so `tokio::time::pause` moves them in tests.
//! - `ctx::http` (feature `http`, off by default): tower layers that give every HTTP or gRPC request
//!   a context (cancelled when the client goes away or the response has been sent, with the
//!   caller's `grpc-timeout` as its deadline) and carry a client's deadline and values to the
//!   next process. For axum, tonic and hyper-util alike.
//! - Feature `tonic` (off by default): `tonic::Status: From<ctx::Error>` (`CANCELLED`,
//!   `DEADLINE_EXCEEDED`), so a gRPC handler answers `Err(ctx.err().unwrap().into())`.
//!
//! ```
//! use ctx::Context;
//! use std::time::Duration;
//!
//! let (ctx, cancel) = Context::background().with_cancel();
//! let worker = std::thread::spawn(move || {
//!     let mut rounds = 0u64;
//!     while !ctx.is_done() {
//!         rounds += 1;
//!         std::thread::sleep(Duration::from_millis(1));
//!     }
//!     rounds
//! });
//! std::thread::sleep(Duration::from_millis(20));
//! cancel.cancel();
//! assert!(worker.join().unwrap() > 0);
//! ```

#[cfg(feature = "tokio-util")]
pub use ctx_core::TokenWatcherGone;
pub use ctx_core::{AfterFunc, CancelHandle, Cause, Context, Done, DropGuard, Error};

mod cancellable;
#[doc(hidden)]
pub use cancellable::__private;
pub use cancellable::FromCancel;
#[cfg(feature = "macros")]
pub use cancellable::{cancellable, not_cancellable};

#[cfg(feature = "http")]
pub mod http;

#[cfg(feature = "tokio")]
mod group;
#[cfg(feature = "tokio")]
pub use group::{Group, GroupError, ShutdownReport, TaskFailed};

#[cfg(feature = "signal")]
pub mod signal;
