//! The function rewrite. For
//!
//! ```text
//! #[cancellable(on_cancel = VALUE)]
//! fn f(ctx: &Context, ..) -> R { BODY }
//! ```
//!
//! it emits
//!
//! ```text
//! fn f(ctx: &Context, ..) -> R {
//!     let __ctx: &Context = ::ctx::__private::picked(ctx);
//!     '__cancel: {
//!         if __ctx.is_done() { break '__cancel; }
//!         let __ret: R = { BODY with its cancellation points };
//!         #[allow(unreachable_code)]
//!         return __ret;
//!     }
//!     VALUE
//! }
//! ```
//!
//! `__ctx` is taken once at entry: a copy of a `&Context` parameter (free), otherwise a clone
//! (one reference-count increment), so the body may move or re-borrow `ctx` and an explicit
//! `ctx = <expr>` is evaluated once. `picked` is the identity on `ctx::Context`; for a parameter
//! of another crate's `Context` type its trait bound is the error, at the parameter. `let __ret: R` gives the body the same expected
//! type as a function body (`collect()`, `into()` infer as before; `impl Trait` becomes `_`), and
//! keeps the `allow` off the body: only the `return` is unreachable when the body never ends.
//!
//! Every cancellation point (`visit.rs`) breaks to `'__cancel`, which drops the body's locals and
//! lands where only the parameters are in scope: `VALUE` is written once, sees the parameters
//! (never a local of the body that shadows one), and is evaluated at most once per call. Without
//! `on_cancel`, `VALUE` is `<R as FromCancel>::from_cancel(err)`, spanned on `R` so that a type
//! with no cancellation value is reported at the return type. `__ctx` and `'__cancel` are
//! `Span::mixed_site()` names: the body cannot see them or collide with them.
//!
//! When the body is elsewhere (a future-returning fn's `async` block, or the block or closure
//! another attribute wrapped it in, `wrappers.rs`), the same rewrite applies there, with the
//! future's output as `R`. A future-returning fn takes an owned clone before the future is made
//! (the future must not borrow the parameter); the other wrappers take the context inside, where
//! `#[cancellable]` first would have put it. A `-> !` body is typed `__private::Never`.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::visit::Visit;
use syn::visit_mut::VisitMut;
use syn::{
    Block, Expr, GenericArgument, Ident, Item, ItemFn, Pat, PathArguments, ReturnType, Stmt, Type,
    TypeParamBound,
};

use crate::args::{Args, Errors};
use crate::context::{Source, context_source};
use crate::markers::{StripMarkers, misplaced_markers, remove_marker, take_marker};
use crate::visit::{InsertChecks, first_point, hygienic_names};
use crate::wrappers::{self, Wrapper};

