//! [`Group`]: a set of tokio tasks that share one derived context, in the spirit of Go's
//! `errgroup`: the first task to fail cancels the others, and [`Group::wait`] waits for all of
//! them and reports that failure; [`Group::shutdown`] is the graceful stop with a drain
//! deadline (cancel, wait up to a grace period, abort the rest).
//!
//! Invariants (each `fn` below says which it keeps):
//! 1. Every spawned task is in `tasks` until `wait` or `shutdown` joins it or the group is
//!    dropped (which aborts it). A task never outlives its group unnoticed: its output, error or
//!    panic reaches `wait` (or `shutdown`), or nobody is left to observe it.
//! 2. The group's context is cancelled by the first task that fails (error or panic), by
//!    [`Group::cancel`], by its parent, or when the group is dropped (which includes the end of
//!    `wait`), whichever comes first. The cause is that of the first.
//! 3. `Shared::first_error` is written at most once, by the task that won `Shared::failed`, and
//!    read only by `wait` after every task has been joined: the join publishes the write.
//! 4. With a limit, a task holds a semaphore permit for as long as the user's future is alive;
//!    the semaphore is never closed, so acquiring cannot fail.

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{self, AssertUnwindSafe};
use std::pin::pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::Poll;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::{JoinError, JoinSet};

use crate::{CancelHandle, Context};

/// A set of tokio tasks that share one context derived from a parent: Go's `errgroup`, shaped
/// like tokio's [`JoinSet`].
///
/// - [`spawn`](Group::spawn) starts a task on the current tokio runtime; its closure receives a
///   clone of the group's context ([`context`](Group::context)).
/// - The **first** task to return `Err` (or to panic) cancels the group's context, with a
///   [`TaskFailed`] cause naming the task and the error, so its siblings can stop early.
/// - [`wait`](Group::wait) waits for **every** task, then returns their outputs in spawn order,
///   or the first error, or a panic (never swallowed: see [`GroupError`]).
/// - [`with_limit`](Group::with_limit) caps how many tasks run at once.
/// - Dropping a group (without waiting) cancels its context and aborts its tasks, as dropping a
///   `JoinSet` does: tasks are stopped at their next `.await`, and nobody is left to report
///   their outcome to. Call [`cancel`](Group::cancel) then [`wait`](Group::wait) to let them stop
///   by themselves instead.
///
/// A `Group` is owned by one task (`spawn` takes `&mut self`, `wait` takes `self`); the tasks
/// themselves get the context, not the group.
///
/// ```
/// use ctx::{Context, Group};
///
/// # #[tokio::main] async fn main() {
/// let mut group = Group::new(&Context::background());
/// for n in 1..=3u64 {
///     group.spawn(move |ctx| async move {
///         ctx.check()?; // stop early if a sibling failed
///         Ok::<_, ctx::Error>(n * n)
///     });
/// }
/// assert_eq!(group.wait().await.unwrap(), vec![1, 4, 9]);
/// # }
/// ```
pub struct Group<T, E> {
    ctx: Context,
    handle: CancelHandle,
    tasks: JoinSet<Outcome<T>>,
    /// The limit and the semaphore that enforces it; `None` without a limit.
    limit: Option<(usize, Arc<Semaphore>)>,
    shared: Arc<Shared<E>>,
    spawned: usize,
}

/// What one task hands back to `wait`: its spawn index and output, or `None` if it failed
/// (its error, if it was the first, is in `Shared::first_error`).
type Outcome<T> = Option<(usize, T)>;

/// The state a group shares with its tasks.
struct Shared<E> {
    handle: CancelHandle,
    /// Set by the first task that returns `Err` (invariant 3).
    failed: AtomicBool,
    first_error: Mutex<Option<E>>,
}

