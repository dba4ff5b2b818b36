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
/// - **`select!` and `join!`** (in an `async fn`): a `tokio::select!`, `futures::select!` or
///   `select_biased!` is raced as a whole, and its handlers run in the function, rewritten like
///   the rest of it; `biased;`, preconditions, refutable patterns and `else` / `default` /
///   `complete` keep their meaning. A select with its own branch on `.done()` (or
///   `.done().fuse()`) is left as written. `join!` and `try_join!` (tokio's and futures') are
///   raced as a whole. The macros evaluate a join's arguments and a select's futures and
///   preconditions before polling, and so does the rewrite, in the function: a `?` there
///   (`join!(fetch(url?), ..)`) works as before.
/// - **Blocking sleeps** (in a sync fn): `std::thread::sleep(d)`, also written `thread::sleep(d)`
///   or `sleep(d)`, waits on the context instead ([`Context::wait_timeout`](crate::Context::wait_timeout)),
///   so a cancel ends it at once.
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
/// | `crate = <path>` | The path of this crate, if you renamed it in `Cargo.toml`; a string (`crate = "my_ctx"`) works too. |
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
/// - **macro invocations** other than `select!` and `join!` (`vec![..]`, your `macro_rules!`):
///   their tokens are not Rust code until the macro expands, after this attribute ran;
/// - `const` blocks;
/// - **blocking calls it cannot see**: a sleep inside another function, a blocking read. Only a
///   `std::thread::sleep(d)` in the function's own body is interruptible (found by its name,
///   then told apart by its type: your own function called `sleep` runs as written).
///
/// A function whose only loops and awaits (a `select!` or `join!` counts) are inside a closure
/// or an `async` block is a compile error rather than a function that never stops: that is the
/// shape an attribute leaves when it expanded first and wrapped the body. `#[tokio::main]`, `#[tokio::test]` and
/// `#[tracing::instrument]` are recognised, and work above or below `#[cancellable]` alike.
///
/// After a Go-style `_ = ctx.done() => break` branch, the rest of the function is still
/// rewritten, so its next raced await leaves: a cleanup that must run is marked
/// `#[not_cancellable]`, or goes in `on_cancel`, which may `.await` in an `async fn`:
///
/// ```
/// use ctx::{Context, cancellable};
/// use std::time::Duration;
/// use tokio::sync::mpsc;
///
/// #[cancellable(on_cancel = { log.send("stopped").await.ok(); None })]
/// async fn serve(ctx: &Context, rx: &mut mpsc::Receiver<u32>, log: mpsc::Sender<&'static str>) -> Option<u32> {
///     let mut total = 0;
///     loop {
///         tokio::select! {
///             biased;
///             _ = ctx.done() => break, // kept as written
///             Some(n) = rx.recv() => total += n,
///         }
///     }
///     #[not_cancellable]
///     log.send("draining").await.ok(); // runs although the context is done
///     tokio::time::sleep(Duration::from_millis(100)).await; // raced: it leaves here, by on_cancel
///     log.send("drained").await.ok();
///     Some(total)
/// }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let (ctx, cancel) = Context::background().with_cancel();
/// let (tx, mut rx) = mpsc::channel(1);
/// let (log, mut logged) = mpsc::channel(4);
/// let server = tokio::spawn(async move { serve(&ctx, &mut rx, log).await });
/// tx.send(1).await.unwrap();
/// tx.send(2).await.unwrap(); // the server has taken the first: it is running
/// cancel.cancel();
/// assert_eq!(server.await.unwrap(), None);
/// assert_eq!(logged.recv().await, Some("draining"));
/// assert_eq!(logged.recv().await, Some("stopped"));
/// # }
/// ```
///
/// # Methods, traits, `#[async_trait]`
/// It applies to free functions, inherent and trait-impl methods (`self`, `&self`, `&mut self`),
/// with generics, where clauses, `impl Trait` arguments and lifetimes, and to native `async fn`
/// in traits. A bare `-> impl Trait` return needs `on_cancel`, since an opaque type has no
/// default value; `Option<impl Trait>` and `Result<impl Trait, E>` get theirs by inference. A
/// `-> !` function needs an `on_cancel` that does not return either (`panic!`, `exit`). Inside an `#[async_trait]` impl, put `#[cancellable]` on the method as usual:
/// `#[async_trait]` rewrites the method first, into a function returning
/// `Pin<Box<dyn Future<Output = T> + Send>>` whose body is `Box::pin(async move { .. })`, and
/// `#[cancellable]` rewrites the inside of that `async move` block, with `T` as the return type.
/// The same goes for any function written in that shape: a sync fn returning
/// `impl Future<Output = T>`, `Pin<Box<dyn Future<Output = T> + Send>>`, `BoxFuture<'_, T>` or
/// `Self::Future` from an `async` block (bare, in `Box::pin`, or with `.boxed()`). The context is
/// cloned before the block, so the future does not borrow the parameter (an `impl Future`
/// without `+ '_` in edition 2021, a `'static` box), and `on_cancel` is the future's output.
/// The statements before the `async` block run when the function is called, outside the
/// future: a loop there would never be checked, so it is a compile error unless marked
/// `#[not_cancellable]`.
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
/// function with a body, no `Context` parameter (naming one that holds a context, such as an
/// `Arc<Context>`, with the `ctx = ..` to write), two of them, a context parameter without a
/// name, a parameter picked by its type's name that is another crate's `Context`, an unknown,
/// duplicate or valueless argument, a `crate = ".."` that is not a path, `loops_only` on a sync
/// fn, a `const fn`, an `on_cancel` or `ctx` of the wrong type, an `on_cancel` that names a local
/// of the body, a return type with no cancellation value (reported at the return type), a body
/// whose only loops and awaits are in a closure or `async` block, and a
/// [`#[not_cancellable]`](macro@crate::not_cancellable) where it cannot work.
#[cfg(feature = "macros")]
#[doc(inline)]
pub use ctx_macros::cancellable;

