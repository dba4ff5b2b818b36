//! Where the function's real body is, when it is not the function's own block: one locator for
//! every shape, so that a function behaves the same whatever attribute expanded before
//! `#[cancellable]`.
//!
//! - **A future-returning fn** (`-> impl Future<Output = T>`, `-> Pin<Box<dyn Future<..>>>`,
//!   `-> BoxFuture<'_, T>`, `-> Self::Future`) whose body ends in an `async` block, bare, in
//!   `Box::pin(..)` or with `.boxed()` / `.boxed_local()`. That is also the shape `#[async_trait]`
//!   gives a method before the method's `#[cancellable]` runs.
//! - **`#[tokio::main]` / `#[tokio::test]` above `#[cancellable]`**: a sync fn whose body binds
//!   `let body = async { BODY };` and blocks on it.
//! - **`#[tracing::instrument]` above an `async fn`**: `let __tracing_instrument_future = async
//!   move { BODY }`, or with `err`/`ret` an `async move { .. async move { BODY }.await .. }`.
//! - **`#[tracing::instrument(err)]` / `(ret)` above a sync fn**: an immediately called closure,
//!   `match (move || { BODY })() { .. }` or `let x = (move || { BODY })();`.
//!
//! A sync fn is only taken for tokio's or tracing's when the code around the block or closure is
//! theirs (a `block_on(body)` after it, a `__tracing_attr_span` before it) and has no loop or
//! await of its own: a user's own `let body = async { .. };` or immediately called closure
//! (`let v = (|| { .. })();`) is just code of the function's own body.
//!
//! In each case the rewrite applies to `BODY`, with the function's return type (or the future's
//! output), exactly as it would have before the other attribute wrapped it: the context is taken
//! and the cancellation value returned inside the block or closure. A plain `#[instrument]` on a
//! sync fn keeps the body in the function's own block, where nothing needs finding. Any other
//! wrapper whose inner block has the loops and awaits is refused (`expand.rs`), not ignored.

use quote::ToTokens as _;
use syn::{Block, Expr, ExprAsync, ExprCall, ItemFn, Local, Pat, Stmt};

use crate::visit::first_point;

/// Which wrapper holds the body.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wrapper {
    /// The `async` block a future-returning fn ends in.
    FutureTail,
    /// `#[tokio::main]` / `#[tokio::test]`'s `let body = async { .. }`.
    Tokio,
    /// `#[tracing::instrument]`'s future in an `async fn`.
    TracingAsync,
    /// `#[tracing::instrument(err|ret)]`'s immediately called closure in a sync fn.
    Closure,
}

impl Wrapper {
    /// Whether the body inside is async code (its awaits can be raced).
    pub(crate) fn is_async(self) -> bool {
        self != Wrapper::Closure
    }
}

/// The wrapper around `func`'s body and the body itself, if `func` has one of the shapes of the
/// module doc.
pub(crate) fn locate(func: &mut ItemFn) -> Option<(Wrapper, &mut Block)> {
    if func.sig.asyncness.is_some() {
        return instrumented(&mut func.block).map(|body| (Wrapper::TracingAsync, body));
    }
    let stmts = &mut func.block.stmts;
    let future_tail = match stmts.last_mut() {
        Some(Stmt::Expr(tail, None)) => tail_future(tail).is_some(),
        _ => false,
    };
    if future_tail {
        let Some(Stmt::Expr(tail, None)) = stmts.last_mut() else { return None };
        let future = tail_future(tail)?;
        // `#[instrument]` above the method of an `#[async_trait]` impl instruments the inside
        // of its `Box::pin(async move { .. })`.
        if instrumented(&mut future.block).is_some() {
            return instrumented(&mut future.block).map(|body| (Wrapper::FutureTail, body));
        }
        return Some((Wrapper::FutureTail, &mut future.block));
    }
    let at = stmts
        .iter_mut()
        .position(|stmt| bound_async(stmt, "body").is_some() || called_closure(stmt).is_some())?;
    let wrapper = if bound_async(&mut stmts[at], "body").is_some() {
        Wrapper::Tokio
    } else {
        Wrapper::Closure
    };
    // The other attribute's own code around the body: tokio's `block_on(body)`, tracing's
    // span. Without it, or with loops or awaits of its own next to the block or closure, this
    // is the user's own code (`let body = async { .. };`, an immediately called closure), and
    // the function's own block is the body.
    let (before, after) = (&stmts[..at], &stmts[at + 1..]);
    let outside = || before.iter().chain(after);
    let made_by_the_wrapper = match wrapper {
        Wrapper::Tokio => after.iter().any(|stmt| mentions(stmt, "block_on")),
        _ => before.iter().any(|stmt| binds(stmt, "__tracing_attr_span")),
    };
    if !made_by_the_wrapper || outside().any(|stmt| first_point(stmt).is_some()) {
        return None;
    }
    let body = match wrapper {
        Wrapper::Tokio => bound_async(&mut stmts[at], "body").map(|future| &mut future.block),
        _ => called_closure(&mut stmts[at]),
    };
    body.map(|body| (wrapper, body))
}