impl<T, E> Group<T, E> {
    /// A group whose context is derived from `parent` (cancelled when `parent` is), with no limit
    /// on the number of tasks running at once. Needs no runtime; [`spawn`](Group::spawn) does.
    ///
    /// If `parent` is already done, so is the group's context: tasks still run (see `spawn`).
    ///
    /// ```
    /// let (parent, stop) = ctx::Context::background().with_cancel();
    /// let group: ctx::Group<(), ctx::Error> = ctx::Group::new(&parent);
    /// stop.cancel();
    /// assert!(group.context().is_done());
    /// ```
    pub fn new(parent: &Context) -> Group<T, E> {
        let (ctx, handle) = parent.with_cancel();
        let shared = Arc::new(Shared {
            handle: handle.clone(),
            failed: AtomicBool::new(false),
            first_error: Mutex::new(None),
        });
        Group { ctx, handle, tasks: JoinSet::new(), limit: None, shared, spawned: 0 }
    }

    /// Like [`new`](Group::new), but at most `limit` tasks run at once (Go's `SetLimit`). The
    /// others are spawned at once but wait, in spawn order as far as the runtime polls them in
    /// that order, for a running task to finish before their closure is called.
    ///
    /// A limit of [`Semaphore::MAX_PERMITS`] or more means no limit.
    ///
    /// # Panics
    /// If `limit` is 0: such a group could never run a task, and `wait` would hang forever.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::with_limit(&ctx::Context::background(), 2);
    /// for n in 0..10 {
    ///     group.spawn(move |_ctx| async move { Ok::<_, ctx::Error>(n) });
    /// }
    /// assert_eq!(group.wait().await.unwrap().len(), 10);
    /// # }
    /// ```
    pub fn with_limit(parent: &Context, limit: usize) -> Group<T, E> {
        assert!(limit > 0, "ctx::Group::with_limit: the limit must be at least 1");
        let mut group = Group::new(parent);
        if limit < Semaphore::MAX_PERMITS {
            group.limit = Some((limit, Arc::new(Semaphore::new(limit))));
        }
        group
    }

    /// The group's context: the one every task receives. It is done once the group is cancelled
    /// (see [`Group`]); clone it to keep it after the group is gone.
    ///
    /// ```
    /// let group: ctx::Group<(), ctx::Error> = ctx::Group::new(&ctx::Context::background());
    /// let ctx = group.context().clone();
    /// drop(group);
    /// assert!(ctx.is_done());
    /// ```
    pub fn context(&self) -> &Context {
        &self.ctx
    }

    /// Cancels the group's context with [`Error::Canceled`](crate::Error::Canceled), so that
    /// tasks watching it stop; unlike dropping the group it aborts nothing, so follow it with
    /// [`wait`](Group::wait) to collect what they return. Idempotent; if the context is already
    /// done (a task failed first), its first cause is kept.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// group.spawn(|ctx| async move {
    ///     ctx.done().await;
    ///     Ok::<_, ctx::Error>("stopped cleanly")
    /// });
    /// group.cancel();
    /// assert_eq!(group.wait().await.unwrap(), vec!["stopped cleanly"]);
    /// # }
    /// ```
    pub fn cancel(&self) {
        self.handle.cancel();
    }

    /// How many tasks have been spawned into this group (finished or not).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// assert_eq!(group.len(), 0);
    /// group.spawn(|_ctx| async { Ok::<_, ctx::Error>(()) });
    /// assert_eq!(group.len(), 1);
    /// # }
    /// ```
    pub fn len(&self) -> usize {
        self.spawned
    }

    /// `true` if no task has been spawned yet.
    ///
    /// ```
    /// let group: ctx::Group<(), ctx::Error> = ctx::Group::new(&ctx::Context::background());
    /// assert!(group.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.spawned == 0
    }
}

