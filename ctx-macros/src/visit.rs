//! The body rewrite: a check at the top of every loop iteration and a race around every `.await`.
//!
//! Each cancellation point leaves the function by `break '__cancel`, a label the expansion puts
//! around the whole body (see `expand.rs`). The visitor therefore stops wherever such a `break`
//! could not reach that label or would mean something else:
//! - **closures** and **`async` blocks**: they are bodies of their own; a `break` cannot leave
//!   them, and they may run after the function has returned;
//! - **`const` blocks**: evaluated at compile time;
//! - **nested items** (`fn`, `impl`, `mod`, ...): another function altogether, which can carry its
//!   own `#[cancellable]`;
//! - **macro invocations**: their tokens are not Rust syntax until the macro expands, so there is
//!   no loop or `.await` to see (`tokio::select!`, `vec![..]`, a user's `macro_rules!`).
//!
//! `#[not_cancellable]` on an expression or `let` statement also stops the visitor: that code is
//! left exactly as written. The marker is removed wherever it is found (except inside nested
//! items and macro invocations), since rustc does not know it.

use proc_macro2::{Ident, Span};
use syn::visit_mut::{self, VisitMut};
use syn::{Attribute, Block, Expr, ExprAwait, ExprWhile, Item, Lifetime, Local, Stmt, StmtMacro};

/// The name of the marker attribute that exempts an expression or statement.
pub(crate) const MARKER: &str = "not_cancellable";

/// Inserts the cancellation points into a function body.
pub(crate) struct InsertChecks {
    /// The function's own handle on its context (a hygienic local).
    pub(crate) ctx: Ident,
    /// The label around the body that every cancellation point breaks to.
    pub(crate) label: Lifetime,
    /// Whether `.await`s are raced against cancellation (`false` with `loops_only`).
    pub(crate) race_awaits: bool,
}

impl InsertChecks {
    /// `if __ctx.is_done() { break '__cancel; }`: one atomic load and a branch, the same code
    /// as a hand-written check.
    pub(crate) fn check(&self) -> Stmt {
        let InsertChecks { ctx, label, .. } = self;
        syn::parse_quote_spanned! {Span::mixed_site()=>
            if #ctx.is_done() {
                break #label;
            }
        }
    }

    /// `while cond { body }` becomes `loop { check; if cond { body } else { break } }` (which is
    /// how rustc lowers `while` itself), so the check runs before the condition: a
    /// `while let Some(job) = queue.pop()` does not take a job it will not run.
    fn desugar_while(&self, expr: &mut Expr) {
        let Expr::While(ExprWhile { attrs, label, cond, body, .. }) = expr else {
            return;
        };
        let check = self.check();
        *expr = syn::parse_quote_spanned! {Span::mixed_site()=>
            #(#attrs)*
            #label loop {
                #check
                if #cond #body else {
                    break;
                }
            }
        };
    }

    /// `fut.await` becomes a race of `fut` against the context, through `Context::run`, which
    /// allocates nothing and never polls `fut` once the context is done. When cancellation wins,
    /// `fut` is dropped where it was suspended.
    fn race(&self, expr: &mut Expr) {
        let Expr::Await(ExprAwait { attrs, base, .. }) = expr else {
            return;
        };
        let InsertChecks { ctx, label, .. } = self;
        *expr = syn::parse_quote_spanned! {Span::mixed_site()=>
            #(#attrs)*
            match #ctx.run(#base).await {
                ::core::result::Result::Ok(__value) => __value,
                ::core::result::Result::Err(_) => break #label,
            }
        };
    }
}

impl VisitMut for InsertChecks {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if take_marker(expr) {
            StripMarkers.visit_expr_mut(expr);
            return;
        }
        match expr {
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => StripMarkers.visit_expr_mut(expr),
            Expr::Macro(_) | Expr::Verbatim(_) => {}
            Expr::Loop(inner) => {
                visit_mut::visit_expr_loop_mut(self, inner);
                inner.body.stmts.insert(0, self.check());
            }
            Expr::ForLoop(inner) => {
                visit_mut::visit_expr_for_loop_mut(self, inner);
                inner.body.stmts.insert(0, self.check());
            }
            Expr::While(inner) => {
                visit_mut::visit_expr_while_mut(self, inner);
                self.desugar_while(expr);
            }
            Expr::Await(inner) => {
                visit_mut::visit_expr_await_mut(self, inner);
                if self.race_awaits {
                    self.race(expr);
                }
            }
            _ => visit_mut::visit_expr_mut(self, expr),
        }
    }

    fn visit_local_mut(&mut self, local: &mut Local) {
        if remove_marker(&mut local.attrs) {
            StripMarkers.visit_local_mut(local);
        } else {
            visit_mut::visit_local_mut(self, local);
        }
    }

    fn visit_stmt_macro_mut(&mut self, mac: &mut StmtMacro) {
        remove_marker(&mut mac.attrs);
    }

    fn visit_item_mut(&mut self, _: &mut Item) {}
}