/// Whether `stmt` is `let <name>..;`.
fn binds(stmt: &Stmt, name: &str) -> bool {
    matches!(stmt, Stmt::Local(Local { pat: Pat::Ident(pat), .. }) if pat.ident == name)
}

/// Whether the tokens of `stmt` have the identifier `name`.
fn mentions(stmt: &Stmt, name: &str) -> bool {
    fn has(tokens: proc_macro2::TokenStream, name: &str) -> bool {
        tokens.into_iter().any(|token| match token {
            proc_macro2::TokenTree::Ident(ident) => ident == name,
            proc_macro2::TokenTree::Group(group) => has(group.stream(), name),
            _ => false,
        })
    }
    has(stmt.to_token_stream(), name)
}

/// The body inside `#[tracing::instrument]`'s `let __tracing_instrument_future = async move {
/// .. };`, if `block` has one.
fn instrumented(block: &mut Block) -> Option<&mut Block> {
    let future =
        block.stmts.iter_mut().find_map(|stmt| bound_async(stmt, "__tracing_instrument_future"))?;
    Some(innermost_awaited(&mut future.block))
}

/// `async { .. }`, `Box::pin(async { .. })`, `async { .. }.boxed()` or `.boxed_local()`.
fn tail_future(tail: &mut Expr) -> Option<&mut ExprAsync> {
    let pinned = matches!(tail, Expr::Call(call) if call.args.len() == 1 && is_box_pin(&call.func));
    let boxed = matches!(tail, Expr::MethodCall(call)
        if call.args.is_empty() && (call.method == "boxed" || call.method == "boxed_local"));
    let future = if pinned || boxed {
        match tail {
            Expr::Call(call) => &mut call.args[0],
            Expr::MethodCall(call) => &mut *call.receiver,
            _ => return None,
        }
    } else {
        tail
    };
    match future {
        Expr::Async(future) => Some(future),
        _ => None,
    }
}

/// `Box::pin`, `std::boxed::Box::pin`, ...
fn is_box_pin(func: &Expr) -> bool {
    let Expr::Path(path) = func else { return false };
    let mut segments = path.path.segments.iter().rev();
    matches!(
        (segments.next(), segments.next()),
        (Some(pin), Some(boxed)) if pin.ident == "pin" && boxed.ident == "Box"
    )
}

/// The `async` block of `let <name> = async { .. };`.
fn bound_async<'a>(stmt: &'a mut Stmt, name: &str) -> Option<&'a mut ExprAsync> {
    let Stmt::Local(Local { pat: Pat::Ident(pat), init: Some(init), .. }) = stmt else {
        return None;
    };
    if pat.ident != name || init.diverge.is_some() {
        return None;
    }
    match &mut *init.expr {
        Expr::Async(future) => Some(future),
        _ => None,
    }
}

/// Inside `#[instrument(err|ret)]`'s future, the `async move { BODY }` it awaits (in a `match`
/// scrutinee or a `let`); else the block itself.
fn innermost_awaited(block: &mut Block) -> &mut Block {
    if !block.stmts.iter_mut().any(|stmt| awaited_async(stmt).is_some()) {
        return block;
    }
    match block.stmts.iter_mut().find_map(awaited_async) {
        Some(inner) => &mut inner.block,
        None => unreachable!("the statement was just found"),
    }
}

fn awaited_async(stmt: &mut Stmt) -> Option<&mut ExprAsync> {
    match scrutinee_or_init(stmt)? {
        Expr::Await(awaited) => match &mut *awaited.base {
            Expr::Async(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    }
}

/// The expression of `let x = <expr>;` or `match <expr> { .. }`.
fn scrutinee_or_init(stmt: &mut Stmt) -> Option<&mut Expr> {
    match stmt {
        Stmt::Local(Local { init: Some(init), .. }) => Some(&mut *init.expr),
        Stmt::Expr(Expr::Match(scrutinee), _) => Some(&mut *scrutinee.expr),
        _ => None,
    }
}

/// The body of `(move || { .. })()` in `match (..)() { .. }` or `let x = (..)();`.
fn called_closure(stmt: &mut Stmt) -> Option<&mut Block> {
    let Expr::Call(ExprCall { func, args, .. }) = scrutinee_or_init(stmt)? else { return None };
    let Expr::Paren(callee) = &mut **func else { return None };
    match &mut *callee.expr {
        Expr::Closure(closure) if args.is_empty() && closure.inputs.is_empty() => {
            match &mut *closure.body {
                Expr::Block(body) => Some(&mut body.block),
                _ => None,
            }
        }
        _ => None,
    }
}
