//! Nothing but tests: `tests/futures.rs` compiles the facade's `tests/cancellable_futures.rs`
//! in edition 2021, where an `-> impl Future` return does not capture the lifetimes of its
//! parameters, so `#[cancellable]` must not make the future borrow its `&Context`.
