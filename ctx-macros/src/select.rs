//! `select!` and `join!` in the function's own body: the two macro invocations whose awaits the
//! attribute can race soundly, although their tokens are not Rust syntax it can walk.
//!
//! - `tokio::join!`, `tokio::try_join!`, `futures::join!`, `futures::try_join!` (and the bare
//!   `join!`/`try_join!` of either) await all their futures in place: the whole invocation is
//!   raced. Both macros evaluate their arguments in order before polling any of them, so the
//!   arguments are evaluated first, in the function's own body, where a `?`, `return` or
//!   `break` in them (`join!(fetch(url?), ..)`) means what it meant without the attribute and
//!   an `.await` in them is raced:
//!   `{ let __j0 = a; let __j1 = b; match __ctx.run(async { join!(__j0, __j1) }).await { Ok(v) => v, Err(_) => break '__cancel } }`.
//! - `tokio::select!`, `futures::select!` and `futures::select_biased!` (bare or by path) have
//!   branch handlers that may `break`, `continue`, `return` or use `?`, which an `async` block
//!   would capture. So the select is split in two: the select itself, with every handler replaced
//!   by "which branch, with which bindings", runs inside a raced `async` block, and the handlers
//!   run after it, in the function's own body, where the visitor rewrites them like any other
//!   code:
//!
//!   The same goes for the branches' futures and preconditions: both macros evaluate them
//!   before polling (tokio every precondition, then every future; futures every future, in
//!   order), so they are evaluated in that order in the function's own body, and a `?` in them
//!   (`v = fetch(id?) => ..`) keeps its meaning. A future that is a plain path is left in the
//!   select: `futures::select!` polls it by `&mut`, so it stays usable after the select.
//!
//!   ```text
//!   {
//!       enum __Branch<B0, ..> { B0(B0), .., K0 }
//!       let __c0: bool = c0;
//!       let __f0 = fut0;
//!       match __ctx.run(async {
//!           tokio::select! { biased; pat0 = { __f0 }, if __c0 => __Branch::B0((x, y)), else => __Branch::K0 }
//!       }).await {
//!           Ok(__Branch::B0((x, mut y))) => handler0,
//!           Ok(__Branch::K0) => else_handler,
//!           Err(_) => break '__cancel,
//!       }
//!   }
//!   ```
//!
//!   The select keeps every word of its own meaning: `biased;` and the branch order, the
//!   preconditions, refutable patterns disabling their branch, and `else` (tokio) or `default` /
//!   `complete` (futures) running exactly when they would. Its futures are dropped before a
//!   handler runs, as the macros do themselves.
//!
//! A select that already has a branch on `.done()` (Go's `case <-ctx.Done():`; `.done().fuse()`
//! in a `futures::select!`) is left as written, so it keeps its own shutdown branch. Any other
//! macro invocation, and a select whose tokens do not parse as a select, are left untouched.

use proc_macro2::{Ident, Span, TokenStream};
use quote::{format_ident, quote, quote_spanned};
use syn::parse::{ParseStream, Parser as _};
use syn::visit::Visit;
use syn::{Expr, Macro, Pat, PatIdent, Token};

use crate::visit::without_parens;

/// What kind of invocation the visitor has found.
pub(crate) enum Invocation {
    Select(Select),
    Join(Join),
}

/// Recognises `mac` as a select or a join, by the last segment of its path (`select`,
/// `select_biased`, `join`, `try_join`) and its crate, if named (`tokio` or `futures`).
pub(crate) fn recognise(mac: &Macro) -> Option<Invocation> {
    let segments: Vec<&Ident> = mac.path.segments.iter().map(|segment| &segment.ident).collect();
    let (name, krate) = match segments.as_slice() {
        [name] => (*name, None),
        [krate, name] => (*name, Some(*krate)),
        _ => return None,
    };
    if krate.is_some_and(|krate| krate != "tokio" && krate != "futures") {
        return None;
    }
    if name == "join" || name == "try_join" {
        return Some(Invocation::Join(Join::parse(mac.tokens.clone())));
    }
    if name == "select" || name == "select_biased" {
        return Select::parse(mac.tokens.clone()).map(Invocation::Select);
    }
    None
}

