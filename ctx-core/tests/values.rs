//! Request-scoped values: keyed by type, innermost wins, found through every kind of layer, and
//! looked up without recursion; plus `without_cancel`, which keeps values and drops cancellation.

mod common;

use std::time::Duration;

use common::{DEFAULT_THREAD_STACK, Why, on_thread_with_stack, scaled, why_of};
use ctx_core::{Context, Error};

#[derive(Debug, PartialEq)]
struct RequestId(u64);

#[derive(Debug, PartialEq)]
struct UserId(u64);

#[test]
fn values_are_keyed_by_type() {
    let ctx = Context::background().with_value(RequestId(1)).with_value(UserId(2));
    assert_eq!(ctx.value::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(ctx.value::<UserId>(), Some(&UserId(2)));
    // The newtype hides nothing of the inner type and vice versa.
    assert_eq!(ctx.value::<u64>(), None);
    let with_raw = ctx.with_value(7u64);
    assert_eq!(with_raw.value::<u64>(), Some(&7));
    assert_eq!(with_raw.value::<RequestId>(), Some(&RequestId(1)));
}

#[test]
fn the_innermost_value_hides_outer_ones_without_changing_them() {
    let outer = Context::background().with_value(RequestId(1));
    let middle = outer.with_value(UserId(5));
    let inner = middle.with_value(RequestId(2));
    assert_eq!(inner.value::<RequestId>(), Some(&RequestId(2)));
    assert_eq!(middle.value::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(outer.value::<RequestId>(), Some(&RequestId(1)));
    assert_eq!(outer.value::<UserId>(), None, "values never flow up");
}

#[test]
fn values_are_found_through_every_kind_of_layer() {
    let (base, handle) = Context::background().with_value(RequestId(9)).with_cancel();
    let (deadline, _dh) = base.with_timeout(Duration::from_secs(3600));
    let without = deadline.without_cancel();
    let (merged, _mh) = without.merge(&Context::background().with_value(UserId(3)));
    let (leaf, _lh) = merged.with_cancel();
    assert_eq!(leaf.value::<RequestId>(), Some(&RequestId(9)));
    assert_eq!(leaf.value::<UserId>(), Some(&UserId(3)));
    handle.cancel();
    assert_eq!(deadline.value::<RequestId>(), Some(&RequestId(9)), "values survive cancellation");
}

#[test]
fn roots_have_no_values() {
    assert_eq!(Context::background().value::<RequestId>(), None);
    assert_eq!(Context::todo().value::<()>(), None);
}

#[test]
fn values_of_many_types_including_unit_and_references() {
    static NAME: &str = "static";
    let ctx = Context::background()
        .with_value(())
        .with_value(NAME)
        .with_value(String::from("owned"))
        .with_value(vec![1u8, 2, 3])
        .with_value(Box::new(5i128));
    assert_eq!(ctx.value::<()>(), Some(&()));
    assert_eq!(ctx.value::<&str>(), Some(&"static"));
    assert_eq!(ctx.value::<String>().map(String::as_str), Some("owned"));
    assert_eq!(ctx.value::<Vec<u8>>(), Some(&vec![1, 2, 3]));
    assert_eq!(ctx.value::<Box<i128>>().map(|b| **b), Some(5));
    assert_eq!(ctx.value::<i128>(), None, "a Box<T> is not a T");
}

#[test]
fn a_value_is_dropped_when_its_last_context_goes() {
    let token = std::sync::Arc::new(());
    let (parent, _h) = Context::background().with_cancel();
    let with = parent.with_value(token.clone());
    let clone = with.clone();
    assert_eq!(std::sync::Arc::strong_count(&token), 2);
    drop(with);
    assert_eq!(std::sync::Arc::strong_count(&token), 2, "a clone still holds it");
    drop(clone);
    assert_eq!(std::sync::Arc::strong_count(&token), 1, "the value leaked");
}

#[test]
fn a_value_layer_is_done_when_its_parent_is() {
    let (parent, handle) = Context::background().with_cancel();
    let value = parent.with_value(1u8);
    assert!(!value.is_done());
    handle.cancel_with_cause(Why(3));
    assert_eq!(value.err(), Some(Error::Canceled));
    assert_eq!(why_of(&value), Some(3));
}

#[test]
fn a_value_layer_over_a_root_is_never_done() {
    let value = Context::background().with_value(1u8);
    assert!(!value.is_done());
    assert_eq!(value.deadline(), None);
    assert!(!value.wait_timeout(Duration::from_millis(1)));
}

/// The lookup walks a loop: a million-deep chain of values is searched to the root on a thread
/// with the default 2 MiB stack (and the chain is dropped there too).
#[test]
fn lookup_on_a_million_deep_chain_does_not_grow_the_stack() {
    let depth = scaled(1_000_000, 1_000_000);
    on_thread_with_stack(DEFAULT_THREAD_STACK, move || {
        let mut ctx = Context::background().with_value(RequestId(0));
        for i in 0..depth {
            ctx = ctx.with_value(i as u32);
        }
        assert_eq!(ctx.value::<RequestId>(), Some(&RequestId(0)));
        assert_eq!(ctx.value::<UserId>(), None);
        assert_eq!(ctx.value::<u32>(), Some(&(depth as u32 - 1)));
        assert_eq!(ctx.deadline(), None);
        drop(ctx);
    });
}

#[test]
fn without_cancel_keeps_values_and_is_never_done() {
    let (parent, handle) =
        Context::background().with_value(RequestId(4)).with_timeout(Duration::from_secs(3600));
    let detached = parent.without_cancel();
    assert_eq!(detached.value::<RequestId>(), Some(&RequestId(4)));
    assert_eq!(detached.deadline(), None, "without_cancel has no deadline");
    handle.cancel();
    assert!(parent.is_done());
    assert!(!detached.is_done());
    assert_eq!(detached.err(), None);
    assert!(detached.cause().is_none());
    assert_eq!(detached.check(), Ok(()));
    assert!(!detached.wait_timeout(Duration::from_millis(5)));
}

#[test]
fn without_cancel_of_a_done_context_is_live() {
    let (parent, handle) = Context::background().with_value(RequestId(4)).with_cancel();
    handle.cancel();
    let detached = parent.without_cancel();
    assert!(!detached.is_done());
    let (child, child_handle) = detached.with_cancel();
    assert!(!child.is_done(), "a child of without_cancel must not inherit the done state");
    assert_eq!(child.value::<RequestId>(), Some(&RequestId(4)));
    child_handle.cancel();
    assert!(child.is_done());
    assert!(!detached.is_done(), "cancel never flows up");
}

#[test]
fn children_of_without_cancel_are_not_linked_to_its_ancestors() {
    let (grand, grand_handle) = Context::background().with_cancel();
    let (parent, _ph) = grand.with_value(RequestId(1)).with_cancel();
    let detached = parent.without_cancel();
    let (child, _ch) = detached.with_cancel();
    let (deadline_child, _dh) = detached.with_timeout(Duration::from_secs(3600));
    let value_child = detached.with_value(UserId(2));
    let (merged, _mh) = detached.merge(&Context::background());
    grand_handle.cancel();
    assert!(parent.is_done());
    for ctx in [&child, &deadline_child, &value_child, &merged] {
        assert!(!ctx.is_done(), "{ctx} followed an ancestor of without_cancel");
        assert_eq!(ctx.value::<RequestId>(), Some(&RequestId(1)));
    }
    // Their own deadline is their own (not their ancestors').
    assert!(deadline_child.deadline().is_some());
    assert_eq!(child.deadline(), None);
}

#[test]
fn a_merge_with_a_without_cancel_context_only_follows_self() {
    let (request, request_handle) = Context::background().with_cancel();
    let (server, server_handle) = Context::background().with_value(UserId(8)).with_cancel();
    let (merged, _mh) = request.merge(&server.without_cancel());
    server_handle.cancel();
    assert!(!merged.is_done(), "the detached partner can never finish the merge");
    assert_eq!(merged.value::<UserId>(), Some(&UserId(8)));
    request_handle.cancel();
    assert!(merged.is_done());
}
