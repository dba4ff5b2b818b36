//! The `#[cancellable]` attribute of the [`ctx`](https://docs.rs/ctx) crate. Depend on `ctx`,
//! which re-exports it and provides the runtime the expansion calls (`ctx::__private`); this
//! crate on its own is of no use.
//!
//! - `args.rs` parses the attribute's arguments,
//! - `expand.rs` rewrites the function (the `'__cancel` exit, the cancellation value),
//! - `context.rs` finds the context to check and takes it at entry,
//! - `wrappers.rs` finds the body when it is not the function's own block (a future-returning
//!   fn, or another attribute that expanded first),
//! - `visit.rs` inserts the cancellation points into the body and knows where to stop,
//! - `markers.rs` handles `#[not_cancellable]`,
//! - `select.rs` races `select!` and `join!`, the macro invocations it can see into.

mod args;
mod context;
mod expand;
mod markers;
mod select;
mod visit;
mod wrappers;

use proc_macro::TokenStream;

/// *Where this comes from:* the attribute is implemented in the `ctx-macros` crate and
/// documented on its re-export, `ctx::cancellable`. Depend on `ctx`, not on `ctx-macros`: the
/// expansion calls into `ctx`.
#[proc_macro_attribute]
pub fn cancellable(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cancellable(args.into(), item.into()).into()
}

/// *Where this comes from:* documented on its re-export, `ctx::not_cancellable`. Inside a
/// `#[cancellable]` function, `#[cancellable]` removes the marker before this runs; this
/// attribute only ever runs where the marker cannot work, and says so.
#[proc_macro_attribute]
pub fn not_cancellable(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::misplaced_marker(args.into(), item.into()).into()
}
