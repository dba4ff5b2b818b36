//! Contexts cancelled by the process's signals: Go's `signal.NotifyContext`, for threads and
//! async code alike (feature `signal`, on by default).
//!
//! A server or a CLI wants one thing from Ctrl-C and `kill`: "start shutting down", then, if the
//! shutdown hangs, "die now" on the second one. [`shutdown`] gives the first as a [`Context`]
//! the whole program can derive from; the second is the operating system's default, which ctx
//! gives back as soon as a signal has been delivered to the contexts waiting for it.
//!
//! ```no_run
//! # fn main() -> std::io::Result<()> {
//! let ctx = ctx::signal::shutdown()?; // SIGINT or SIGTERM
//! // ... hand `ctx` (or contexts derived from it) to every task ...
//! ctx.wait();
//! println!("shutting down: {}", ctx.cause().unwrap()); // "received SIGINT"
//! # Ok(())
//! # }
//! ```
//!
//! # What the process does on a signal
//! - Before any [`notify`], ctx has installed nothing: every signal has its usual effect.
//! - While at least one live context from [`notify`] lists a signal, that signal cancels every
//!   such context, with the cause [`Received`], and does nothing else.
//! - Once no live context lists it (they were cancelled by it, cancelled otherwise, or dropped),
//!   the next delivery gets the operating system's default action: SIGINT, SIGTERM and SIGHUP
//!   terminate the process, SIGQUIT terminates it with a core dump, exactly as if no handler had
//!   ever been installed (the exit status says "terminated by signal"). So a second Ctrl-C during
//!   a slow shutdown kills the process, as it does in well-behaved CLIs.
//! - A signal the process was started with ignored (`nohup` ignores SIGHUP; a non-interactive
//!   shell's background job starts with SIGINT and SIGQUIT ignored) is, as in Go, caught while a
//!   context lists it, and ignored again once none does: its inherited "default" is to ignore.
//!   ctx reads that disposition from `/proc/self/status`, so on Linux and Android only; on
//!   other unix targets such a signal gets the terminating default once no context lists it.
//!
//! The handlers themselves belong to the [`signal-hook`](https://docs.rs/signal-hook) crate, which
//! does the async-signal-safe part; ctx never touches `sigaction`. Signals reach contexts through
//! one thread, started on the first `notify` and then blocked reading signal-hook's self-pipe; no
//! async runtime is involved, so a plain-threads program and a tokio program work alike.
//!
//! If the program also listens to a signal by other means (`tokio::signal`, signal-hook
//! directly), those listeners still see every delivery, but the "default action once no context
//! listens" rule above still applies to that signal: a program that wants to survive a second
//! SIGINT must keep a `notify` context for it alive.
//!
//! # Child processes
//! A program that `exec`s (every [`std::process::Command`] child) starts with the default
//! action for each caught signal and without ctx's descriptors (signal-hook's self-pipe is
//! close-on-exec): nothing of ctx's crosses `exec`. A process that `fork`s without `exec` (to
//! daemonize, say) must call [`notify`] only in the child: the delivery thread does not survive
//! a fork, so in the child a listed signal would neither reach its contexts nor get its
//! default action.
//!
//! # Platforms
//! Unix targets only. Elsewhere every call of [`notify`] (and so [`shutdown`]) returns an
//! [`Unsupported`](std::io::ErrorKind::Unsupported) error naming the first signal asked for.

use std::fmt;
use std::io;

use crate::{CancelHandle, Context};

#[cfg(unix)]
mod registry;

/// A signal that [`notify`] can turn into a cancellation.
///
/// Its `Display` is the conventional name (`SIGINT`).
///
/// ```
/// use ctx::signal::Signal;
///
/// assert_eq!(Signal::Interrupt.to_string(), "SIGINT");
/// assert_eq!(Signal::Terminate.to_string(), "SIGTERM");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// `SIGINT`: Ctrl-C in a terminal.
    Interrupt,
    /// `SIGTERM`: `kill`'s default, and what service managers and container runtimes send first.
    Terminate,
    /// `SIGHUP`: the terminal went away; daemons often use it to mean "reload".
    Hangup,
    /// `SIGQUIT`: Ctrl-\ in a terminal; its default action also dumps core.
    Quit,
}

impl Signal {
    /// Every signal this module knows, in declaration order.
    const ALL: [Signal; 4] = [Signal::Interrupt, Signal::Terminate, Signal::Hangup, Signal::Quit];

    /// The conventional name, as `Display` writes it.
    fn name(self) -> &'static str {
        match self {
            Signal::Interrupt => "SIGINT",
            Signal::Terminate => "SIGTERM",
            Signal::Hangup => "SIGHUP",
            Signal::Quit => "SIGQUIT",
        }
    }

    /// This signal's position in [`Signal::ALL`] (and its bit in a `SignalSet`).
    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The [`cause`](Context::cause) of a context from [`notify`] that a signal cancelled. Its
/// `err()` is [`Error::Canceled`](crate::Error::Canceled); its `Display` is `received SIGINT`.
///
/// ```
/// use ctx::signal::{Received, Signal};
///
/// # fn main() -> std::io::Result<()> {
/// let ctx = ctx::signal::shutdown()?;
/// # if false {
/// ctx.wait();
/// if let Some(received) = ctx.cause().and_then(|c| c.downcast_ref::<Received>().cloned()) {
///     println!("stopping: {received}"); // "stopping: received SIGTERM"
///     assert!(matches!(received.signal(), Signal::Interrupt | Signal::Terminate));
/// }
/// # }
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Received {
    signal: Signal,
}