impl<T, E> Group<T, E>
where
    T: Send + 'static,
    E: fmt::Display + Send + 'static,
{
    /// Spawns `task` on the current tokio runtime. When the task starts (with a limit: once a
    /// running task has finished), `task` is called with a clone of the group's context, and the
    /// future it returns is driven to completion.
    ///
    /// If the future returns `Err` and it is the first task of the group to fail, its error is
    /// kept for [`wait`](Group::wait) and the group's context is cancelled with a [`TaskFailed`]
    /// cause whose message is the error's `Display`; later errors are dropped, as in Go. A panic
    /// in `task` or its future also cancels the context (cause: [`TaskFailed`] with
    /// [`is_panic`](TaskFailed::is_panic)), then unwinds on into tokio, which hands it to `wait`.
    ///
    /// Every spawned task runs, even if the group's context is already done: the task sees the
    /// done context and is expected to return early (as with `ctx.check()?`).
    ///
    /// # Panics
    /// If called outside a tokio runtime (as [`tokio::spawn`] does).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// group.spawn(|_ctx| async { Err::<(), _>(std::io::Error::other("disk full")) });
    /// group.spawn(|ctx| async move {
    ///     ctx.done().await; // cancelled by the failure above
    ///     Ok(())
    /// });
    /// let err = group.wait().await.unwrap_err();
    /// assert_eq!(err.to_string(), "disk full");
    /// # }
    /// ```
    pub fn spawn<F, Fut>(&mut self, task: F)
    where
        F: FnOnce(Context) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
    {
        let index = self.spawned;
        let ctx = self.ctx.clone();
        let shared = self.shared.clone();
        let limit = self.limit.as_ref().map(|(_, semaphore)| semaphore.clone());
        // Invariant 1: the task is in the set from now on.
        self.tasks.spawn(async move {
            // Invariant 4: the permit lives until the user's future is done or dropped.
            let _permit = match limit {
                Some(limit) => {
                    Some(limit.acquire_owned().await.expect("a group never closes its semaphore"))
                }
                None => None,
            };
            // The closure is called inside `catch_unwind` too, so a panic there cancels the group.
            match catch_unwind(async move { task(ctx).await }).await {
                Ok(Ok(value)) => Some((index, value)),
                Ok(Err(error)) => {
                    shared.fail(index, error);
                    None
                }
                Err(payload) => {
                    shared.handle.cancel_with_cause(TaskFailed {
                        task: index,
                        panicked: true,
                        message: panic_message(&*payload),
                    });
                    // Resuming (rather than returning the payload) lets tokio report the panic
                    // as it always does, as a `JoinError` that `wait` surfaces.
                    panic::resume_unwind(payload)
                }
            }
        });
        // Counted only once spawned: `tokio::spawn` panics outside a runtime, and `wait` expects
        // an outcome for every index below `spawned`.
        self.spawned += 1;
    }

    /// Waits for every task of the group, then cancels its context (as Go's `Wait` does) and
    /// returns:
    /// - `Err(GroupError::Join(..))` if any task panicked (or was aborted by a runtime shutting
    ///   down): a panic is a bug and is never hidden behind an error; if several did, the first
    ///   panic joined (else the first abort);
    /// - else `Err(GroupError::Task(e))` with the error of the first task that returned `Err`;
    /// - else `Ok` with every task's output, **in spawn order** (tokio's `JoinSet::join_all` uses
    ///   completion order; spawn order lines results up with the inputs).
    ///
    /// It returns only once every task has finished, even after a failure: a task that ignores
    /// the cancelled context delays `wait`. Dropping the `wait` future (say, in a `select!` or
    /// [`Context::run`]) drops the group: its context is cancelled and its tasks aborted.
    ///
    /// ```
    /// use ctx::{Group, GroupError};
    ///
    /// # #[tokio::main] async fn main() {
    /// let mut group = Group::new(&ctx::Context::background());
    /// group.spawn(|_ctx| async { Ok::<u32, ctx::Error>(1) });
    /// group.spawn(|_ctx| async { panic!("boom") });
    /// match group.wait().await {
    ///     Err(GroupError::Join(join)) => assert!(join.is_panic()),
    ///     other => panic!("expected the panic, got {other:?}"),
    /// }
    /// # }
    /// ```
    pub async fn wait(mut self) -> Result<Vec<T>, GroupError<E>> {
        let mut joined = Joined::new(self.spawned);
        // Invariant 1: every task is joined here (or aborted when `self` drops, if this future
        // is dropped first).
        while let Some(result) = self.tasks.join_next().await {
            joined.record(result);
        }
        joined.finish(&self.shared)
    }

    /// Graceful shutdown with a drain deadline: cancels the group's context (as
    /// [`cancel`](Group::cancel) does), waits up to `grace` for every task to stop by itself,
    /// then aborts those still running (as dropping the group does: each stops at its next
    /// `.await`) and waits for them to go. Returns what [`wait`](Group::wait) returns, and how
    /// the drain went, as a [`ShutdownReport`] whose `Display` is a log line
    /// (`3 of 5 tasks aborted after 10s`).
    ///
    /// An aborted task has no output: the report's result is then `Err(GroupError::Join(..))`
    /// with a [`JoinError::is_cancelled`] error, unless a task panicked (a panic, being a bug,
    /// is reported first). A task that returns an error or panics during the drain is reported
    /// as in `wait`. A `grace` of zero aborts at once whatever has not finished yet.
    ///
    /// The drain deadline is a ctx deadline (ctx's timer thread): it needs no tokio time driver.
    /// Dropping the returned future drops the group: its tasks are aborted at once.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// group.spawn(|ctx| async move {
    ///     ctx.done().await; // stops when told to
    ///     Ok::<_, ctx::Error>("flushed")
    /// });
    /// group.spawn(|_ctx| async move {
    ///     std::future::pending::<()>().await; // ignores its context
    ///     Ok("never")
    /// });
    /// let report = group.shutdown(Duration::from_millis(50)).await;
    /// assert_eq!((report.tasks(), report.aborted()), (2, 1));
    /// assert_eq!(report.to_string(), "1 of 2 tasks aborted after 50ms");
    /// assert!(report.into_result().unwrap_err().is_aborted());
    /// # }
    /// ```
    pub async fn shutdown(mut self, grace: Duration) -> ShutdownReport<T, E> {
        let started = Instant::now();
        self.handle.cancel();
        let mut joined = Joined::new(self.spawned);
        // Invariant 1: every task is joined by one of the two loops.
        let (drain, _drain_handle) = Context::background().with_timeout(grace);
        loop {
            match drain.run(self.tasks.join_next()).await {
                Ok(Some(result)) => joined.record(result),
                Ok(None) => break,
                Err(_) => {
                    self.tasks.abort_all();
                    break;
                }
            }
        }
        let mut aborted = 0;
        while let Some(result) = self.tasks.join_next().await {
            // A task that finished just before the abort is not counted: it was not aborted.
            if matches!(&result, Err(err) if err.is_cancelled()) {
                aborted += 1;
            }
            joined.record(result);
        }
        ShutdownReport {
            tasks: self.spawned,
            aborted,
            grace,
            elapsed: started.elapsed(),
            result: joined.finish(&self.shared),
        }
    }
}

