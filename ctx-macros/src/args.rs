//! Parsing of the attribute's arguments: `#[cancellable(ctx = .., on_cancel = .., loops_only,
//! crate = ..)]`, in any order, each at most once.
//!
//! Every bad argument gets its own error spanned on its name, and parsing goes on after it, so a
//! user sees all of them at once rather than one per build.

use proc_macro2::{Span, TokenStream};
use syn::ext::IdentExt as _;
use syn::parse::{ParseStream, Parser as _};
use syn::{Expr, Ident, Path, Token};

mod kw {
    syn::custom_keyword!(ctx);
    syn::custom_keyword!(on_cancel);
    syn::custom_keyword!(loops_only);
}

/// The parsed arguments. Spans of the keywords are kept for later errors.
#[derive(Default)]
pub(crate) struct Args {
    /// `ctx = <expr>`: the context to check, instead of the `Context` parameter.
    pub(crate) ctx: Option<Expr>,
    /// `on_cancel = <expr>`: the value to return when the context is done.
    pub(crate) on_cancel: Option<Expr>,
    /// `loops_only`: do not race `.await`s, only check loops (the span of the keyword).
    pub(crate) loops_only: Option<Span>,
    /// `crate = <path>`: the path of the `ctx` facade, for a renamed dependency.
    pub(crate) krate: Option<Path>,
}

const EXPECTED: &str =
    "expected `ctx = <expr>`, `on_cancel = <expr>`, `loops_only` or `crate = <path>`";

impl Args {
    /// Parses the tokens between the attribute's parentheses.
    pub(crate) fn parse(tokens: TokenStream) -> syn::Result<Args> {
        let mut errors = Errors::default();
        let parsed = (|input: ParseStream| Args::parse_each(input, &mut errors)).parse2(tokens);
        // A syntax error stops the parse; it is reported with the errors found before it.
        if let Err(error) = &parsed {
            errors.push(error.clone());
        }
        errors.finish()?;
        parsed
    }

    fn parse_each(input: ParseStream, errors: &mut Errors) -> syn::Result<Args> {
        let mut args = Args::default();
        while !input.is_empty() {
            let lookahead = input.lookahead1();
            if lookahead.peek(kw::ctx) {
                let key = input.parse::<kw::ctx>()?;
                let value = parse_value(input, key.span, "ctx")?;
                errors.duplicate(&mut args.ctx, value, key.span, "ctx");
            } else if lookahead.peek(kw::on_cancel) {
                let key = input.parse::<kw::on_cancel>()?;
                let value = parse_value(input, key.span, "on_cancel")?;
                errors.duplicate(&mut args.on_cancel, value, key.span, "on_cancel");
            } else if lookahead.peek(kw::loops_only) {
                let key = input.parse::<kw::loops_only>()?;
                if input.peek(Token![=]) {
                    errors.push(syn::Error::new(
                        key.span,
                        "`loops_only` takes no value\nhelp: write `#[cancellable(loops_only)]`",
                    ));
                    parse_value(input, key.span, "loops_only")?;
                } else {
                    errors.duplicate(&mut args.loops_only, key.span, key.span, "loops_only");
                }
            } else if lookahead.peek(Token![crate]) {
                let key = input.parse::<Token![crate]>()?;
                if input.is_empty() || input.peek(Token![,]) {
                    return Err(syn::Error::new(
                        key.span,
                        "`crate` needs a value\nhelp: write `crate = <path>`",
                    ));
                }
                input.parse::<Token![=]>()?;
                let path = parse_crate_path(input)?;
                errors.duplicate(&mut args.krate, path, key.span, "crate");
            } else if input.peek(Ident::peek_any) {
                let name = input.call(Ident::parse_any)?;
                errors.push(syn::Error::new(
                    name.span(),
                    format!("unknown argument `{name}` for #[cancellable]\nhelp: {EXPECTED}"),
                ));
                // Skip its value, if any, to report the arguments after it too.
                if input.peek(Token![=]) {
                    input.parse::<Token![=]>()?;
                    input.parse::<Expr>()?;
                }
            } else {
                return Err(lookahead.error());
            }
            if input.is_empty() {
                break;
            }
            input.parse::<Token![,]>()?;
        }
        Ok(args)
    }
}

/// `= <expr>` after the argument `name` (spanned at `key`).
fn parse_value(input: ParseStream, key: Span, name: &str) -> syn::Result<Expr> {
    if input.is_empty() || input.peek(Token![,]) {
        return Err(syn::Error::new(
            key,
            format!("`{name}` needs a value\nhelp: write `{name} = <expr>`"),
        ));
    }
    input.parse::<Token![=]>()?;
    input.parse()
}

/// The path after `crate =`: `my_ctx`, `::my_ctx`, or the same as a string, `"my_ctx"`, as
/// serde's and tracing's `crate = ".."` arguments are written.
fn parse_crate_path(input: ParseStream) -> syn::Result<Path> {
    if input.peek(syn::LitStr) {
        let lit = input.parse::<syn::LitStr>()?;
        return lit.parse_with(Path::parse_mod_style).map_err(|_| {
            syn::Error::new(
                lit.span(),
                format!(
                    "`crate = {:?}` is not a path\nhelp: write the path of `ctx`, e.g. \
                     `crate = my_ctx` or `crate = \"my_ctx\"`",
                    lit.value()
                ),
            )
        });
    }
    input.call(Path::parse_mod_style)
}

/// The errors found so far, reported together: the argument parser's, the plan's and the
/// visitor's.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// Stores `value` in `slot`, or reports `name` as given twice (on the second occurrence).
    fn duplicate<T>(&mut self, slot: &mut Option<T>, value: T, key: Span, name: &str) {
        if slot.is_some() {
            self.push(syn::Error::new(
                key,
                format!("`{name}` is given twice\nhelp: keep one `{name}` argument"),
            ));
        } else {
            *slot = Some(value);
        }
    }

    /// `Err` with every error pushed so far, or `Ok` if there was none.
    pub(crate) fn finish(&mut self) -> syn::Result<()> {
        match self.0.take() {
            Some(errors) => Err(errors),
            None => Ok(()),
        }
    }
}
