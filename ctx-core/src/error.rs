//! Why a context is done: the [`Error`] that `err()` reports and the [`Cause`] behind it.

use std::any::Any;
use std::fmt;
use std::io;
use std::sync::Arc;

/// The reason a context is done, as reported by [`Context::err`](crate::Context::err).
///
/// It carries Go's messages: `"context canceled"` and `"context deadline exceeded"`.
///
/// ```
/// use ctx::{Context, Error};
///
/// let (ctx, handle) = Context::background().with_cancel();
/// handle.cancel();
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// assert_eq!(Error::Canceled.to_string(), "context canceled");
/// assert!(Error::DeadlineExceeded.is_timeout());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// The context was cancelled through a [`CancelHandle`](crate::CancelHandle), directly or
    /// through one of its ancestors.
    Canceled,
    /// The context's deadline passed (its own, or an ancestor's).
    DeadlineExceeded,
}

impl Error {
    /// Returns `true` for [`Error::DeadlineExceeded`], like Go's `Timeout()` method.
    ///
    /// ```
    /// assert!(!ctx::Error::Canceled.is_timeout());
    /// ```
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::DeadlineExceeded)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Error::Canceled => "context canceled",
            Error::DeadlineExceeded => "context deadline exceeded",
        })
    }
}

impl std::error::Error for Error {}

/// `Canceled` becomes [`io::ErrorKind::Interrupted`], `DeadlineExceeded` becomes
/// [`io::ErrorKind::TimedOut`]; the `Error` itself is kept as the inner error.
///
/// ```
/// let err: std::io::Error = ctx::Error::DeadlineExceeded.into();
/// assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
/// ```
impl From<Error> for io::Error {
    fn from(err: Error) -> io::Error {
        let kind = match err {
            Error::Canceled => io::ErrorKind::Interrupted,
            Error::DeadlineExceeded => io::ErrorKind::TimedOut,
        };
        io::Error::new(kind, err)
    }
}

/// The cause of a context's cancellation, as reported by [`Context::cause`](crate::Context::cause).
///
/// A plain [`cancel()`](crate::CancelHandle::cancel) gives the cause [`Error::Canceled`], an
/// expired deadline gives [`Error::DeadlineExceeded`] (or the cause given to
/// [`with_deadline_cause`](crate::Context::with_deadline_cause)), and
/// [`cancel_with_cause`](crate::CancelHandle::cancel_with_cause) gives the error it was passed.
///
/// A `Cause` is a cheap clone (an `Arc`, or no allocation at all for the two [`Error`]s). Its
/// `Display` and `Debug` forward to the wrapped error, and it can be downcast.
///
/// ```
/// use ctx::{Cause, Context, Error};
///
/// #[derive(Debug)]
/// struct Shutdown;
/// impl std::fmt::Display for Shutdown {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("server shutting down")
///     }
/// }
/// impl std::error::Error for Shutdown {}
///
/// let (ctx, handle) = Context::background().with_cancel();
/// handle.cancel_with_cause(Shutdown);
/// let cause: Cause = ctx.cause().unwrap();
/// assert!(cause.downcast_ref::<Shutdown>().is_some());
/// assert_eq!(cause.to_string(), "server shutting down");
/// assert_eq!(ctx.err(), Some(Error::Canceled));
/// ```
#[derive(Clone)]
pub struct Cause(Repr);

#[derive(Clone)]
enum Repr {
    Context(Error),
    Custom(Arc<dyn std::error::Error + Send + Sync + 'static>),
}

impl Cause {
    /// Wraps an error as a cause. Wrapping an [`Error`] allocates nothing; wrapping a `Cause`
    /// returns it unchanged.
    ///
    /// ```
    /// let cause = ctx::Cause::new(std::io::Error::other("disk full"));
    /// assert!(cause.downcast_ref::<std::io::Error>().is_some());
    /// ```
    pub fn new<E>(error: E) -> Cause
    where
        E: std::error::Error + Send + Sync + 'static,
    {
        let any = &error as &dyn Any;
        if let Some(err) = any.downcast_ref::<Error>() {
            return Cause(Repr::Context(*err));
        }
        if let Some(cause) = any.downcast_ref::<Cause>() {
            return cause.clone();
        }
        Cause(Repr::Custom(Arc::new(error)))
    }

    /// Wraps an error that is already shared.
    ///
    /// ```
    /// use std::sync::Arc;
    /// let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(ctx::Error::Canceled);
    /// assert_eq!(ctx::Cause::from_arc(shared).to_string(), "context canceled");
    /// ```
    pub fn from_arc(error: Arc<dyn std::error::Error + Send + Sync + 'static>) -> Cause {
        Cause(Repr::Custom(error))
    }

    /// Borrows the wrapped error.
    ///
    /// ```
    /// let cause = ctx::Cause::from(ctx::Error::Canceled);
    /// let err: &(dyn std::error::Error + Send + Sync + 'static) = cause.as_error();
    /// assert_eq!(err.to_string(), "context canceled");
    /// ```
    pub fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match &self.0 {
            Repr::Context(err) => err,
            Repr::Custom(err) => &**err,
        }
    }

    /// Returns the wrapped error if it is of type `E`.
    ///
    /// ```
    /// let cause = ctx::Cause::from(ctx::Error::DeadlineExceeded);
    /// assert_eq!(cause.downcast_ref::<ctx::Error>(), Some(&ctx::Error::DeadlineExceeded));
    /// assert!(cause.downcast_ref::<std::io::Error>().is_none());
    /// ```
    pub fn downcast_ref<E>(&self) -> Option<&E>
    where
        E: std::error::Error + 'static,
    {
        self.as_error().downcast_ref::<E>()
    }

    /// Returns `true` if the wrapped error is of type `E`.
    ///
    /// ```
    /// assert!(ctx::Cause::from(ctx::Error::Canceled).is::<ctx::Error>());
    /// ```
    pub fn is<E>(&self) -> bool
    where
        E: std::error::Error + 'static,
    {
        self.as_error().is::<E>()
    }
}

impl From<Error> for Cause {
    fn from(err: Error) -> Cause {
        Cause(Repr::Context(err))
    }
}

impl AsRef<dyn std::error::Error + Send + Sync + 'static> for Cause {
    fn as_ref(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self.as_error()
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_error(), f)
    }
}

impl fmt::Debug for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_error(), f)
    }
}

/// A `Cause` is itself an error whose `source()` is the wrapped error's source, so it can be
/// returned with `?` into `Box<dyn Error>`.
impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.as_error().source()
    }
}
