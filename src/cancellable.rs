//! The `#[cancellable]` attribute (re-exported from `ctx-macros` with its documentation here),
//! what a cancellable function returns when its context is done ([`FromCancel`]), and the hidden
//! paths its expansion calls (`__private`).

use crate::Error;

/// Makes a function stop when its context is done, without `select!` boilerplate: the function
/// checks its context at the top of every loop iteration and, in an `async fn`, races every
/// `.await` against it.
///
/// ```
/// use ctx::{Context, cancellable};
/// use std::time::Duration;
///
/// #[cancellable(on_cancel = println!("{name} got the cancellation signal, stopping"))]
/// async fn task(ctx: Context, name: &str) {
///     loop {
///         println!("{name} is working");
///         tokio::time::sleep(Duration::from_millis(500)).await;
///     }
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, cancel) = Context::background().with_cancel();
/// let worker = tokio::spawn(async move { task(ctx, "worker").await });
/// tokio::time::sleep(Duration::from_millis(10)).await;
/// cancel.cancel(); // the worker stops now, not at the end of its 500 ms sleep
/// worker.await.unwrap();
/// # }
/// ```
///
/// # What it does
/// - **At entry**, a function whose context is already done returns at once: its body does not
///   run at all.
/// - **Loops:** every `loop`, `while`, `while let` and `for` of the body, nested or labelled,
///   checks the context at the top of each iteration: before a `while` condition is evaluated,
///   and after a `for` loop's iterator produced its next item (which is dropped). Labels,
///   `continue 'outer`, `break 'outer value` and `let x = loop { .. }` keep their meaning.
/// - **Awaits** (in an `async fn`): every `.await` of the body, including in a loop condition
///   (`while let Some(x) = rx.recv().await`), races the awaited future against the context with
///   [`Context::run`](crate::Context::run). If the context finishes first, the future is dropped
///   where it was suspended and the function returns; a result ready in the same poll as the
///   cancel is kept (`run`'s "Fairness").
///
/// When the context is done, the function returns its **cancellation value**: the `on_cancel`
/// expression if given, else [`FromCancel::from_cancel`] of its return type (`()`, `None`,
/// `Err(E::from(err))`, or your own implementation). A check is one atomic load; the
/// expansion allocates nothing, per iteration or per await.
///
/// # Finding the context
/// The parameter whose type is `Context`, `&Context` or `&mut Context` (any path ending in
/// `Context`), or the expression given with `ctx = <expr>`, such as `ctx = self.ctx`. It is
/// evaluated **once**, at entry, into the function's own handle (a clone): the body may move
/// the context (hand it to a spawned child), re-borrow it or replace it; the checks keep using
/// the context the function was called with.
///
/// # Arguments
/// | Argument | Meaning |
/// |---|---|
/// | `on_cancel = <expr>` | The value to return on cancellation. It may use the parameters (not the body's locals, which are gone by then) and is evaluated at most once per call. |
/// | `ctx = <expr>` | The context to check, when it is not a parameter or there are two. |
/// | `loops_only` | Do not race awaits; only check loops (and the entry). `async fn` only. |
/// | `crate = <path>` | The path of this crate, if you renamed it in `Cargo.toml`. |
///
/// # Cancel safety, and the two opt-outs
/// Racing an await means that when the context is cancelled, the awaited future is **dropped
/// before it finishes**, exactly like the losing branch of a `select!`. That is harmless for a
/// sleep, a channel `recv` or a read whose result you no longer need. It is not for a future
/// that must not stop half-way: one that writes a file in several steps, commits a transaction,
/// or holds data it has taken out of a queue. For those:
/// - `#[not_cancellable]` on one expression or `let` statement leaves it exactly as written: its
///   awaits are not raced and its loops are not checked. The next cancellation point after it
///   stops the function.
/// - `#[cancellable(loops_only)]` stops racing awaits in the whole function; only loop
///   iterations (and the entry) check the context.
///
/// ```
/// use ctx::{Context, Error, cancellable};
/// # struct Db;
/// # impl Db {
/// #     async fn insert(&self, _row: u32) -> Result<(), Error> { Ok(()) }
/// #     async fn commit(&self) -> Result<(), Error> { Ok(()) }
/// # }
///
/// #[cancellable]
/// async fn save(ctx: &Context, db: &Db, rows: Vec<u32>) -> Result<(), Error> {
///     for row in rows {
///         db.insert(row).await?; // raced: cancelling drops the insert
///     }
///     #[not_cancellable]
///     db.commit().await?; // never dropped half-way
///     Ok(())
/// }
/// # let db = Db;
/// # let ctx = Context::background();
/// # let waker = std::task::Waker::noop();
/// # let mut cx = std::task::Context::from_waker(&waker);
/// # let mut fut = std::pin::pin!(save(&ctx, &db, vec![1, 2]));
/// # assert!(fut.as_mut().poll(&mut cx).is_ready());
/// ```
///
/// # Where it stops, and why
/// The rewrite leaves the function by breaking out of its body, so it does not enter code that
/// such a `break` cannot leave, or should not:
/// - **closures** and **`async` blocks**: bodies of their own, which may run after the
///   function has returned (check the context inside them yourself, or give them a
///   `#[cancellable]` function to call);
/// - **nested items** (`fn`, `impl`, ...): other functions, which may carry their own
///   `#[cancellable]`;
/// - **macro invocations** (`tokio::select!`, `vec![..]`, your `macro_rules!`): their tokens are
///   not Rust code until the macro expands, after this attribute ran;
/// - `const` blocks.
///
/// # Methods, traits, `#[async_trait]`
/// It applies to free functions, inherent and trait-impl methods (`self`, `&self`, `&mut self`),
/// with generics, where clauses, `impl Trait` arguments and lifetimes, and to native `async fn`
/// in traits. An `-> impl Trait` return needs `on_cancel`, since an opaque type has no default
/// value. Inside an `#[async_trait]` impl, put `#[cancellable]` on the method as usual:
/// `#[async_trait]` rewrites the method first, into a function returning
/// `Pin<Box<dyn Future<Output = T> + Send>>` whose body is `Box::pin(async move { .. })`, and
/// `#[cancellable]` rewrites the inside of that `async move` block, with `T` as the return type.
/// The same goes for any function written in that shape (or returning
/// `impl Future<Output = T>` from an `async move` block).
///
/// ```
/// use ctx::{Context, cancellable};
///
/// struct Worker {
///     ctx: Context,
///     ticks: u32,
/// }
///
/// impl Worker {
///     #[cancellable(ctx = self.ctx, on_cancel = self.ticks)]
///     fn run(&mut self) -> u32 {
///         loop {
///             self.ticks += 1;
///             if self.ticks == 1_000 {
///                 self.ctx = Context::background(); // the check still uses the original
///             }
///         }
///     }
/// }
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// let mut worker = Worker { ctx, ticks: 0 };
/// let handle = std::thread::spawn(move || worker.run());
/// std::thread::sleep(std::time::Duration::from_millis(10));
/// cancel.cancel(); // from another thread: the loop sees it at its next iteration
/// assert!(handle.join().unwrap() > 0);
/// ```
///
/// # Compile errors
/// Each misuse is reported on the offending token, with a hint, and the function is still
/// emitted so the rest of the crate (and your IDE) keeps working: an item that is not a
/// function with a body, no `Context` parameter, two of them, a context parameter without a
/// name, an unknown, duplicate or valueless argument, `loops_only` on a sync fn, a `const fn`,
/// an `on_cancel` or `ctx` of the wrong type, and a return type with no cancellation value
/// (reported at the return type).
#[cfg(feature = "macros")]
#[doc(inline)]
pub use ctx_macros::cancellable;

