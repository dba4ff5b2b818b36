//! `Context`'s `PartialEq`, `Eq` and `Hash` are identity, as tokio-util's token's: clones are
//! equal and hash alike, every derived context is a context of its own, and the two roots are
//! each equal to themselves only.

use std::collections::HashSet;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use ctx_core::Context;

fn hash_of(ctx: &Context) -> u64 {
    let mut hasher = DefaultHasher::new();
    ctx.hash(&mut hasher);
    hasher.finish()
}

#[test]
fn clones_are_equal_and_hash_alike() {
    let (ctx, handle) = Context::background().with_cancel();
    let clone = ctx.clone();
    assert_eq!(ctx, clone);
    assert_eq!(hash_of(&ctx), hash_of(&clone));
    assert_eq!(handle.context(), ctx, "the handle's context is the same context");
    handle.cancel();
    assert_eq!(ctx, clone, "cancelling changes the state, not the identity");
}

// A context hashes by identity, which its state cannot change; clippy only sees the atomics.
#[allow(clippy::mutable_key_type)]
#[test]
fn derived_contexts_differ_from_their_parent_and_from_each_other() {
    let (parent, _h) = Context::background().with_cancel();
    let (first, _h1) = parent.with_cancel();
    let (second, _h2) = parent.with_cancel();
    let value = parent.with_value(1u8);
    let detached = parent.without_cancel();
    let all = [&parent, &first, &second, &value, &detached];
    for (i, a) in all.iter().enumerate() {
        for (j, b) in all.iter().enumerate() {
            assert_eq!(i == j, a == b, "{a} vs {b}");
        }
    }
    let set: HashSet<Context> = all.iter().map(|ctx| (*ctx).clone()).collect();
    assert_eq!(set.len(), all.len());
}

#[test]
fn roots_are_equal_to_themselves_only() {
    assert_eq!(Context::background(), Context::background());
    assert_eq!(Context::background(), Context::default());
    assert_eq!(hash_of(&Context::background()), hash_of(&Context::background()));
    assert_eq!(Context::todo(), Context::todo());
    assert_eq!(hash_of(&Context::todo()), hash_of(&Context::todo()));
    assert_ne!(Context::background(), Context::todo());
    let (child, _h) = Context::background().with_cancel();
    assert_ne!(child, Context::background());
    assert_ne!(Context::todo().with_value(1u8), Context::todo());
}