/// What the joins of a group's tasks add up to; shared by `wait` and `shutdown`.
struct Joined<T> {
    outputs: Vec<Option<T>>,
    join_error: Option<JoinError>,
}

impl<T> Joined<T> {
    fn new(spawned: usize) -> Joined<T> {
        Joined {
            outputs: std::iter::repeat_with(|| None).take(spawned).collect(),
            join_error: None,
        }
    }

    fn record(&mut self, result: Result<Outcome<T>, JoinError>) {
        match result {
            Ok(Some((index, value))) => self.outputs[index] = Some(value),
            Ok(None) => {}
            Err(err) => {
                // The first one joined, except that a panic (a bug) wins over an abort.
                let keep = match &self.join_error {
                    None => true,
                    Some(kept) => kept.is_cancelled() && err.is_panic(),
                };
                if keep {
                    self.join_error = Some(err);
                }
            }
        }
    }

    /// The group's result, once every task has been joined (invariant 3).
    fn finish<E>(self, shared: &Shared<E>) -> Result<Vec<T>, GroupError<E>> {
        if let Some(err) = self.join_error {
            return Err(GroupError::Join(err));
        }
        // Invariant 3: every task has been joined, so the first error, if any, is written.
        let first_error = shared.first_error.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(err) = first_error {
            return Err(GroupError::Task(err));
        }
        Ok(self
            .outputs
            .into_iter()
            .map(|output| output.expect("a task that did not fail returned its output"))
            .collect())
    }
}

impl<E> Shared<E>
where
    E: fmt::Display,
{
    /// Records `error` if it is the group's first, and cancels the group with it as the cause.
    /// Keeps invariants 2 and 3.
    fn fail(&self, task: usize, error: E) {
        // Relaxed is enough: the flag only elects one writer; the mutex and the join publish
        // the error itself.
        if self.failed.swap(true, Ordering::Relaxed) {
            return;
        }
        let message = error.to_string();
        *self.first_error.lock().unwrap_or_else(PoisonError::into_inner) = Some(error);
        // Cancel after the lock is released: cancelling runs `after_func` callbacks right here.
        self.handle.cancel_with_cause(TaskFailed { task, panicked: false, message });
    }
}