/// The value a [`#[cancellable]`](macro@crate::cancellable) function returns when its context
/// is done, unless the attribute names one with `on_cancel = <expr>`.
///
/// | Return type | Value on cancellation |
/// |---|---|
/// | `()` | `()` |
/// | `Option<T>` | `None` |
/// | `Result<T, E>` where `E: From<ctx::Error>` | `Err(E::from(err))` |
///
/// `err` is the context's [`err()`](crate::Context::err): [`Error::Canceled`] or
/// [`Error::DeadlineExceeded`]. `from_cancel` is called at most once per call of the annotated
/// function, on the thread (or task) that noticed the cancellation; it should be cheap and must
/// not block, since the caller is waiting for the function to stop.
///
/// A return type that implements neither this trait nor gets an `on_cancel` value is a compile
/// error pointing at the return type. Implement it for your own types:
///
/// ```
/// use ctx::{Context, Error, FromCancel, cancellable};
///
/// #[derive(Debug, PartialEq)]
/// enum Outcome {
///     Finished(u32),
///     Stopped(Error),
/// }
///
/// impl FromCancel for Outcome {
///     fn from_cancel(err: Error) -> Outcome {
///         Outcome::Stopped(err)
///     }
/// }
///
/// #[cancellable]
/// fn count(ctx: &Context, to: u32) -> Outcome {
///     let mut n = 0;
///     while n < to {
///         n += 1;
///     }
///     Outcome::Finished(n)
/// }
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// assert_eq!(count(&ctx, 3), Outcome::Finished(3));
/// cancel.cancel();
/// assert_eq!(count(&ctx, 3), Outcome::Stopped(Error::Canceled));
/// ```
///
/// `Result` works with any error type that converts from [`Error`], such as `std::io::Error`:
///
/// ```
/// use ctx::{Context, cancellable};
///
/// #[cancellable]
/// fn read_all(ctx: &Context, chunks: &[&[u8]]) -> std::io::Result<Vec<u8>> {
///     let mut out = Vec::new();
///     for chunk in chunks {
///         out.extend_from_slice(chunk);
///     }
///     Ok(out)
/// }
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// cancel.cancel();
/// let err = read_all(&ctx, &[b"abc"]).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` has no cancellation value, so `#[cancellable]` cannot return it",
    label = "the return type of this `#[cancellable]` function",
    note = "implement `ctx::FromCancel` for `{Self}`, or give the value with `#[cancellable(on_cancel = <expr>)]`"
)]
pub trait FromCancel {
    /// The value to return instead of finishing the function's work, given why the context is
    /// done.
    fn from_cancel(err: Error) -> Self;
}

