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
//!     let __ctx = ::ctx::__private::context(&ctx);
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
//! `ctx = <expr>` is evaluated once. `let __ret: R` gives the body the same expected
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
//! A sync fn whose body ends in an `async move` block, bare or in `Box::pin(..)`, and whose
//! return type names `Future<Output = T>`, is treated as an `async fn` returning `T`: the
//! rewrite applies inside the block. That is the shape `#[async_trait]` turns an `async fn`
//! into before `#[cancellable]` (on the method) sees it.

use proc_macro2::{Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::visit_mut::VisitMut;
use syn::{
    Block, Expr, ExprAsync, FnArg, GenericArgument, Item, ItemFn, Pat, PathArguments, ReturnType,
    Stmt, Type, TypeParamBound,
};

use crate::args::Args;
use crate::visit::{InsertChecks, StripMarkers, hygienic_names};

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
    match Plan::new(args, &func) {
        Ok(plan) => plan.apply(func),
        Err(error) => {
            StripMarkers::block(&mut func.block);
            // The parameters the expansion would have used are unused now; the error is enough.
            func.attrs.push(syn::parse_quote!(#[allow(unused_variables)]));
            with_error(func.into_token_stream(), error)
        }
    }
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

/// How the function runs its body.
enum Shape<'a> {
    Sync,
    Async,
    /// A sync fn returning an `async move` block whose output is this type (see the module doc).
    Future(&'a Type),
}

/// Everything checked and decided before the function is touched.
struct Plan {
    /// `::ctx`, or the path given with `crate = ..`.
    krate: TokenStream,
    /// The expression of the context, taken once at entry.
    ctx: TokenStream,
    /// Whether `ctx` is a parameter (found by its type) rather than a `ctx = <expr>`.
    ctx_is_param: bool,
    /// Whether that parameter is a `&Context`: then the function's handle is a copy of the
    /// reference, and entering costs nothing.
    ctx_is_shared_ref: bool,
    /// The type the body evaluates to, `impl Trait` replaced by `_`.
    ret: Type,
    /// The value returned on cancellation; `None` for `()`.
    value: Option<TokenStream>,
    race_awaits: bool,
    future_body: bool,
}

impl Plan {
    fn new(args: TokenStream, func: &ItemFn) -> syn::Result<Plan> {
        let args = Args::parse(args)?;
        let mut errors = Vec::new();
        let sig = &func.sig;

        if let Some(constness) = &sig.constness {
            errors.push(syn::Error::new(
                constness.span,
                "#[cancellable] cannot apply to a `const fn`: a context is only known at run \
                 time\nhelp: remove `const`, or remove #[cancellable]",
            ));
        }

        let shape = if sig.asyncness.is_some() {
            Shape::Async
        } else {
            match (future_body_ref(&func.block), return_type(&sig.output).and_then(future_output)) {
                (Some(_), Some(output)) => Shape::Future(output),
                _ => Shape::Sync,
            }
        };
        if let (Some(span), Shape::Sync) = (args.loops_only, &shape) {
            errors.push(syn::Error::new(
                span,
                "`loops_only` only applies to an `async fn`: a sync fn has no `.await` to race\n\
                 help: remove `loops_only`",
            ));
        }

        let krate = match &args.krate {
            Some(path) => path.to_token_stream(),
            None => quote!(::ctx),
        };

        let mut ctx_is_shared_ref = false;
        let ctx = match &args.ctx {
            Some(expr @ (Expr::Path(_) | Expr::Field(_) | Expr::MethodCall(_) | Expr::Call(_))) => {
                Some(expr.to_token_stream())
            }
            // Parenthesized, so that `&` applies to all of it.
            Some(expr) => Some(quote!((#expr))),
            None => match find_context(func) {
                Ok((ident, shared_ref)) => {
                    ctx_is_shared_ref = shared_ref;
                    Some(ident.to_token_stream())
                }
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
        };

        let ret = match &shape {
            Shape::Future(output) => Some(*output),
            Shape::Sync | Shape::Async => return_type(&sig.output),
        };
        let value = match (&args.on_cancel, ret) {
            (Some(expr), _) => Some(expr.to_token_stream()),
            (None, None) => None,
            (None, Some(Type::Tuple(unit))) if unit.elems.is_empty() => None,
            (None, Some(ret)) if mentions_impl(ret.to_token_stream()) => {
                errors.push(syn::Error::new_spanned(
                    ret,
                    "#[cancellable] has no default cancellation value for an `impl Trait` \
                     return type\nhelp: give one with `#[cancellable(on_cancel = <expr>)]`",
                ));
                None
            }
            (None, Some(ret)) => {
                let (ctx, _) = hygienic_names();
                // Spanned on the return type: if `R: FromCancel` does not hold, rustc points
                // at `R` in the signature (the fake return edge of tracing-attributes).
                Some(quote_spanned! {ret.span()=>
                    <#ret as #krate::__private::FromCancel>::from_cancel(
                        #krate::__private::cancel_error(&#ctx)
                    )
                })
            }
        };

        let mut errors = errors.into_iter();
        if let Some(mut first) = errors.next() {
            errors.for_each(|error| first.combine(error));
            return Err(first);
        }
        let mut ret = match ret {
            Some(ret) => ret.clone(),
            None => syn::parse_quote!(()),
        };
        InferImpl.visit_type_mut(&mut ret);
        Ok(Plan {
            krate,
            ret,
            ctx: ctx.unwrap_or_default(),
            ctx_is_param: args.ctx.is_none(),
            ctx_is_shared_ref,
            value,
            race_awaits: args.loops_only.is_none(),
            future_body: matches!(shape, Shape::Future(_)),
        })
    }

    fn apply(self, mut func: ItemFn) -> TokenStream {
        let Plan {
            krate,
            ctx: user_ctx,
            ctx_is_param,
            ctx_is_shared_ref,
            ret,
            mut value,
            race_awaits,
            future_body,
        } = self;
        let (ctx, label) = hygienic_names();
        let mut visitor = InsertChecks { ctx: ctx.clone(), label: label.clone(), race_awaits };
        let check = visitor.check();
        let enter: Stmt = if ctx_is_shared_ref {
            // A shared reference cannot be moved out of or mutated through by the body, so a
            // copy of it is enough: no clone, nothing to drop.
            syn::parse_quote_spanned! {Span::mixed_site()=>
                let #ctx: &#krate::__private::Context = #user_ctx;
            }
        } else {
            // `&` takes the span of the user's expression, so that a context of the wrong type
            // is reported there and not on the attribute.
            let borrow = quote_spanned!(user_ctx.span()=> &#user_ctx);
            syn::parse_quote_spanned! {Span::mixed_site()=>
                let #ctx = #krate::__private::context(#borrow);
            }
        };

        let (body, prelude): (&mut Block, Vec<Stmt>) = if future_body {
            let Some(future) = future_body_mut(&mut func.block) else {
                unreachable!("Plan::new saw the async block")
            };
            let prelude = take_async_trait_prelude(&mut future.block);
            if prelude.iter().any(binds_self) {
                // `#[async_trait]` moved `self` into `__self`; `on_cancel` follows it.
                value = value.map(replace_self);
            }
            (&mut future.block, prelude)
        } else {
            (&mut func.block, Vec::new())
        };
        visitor.visit_block_mut(body);
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
        if future_body && ctx_is_param {
            // Inside the future, after `#[async_trait]`'s `let ctx = ctx;` (if any), so that
            // binding counts as used. A future's body runs on its first poll, like an `async fn`.
            body.stmts.insert(prelude_len(&body.stmts), enter);
        } else {
            // Any other context expression (`ctx = self.ctx`) is evaluated when the function is
            // called, before `#[async_trait]` moves `self` into the future.
            func.block.stmts.insert(0, enter);
        }
        func.into_token_stream()
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
    tokens
        .into_iter()
        .map(|token| match token {
            TokenTree::Ident(ident) if ident == "self" => {
                TokenTree::Ident(proc_macro2::Ident::new("__self", ident.span()))
            }
            TokenTree::Group(group) => {
                let mut replaced =
                    proc_macro2::Group::new(group.delimiter(), replace_self(group.stream()));
                replaced.set_span(group.span());
                TokenTree::Group(replaced)
            }
            other => other,
        })
        .collect()
}

/// The parameter whose type is `Context`, `&Context` or `&mut Context` (any path ending in
/// `Context` without generic arguments, which leaves out `std::task::Context<'_>`).
/// Returns its name, and whether it is a shared reference.
fn find_context(func: &ItemFn) -> syn::Result<(&proc_macro2::Ident, bool)> {
    let mut found = Vec::new();
    for arg in &func.sig.inputs {
        let FnArg::Typed(arg) = arg else { continue };
        if is_context(&arg.ty) {
            found.push(arg);
        }
    }
    match found.as_slice() {
        [] => Err(syn::Error::new(
            func.sig.paren_token.span.join(),
            "#[cancellable] found no `Context` parameter\n\
             help: add one (`ctx: Context`, `ctx: &Context` or `ctx: &mut Context`), or name the \
             context with `#[cancellable(ctx = <expr>)]`, e.g. `ctx = self.ctx`",
        )),
        [arg] => match &*arg.pat {
            Pat::Ident(pat) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                let shared_ref = matches!(&*arg.ty, Type::Reference(reference) if reference.mutability.is_none());
                Ok((&pat.ident, shared_ref))
            }
            pat => Err(syn::Error::new_spanned(
                pat,
                "#[cancellable] needs the context parameter to have a name\n\
                 help: write `ctx: Context`, or name the context with `#[cancellable(ctx = <expr>)]`",
            )),
        },
        [first, second, ..] => {
            let name = |arg: &syn::PatType| arg.pat.to_token_stream().to_string();
            Err(syn::Error::new_spanned(
                &second.ty,
                format!(
                    "#[cancellable] found two `Context` parameters, `{}` and `{}`, and cannot \
                     tell which one to check\nhelp: name it with `#[cancellable(ctx = {})]`",
                    name(first),
                    name(second),
                    name(first),
                ),
            ))
        }
    }
}

fn is_context(ty: &Type) -> bool {
    match ty {
        Type::Reference(reference) => is_context(&reference.elem),
        Type::Paren(inner) => is_context(&inner.elem),
        Type::Group(inner) => is_context(&inner.elem),
        Type::Path(path) if path.qself.is_none() => path
            .path
            .segments
            .last()
            .is_some_and(|last| last.ident == "Context" && last.arguments.is_none()),
        _ => false,
    }
}

fn return_type(output: &ReturnType) -> Option<&Type> {
    match output {
        ReturnType::Default => None,
        ReturnType::Type(_, ty) => Some(ty),
    }
}

/// `T` in a return type naming `Future<Output = T>`: `impl Future<Output = T>` or
/// `Pin<Box<dyn Future<Output = T> + Send + 'a>>`.
fn future_output(ty: &Type) -> Option<&Type> {
    let bounds = match ty {
        Type::ImplTrait(ty) => &ty.bounds,
        Type::TraitObject(ty) => &ty.bounds,
        Type::Paren(ty) => return future_output(&ty.elem),
        Type::Group(ty) => return future_output(&ty.elem),
        Type::Path(ty) => {
            let last = ty.path.segments.last()?;
            let PathArguments::AngleBracketed(args) = &last.arguments else { return None };
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

/// The `async move` block a sync fn's body ends in, bare or as `Box::pin(async move { .. })`.
fn future_body_ref(block: &Block) -> Option<&ExprAsync> {
    let Some(Stmt::Expr(tail, None)) = block.stmts.last() else { return None };
    let future = match tail {
        Expr::Call(call) if call.args.len() == 1 && is_pin(&call.func) => &call.args[0],
        tail => tail,
    };
    match future {
        Expr::Async(future) if future.capture.is_some() => Some(future),
        _ => None,
    }
}

fn future_body_mut(block: &mut Block) -> Option<&mut ExprAsync> {
    let Some(Stmt::Expr(tail, None)) = block.stmts.last_mut() else { return None };
    let pinned = matches!(tail, Expr::Call(call) if call.args.len() == 1 && is_pin(&call.func));
    let future = if pinned {
        match tail {
            Expr::Call(call) => &mut call.args[0],
            _ => return None,
        }
    } else {
        tail
    };
    match future {
        Expr::Async(future) if future.capture.is_some() => Some(future),
        _ => None,
    }
}

/// `Box::pin`, `std::boxed::Box::pin`, ...
fn is_pin(func: &Expr) -> bool {
    let Expr::Path(path) = func else { return false };
    let mut segments = path.path.segments.iter().rev();
    matches!(
        (segments.next(), segments.next()),
        (Some(pin), Some(boxed)) if pin.ident == "pin" && boxed.ident == "Box"
    )
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

/// Whether a type mentions `impl Trait`, which cannot be named in `<R as FromCancel>`.
fn mentions_impl(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "impl",
        TokenTree::Group(group) => mentions_impl(group.stream()),
        _ => false,
    })
}