/// Cancels the group's context and aborts its tasks (invariants 1 and 2). See [`Group`].
impl<T, E> Drop for Group<T, E> {
    fn drop(&mut self) {
        self.handle.cancel();
        // `tasks` drops next, which aborts whatever is still running.
    }
}

impl<T, E> fmt::Debug for Group<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("context", &self.ctx)
            .field("spawned", &self.spawned)
            .field("running", &self.tasks.len())
            .field("limit", &self.limit.as_ref().map(|(limit, _)| limit))
            .finish()
    }
}

/// Polls `future`, catching a panic from any of its polls.
async fn catch_unwind<F: Future>(future: F) -> Result<F::Output, Box<dyn Any + Send>> {
    let mut future = pin!(future);
    std::future::poll_fn(|cx| {
        // AssertUnwindSafe: after a panic the future is never polled again (it is dropped as the
        // panic resumes), so no broken state it might hold can be observed.
        match panic::catch_unwind(AssertUnwindSafe(|| future.as_mut().poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(payload) => Poll::Ready(Err(payload)),
        }
    })
    .await
}

/// The message of a panic payload, as `std` prints it.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(message) = payload.downcast_ref::<&str>() {
        (*message).to_string()
    } else if let Some(message) = payload.downcast_ref::<String>() {
        message.clone()
    } else {
        "Box<dyn Any>".to_string()
    }
}

/// Why [`Group::wait`] failed: the first task error, or a task's panic.
///
/// Its `Display` and `source` are those of the wrapped error (it adds no words of its own).
///
/// ```
/// use ctx::{Group, GroupError};
///
/// # #[tokio::main] async fn main() {
/// let mut group = Group::new(&ctx::Context::background());
/// group.spawn(|_ctx| async { Err::<(), _>("bad input") });
/// match group.wait().await {
///     Err(GroupError::Task(err)) => assert_eq!(err, "bad input"),
///     other => panic!("{other:?}"),
/// }
/// # }
/// ```
#[derive(Debug)]
pub enum GroupError<E> {
    /// The error returned by the first task of the group to return `Err`.
    Task(E),
    /// A task panicked (see [`JoinError::is_panic`] and [`JoinError::into_panic`]), or was
    /// aborted because its runtime shut down. Takes precedence over [`Task`](GroupError::Task).
    Join(JoinError),
}

impl<E> GroupError<E> {
    /// `true` if a task was aborted rather than finishing: by [`Group::shutdown`] after its
    /// drain deadline, or by its runtime shutting down.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// group.spawn(|_ctx| std::future::pending::<Result<(), ctx::Error>>());
    /// let report = group.shutdown(std::time::Duration::ZERO).await;
    /// assert!(report.into_result().unwrap_err().is_aborted());
    /// # }
    /// ```
    pub fn is_aborted(&self) -> bool {
        matches!(self, GroupError::Join(err) if err.is_cancelled())
    }

    /// The task's error; a panic is resumed on the calling thread, as `std::thread::scope` does
    /// (the payload is the task's own, so `#[should_panic(expected = ..)]` and `catch_unwind`
    /// see the original message). A task aborted by a runtime shutdown panics with the
    /// [`JoinError`]'s message.
    ///
    /// For propagating with `?` when a panic should stay a panic:
    /// `group.wait().await.map_err(GroupError::resume_panic)?`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// group.spawn(|_ctx| async { Err::<(), _>(ctx::Error::DeadlineExceeded) });
    /// let err = group.wait().await.map_err(ctx::GroupError::resume_panic).unwrap_err();
    /// assert_eq!(err, ctx::Error::DeadlineExceeded);
    /// # }
    /// ```
    pub fn resume_panic(self) -> E {
        match self {
            GroupError::Task(err) => err,
            GroupError::Join(join) => match join.try_into_panic() {
                Ok(payload) => panic::resume_unwind(payload),
                Err(join) => panic!("{join}"),
            },
        }
    }
}

