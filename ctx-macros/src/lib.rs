//! The `#[cancellable]` attribute of the [`ctx`](https://docs.rs/ctx) crate. Depend on `ctx`,
//! which re-exports it and provides the runtime the expansion calls (`ctx::__private`); this
//! crate on its own is of no use.
//!
//! - `args.rs` parses the attribute's arguments,
//! - `expand.rs` rewrites the function (the context local, the `'__cancel` exit, the value),
//! - `visit.rs` inserts the cancellation points into the body and knows where to stop.

mod args;
mod expand;
mod visit;

use proc_macro::TokenStream;

/// *Where this comes from:* the attribute is implemented in the `ctx-macros` crate and
/// documented on its re-export, `ctx::cancellable`. Depend on `ctx`, not on `ctx-macros`: the
/// expansion calls into `ctx`.
#[proc_macro_attribute]
pub fn cancellable(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::cancellable(args.into(), item.into()).into()
}