/// A parsed `join!`: its optional `biased;` (tokio) and its arguments, or `None` when its tokens
/// are not a list of expressions (then the invocation is raced as written).
pub(crate) struct Join(Option<(Option<TokenStream>, Vec<Expr>)>);

impl Join {
    fn parse(tokens: TokenStream) -> Join {
        let parser = |input: ParseStream| {
            let biased = parse_biased(input)?;
            let args = syn::punctuated::Punctuated::<Expr, Token![,]>::parse_terminated(input)?;
            Ok((biased, args.into_iter().collect()))
        };
        Join(parser.parse2(tokens).ok())
    }

    /// The arguments, for the visitor to rewrite before `hoist` moves them out.
    pub(crate) fn args_mut(&mut self) -> impl Iterator<Item = &mut Expr> {
        self.0.iter_mut().flat_map(|(_, args)| args.iter_mut())
    }

    /// The arguments bound in order (`let __j0 = a;`), then `race` of the join of the bindings.
    pub(crate) fn hoist(self, mac: &Macro, race: impl FnOnce(TokenStream) -> Expr) -> Expr {
        let span = Span::mixed_site();
        let Some((biased, args)) = self.0 else {
            return race(quote_spanned!(span=> async { #mac }));
        };
        let names: Vec<Ident> =
            (0..args.len()).map(|index| format_ident!("__j{}", index, span = span)).collect();
        let unparenthesized = args.iter().map(without_parens);
        let (path, bang) = (&mac.path, &mac.bang_token);
        let raced = race(quote_spanned!(span=> async { #path #bang(#biased #(#names),*) }));
        syn::parse_quote_spanned! {span=>
            {
                #(let #names = #unparenthesized;)*
                #raced
            }
        }
    }
}

/// `biased;` at the start of a select or a join, if there.
fn parse_biased(input: ParseStream) -> syn::Result<Option<TokenStream>> {
    if input.peek(syn::Ident) && input.peek2(Token![;]) {
        let fork = input.fork();
        if fork.parse::<Ident>()? == "biased" {
            let word = input.parse::<Ident>()?;
            let semi = input.parse::<Token![;]>()?;
            return Ok(Some(quote!(#word #semi)));
        }
    }
    Ok(None)
}

/// A parsed select: its optional `biased;` and its branches, in order.
pub(crate) struct Select {
    biased: Option<TokenStream>,
    branches: Vec<Branch>,
}

// A few per select, made once at compile time: boxing the large variant would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Branch {
    /// `pat = future (, if precondition)? => handler`
    Future { pat: Pat, future: Expr, precondition: Option<Expr>, handler: Expr },
    /// `else => handler` (tokio), `default => handler` or `complete => handler` (futures).
    Keyword { keyword: TokenStream, handler: Expr },
}

impl Select {
    fn parse(tokens: TokenStream) -> Option<Select> {
        let parser = |input: ParseStream| {
            let biased = parse_biased(input)?;
            let mut branches = Vec::new();
            while !input.is_empty() {
                let keyword = if input.peek(Token![else]) {
                    let word = input.parse::<Token![else]>()?;
                    Some(quote!(#word))
                } else if (input.peek(syn::Ident) && input.peek2(Token![=>]))
                    && ["default", "complete"]
                        .iter()
                        .any(|word| input.fork().parse::<Ident>().is_ok_and(|i| i == word))
                {
                    let word = input.parse::<Ident>()?;
                    Some(quote!(#word))
                } else {
                    None
                };
                let branch = match keyword {
                    Some(keyword) => {
                        input.parse::<Token![=>]>()?;
                        Branch::Keyword { keyword, handler: parse_handler(input)? }
                    }
                    None => {
                        let pat = Pat::parse_multi_with_leading_vert(input)?;
                        input.parse::<Token![=]>()?;
                        let future = input.parse::<Expr>()?;
                        let precondition = if input.peek(Token![,]) && input.peek2(Token![if]) {
                            input.parse::<Token![,]>()?;
                            input.parse::<Token![if]>()?;
                            Some(input.parse::<Expr>()?)
                        } else {
                            None
                        };
                        input.parse::<Token![=>]>()?;
                        Branch::Future { pat, future, precondition, handler: parse_handler(input)? }
                    }
                };
                branches.push(branch);
            }
            Ok(Select { biased, branches })
        };
        parser.parse2(tokens).ok().filter(|select| !select.branches.is_empty())
    }

    /// Whether a branch already waits on a context's `.done()`: Go-style code with its own
    /// shutdown branch, left as written.
    /// `ctx.done().fuse()` (how `futures::select!`, which needs a fused future, is written) and
    /// `&mut ctx.done()` count too.
    pub(crate) fn has_done_branch(&self) -> bool {
        fn is_done(future: &Expr) -> bool {
            match future {
                Expr::MethodCall(call) if call.args.is_empty() && call.method == "fuse" => {
                    is_done(&call.receiver)
                }
                Expr::MethodCall(call) => call.args.is_empty() && call.method == "done",
                Expr::Reference(reference) => is_done(&reference.expr),
                Expr::Paren(inner) => is_done(&inner.expr),
                _ => false,
            }
        }
        self.branches
            .iter()
            .any(|branch| matches!(branch, Branch::Future { future, .. } if is_done(future)))
    }

    /// The preconditions, futures and handlers, for the visitor to rewrite before `split` moves
    /// them out.
    pub(crate) fn exprs_mut(&mut self) -> impl Iterator<Item = &mut Expr> {
        self.branches.iter_mut().flat_map(|branch| match branch {
            Branch::Future { future, precondition, handler, .. } => {
                let mut exprs = vec![future, handler];
                exprs.extend(precondition);
                exprs
            }
            Branch::Keyword { handler, .. } => vec![handler],
        })
    }

    /// The select split in two (see the module doc): `race` turns the select's future into the
    /// raced `match` scrutinee, and the handlers become its arms, before `cancelled`.
    pub(crate) fn split(
        self,
        mac: &Macro,
        race: impl FnOnce(TokenStream) -> TokenStream,
        cancelled: TokenStream,
    ) -> Expr {
        let span = Span::mixed_site();
        let enum_name = Ident::new("__Branch", span);
        let mut params = Vec::new();
        let mut variants = Vec::new();
        let mut inner = Vec::new();
        let mut arms = Vec::new();
        let mut preconditions = Vec::new();
        let mut futures = Vec::new();
        for (index, branch) in self.branches.into_iter().enumerate() {
            match branch {
                Branch::Future { pat, future, precondition, handler } => {
                    let future = if matches!(future, Expr::Path(_)) {
                        quote!(#future)
                    } else {
                        // A block, not a path: `futures::select!` pins it in place (a path
                        // would have to be `Unpin`).
                        let name = format_ident!("__f{}", index, span = span);
                        let future = without_parens(&future);
                        futures.push(quote_spanned!(span=> let #name = #future;));
                        quote_spanned!(span=> { #name })
                    };
                    let precondition = precondition.map(|cond| {
                        let name = format_ident!("__c{}", index, span = span);
                        let cond = without_parens(&cond);
                        preconditions.push(quote_spanned!(span=> let #name: bool = #cond;));
                        name
                    });
                    let variant = format_ident!("B{}", index, span = span);
                    let param = format_ident!("__B{}", index, span = span);
                    let bindings = Bindings::of(&pat);
                    let moved = bindings.0.iter().map(|binding| &binding.ident);
                    let rebound = bindings.0.iter().map(|binding| {
                        let PatIdent { by_ref, mutability, ident, .. } = binding;
                        quote!(#by_ref #mutability #ident)
                    });
                    let pat = by_value(pat);
                    let precondition = precondition.map(|cond| quote!(, if #cond));
                    inner.push(quote_spanned! {span=>
                        #pat = #future #precondition => #enum_name::#variant((#(#moved,)*)),
                    });
                    arms.push(quote_spanned! {span=>
                        ::core::result::Result::Ok(#enum_name::#variant((#(#rebound,)*))) => #handler,
                    });
                    variants.push(quote_spanned!(span=> #variant(#param)));
                    params.push(param);
                }
                Branch::Keyword { keyword, handler } => {
                    let variant = format_ident!("K{}", index, span = span);
                    inner.push(quote_spanned!(span=> #keyword => #enum_name::#variant,));
                    arms.push(quote_spanned! {span=>
                        ::core::result::Result::Ok(#enum_name::#variant) => #handler,
                    });
                    variants.push(quote!(#variant));
                }
            }
        }
        let path = &mac.path;
        let bang = &mac.bang_token;
        let biased = &self.biased;
        let select = quote!(#path #bang { #biased #(#inner)* });
        let scrutinee = race(quote_spanned!(span=> async { #select }));
        syn::parse_quote_spanned! {span=>
            {
                enum #enum_name<#(#params),*> { #(#variants),* }
                #(#preconditions)*
                #(#futures)*
                match #scrutinee {
                    #(#arms)*
                    ::core::result::Result::Err(_) => #cancelled,
                }
            }
        }
    }
}

/// A handler: a block (its comma optional) or an expression followed by a comma (or the end).
fn parse_handler(input: ParseStream) -> syn::Result<Expr> {
    let handler = if input.peek(syn::token::Brace) {
        Expr::Block(syn::ExprBlock { attrs: Vec::new(), label: None, block: input.parse()? })
    } else {
        input.parse::<Expr>()?
    };
    if input.peek(Token![,]) {
        input.parse::<Token![,]>()?;
    } else if !input.is_empty() && !matches!(handler, Expr::Block(_)) {
        return Err(input.error("expected `,` after a select branch"));
    }
    Ok(handler)
}

/// The variables a pattern binds, each once (an or-pattern binds the same ones in every case).
/// A bare capitalised name (`None`, `Ordering::Less` written `Less`) is a constant, not a
/// binding.
struct Bindings(Vec<PatIdent>);

impl Bindings {
    fn of(pat: &Pat) -> Bindings {
        let mut bindings = Bindings(Vec::new());
        bindings.visit_pat(pat);
        bindings
    }
}

impl<'ast> Visit<'ast> for Bindings {
    fn visit_pat_ident(&mut self, pat: &'ast PatIdent) {
        let is_constant = pat.subpat.is_none()
            && pat.by_ref.is_none()
            && pat.mutability.is_none()
            && pat.ident.to_string().starts_with(|c: char| c.is_uppercase());
        if !is_constant && !self.0.iter().any(|seen| seen.ident == pat.ident) {
            let mut binding = pat.clone();
            binding.subpat = None;
            binding.attrs.clear();
            self.0.push(binding);
        }
        syn::visit::visit_pat_ident(self, pat);
    }

    fn visit_expr(&mut self, _: &'ast Expr) {}
}

/// The pattern binding by value only: inside the select a binding is only moved out, and its
/// `mut` or `ref` belongs to the handler's rebinding.
fn by_value(mut pat: Pat) -> Pat {
    struct Strip;
    impl syn::visit_mut::VisitMut for Strip {
        fn visit_pat_ident_mut(&mut self, pat: &mut PatIdent) {
            pat.mutability = None;
            pat.by_ref = None;
            syn::visit_mut::visit_pat_ident_mut(self, pat);
        }
    }
    syn::visit_mut::VisitMut::visit_pat_mut(&mut Strip, &mut pat);
    pat
}