impl Received {
    /// The signal that arrived.
    ///
    /// ```
    /// # fn main() -> std::io::Result<()> {
    /// let (ctx, _handle) = ctx::signal::notify(
    ///     &ctx::Context::background(),
    ///     &[ctx::signal::Signal::Hangup],
    /// )?;
    /// assert!(ctx.cause().is_none()); // no SIGHUP yet
    /// # Ok(())
    /// # }
    /// ```
    pub fn signal(&self) -> Signal {
        self.signal
    }
}

impl fmt::Display for Received {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "received {}", self.signal)
    }
}

impl std::error::Error for Received {}

/// Go's `signal.NotifyContext`: a child of `parent` that is done when `parent` is, when the
/// returned handle cancels it, or when one of `signals` is delivered to the process, whichever
/// comes first. A signal's cause is [`Received`]; `err()` is always
/// [`Error::Canceled`](crate::Error::Canceled).
///
/// One delivery cancels every live context that listens to that signal. Then the registration
/// of each is removed, as it is once the context is done for any other reason or once every
/// clone of it and its handle are dropped: calling `notify` once per job piles nothing up, and
/// when no context listens to a signal any more its next delivery gets the operating system's
/// default action (a second Ctrl-C kills; see the [module docs](self)).
///
/// Needs no async runtime. The first call starts the thread that delivers signals to contexts
/// and installs signal-hook's handler for each signal the first time it is asked for.
///
/// If `parent` is already done, so is the context (with `parent`'s cause) and nothing is
/// registered. Listing a signal twice is the same as listing it once.
///
/// # Errors
/// - [`InvalidInput`](io::ErrorKind::InvalidInput) if `signals` is empty.
/// - [`Unsupported`](io::ErrorKind::Unsupported), naming the signal, on a non-unix target.
/// - The operating system's error, naming the signal, if its handler cannot be installed (or the
///   delivery thread's self-pipe cannot be created).
///
/// ```
/// use ctx::signal::{notify, Signal};
/// use ctx::Context;
///
/// # fn main() -> std::io::Result<()> {
/// let (job, cancel_job) = notify(&Context::background(), &[Signal::Interrupt, Signal::Hangup])?;
/// assert!(!job.is_done());
/// cancel_job.cancel(); // done for another reason: the registration is removed
/// assert_eq!(job.err(), Some(ctx::Error::Canceled));
///
/// let err = notify(&Context::background(), &[]).unwrap_err();
/// assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
/// # Ok(())
/// # }
/// ```
pub fn notify(parent: &Context, signals: &[Signal]) -> io::Result<(Context, CancelHandle)> {
    if signals.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "ctx::signal::notify: the list of signals is empty",
        ));
    }
    let set = SignalSet::from(signals);
    #[cfg(unix)]
    {
        registry::notify(parent, set)
    }
    #[cfg(not(unix))]
    {
        let _ = parent;
        let first = set.iter().next().expect("the list is not empty");
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("ctx::signal::notify: {first} cannot be caught on this platform (unix only)"),
        ))
    }
}

/// The context a server's `main` starts with: [`notify`] on [`Context::background`] for
/// [`Signal::Interrupt`] and [`Signal::Terminate`] (Ctrl-C, and `kill` / a service manager /
/// a container runtime). Nothing but those signals ever finishes it: its handle is not given out.
///
/// Each call makes a context of its own; all of them are cancelled by the same delivery.
///
/// # Errors
/// As [`notify`]'s.
///
/// ```
/// # fn main() -> std::io::Result<()> {
/// let ctx = ctx::signal::shutdown()?;
/// let (request, _guard) = ctx.with_timeout(std::time::Duration::from_secs(30));
/// assert!(!request.is_done());
/// # Ok(())
/// # }
/// ```
pub fn shutdown() -> io::Result<Context> {
    let (ctx, handle) = notify(&Context::background(), &[Signal::Interrupt, Signal::Terminate])?;
    // Dropping the handle does not cancel: the context stays live until a signal arrives (or it
    // is dropped, which removes its registration).
    drop(handle);
    Ok(ctx)
}

/// How many contexts from [`notify`] are registered for signals right now: a leak check for
/// tests (it goes back down when they are done or dropped).
#[doc(hidden)]
pub fn registrations() -> usize {
    #[cfg(unix)]
    {
        registry::registrations()
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// How many signal-hook actions ctx has installed in this process: at most 3 per signal ever
/// asked for, however many contexts were made. A leak check for tests.
#[doc(hidden)]
pub fn installed_hooks() -> usize {
    #[cfg(unix)]
    {
        registry::installed_hooks()
    }
    #[cfg(not(unix))]
    {
        0
    }
}

/// A set of [`Signal`]s, one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct SignalSet(u8);

impl SignalSet {
    fn contains(self, signal: Signal) -> bool {
        self.0 & (1 << signal.index()) != 0
    }

    fn iter(self) -> impl Iterator<Item = Signal> {
        Signal::ALL.into_iter().filter(move |signal| self.contains(*signal))
    }
}

impl From<&[Signal]> for SignalSet {
    fn from(signals: &[Signal]) -> SignalSet {
        SignalSet(signals.iter().fold(0, |bits, signal| bits | 1 << signal.index()))
    }
}