impl<E: fmt::Display> fmt::Display for GroupError<E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            GroupError::Task(err) => err.fmt(f),
            GroupError::Join(err) => err.fmt(f),
        }
    }
}

impl<E> std::error::Error for GroupError<E>
where
    E: std::error::Error + 'static,
{
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            GroupError::Task(err) => err.source(),
            GroupError::Join(err) => err.source(),
        }
    }
}

/// What [`Group::shutdown`] did: the result [`wait`](Group::wait) would have given, and how
/// the drain went: how many tasks there were, how many had to be aborted once the grace period
/// was over, and how long it all took.
///
/// Its `Display` is one log line: `all 3 tasks stopped in 12ms` when every task stopped by
/// itself (`the 1 task stopped in 3ms`, and `no task to stop` for an empty group),
/// `2 of 3 tasks aborted after 10s` when the drain deadline had to abort some.
///
/// ```
/// use std::time::Duration;
///
/// # #[tokio::main] async fn main() {
/// let mut group = ctx::Group::new(&ctx::Context::background());
/// for _ in 0..3 {
///     group.spawn(|ctx| async move {
///         ctx.done().await;
///         Ok::<_, ctx::Error>(())
///     });
/// }
/// let report = group.shutdown(Duration::from_secs(10)).await;
/// assert!(report.is_clean());
/// assert!(report.to_string().starts_with("all 3 tasks stopped in "));
/// assert_eq!(report.into_result().unwrap().len(), 3);
/// # }
/// ```
#[derive(Debug)]
pub struct ShutdownReport<T, E> {
    tasks: usize,
    aborted: usize,
    grace: Duration,
    elapsed: Duration,
    result: Result<Vec<T>, GroupError<E>>,
}

impl<T, E> ShutdownReport<T, E> {
    /// How many tasks the group had (as [`Group::len`]).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let group = ctx::Group::<(), ctx::Error>::new(&ctx::Context::background());
    /// assert_eq!(group.shutdown(std::time::Duration::ZERO).await.tasks(), 0);
    /// # }
    /// ```
    pub fn tasks(&self) -> usize {
        self.tasks
    }

    /// How many tasks were still running at the drain deadline and were aborted.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// group.spawn(|_ctx| std::future::pending::<Result<(), ctx::Error>>());
    /// assert_eq!(group.shutdown(std::time::Duration::from_millis(10)).await.aborted(), 1);
    /// # }
    /// ```
    pub fn aborted(&self) -> usize {
        self.aborted
    }

    /// `true` if no task had to be aborted: every one stopped by itself within the grace period
    /// (successfully or not: see [`result`](ShutdownReport::result)).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let group = ctx::Group::<(), ctx::Error>::new(&ctx::Context::background());
    /// assert!(group.shutdown(std::time::Duration::ZERO).await.is_clean());
    /// # }
    /// ```
    pub fn is_clean(&self) -> bool {
        self.aborted == 0
    }

    /// The grace period `shutdown` was given.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let group = ctx::Group::<(), ctx::Error>::new(&ctx::Context::background());
    /// let grace = std::time::Duration::from_secs(10);
    /// assert_eq!(group.shutdown(grace).await.grace(), grace);
    /// # }
    /// ```
    pub fn grace(&self) -> Duration {
        self.grace
    }

    /// How long the shutdown took, from the cancel to the last task joined.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let group = ctx::Group::<(), ctx::Error>::new(&ctx::Context::background());
    /// let report = group.shutdown(std::time::Duration::from_secs(10)).await;
    /// assert!(report.elapsed() < report.grace());
    /// # }
    /// ```
    pub fn elapsed(&self) -> Duration {
        self.elapsed
    }

    /// What [`Group::wait`] would have returned; an aborted task makes it
    /// `Err(GroupError::Join(..))` (see [`GroupError::is_aborted`]) unless a task panicked.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// group.spawn(|_ctx| async { Err::<(), _>("disk full") });
    /// let report = group.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert!(matches!(report.result(), Err(ctx::GroupError::Task("disk full"))));
    /// # }
    /// ```
    pub fn result(&self) -> &Result<Vec<T>, GroupError<E>> {
        &self.result
    }

