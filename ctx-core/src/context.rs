//! The [`Context`] handle: roots, derivation with cancel/merge/without_cancel, the state queries,
//! and Go's `Display` chain. Values, deadlines, waiting and callbacks add their methods to
//! `Context` from their own modules.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use crate::error::{Cause, Error};
use crate::handle::CancelHandle;
use crate::tree::{Kind, KindRef, Node};

/// A cancellation signal, an optional deadline and request-scoped values, carried across API
/// boundaries and threads: Go's `context.Context`, owned the Rust way.
///
/// Contexts form a tree. A root ([`background`](Context::background)) is never done; each
/// derived context ([`with_cancel`](Context::with_cancel),
/// [`with_timeout`](Context::with_timeout), [`with_value`](Context::with_value),
/// [`merge`](Context::merge), ...) is done as soon as its parent is, or when its own handle or
/// deadline says so. A context never affects its parent.
///
/// `Context` is `Clone + Send + Sync + 'static`; a clone costs one reference-count increment and
/// every clone observes the same state. When every clone of a derived context and its
/// [`CancelHandle`] are dropped, it leaves its parent: nothing leaks if nobody calls cancel.
///
/// **Equality is identity** (`PartialEq`, `Eq`, `Hash`), as for tokio-util's token: clones of one
/// context (and [`CancelHandle::context`]) are equal and hash alike; every derived context is a
/// context of its own, unequal to its parent and to its siblings, even when it adds nothing (a
/// second `with_cancel` of the same parent). Every [`background`](Context::background) is equal to
/// every other, and so is every [`todo`](Context::todo), but the two roots differ. Being done
/// changes a context's state, never its identity, so a context is a sound `HashMap` key
/// (clippy's `mutable_key_type` sees its atomics, not that: allow it there).
///
/// ```
/// use ctx::{Context, Error};
///
/// let (parent, cancel_parent) = Context::background().with_cancel();
/// let (child, _cancel_child) = parent.with_cancel();
/// assert!(!child.is_done());
///
/// cancel_parent.cancel();
/// assert!(child.is_done());
/// assert_eq!(child.err(), Some(Error::Canceled));
/// assert_eq!(child.check(), Err(Error::Canceled));
/// ```
#[derive(Clone)]
pub struct Context {
    /// `None` is `background()`; every other context, `todo()` included, is a node.
    node: Option<Arc<Node>>,
}

impl Context {
    /// The root of every context tree: never done, no deadline, no values. Allocates nothing.
    ///
    /// ```
    /// let ctx = ctx::Context::background();
    /// assert!(!ctx.is_done());
    /// assert_eq!(ctx.to_string(), "context.Background");
    /// ```
    pub const fn background() -> Context {
        Context { node: None }
    }

    /// Like [`background`](Context::background), for code that does not know yet which context
    /// to use; it differs only in its `Display` (`context.TODO`), so it can be grepped for.
    /// All `todo()` contexts share one process-wide root, allocated on first use.
    ///
    /// ```
    /// assert_eq!(ctx::Context::todo().to_string(), "context.TODO");
    /// assert!(!ctx::Context::todo().is_done());
    /// ```
    pub fn todo() -> Context {
        Context::from_node(todo_root())
    }

    /// Derives a child that is done when this context is, or when the returned handle's
    /// [`cancel`](CancelHandle::cancel) is called, whichever comes first.
    ///
    /// If this context is already done, the child is born done with the same error and cause.
    /// Creating children of one parent from many threads at once is safe; costs one allocation.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// handle.cancel();
    /// assert!(ctx.is_done());
    /// ```
    pub fn with_cancel(&self) -> (Context, CancelHandle) {
        self.derive_cancellable(Kind::Cancel)
    }

    /// Derives a context that keeps this one's values but is never done and has no deadline;
    /// contexts derived from it are not linked to this one's cancellation (Go's `WithoutCancel`).
    ///
    /// Use it for work that must outlive a request, such as cleanup or an audit log.
    ///
    /// ```
    /// let (request, cancel) = ctx::Context::background().with_value(7u32).with_cancel();
    /// let cleanup = request.without_cancel();
    /// cancel.cancel();
    /// assert!(request.is_done());
    /// assert!(!cleanup.is_done());
    /// assert_eq!(cleanup.value::<u32>(), Some(&7));
    /// ```
    pub fn without_cancel(&self) -> Context {
        Context::from_node(Node::derive(self, Kind::WithoutCancel))
    }