/// Removes every `#[not_cancellable]` without rewriting anything: for the code the visitor
/// leaves alone.
pub(crate) struct StripMarkers;

impl StripMarkers {
    /// Strips the markers of a whole body.
    pub(crate) fn block(block: &mut Block) {
        StripMarkers.visit_block_mut(block);
    }
}

impl VisitMut for StripMarkers {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        take_marker(expr);
        visit_mut::visit_expr_mut(self, expr);
    }

    fn visit_local_mut(&mut self, local: &mut Local) {
        remove_marker(&mut local.attrs);
        visit_mut::visit_local_mut(self, local);
    }

    fn visit_stmt_macro_mut(&mut self, mac: &mut StmtMacro) {
        remove_marker(&mut mac.attrs);
    }

    fn visit_item_mut(&mut self, _: &mut Item) {}
}

/// Removes `#[not_cancellable]` from the expression's own attributes; `true` if it was there.
fn take_marker(expr: &mut Expr) -> bool {
    attrs_mut(expr).is_some_and(remove_marker)
}

fn remove_marker(attrs: &mut Vec<Attribute>) -> bool {
    let before = attrs.len();
    attrs.retain(|attr| !attr.path().is_ident(MARKER));
    attrs.len() != before
}

/// The outer attributes of an expression (`None` for tokens syn did not interpret).
fn attrs_mut(expr: &mut Expr) -> Option<&mut Vec<Attribute>> {
    Some(match expr {
        Expr::Array(e) => &mut e.attrs,
        Expr::Assign(e) => &mut e.attrs,
        Expr::Async(e) => &mut e.attrs,
        Expr::Await(e) => &mut e.attrs,
        Expr::Binary(e) => &mut e.attrs,
        Expr::Block(e) => &mut e.attrs,
        Expr::Break(e) => &mut e.attrs,
        Expr::Call(e) => &mut e.attrs,
        Expr::Cast(e) => &mut e.attrs,
        Expr::Closure(e) => &mut e.attrs,
        Expr::Const(e) => &mut e.attrs,
        Expr::Continue(e) => &mut e.attrs,
        Expr::Field(e) => &mut e.attrs,
        Expr::ForLoop(e) => &mut e.attrs,
        Expr::Group(e) => &mut e.attrs,
        Expr::If(e) => &mut e.attrs,
        Expr::Index(e) => &mut e.attrs,
        Expr::Infer(e) => &mut e.attrs,
        Expr::Let(e) => &mut e.attrs,
        Expr::Lit(e) => &mut e.attrs,
        Expr::Loop(e) => &mut e.attrs,
        Expr::Macro(e) => &mut e.attrs,
        Expr::Match(e) => &mut e.attrs,
        Expr::MethodCall(e) => &mut e.attrs,
        Expr::Paren(e) => &mut e.attrs,
        Expr::Path(e) => &mut e.attrs,
        Expr::Range(e) => &mut e.attrs,
        Expr::RawAddr(e) => &mut e.attrs,
        Expr::Reference(e) => &mut e.attrs,
        Expr::Repeat(e) => &mut e.attrs,
        Expr::Return(e) => &mut e.attrs,
        Expr::Struct(e) => &mut e.attrs,
        Expr::Try(e) => &mut e.attrs,
        Expr::TryBlock(e) => &mut e.attrs,
        Expr::Tuple(e) => &mut e.attrs,
        Expr::Unary(e) => &mut e.attrs,
        Expr::Unsafe(e) => &mut e.attrs,
        Expr::While(e) => &mut e.attrs,
        Expr::Yield(e) => &mut e.attrs,
        _ => return None,
    })
}

/// Tokens for the hygienic local and label, shared by `expand.rs` and the visitor.
pub(crate) fn hygienic_names() -> (Ident, Lifetime) {
    let span = Span::mixed_site();
    (Ident::new("__ctx", span), Lifetime::new("'__cancel", span))
}