/// The whole macro: `args` are the attribute's arguments, `item` what it is attached to.
///
/// On any error the item is still emitted (with `#[not_cancellable]` markers removed) next to
/// the error, so the rest of the crate, and an IDE, still see the function.
pub(crate) fn cancellable(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut func = match syn::parse2::<Item>(item.clone()) {
        Ok(Item::Fn(func)) => func,
        Ok(other) => return with_error(item, not_a_function(&other)),
        // A syntax error in the item: rustc reports it itself when it parses the item back.
        Err(_) => return item,
    };
    let wrapper = wrappers::locate(&mut func).map(|(wrapper, _)| wrapper);
    match Plan::new(args, &func, wrapper).and_then(|plan| plan.apply(&mut func)) {
        Ok(()) => func.into_token_stream(),
        Err(error) => {
            let mut func = match syn::parse2::<ItemFn>(item) {
                Ok(func) => func,
                Err(_) => unreachable!("it parsed above"),
            };
            StripMarkers::block(&mut func.block);
            // The parameters the expansion would have used are unused now; the error is enough.
            func.attrs.push(syn::parse_quote!(#[allow(unused_variables)]));
            with_error(func.into_token_stream(), error)
        }
    }
}

/// `#[not_cancellable]` where no `#[cancellable]` removed it: outside a `#[cancellable]`
/// function (`args` do not matter then).
pub(crate) fn misplaced_marker(_args: TokenStream, item: TokenStream) -> TokenStream {
    let error = syn::Error::new(
        Span::call_site(),
        "#[not_cancellable] only works inside a #[cancellable] function, on an expression or a \
         `let` statement of its own body\nhelp: put #[cancellable] on the function whose \
         awaits and loops should be cancellation points, or remove #[not_cancellable]",
    );
    with_error(item, error)
}

fn with_error(item: TokenStream, error: syn::Error) -> TokenStream {
    let error = error.into_compile_error();
    quote!(#item #error)
}

fn not_a_function(item: &Item) -> syn::Error {
    let (span, what) = match item {
        Item::Struct(item) => (item.struct_token.span, "a struct"),
        Item::Enum(item) => (item.enum_token.span, "an enum"),
        Item::Impl(item) => (item.impl_token.span, "an impl block; put it on the methods"),
        Item::Trait(item) => (item.trait_token.span, "a trait; put it on the methods"),
        Item::Mod(item) => (item.mod_token.span, "a module"),
        Item::Const(item) => (item.const_token.span, "a const"),
        Item::Static(item) => (item.static_token.span, "a static"),
        // `fn f();` in a trait, and anything syn does not model.
        Item::Verbatim(tokens)
            if tokens
                .clone()
                .into_iter()
                .any(|token| matches!(&token, TokenTree::Ident(ident) if ident == "fn")) =>
        {
            (item.span(), "a function without a body")
        }
        _ => (item.span(), "this item"),
    };
    syn::Error::new(
        span,
        format!(
            "#[cancellable] applies to functions and methods with a body, not to {what}\n\
             help: put it on an `fn` or `async fn` that takes a `Context`"
        ),
    )
}

/// Everything checked and decided before the function is touched.
struct Plan {
    /// `::ctx`, or the path given with `crate = ..`.
    krate: TokenStream,
    source: Source,
    /// The type the body evaluates to, `impl Trait` replaced by `_` (and `!` by `Never`).
    ret: Type,
    /// The value returned on cancellation; `None` for `()`.
    value: Option<TokenStream>,
    /// Whether `value` is the user's `on_cancel`.
    on_cancel: bool,
    /// The wrapper holding the body, if it is not the function's own block (`wrappers.rs`).
    wrapper: Option<Wrapper>,
    race_awaits: bool,
    /// Whether the body is sync code (`std::thread::sleep` becomes interruptible).
    blocking_sleeps: bool,
}

impl Plan {
    fn new(args: TokenStream, func: &ItemFn, wrapper: Option<Wrapper>) -> syn::Result<Plan> {
        let args = Args::parse(args)?;
        let mut errors = Errors::default();
        let sig = &func.sig;

        if let Some(constness) = &sig.constness {
            errors.push(syn::Error::new(
                constness.span,
                "#[cancellable] cannot apply to a `const fn`: a context is only known at run \
                 time\nhelp: remove `const`, or remove #[cancellable]",
            ));
        }
        let is_async = match wrapper {
            Some(wrapper) => wrapper.is_async(),
            None => sig.asyncness.is_some(),
        };
        if let (Some(span), false) = (args.loops_only, is_async) {
            errors.push(syn::Error::new(
                span,
                "`loops_only` only applies to an `async fn`: a sync fn has no `.await` to race\n\
                 help: remove `loops_only`",
            ));
        }
        misplaced_markers(&func.block, &mut errors);

        let krate = match &args.krate {
            Some(path) => path.to_token_stream(),
            None => quote!(::ctx),
        };
        let source = context_source(&args, func, &mut errors);
        if let Some(on_cancel) = &args.on_cancel {
            body_locals_in(on_cancel, func, &mut errors);
        }
        let ret = match wrapper {
            Some(Wrapper::FutureTail) => Some(
                return_type(&sig.output)
                    .and_then(future_output)
                    .cloned()
                    .unwrap_or_else(|| syn::parse_quote!(_)),
            ),
            _ => return_type(&sig.output).cloned(),
        };
        let value = cancellation_value(&args, ret.as_ref(), &krate, &mut errors);
        errors.finish()?;

        let mut ret = match ret {
            Some(Type::Never(never)) => {
                // `let __ret: ! = ..` is unstable; `Never` is `!` by another name.
                syn::parse_quote_spanned!(never.span()=> #krate::__private::Never)
            }
            Some(ret) => ret,
            None => syn::parse_quote!(()),
        };
        InferImpl.visit_type_mut(&mut ret);
        Ok(Plan {
            krate,
            source: source.unwrap_or(Source::Expr(TokenStream::new())),
            ret,
            value,
            on_cancel: args.on_cancel.is_some(),
            wrapper,
            race_awaits: is_async && args.loops_only.is_none(),
            blocking_sleeps: !is_async,
        })
    }

    fn apply(self, func: &mut ItemFn) -> syn::Result<()> {
        let (_, label) = hygienic_names();
        let mut visitor =
            InsertChecks::new(self.krate.clone(), self.race_awaits, self.blocking_sleeps);
        let check = visitor.check();
        let ctx_is_param = matches!(self.source, Source::Parameter { .. });
        // Where the context is taken: inside the body's block, or (`true`) as an owned clone at
        // the top of the function, before the future that holds the body is made.
        let mut take_outside = !ctx_is_param;
        let mut value = self.value.clone();
        if self.wrapper == Some(Wrapper::FutureTail) {
            before_the_future(&mut func.block)?;
        }
        let (body, prelude): (&mut Block, Vec<Stmt>) = match wrappers::locate(func) {
            Some((Wrapper::FutureTail, future)) => {
                let prelude = take_async_trait_prelude(future);
                if prelude.iter().any(binds_self) {
                    // `#[async_trait]` moved `self` into `__self`; `on_cancel` follows it.
                    value = value.map(replace_self);
                }
                // A context parameter is taken inside `#[async_trait]`'s future, after its
                // `let ctx = ctx;`, so that binding counts as used (its future may borrow the
                // parameters). Any other future is given an owned clone, so that it does not
                // borrow the parameter: `-> impl Future` in edition 2021, a `'static` box.
                take_outside = take_outside || prelude.is_empty();
                if let (true, true, Source::Parameter { ident, .. }) =
                    (take_outside, self.on_cancel, &self.source)
                {
                    // `on_cancel` runs in the future: it reads the clone, not the parameter.
                    let name = ident.to_string();
                    value = value.map(|value| rename(value, &name, &|_| hygienic_names().0));
                }
                (future, prelude)
            }
            Some((_, body)) => {
                // The other wrappers run the body where `#[cancellable]` first would have put
                // it: the context is taken inside, as the wrapper found it.
                take_outside = false;
                (body, Vec::new())
            }
            None => (&mut func.block, Vec::new()),
        };
        visitor.visit_block_mut(body);
        if self.wrapper.is_none() && visitor.points == 0 && !visitor.opted_out {
            if let Some(inner) = visitor.skipped {
                return Err(wrapped_elsewhere(inner));
            }
        }
        let ret = &self.ret;
        let stmts = std::mem::take(&mut body.stmts);
        body.stmts = syn::parse_quote_spanned! {Span::mixed_site()=>
            #(#prelude)*
            #label: {
                #check
                let __ret: #ret = { #(#stmts)* };
                // Unreachable when the body never ends (a `loop` without `break`); the allow
                // covers this statement only, not the body above.
                #[allow(unreachable_code)]
                return __ret;
            }
            #value
        };
        if take_outside {
            // Evaluated when the function is called (`ctx = self.ctx` before `#[async_trait]`
            // moves `self` into the future).
            let owned = self.wrapper.is_some();
            func.block.stmts.insert(0, self.source.enter(&self.krate, owned));
        } else {
            body.stmts.insert(prelude_len(&body.stmts), self.source.enter(&self.krate, false));
        }
        Ok(())
    }
}

/// The statements of a future-returning fn before the future it returns run when the function
/// is called, outside the future that `#[cancellable]` rewrites: a loop there would never be
/// checked, so it is an error unless marked `#[not_cancellable]` (the marker is removed).
fn before_the_future(block: &mut Block) -> syn::Result<()> {
    let Some((_future, before)) = block.stmts.split_last_mut() else { return Ok(()) };
    for stmt in before {
        let marked = match stmt {
            Stmt::Local(local) => remove_marker(&mut local.attrs),
            Stmt::Expr(expr, _) => take_marker(expr),
            Stmt::Macro(mac) => remove_marker(&mut mac.attrs),
            Stmt::Item(_) => false,
        };
        if marked {
            StripMarkers.visit_stmt_mut(stmt);
        } else if let Some(point) = first_point(stmt) {
            return Err(syn::Error::new(
                point,
                "#[cancellable] rewrites the future this function returns, and this loop runs \
                 before it, when the function is called: it would never be checked\nhelp: move \
                 it into the `async` block, or mark it #[not_cancellable]",
            ));
        }
    }
    Ok(())
}

/// The function's own body has no cancellation point, but a closure or `async` block in it has
/// loops or awaits: another attribute probably expanded first and wrapped the body.
fn wrapped_elsewhere(inner: Span) -> syn::Error {
    let mut error = syn::Error::new(
        Span::call_site(),
        "#[cancellable] found no cancellation point in the function's own body, only in a \
         closure or `async` block it does not enter, so it would never stop the function\n\
         help: if another attribute wrapped this function's body, put #[cancellable] above it \
         (closest to the `fn` keyword is expanded last)",
    );
    error.combine(syn::Error::new(
        inner,
        "this closure or `async` block has the loops or awaits\nhelp: if it is yours, check \
         the context inside it (or call a #[cancellable] fn from it), or mark it \
         #[not_cancellable]",
    ));
    error
}

/// The value returned on cancellation: `on_cancel`, else `<R as FromCancel>::from_cancel(err)`
/// (`None` for `()`, which needs no value).
fn cancellation_value(
    args: &Args,
    ret: Option<&Type>,
    krate: &TokenStream,
    errors: &mut Errors,
) -> Option<TokenStream> {
    match (&args.on_cancel, ret) {
        (Some(expr), _) => Some(expr.to_token_stream()),
        (None, None) => None,
        (None, Some(Type::Tuple(unit))) if unit.elems.is_empty() => None,
        (None, Some(ret @ Type::Never(_))) => {
            errors.push(syn::Error::new_spanned(
                ret,
                "#[cancellable] cannot return from a `-> !` function when its context is done\n\
                 help: give what it does then with `#[cancellable(on_cancel = <expr>)]`, an \
                 expression that does not return either, e.g. `panic!(..)` or \
                 `std::process::exit(0)`",
            ));
            None
        }
        (None, Some(ret @ Type::ImplTrait(_))) => {
            errors.push(syn::Error::new_spanned(
                ret,
                "#[cancellable] has no default cancellation value for an `impl Trait` return \
                 type\nhelp: give one with `#[cancellable(on_cancel = <expr>)]`",
            ));
            None
        }
        (None, Some(ret)) => {
            let (ctx, _) = hygienic_names();
            // An `impl Trait` inside (`Option<impl Iterator<..>>`) is left to inference.
            let mut inferred = ret.clone();
            InferImpl.visit_type_mut(&mut inferred);
            // Spanned on the return type: if `R: FromCancel` does not hold, rustc points
            // at `R` in the signature (the fake return edge of tracing-attributes).
            Some(quote_spanned! {ret.span()=>
                <#inferred as #krate::__private::FromCancel>::from_cancel(
                    #krate::__private::cancel_error(&#ctx)
                )
            })
        }
    }
}

/// Reports every name `on_cancel` uses that is a local of the body and not a parameter: it runs
/// after the body's locals are gone, with only the parameters in scope.
fn body_locals_in(on_cancel: &Expr, func: &ItemFn, errors: &mut Errors) {
    #[derive(Default)]
    struct Names(Vec<Ident>);
    impl<'ast> Visit<'ast> for Names {
        fn visit_pat_ident(&mut self, pat: &'ast syn::PatIdent) {
            self.0.push(pat.ident.clone());
            syn::visit::visit_pat_ident(self, pat);
        }
        fn visit_item(&mut self, _: &'ast Item) {}
    }
    #[derive(Default)]
    struct Used(Vec<Ident>);
    impl<'ast> Visit<'ast> for Used {
        fn visit_expr_path(&mut self, path: &'ast syn::ExprPath) {
            if let Some(ident) = path.path.get_ident() {
                self.0.push(ident.clone());
            }
        }
    }

    let mut locals = Names::default();
    locals.visit_block(&func.block);
    let mut params = Names::default();
    for input in &func.sig.inputs {
        params.visit_fn_arg(input);
    }
    let mut used = Used::default();
    used.visit_expr(on_cancel);
    for name in used.0 {
        if locals.0.contains(&name) && !params.0.contains(&name) {
            errors.push(syn::Error::new(
                name.span(),
                format!(
                    "`on_cancel` cannot use `{name}`, a local of the function's body: it runs \
                     after the body has stopped, with only the parameters in scope\nhelp: \
                     compute the value from the parameters, or keep what the body produced in a \
                     parameter (e.g. a `&mut` or a channel)"
                ),
            ));
        }
    }
}

/// The leading statements `#[async_trait]` puts in the future before the user's body: its
/// `if let Some(__ret) = None::<T> { return __ret; }` type hint and the `let x = x;`,
/// `let __self = self;` rebindings of the parameters. They hold no loop and no `.await`, and
/// stay outside the `'__cancel` block so that the context and `self` are reachable after it.
fn take_async_trait_prelude(block: &mut Block) -> Vec<Stmt> {
    let len = prelude_len(&block.stmts);
    block.stmts.drain(..len).collect()
}

fn prelude_len(stmts: &[Stmt]) -> usize {
    stmts.iter().take_while(|stmt| is_prelude(stmt)).count()
}

fn is_prelude(stmt: &Stmt) -> bool {
    match stmt {
        Stmt::Local(local) => {
            let (Pat::Ident(pat), Some(init)) = (&local.pat, &local.init) else { return false };
            init.diverge.is_none()
                && matches!(&*init.expr, Expr::Path(path)
                    if path.path.is_ident(&pat.ident)
                        || (pat.ident == "__self" && path.path.is_ident("self")))
        }
        Stmt::Expr(Expr::If(guard), None) => matches!(&*guard.cond, Expr::Let(hint)
            if matches!(&*hint.expr, Expr::Path(path)
                if path.path.segments.last().is_some_and(|last| last.ident == "None"))),
        _ => false,
    }
}

fn binds_self(stmt: &Stmt) -> bool {
    matches!(stmt, Stmt::Local(local) if matches!(&local.pat, Pat::Ident(pat) if pat.ident == "__self"))
}

/// `self` becomes `__self`, spanned like the `self` it replaces (as `#[async_trait]` does in the
/// body), so that it resolves to `#[async_trait]`'s binding.
fn replace_self(tokens: TokenStream) -> TokenStream {
    rename(tokens, "self", &|span| Ident::new("__self", span))
}

/// Every identifier `from` in `tokens` that is not part of a path (`from::x`, `x::from`) or a
/// field or method name (`x.from`, a field of another value) becomes `to(its span)`.
fn rename(tokens: TokenStream, from: &str, to: &dyn Fn(Span) -> Ident) -> TokenStream {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let is = |token: Option<&TokenTree>, chars: &[char]| matches!(token, Some(TokenTree::Punct(punct)) if chars.contains(&punct.as_char()));
    (0..tokens.len())
        .map(|at| match &tokens[at] {
            TokenTree::Ident(ident)
                if ident == from
                    && !is(
                        at.checked_sub(1).and_then(|before| tokens.get(before)),
                        &[':', '.'],
                    )
                    && !is(tokens.get(at + 1), &[':']) =>
            {
                TokenTree::Ident(to(ident.span()))
            }
            TokenTree::Group(group) => {
                let mut renamed =
                    proc_macro2::Group::new(group.delimiter(), rename(group.stream(), from, to));
                renamed.set_span(group.span());
                TokenTree::Group(renamed)
            }
            other => other.clone(),
        })
        .collect()
}

fn return_type(output: &ReturnType) -> Option<&Type> {
    match output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(ty),
    }
}

/// `T` in a return type naming `Future<Output = T>`: `impl Future<Output = T>` or
/// `Pin<Box<dyn Future<Output = T> + Send + 'a>>`, or `BoxFuture<'a, T>`. `None` for a type
/// that does not say (`Self::Future`): the output is then inferred.
fn future_output(ty: &Type) -> Option<&Type> {
    let bounds = match ty {
        Type::ImplTrait(ty) => &ty.bounds,
        Type::TraitObject(ty) => &ty.bounds,
        Type::Paren(ty) => return future_output(&ty.elem),
        Type::Group(ty) => return future_output(&ty.elem),
        Type::Path(ty) => {
            let last = ty.path.segments.last()?;
            let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
            if last.ident == "BoxFuture" || last.ident == "LocalBoxFuture" {
                // `futures::future::BoxFuture<'a, T>`.
                return args.args.iter().find_map(|arg| match arg {
                    GenericArgument::Type(ty) => Some(ty),
                    _ => None,
                });
            }
            return args.args.iter().find_map(|arg| match arg {
                GenericArgument::Type(ty) => future_output(ty),
                _ => None,
            });
        }
        _ => return None,
    };
    bounds.iter().find_map(|bound| {
        let TypeParamBound::Trait(bound) = bound else { return None };
        let last = bound.path.segments.last()?;
        if last.ident != "Future" {
            return None;
        }
        let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
        args.args.iter().find_map(|arg| match arg {
            GenericArgument::AssocType(assoc) if assoc.ident == "Output" => Some(&assoc.ty),
            _ => None,
        })
    })
}

/// Replaces `impl Trait` by `_` in the type of `let __ret`, where `impl Trait` is not allowed.
struct InferImpl;

impl VisitMut for InferImpl {
    fn visit_type_mut(&mut self, ty: &mut Type) {
        if let Type::ImplTrait(impl_trait) = ty {
            *ty = Type::Infer(syn::TypeInfer {
                attrs: Vec::new(),
                underscore_token: syn::Token![_](impl_trait.impl_token.span),
            });
        } else {
            syn::visit_mut::visit_type_mut(self, ty);
        }
    }
}