    /// Derives a context that is done as soon as **either** this context or `other` is done, or
    /// its own handle cancels it. Its error and cause are those of the first to finish; its
    /// deadline is the earlier of the two; values are looked up in `self` first, then `other`.
    ///
    /// Go has no such function (golang/go#36503); .NET calls it a linked token source.
    ///
    /// ```
    /// let (server, _stop_server) = ctx::Context::background().with_cancel();
    /// let (request, cancel_request) = ctx::Context::background().with_cancel();
    /// let (both, _handle) = request.merge(&server);
    /// cancel_request.cancel();
    /// assert!(both.is_done());
    /// ```
    pub fn merge(&self, other: &Context) -> (Context, CancelHandle) {
        let (ctx, handle) = self.derive_cancellable(Kind::Merge(other.clone()));
        if let Some(node) = ctx.node() {
            if !node.is_done() {
                node.link_other();
            }
        }
        (ctx, handle)
    }

    /// Returns `true` once this context is done (cancelled or past its deadline).
    ///
    /// This is **one atomic load**: no lock, no allocation. Call it as often as you like, from
    /// any thread. Once it returns `true` it always will.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// assert!(!ctx.is_done());
    /// handle.cancel();
    /// assert!(ctx.is_done());
    /// ```
    #[inline]
    pub fn is_done(&self) -> bool {
        match &self.node {
            Some(node) => node.is_done(),
            None => false,
        }
    }

    /// `None` while the context is live; then `Some(Error::Canceled)` or
    /// `Some(Error::DeadlineExceeded)`, forever. If `err()` is `Some`, `is_done()` is `true` and
    /// every waiter has been released or is being released.
    ///
    /// ```
    /// assert_eq!(ctx::Context::background().err(), None);
    /// ```
    #[inline]
    pub fn err(&self) -> Option<Error> {
        self.node().and_then(|node| node.err())
    }

    /// `None` while the context is live; then why it finished: the cause passed to
    /// [`cancel_with_cause`](CancelHandle::cancel_with_cause) or
    /// [`with_deadline_cause`](Context::with_deadline_cause), else the [`Error`] itself. The
    /// first cancellation wins: a later cancel, of this context or an ancestor, changes nothing.
    ///
    /// ```
    /// let (ctx, handle) = ctx::Context::background().with_cancel();
    /// handle.cancel_with_cause(std::io::Error::other("client went away"));
    /// handle.cancel(); // too late: the first cause is kept
    /// assert_eq!(ctx.cause().unwrap().to_string(), "client went away");
    /// ```
    pub fn cause(&self) -> Option<Cause> {
        self.node().and_then(|node| node.cause())
    }

    /// `Err(err)` once the context is done, for use with `?`.
    ///
    /// ```
    /// fn step(ctx: &ctx::Context) -> Result<(), ctx::Error> {
    ///     ctx.check()?;
    ///     Ok(())
    /// }
    /// assert!(step(&ctx::Context::background()).is_ok());
    /// ```
    pub fn check(&self) -> Result<(), Error> {
        match self.err() {
            None => Ok(()),
            Some(err) => Err(err),
        }
    }

    pub(crate) fn derive_cancellable(&self, kind: Kind) -> (Context, CancelHandle) {
        let node = Node::derive(self, kind);
        (Context::from_node(node.clone()), CancelHandle::new(node))
    }

    pub(crate) fn from_node(node: Arc<Node>) -> Context {
        Context { node: Some(node) }
    }

    pub(crate) fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    pub(crate) fn into_node(self) -> Option<Arc<Node>> {
        self.node
    }

    /// Visits the layers a lookup sees, in lookup order: this context's chain from the newest
    /// layer up, and each merge partner's chain after the chain that merged it (so `self` comes
    /// before `other`). `visit` returns `Continue(true)` to go on up the current chain,
    /// `Continue(false)` to leave it for the next one, `Break` to stop. A loop with a worklist, not
    /// recursion: deep chains and nested merges cannot overflow the stack.
    pub(crate) fn walk_up<'a>(&'a self, mut visit: impl FnMut(&'a Node) -> ControlFlow<(), bool>) {
        let mut other_parents = Vec::new();
        let mut current = Some(self);
        while let Some(ctx) = current.take().or_else(|| other_parents.pop()) {
            let Some(node) = ctx.node() else { continue };
            if let KindRef::Merge(merge) = node.kind() {
                other_parents.push(&merge.other);
            }
            match visit(node) {
                ControlFlow::Continue(true) => current = Some(&node.parent),
                ControlFlow::Continue(false) => {}
                ControlFlow::Break(()) => return,
            }
        }
    }