    /// The result, by value (see [`result`](ShutdownReport::result)).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// group.spawn(|_ctx| async { Ok::<_, ctx::Error>(7) });
    /// let report = group.shutdown(std::time::Duration::from_secs(1)).await;
    /// assert_eq!(report.into_result().unwrap(), vec![7]);
    /// # }
    /// ```
    pub fn into_result(self) -> Result<Vec<T>, GroupError<E>> {
        self.result
    }
}

/// One log line: `all 3 tasks stopped in 12ms` (`the 1 task stopped in 3ms`, `no task to stop`)
/// or `2 of 3 tasks aborted after 10s`.
impl<T, E> fmt::Display for ShutdownReport<T, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = if self.tasks == 1 { "task" } else { "tasks" };
        let millis = self.elapsed.as_millis();
        if self.tasks == 0 {
            f.write_str("no task to stop")
        } else if self.aborted == 0 && self.tasks == 1 {
            write!(f, "the 1 task stopped in {millis}ms")
        } else if self.aborted == 0 {
            write!(f, "all {} {noun} stopped in {millis}ms", self.tasks)
        } else {
            write!(f, "{} of {} {noun} aborted after {:?}", self.aborted, self.tasks, self.grace)
        }
    }
}

/// The [`cause`](Context::cause) of a group's context when a task failed first: which task (its
/// spawn index, counting from 0) and what its error or panic message said. Displays as
/// `task 3 failed: <error>` or `task 3 panicked: <message>`.
///
/// ```
/// # #[tokio::main] async fn main() {
/// let mut group = ctx::Group::new(&ctx::Context::background());
/// let ctx = group.context().clone();
/// group.spawn(|_ctx| async { Ok::<(), String>(()) });
/// group.spawn(|_ctx| async { Err::<(), _>("no route to host".to_string()) });
/// assert!(group.wait().await.is_err());
///
/// let cause = ctx.cause().unwrap();
/// let failed = cause.downcast_ref::<ctx::TaskFailed>().unwrap();
/// assert_eq!((failed.task(), failed.is_panic()), (1, false));
/// assert_eq!(cause.to_string(), "task 1 failed: no route to host");
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskFailed {
    task: usize,
    panicked: bool,
    message: String,
}

impl TaskFailed {
    /// The spawn index of the task that failed: 0 for the group's first `spawn`. It is also the
    /// task's position in the `Vec` that a successful [`Group::wait`] returns.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// let ctx = group.context().clone();
    /// group.spawn(|_ctx| async { Err::<(), _>("oops") });
    /// let _ = group.wait().await;
    /// assert_eq!(ctx.cause().unwrap().downcast_ref::<ctx::TaskFailed>().unwrap().task(), 0);
    /// # }
    /// ```
    pub fn task(&self) -> usize {
        self.task
    }

    /// `true` if the task panicked, `false` if it returned `Err`.
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// let ctx = group.context().clone();
    /// group.spawn(|_ctx| async { if true { panic!("bug") } Ok::<(), ctx::Error>(()) });
    /// let _ = group.wait().await;
    /// assert!(ctx.cause().unwrap().downcast_ref::<ctx::TaskFailed>().unwrap().is_panic());
    /// # }
    /// ```
    pub fn is_panic(&self) -> bool {
        self.panicked
    }

    /// The error's `Display`, or the panic's message (`"Box<dyn Any>"` if the payload was
    /// neither a `&str` nor a `String`, as `std` prints it).
    ///
    /// ```
    /// # #[tokio::main] async fn main() {
    /// let mut group = ctx::Group::new(&ctx::Context::background());
    /// let ctx = group.context().clone();
    /// group.spawn(|_ctx| async { Err::<(), _>(ctx::Error::DeadlineExceeded) });
    /// let _ = group.wait().await;
    /// let cause = ctx.cause().unwrap();
    /// assert_eq!(cause.downcast_ref::<ctx::TaskFailed>().unwrap().message(), "context deadline exceeded");
    /// # }
    /// ```
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for TaskFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verb = if self.panicked { "panicked" } else { "failed" };
        write!(f, "task {} {verb}: {}", self.task, self.message)
    }
}

impl std::error::Error for TaskFailed {}
