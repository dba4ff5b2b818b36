//! The context to check: the parameter whose type is named `Context` (how it is passed decides
//! how it is taken), or the expression given with `ctx = <expr>`; and the statement that takes
//! it once, at entry, into the function's own hygienic handle `__ctx`.

use proc_macro2::{Ident, Span, TokenStream, TokenTree};
use quote::{ToTokens, quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{Expr, FnArg, ItemFn, Pat, Stmt, Type};

use crate::args::{Args, Errors};
use crate::visit::hygienic_names;

/// Where the context comes from.
pub(crate) enum Source {
    /// The parameter found by its type (`find_context`).
    Parameter { ident: Ident, kind: ParamKind },
    /// `ctx = <expr>`, parenthesized unless it is a path, a field or a call.
    Expr(TokenStream),
}

/// How the context parameter is passed.
#[derive(Clone, Copy)]
pub(crate) enum ParamKind {
    Owned,
    SharedRef,
    MutRef,
}

impl Source {
    /// `let __ctx = ..;`: the function's own handle on its context. `owned` forces a clone, for
    /// a future that must not borrow the parameter.
    pub(crate) fn enter(&self, krate: &TokenStream, owned: bool) -> Stmt {
        let (ctx, _) = hygienic_names();
        let private = quote!(#krate::__private);
        match self {
            Source::Parameter { ident, kind } => {
                // The argument of `picked` is spanned on the parameter, so that a parameter of
                // another crate's `Context` type is reported there, naming the parameter picked.
                let picked = match kind {
                    ParamKind::Owned => quote_spanned!(ident.span()=> #private::picked(&#ident)),
                    ParamKind::SharedRef => quote_spanned!(ident.span()=> #private::picked(#ident)),
                    ParamKind::MutRef => quote_spanned!(ident.span()=> #private::picked(&*#ident)),
                };
                match (kind, owned) {
                    // A shared reference cannot be moved out of or mutated through by the body,
                    // so a copy of it is enough: no clone, nothing to drop.
                    (ParamKind::SharedRef, false) => {
                        syn::parse_quote_spanned! {Span::mixed_site()=>
                            let #ctx: &#private::Context = #picked;
                        }
                    }
                    _ => syn::parse_quote_spanned! {Span::mixed_site()=>
                        let #ctx = #private::context(#picked);
                    },
                }
            }
            Source::Expr(expr) => {
                // `&` takes the span of the user's expression, so that a context of the wrong
                // type is reported there and not on the attribute.
                let borrow = quote_spanned!(expr.span()=> &#expr);
                syn::parse_quote_spanned! {Span::mixed_site()=>
                    let #ctx = #private::context(#borrow);
                }
            }
        }
    }
}

/// The context: `ctx = <expr>`, or the parameter found by its type.
pub(crate) fn context_source(args: &Args, func: &ItemFn, errors: &mut Errors) -> Option<Source> {
    match &args.ctx {
        Some(expr @ (Expr::Path(_) | Expr::Field(_) | Expr::MethodCall(_) | Expr::Call(_))) => {
            Some(Source::Expr(expr.to_token_stream()))
        }
        // Parenthesized, so that `&` applies to all of it.
        Some(expr) => Some(Source::Expr(quote!((#expr)))),
        None => match find_context(func) {
            Ok((ident, kind)) => Some(Source::Parameter { ident: ident.clone(), kind }),
            Err(error) => {
                errors.push(error);
                None
            }
        },
    }
}

/// The parameter whose type is `Context`, `&Context` or `&mut Context` (any path ending in
/// `Context` without generic arguments, which leaves out `std::task::Context<'_>`).
/// Returns its name, and how it is passed.
fn find_context(func: &ItemFn) -> syn::Result<(&Ident, ParamKind)> {
    let mut found = Vec::new();
    for arg in &func.sig.inputs {
        let FnArg::Typed(arg) = arg else { continue };
        if is_context(&arg.ty) {
            found.push(arg);
        }
    }
    match found.as_slice() {
        [] => Err(no_context(func)),
        [arg] => match &*arg.pat {
            Pat::Ident(pat) if pat.subpat.is_none() && pat.by_ref.is_none() => {
                let kind = match &*arg.ty {
                    Type::Reference(reference) if reference.mutability.is_some() => {
                        ParamKind::MutRef
                    }
                    Type::Reference(_) => ParamKind::SharedRef,
                    _ => ParamKind::Owned,
                };
                Ok((&pat.ident, kind))
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

/// No parameter is a `Context`: the error names a parameter that holds one (`Arc<Context>`),
/// if any, else says how to add one.
fn no_context(func: &ItemFn) -> syn::Error {
    let holder = func.sig.inputs.iter().find_map(|arg| match arg {
        FnArg::Typed(arg) if mentions_context(arg.ty.to_token_stream()) => match &*arg.pat {
            Pat::Ident(pat) => Some((arg, &pat.ident)),
            _ => None,
        },
        _ => None,
    });
    match holder {
        Some((arg, name)) => syn::Error::new_spanned(
            &arg.ty,
            format!(
                "#[cancellable] found no `Context` parameter: `{name}` holds one, but is not one\n\
                 help: name it with `#[cancellable(ctx = {name})]` (a type that dereferences to \
                 `Context`, such as `Arc<Context>`, works as it is)"
            ),
        ),
        None => syn::Error::new(
            func.sig.paren_token.span.join(),
            "#[cancellable] found no `Context` parameter\n\
             help: add one (`ctx: Context`, `ctx: &Context` or `ctx: &mut Context`), or name the \
             context with `#[cancellable(ctx = <expr>)]`, e.g. `ctx = self.ctx`",
        ),
    }
}

/// Whether the tokens of a type name `Context` anywhere (`Arc<Context>`, `Option<&Context>`).
fn mentions_context(tokens: TokenStream) -> bool {
    tokens.into_iter().any(|token| match token {
        TokenTree::Ident(ident) => ident == "Context",
        TokenTree::Group(group) => mentions_context(group.stream()),
        _ => false,
    })
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