/// Marks an expression or a `let` statement of a [`#[cancellable]`](macro@crate::cancellable)
/// function's body that must not be cut short: its awaits are not raced, its loops are not
/// checked and its `std::thread::sleep`s are not interrupted. `#[cancellable]` removes the
/// marker; the function stops at its next cancellation point after the marked code.
///
/// ```
/// use ctx::{Context, cancellable, not_cancellable};
///
/// #[cancellable]
/// fn copy(ctx: &Context, from: &[u8], to: &mut Vec<u8>) -> Option<usize> {
///     #[not_cancellable]
///     for byte in from {
///         to.push(*byte); // all or nothing
///     }
///     Some(to.len())
/// }
///
/// let (ctx, cancel) = Context::background().with_cancel();
/// let mut out = Vec::new();
/// assert_eq!(copy(&ctx, b"abc", &mut out), Some(3));
/// cancel.cancel();
/// assert_eq!(copy(&ctx, b"abc", &mut out), None);
/// ```
///
/// Importing it is optional inside a `#[cancellable]` function. Anywhere it cannot work, it is a
/// compile error that says where it works: on a function that is not `#[cancellable]`, on a
/// match arm or a nested item, or with arguments.
#[cfg(feature = "macros")]
#[doc(inline)]
pub use ctx_macros::not_cancellable;

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
    use std::any::{Any, TypeId};
    use std::time::Duration;

    pub use crate::{Context, Error, FromCancel};

    /// The function's own handle on its context, taken once at entry: the body stays free to
    /// move or re-borrow the user's context. A clone is one reference-count increment.
    #[inline]
    pub fn context(ctx: &Context) -> Context {
        ctx.clone()
    }

    /// The context parameter `#[cancellable]` picked by its type's name (`Context`), checked to
    /// be this crate's: another crate's `Context` (a template engine's) is reported at the
    /// parameter, with what to do instead.
    #[inline]
    pub fn picked<C: Picked + ?Sized>(ctx: &C) -> &Context {
        ctx.context()
    }

    /// Implemented by [`Context`] only; see [`picked`].
    #[diagnostic::on_unimplemented(
        message = "#[cancellable] picked this parameter as the context to check, but `{Self}` is not `ctx::Context`",
        label = "picked because its type is named `Context`",
        note = "#[cancellable] checks the parameter whose type is named `Context`; to check another context, name it with `#[cancellable(ctx = <expr>)]`"
    )]
    pub trait Picked {
        /// The context itself.
        fn context(&self) -> &Context;
    }

    impl Picked for Context {
        #[inline]
        fn context(&self) -> &Context {
            self
        }
    }

    /// `!` by another name, which a `let` may name on stable Rust: the type of the body of a
    /// `-> !` function.
    pub type Never = <fn() -> ! as Returns>::Output;

    /// The return type of a function pointer type; only there to name [`Never`].
    pub trait Returns {
        /// What the function returns.
        type Output;
    }

    impl<T> Returns for fn() -> T {
        type Output = T;
    }

    /// `sleep(duration)` in a `#[cancellable]` sync fn, where the callee is named `sleep`
    /// (`std::thread::sleep`, `thread::sleep`, `sleep`): the expansion cannot resolve the name,
    /// so this decides by the callee's type. For `std::thread::sleep` itself it waits like it,
    /// but wakes as soon as `ctx` is done, and returns `None` then (`Some(())` after the full
    /// sleep). Any other callee (your own `sleep`, a test clock's, tokio's `sleep` that makes a
    /// future) is called as written and its result returned in `Some`: it is a call the
    /// attribute cannot see into, never silently replaced. Its argument and result must be
    /// `'static` types (`Duration`, tokio's `Sleep`), which is how `TypeId` tells them apart.
    #[inline]
    pub fn sleep<F, A, R>(ctx: &Context, callee: F, argument: A) -> Option<R>
    where
        F: FnOnce(A) -> R + 'static,
        A: 'static,
        R: 'static,
    {
        if is_thread_sleep(&callee) {
            // `F` is `std::thread::sleep`, so `A` is `Duration` and `R` is `()`: both downcasts
            // succeed (they are how the compiler is told so).
            let mut slept = Some(());
            let argument: &dyn Any = &argument;
            let slept: &mut dyn Any = &mut slept;
            if let (Some(&duration), Some(slept)) =
                (argument.downcast_ref::<Duration>(), slept.downcast_mut::<Option<R>>())
            {
                return if ctx.wait_timeout(duration) { None } else { slept.take() };
            }
        }
        Some(callee(argument))
    }

    /// Whether `callee` is `std::thread::sleep`. Every function item has a type of its own, so
    /// their `TypeId`s compare exactly (unlike function addresses, which the linker may merge
    /// or duplicate).
    fn is_thread_sleep<F: 'static>(_callee: &F) -> bool {
        fn type_id<T: 'static>(_: &T) -> TypeId {
            TypeId::of::<T>()
        }
        TypeId::of::<F>() == type_id(&std::thread::sleep)
    }

    /// The error of a context the expansion saw done.
    #[inline]
    pub fn cancel_error(ctx: &Context) -> Error {
        // `is_done()` implies `err()` is set (both read the same state), so the fallback is
        // never taken; it only spares the generated code an `unwrap`.
        ctx.err().unwrap_or(Error::Canceled)
    }
}