    /// The error of a context known to be done.
    pub(crate) fn finished_err(&self) -> Error {
        self.err().unwrap_or(Error::Canceled)
    }
}

/// The process-wide `todo()` root. Under loom every call makes its own (loom objects cannot live
/// in statics across models).
#[cfg(not(loom))]
fn todo_root() -> Arc<Node> {
    static TODO: std::sync::OnceLock<Arc<Node>> = std::sync::OnceLock::new();
    TODO.get_or_init(|| Arc::new(Node::todo_root())).clone()
}

#[cfg(loom)]
fn todo_root() -> Arc<Node> {
    Arc::new(Node::todo_root())
}

/// Identity: see [`Context`].
///
/// ```
/// use ctx::Context;
/// let (ctx, _handle) = Context::background().with_cancel();
/// assert_eq!(ctx, ctx.clone());
/// assert_ne!(ctx, ctx.with_cancel().0, "a child is a context of its own");
/// assert_eq!(Context::background(), Context::background());
/// assert_ne!(Context::background(), Context::todo());
/// ```
impl PartialEq for Context {
    fn eq(&self, other: &Context) -> bool {
        match (&self.node, &other.node) {
            (None, None) => true,
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl Eq for Context {}

/// Hashes the identity that [`PartialEq`] compares: equal contexts hash alike.
///
/// ```
/// use std::collections::HashSet;
/// let (ctx, _handle) = ctx::Context::background().with_cancel();
/// let seen: HashSet<ctx::Context> = [ctx.clone(), ctx.clone(), ctx.with_value(1u8)].into();
/// assert_eq!(seen.len(), 2);
/// ```
impl Hash for Context {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.node.as_ref().map(Arc::as_ptr).hash(state);
    }
}

/// [`Context::background`].
impl Default for Context {
    fn default() -> Context {
        Context::background()
    }
}

/// Go's chain form, root first: `context.Background.WithCancel.WithValue(my_app::RequestId)`.
/// A merged context shows its second parent in full: `....Merge(context.Background.WithCancel)`.
/// Deadlines show the instant and the time left: `....WithDeadline(Instant { .. } [4.99s])`.
///
/// The walk uses an explicit stack: long chains and deeply nested merges cannot overflow the
/// thread's stack.
///
/// ```
/// let (ctx, _h) = ctx::Context::background().with_value(5u8).with_cancel();
/// assert_eq!(ctx.to_string(), "context.Background.WithValue(u8).WithCancel");
/// ```
impl fmt::Display for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        /// What is left to print, last piece on top.
        enum Piece<'a> {
            Chain(&'a Context),
            Layer(&'a Node),
            Close,
        }
        let mut pieces = vec![Piece::Chain(self)];
        while let Some(piece) = pieces.pop() {
            match piece {
                Piece::Chain(ctx) => {
                    // Push this chain's layers newest first, so they pop oldest first.
                    let mut current = ctx;
                    let mut root = "context.Background";
                    while let Some(node) = current.node() {
                        if let KindRef::Todo = node.kind() {
                            root = "context.TODO";
                            break;
                        }
                        if let KindRef::Merge(merge) = node.kind() {
                            pieces.push(Piece::Close);
                            pieces.push(Piece::Chain(&merge.other));
                        }
                        pieces.push(Piece::Layer(node));
                        current = &node.parent;
                    }
                    f.write_str(root)?;
                }
                Piece::Layer(node) => match node.kind() {
                    KindRef::Cancel => f.write_str(".WithCancel")?,
                    KindRef::Deadline(deadline) => deadline.fmt_layer(f)?,
                    KindRef::Value(_, type_name) => write!(f, ".WithValue({type_name})")?,
                    KindRef::WithoutCancel => f.write_str(".WithoutCancel")?,
                    KindRef::Merge(_) => f.write_str(".Merge(")?,
                    KindRef::Todo => unreachable!("a chain stops at the todo root"),
                },
                Piece::Close => f.write_str(")")?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("chain", &format_args!("{self}"))
            .field("err", &self.err())
            .finish()
    }
}