/// Returns `()`: a `()` function simply stops.
impl FromCancel for () {
    fn from_cancel(_: Error) {}
}

/// Returns `None`.
///
/// ```
/// use ctx::FromCancel;
/// assert_eq!(Option::<u8>::from_cancel(ctx::Error::Canceled), None);
/// ```
impl<T> FromCancel for Option<T> {
    fn from_cancel(_: Error) -> Option<T> {
        None
    }
}

/// Returns `Err(E::from(err))`.
///
/// ```
/// use ctx::{Error, FromCancel};
/// let stopped = Result::<u8, Error>::from_cancel(Error::DeadlineExceeded);
/// assert_eq!(stopped, Err(Error::DeadlineExceeded));
/// ```
impl<T, E> FromCancel for Result<T, E>
where
    E: From<Error>,
{
    fn from_cancel(err: Error) -> Result<T, E> {
        Err(E::from(err))
    }
}

/// The paths `#[cancellable]` expansions call. Not public API: only the macro may use them, and
/// they change without notice. Generated code reaches the runtime only through here, so a user
/// depends on `ctx` alone, never on `ctx-core`.
#[doc(hidden)]
pub mod __private {
    pub use crate::{Context, Error, FromCancel};

    /// The function's own handle on its context, taken once at entry: the body stays free to
    /// move or re-borrow the user's context. A clone is one reference-count increment.
    #[inline]
    pub fn context(ctx: &Context) -> Context {
        ctx.clone()
    }

    /// The error of a context the expansion saw done.
    #[inline]
    pub fn cancel_error(ctx: &Context) -> Error {
        // `is_done()` implies `err()` is set (both read the same state), so the fallback is
        // never taken; it only spares the generated code an `unwrap`.
        ctx.err().unwrap_or(Error::Canceled)
    }
}
