//! The `#[not_cancellable]` marker: where it works (an expression or a `let` statement of the
//! function's own body, which the visitor then leaves exactly as written), where it cannot (a
//! match arm, a nested item, with arguments: an error saying where it works), and its removal,
//! since rustc does not know the attribute. It is removed wherever it is found, except inside
//! nested items (another function's business) and macro invocations (not Rust syntax yet).

use syn::visit::{self, Visit};
use syn::visit_mut::{self as visit_mut, VisitMut};
use syn::{Arm, Attribute, Block, Expr, Item, Local, StmtMacro};

use crate::args::Errors;

/// The name of the marker attribute that exempts an expression or statement.
pub(crate) const MARKER: &str = "not_cancellable";

/// Reports every `#[not_cancellable]` that cannot work where it is: on a match arm, on a nested
/// item, or with arguments. Read-only; `StripMarkers` removes them afterwards.
pub(crate) fn misplaced_markers(block: &Block, errors: &mut Errors) {
    struct Misplaced<'a>(&'a mut Errors);
    const WHERE: &str = "help: put it on an expression or a `let` statement of the \
                         #[cancellable] function's own body, e.g. `#[not_cancellable] let v = \
                         f().await;`";
    impl<'ast> Visit<'ast> for Misplaced<'_> {
        fn visit_attribute(&mut self, attr: &'ast Attribute) {
            if attr.path().is_ident(MARKER) && !matches!(attr.meta, syn::Meta::Path(_)) {
                self.0.push(syn::Error::new_spanned(
                    &attr.meta,
                    "#[not_cancellable] takes no arguments\nhelp: write `#[not_cancellable]`",
                ));
            }
        }

        fn visit_arm(&mut self, arm: &'ast Arm) {
            if let Some(marker) = arm.attrs.iter().find(|attr| attr.path().is_ident(MARKER)) {
                self.0.push(syn::Error::new_spanned(
                    marker,
                    "#[not_cancellable] does not apply to a match arm\nhelp: put it on a \
                     statement inside the arm: `pat => { #[not_cancellable] let v = f().await; v }`",
                ));
            }
            visit::visit_arm(self, arm);
        }

        fn visit_item(&mut self, item: &'ast Item) {
            let attrs = item_attrs(item);
            if let Some(marker) = attrs.iter().find(|attr| attr.path().is_ident(MARKER)) {
                self.0.push(syn::Error::new_spanned(
                    marker,
                    format!(
                        "#[not_cancellable] does not apply to a nested item: #[cancellable] never \
                         rewrites nested items, they are functions of their own\n{WHERE}"
                    ),
                ));
            }
        }
    }
    Misplaced(errors).visit_block(block);
}

/// The outer attributes of an item (empty for tokens syn did not interpret).
fn item_attrs(item: &Item) -> &[Attribute] {
    match item {
        Item::Const(item) => &item.attrs,
        Item::Enum(item) => &item.attrs,
        Item::ExternCrate(item) => &item.attrs,
        Item::Fn(item) => &item.attrs,
        Item::ForeignMod(item) => &item.attrs,
        Item::Impl(item) => &item.attrs,
        Item::Macro(item) => &item.attrs,
        Item::Mod(item) => &item.attrs,
        Item::Static(item) => &item.attrs,
        Item::Struct(item) => &item.attrs,
        Item::Trait(item) => &item.attrs,
        Item::TraitAlias(item) => &item.attrs,
        Item::Type(item) => &item.attrs,
        Item::Union(item) => &item.attrs,
        Item::Use(item) => &item.attrs,
        _ => &[],
    }
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

    fn visit_arm_mut(&mut self, arm: &mut Arm) {
        remove_marker(&mut arm.attrs);
        visit_mut::visit_arm_mut(self, arm);
    }

    /// A nested item keeps its body as written; only a (misplaced) marker on the item itself
    /// goes, so that the error about it is the only one.
    fn visit_item_mut(&mut self, item: &mut Item) {
        if let Item::Fn(func) = item {
            remove_marker(&mut func.attrs);
        }
    }
}

/// Removes `#[not_cancellable]` from the expression's own attributes; `true` if it was there.
pub(crate) fn take_marker(expr: &mut Expr) -> bool {
    attrs_mut(expr).is_some_and(remove_marker)
}

pub(crate) fn remove_marker(attrs: &mut Vec<Attribute>) -> bool {
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
