//! What a `#[cancellable]` function returns when its context is done ([`FromCancel`]), and the
//! hidden paths its expansion calls (`__private`).

use crate::Error;

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
