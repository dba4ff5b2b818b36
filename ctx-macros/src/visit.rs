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
//!   no loop or `.await` to see (`vec![..]`, a user's `macro_rules!`), except `select!` and
//!   `join!`, which `select.rs` races soundly.
//!
//! In sync code (a sync fn's body, or the closure a wrapper put it in), a call to
//! `std::thread::sleep(d)` (also written `thread::sleep(d)` or `sleep(d)`) becomes
//! `match __private::sleep(&__ctx, sleep, d) { Some(v) => v, None => break '__cancel }`: a
//! `wait_timeout(d)` on the context, the same sleep ended early by cancellation.
//! The visitor goes by the name, as it cannot resolve paths; `__private::sleep` then goes by the
//! callee's type: any other function called `sleep` (your own, a test clock's, tokio's) is
//! called as written and its result kept, never replaced by a real wait.
//!
//! `#[not_cancellable]` on an expression or `let` statement also stops the visitor: that code is
//! left exactly as written (`markers.rs`).

use proc_macro2::{Ident, Span, TokenStream};
use quote::quote;
use syn::spanned::Spanned as _;
use syn::visit::{self, Visit};
use syn::visit_mut::{self as visit_mut, VisitMut};
use syn::{
    Attribute, Expr, ExprAwait, ExprMacro, ExprWhile, Item, Lifetime, Local, Stmt, StmtMacro,
};

use crate::markers::{StripMarkers, remove_marker, take_marker};
use crate::select::{self, Invocation};

/// Inserts the cancellation points into a function body.
pub(crate) struct InsertChecks {
    /// The path of the facade, for `__private::sleep`.
    krate: TokenStream,
    /// The function's own handle on its context (a hygienic local).
    ctx: Ident,
    /// The label around the body that every cancellation point breaks to.
    label: Lifetime,
    /// Whether `.await`s (and `select!`/`join!`) are raced (`false` with `loops_only`).
    race_awaits: bool,
    /// Whether the body is sync code, where `std::thread::sleep` becomes an interruptible wait.
    blocking_sleeps: bool,
    /// How many cancellation points were inserted.
    pub(crate) points: usize,
    /// Whether a `#[not_cancellable]` marker opted some code out.
    pub(crate) opted_out: bool,
    /// The first closure or `async` block left alone that has loops or awaits of its own.
    pub(crate) skipped: Option<Span>,
}

impl InsertChecks {
    pub(crate) fn new(
        krate: TokenStream,
        race_awaits: bool,
        blocking_sleeps: bool,
    ) -> InsertChecks {
        let (ctx, label) = hygienic_names();
        InsertChecks {
            krate,
            ctx,
            label,
            race_awaits,
            blocking_sleeps,
            points: 0,
            opted_out: false,
            skipped: None,
        }
    }

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

    /// `future` raced against the context, through `Context::run`, which allocates nothing:
    /// `match __ctx.run(future).await { Ok(v) => v, Err(_) => break '__cancel }`. When
    /// cancellation wins, `future` is dropped where it was suspended.
    fn race(&self, attrs: &[Attribute], future: TokenStream) -> Expr {
        let InsertChecks { ctx, label, .. } = self;
        syn::parse_quote_spanned! {Span::mixed_site()=>
            #(#attrs)*
            match #ctx.run(#future).await {
                ::core::result::Result::Ok(__value) => __value,
                ::core::result::Result::Err(_) => break #label,
            }
        }
    }

    /// `fut.await` becomes a race of `fut` against the context. Parentheses around `fut` are
    /// dropped, since it becomes a call argument: `(&mut fut).await` must not become
    /// `run((&mut fut))`, whose `unused_parens` fix (`&mut fut.await`) would change its meaning.
    fn race_await(&self, expr: &mut Expr) {
        let Expr::Await(ExprAwait { attrs, base, .. }) = expr else {
            return;
        };
        let future = without_parens(base);
        *expr = self.race(attrs, quote!(#future));
    }

    /// `select!` and `join!` (see `select.rs`); any other macro invocation is left alone.
    fn rewrite_macro(&mut self, expr: &mut Expr) {
        let Expr::Macro(ExprMacro { attrs, mac }) = expr else {
            return;
        };
        if !self.race_awaits {
            return;
        }
        match select::recognise(mac) {
            None => {}
            Some(Invocation::Join(mut join)) => {
                for arg in join.args_mut() {
                    self.visit_expr_mut(arg);
                }
                let mut hoisted = join.hoist(mac, |future| self.race(&[], future));
                if let Expr::Block(block) = &mut hoisted {
                    block.attrs = std::mem::take(attrs);
                } else if let Expr::Match(raced) = &mut hoisted {
                    raced.attrs = std::mem::take(attrs);
                }
                *expr = hoisted;
                self.points += 1;
            }
            Some(Invocation::Select(select)) if select.has_done_branch() => self.points += 1,
            Some(Invocation::Select(mut select)) => {
                for expr in select.exprs_mut() {
                    self.visit_expr_mut(expr);
                }
                let (ctx, label) = (&self.ctx, &self.label);
                let mut split = select.split(
                    mac,
                    |future| quote!(#ctx.run(#future).await),
                    quote!(break #label),
                );
                if let Expr::Block(block) = &mut split {
                    block.attrs = std::mem::take(attrs);
                }
                *expr = split;
                self.points += 1;
            }
        }
    }

    /// `sleep(d)` in sync code becomes `match __private::sleep(&__ctx, sleep, d) { Some(v) => v,
    /// None => break '__cancel }`: for `std::thread::sleep`, a `wait_timeout(d)` on the context.
    fn interrupt_sleep(&mut self, expr: &mut Expr) {
        let Expr::Call(call) = expr else { return };
        if !self.blocking_sleeps || call.args.len() != 1 || !is_sleep(&call.func) {
            return;
        }
        let InsertChecks { krate, ctx, label, .. } = self;
        let (attrs, sleep, duration) = (&call.attrs, &call.func, &call.args[0]);
        *expr = syn::parse_quote_spanned! {Span::mixed_site()=>
            #(#attrs)*
            match #krate::__private::sleep(&#ctx, #sleep, #duration) {
                ::core::option::Option::Some(__value) => __value,
                ::core::option::Option::None => break #label,
            }
        };
        self.points += 1;
    }
}

impl VisitMut for InsertChecks {
    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        if take_marker(expr) {
            self.opted_out = true;
            StripMarkers.visit_expr_mut(expr);
            return;
        }
        match expr {
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) => {
                if self.skipped.is_none() && has_points(expr) {
                    self.skipped = Some(expr.span());
                }
                StripMarkers.visit_expr_mut(expr);
            }
            Expr::Macro(_) => self.rewrite_macro(expr),
            Expr::Verbatim(_) => {}
            Expr::Loop(inner) => {
                visit_mut::visit_expr_loop_mut(self, inner);
                inner.body.stmts.insert(0, self.check());
                self.points += 1;
            }
            Expr::ForLoop(inner) => {
                visit_mut::visit_expr_for_loop_mut(self, inner);
                inner.body.stmts.insert(0, self.check());
                self.points += 1;
            }
            Expr::While(inner) => {
                visit_mut::visit_expr_while_mut(self, inner);
                self.desugar_while(expr);
                self.points += 1;
            }
            Expr::Await(inner) => {
                visit_mut::visit_expr_await_mut(self, inner);
                if self.race_awaits {
                    self.race_await(expr);
                    self.points += 1;
                }
            }
            Expr::Call(inner) => {
                visit_mut::visit_expr_call_mut(self, inner);
                self.interrupt_sleep(expr);
            }
            _ => visit_mut::visit_expr_mut(self, expr),
        }
    }

    fn visit_local_mut(&mut self, local: &mut Local) {
        if remove_marker(&mut local.attrs) {
            self.opted_out = true;
            StripMarkers.visit_local_mut(local);
        } else {
            visit_mut::visit_local_mut(self, local);
        }
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        let Stmt::Macro(StmtMacro { attrs, mac, semi_token }) = stmt else {
            return visit_mut::visit_stmt_mut(self, stmt);
        };
        if remove_marker(attrs) {
            self.opted_out = true;
        } else if self.race_awaits && select::recognise(mac).is_some() {
            // As an expression, so that `rewrite_macro` can replace it.
            let (attrs, mac, semi) = (std::mem::take(attrs), mac.clone(), *semi_token);
            let mut expr = Expr::Macro(ExprMacro { attrs, mac });
            self.visit_expr_mut(&mut expr);
            *stmt = Stmt::Expr(expr, semi);
        }
    }

    fn visit_item_mut(&mut self, _: &mut Item) {}
}

/// Finds a loop, an await or a `select!` / `join!` (which await), outside nested items; with
/// `own_body_only`, also outside the closures, `async` and `const` blocks the visitor does not
/// enter.
struct FindPoints {
    own_body_only: bool,
    found: Option<Span>,
}

impl<'ast> Visit<'ast> for FindPoints {
    fn visit_expr(&mut self, expr: &'ast Expr) {
        match expr {
            _ if self.found.is_some() => {}
            Expr::Loop(_) | Expr::ForLoop(_) | Expr::While(_) | Expr::Await(_) => {
                self.found = Some(expr.span());
            }
            Expr::Closure(_) | Expr::Async(_) | Expr::Const(_) if self.own_body_only => {}
            _ => visit::visit_expr(self, expr),
        }
    }
    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        if self.found.is_none() && select::recognise(mac).is_some() {
            self.found = Some(mac.path.span());
        }
    }
    fn visit_item(&mut self, _: &'ast Item) {}
}

/// Whether `expr` has a loop or an await, in its own body or a closure or block inside it.
fn has_points(expr: &Expr) -> bool {
    let mut finder = FindPoints { own_body_only: false, found: None };
    finder.visit_expr(expr);
    finder.found.is_some()
}

/// The first loop or await of `stmt`'s own code (not in a closure or `async` block).
pub(crate) fn first_point(stmt: &Stmt) -> Option<Span> {
    let mut finder = FindPoints { own_body_only: true, found: None };
    finder.visit_stmt(stmt);
    finder.found
}

/// `std::thread::sleep`, `::std::thread::sleep`, `thread::sleep` or `sleep`.
fn is_sleep(func: &Expr) -> bool {
    let Expr::Path(path) = func else { return false };
    let names: Vec<String> =
        path.path.segments.iter().map(|segment| segment.ident.to_string()).collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    path.qself.is_none()
        && matches!(names.as_slice(), ["sleep"] | ["thread", "sleep"] | ["std", "thread", "sleep"])
}

/// `expr` without the parentheses around it, for an expression the rewrite moves into a call
/// argument or a `let`, where rustc would call them unused (`unused_parens`) and suggest a fix
/// that may change the meaning (`(&mut fut).await` is not `&mut fut.await`).
pub(crate) fn without_parens(mut expr: &Expr) -> &Expr {
    while let Expr::Paren(inner) = expr {
        expr = &inner.expr;
    }
    expr
}

/// Tokens for the hygienic local and label, shared by `expand.rs` and the visitor.
pub(crate) fn hygienic_names() -> (Ident, Lifetime) {
    let span = Span::mixed_site();
    (Ident::new("__ctx", span), Lifetime::new("'__cancel", span))
}
