//! `merge`: done as soon as either parent is (or its own handle cancels), with the cause of the
//! first to finish; values from `self` first, then `other`; the earlier deadline.

mod common;

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{CountingWaker, Why, poll_once, scaled, why_of};
use ctx_core::{Context, Error};

#[derive(Debug, PartialEq)]
struct Key(&'static str);

#[test]
fn either_parent_finishes_the_merge() {
    for cancel_self in [true, false] {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let (merged, _mh) = a.merge(&b);
        let (child, _ch) = merged.with_value(1u8).with_cancel();
        assert!(!merged.is_done());
        if cancel_self {
            ha.cancel_with_cause(Why(1));
        } else {
            hb.cancel_with_cause(Why(2));
        }
        let expected = if cancel_self { 1 } else { 2 };
        assert_eq!(merged.err(), Some(Error::Canceled));
        assert_eq!(why_of(&merged), Some(expected));
        assert_eq!(why_of(&child), Some(expected), "the merge's children follow it");
        // The other parent is untouched.
        assert!(if cancel_self { !b.is_done() } else { !a.is_done() });
    }
}

#[test]
fn the_cause_is_that_of_the_first_parent_to_finish() {
    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = Context::background().with_cancel();
    let (merged, _mh) = a.merge(&b);
    hb.cancel_with_cause(Why(2));
    ha.cancel_with_cause(Why(1));
    assert_eq!(why_of(&merged), Some(2));

    let (a, ha) = Context::background().with_cancel();
    let (b, hb) = Context::background().with_cancel();
    let (merged, _mh) = a.merge(&b);
    ha.cancel_with_cause(Why(1));
    hb.cancel_with_cause(Why(2));
    assert_eq!(why_of(&merged), Some(1));
}

#[test]
fn the_merges_own_handle_cancels_only_the_merge() {
    let (a, _ha) = Context::background().with_cancel();
    let (b, _hb) = Context::background().with_cancel();
    let (merged, handle) = a.merge(&b);
    handle.cancel_with_cause(Why(3));
    assert_eq!(why_of(&merged), Some(3));
    assert!(!a.is_done() && !b.is_done());
}

#[test]
fn merging_with_an_already_done_context_is_born_done() {
    let (live, _lh) = Context::background().with_cancel();
    let (dead, dh) = Context::background().with_cancel();
    dh.cancel_with_cause(Why(7));
    let (m1, h1) = live.merge(&dead);
    let (m2, _h2) = dead.merge(&live);
    for m in [&m1, &m2] {
        assert!(m.is_done());
        assert_eq!(m.err(), Some(Error::Canceled));
        assert_eq!(why_of(m), Some(7));
    }
    assert!(h1.is_done());
    assert!(!live.is_done(), "merging with a done context must not finish the live parent");

    // Both done: the result is done with one of their causes (self's, as self is linked first).
    let (dead2, dh2) = Context::background().with_cancel();
    dh2.cancel_with_cause(Why(8));
    let (both, _bh) = dead2.merge(&dead);
    assert!(matches!(why_of(&both), Some(7 | 8)));
}

#[test]
fn merging_with_an_expired_deadline_carries_deadline_exceeded() {
    let (live, _lh) = Context::background().with_cancel();
    let (expired, _eh) = Context::background().with_deadline(Instant::now());
    let (merged, _mh) = live.merge(&expired);
    assert_eq!(merged.err(), Some(Error::DeadlineExceeded));
    assert_eq!(merged.cause().unwrap().downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
}

#[test]
fn values_are_looked_up_in_self_first_then_other() {
    let a = Context::background().with_value(Key("a")).with_value(1u8);
    let b = Context::background().with_value(Key("b")).with_value(2u16);
    let (ab, _h) = a.merge(&b);
    assert_eq!(ab.value::<Key>(), Some(&Key("a")));
    assert_eq!(ab.value::<u8>(), Some(&1));
    assert_eq!(ab.value::<u16>(), Some(&2), "values only the other parent has are found");
    assert_eq!(ab.value::<u32>(), None);
    let (ba, _h) = b.merge(&a);
    assert_eq!(ba.value::<Key>(), Some(&Key("b")));
    // A value set on the merge itself hides both.
    assert_eq!(ab.with_value(Key("merge")).value::<Key>(), Some(&Key("merge")));
}

#[test]
fn nested_merges_search_self_entirely_before_each_other() {
    // m1 = (y ⊕ b2) ⊕ b1: the order is y's chain, then b2, then b1.
    let y = Context::background().with_value(1u8);
    let b2 = Context::background().with_value(Key("b2")).with_value(2u16);
    let b1 = Context::background().with_value(Key("b1")).with_value(2u16).with_value(3u32);
    let (x, _hx) = y.merge(&b2);
    let (m1, _h1) = x.merge(&b1);
    assert_eq!(m1.value::<u8>(), Some(&1));
    assert_eq!(
        m1.value::<Key>(),
        Some(&Key("b2")),
        "the outer merge's other comes before the inner's"
    );
    assert_eq!(m1.value::<u32>(), Some(&3));
    // A merge whose `other` is itself a merge: its whole chain is searched in the same order.
    let (z, _hz) = Context::background().merge(&m1);
    assert_eq!(z.value::<Key>(), Some(&Key("b2")));
    assert_eq!(z.value::<u32>(), Some(&3));
}

#[test]
fn the_merged_deadline_is_the_earlier_of_the_two() {
    let now = Instant::now();
    let soon = now + Duration::from_secs(3600);
    let later = now + Duration::from_secs(7200);
    let (a, _ha) = Context::background().with_deadline(soon);
    let (b, _hb) = Context::background().with_deadline(later);
    assert_eq!(a.merge(&b).0.deadline(), Some(soon));
    assert_eq!(b.merge(&a).0.deadline(), Some(soon));
    assert_eq!(b.merge(&Context::background()).0.deadline(), Some(later));
    assert_eq!(Context::background().merge(&b).0.deadline(), Some(later));
    assert_eq!(Context::background().merge(&Context::background()).0.deadline(), None);
    // A child asking for a later deadline than the merge's keeps the merge's.
    let (m, _hm) = b.merge(&a);
    let (child, _hc) = m.with_deadline(later);
    assert_eq!(child.deadline(), Some(soon));
    // An earlier one is its own.
    let earliest = now + Duration::from_secs(60);
    assert_eq!(m.with_deadline(earliest).0.deadline(), Some(earliest));
}

#[test]
fn a_merge_of_background_and_background_is_cancelled_only_by_its_handle() {
    let (merged, handle) = Context::background().merge(&Context::todo());
    assert!(!merged.is_done());
    let (counter, waker) = CountingWaker::new();
    let mut done = merged.done();
    assert!(poll_once(&mut done, &waker).is_pending());
    handle.cancel();
    assert_eq!(counter.wakes(), 1);
    assert!(merged.is_done());
}

#[test]
fn merging_a_context_with_itself_works_and_finishes_once() {
    let (a, ha) = Context::background().with_cancel();
    let (m, _hm) = a.merge(&a);
    let (counter, waker) = CountingWaker::new();
    let mut done = m.done();
    assert!(poll_once(&mut done, &waker).is_pending());
    ha.cancel_with_cause(Why(4));
    assert_eq!(why_of(&m), Some(4));
    assert_eq!(counter.wakes(), 1, "finished once, woken once");
}

#[test]
fn both_parents_cancelled_at_once_give_one_consistent_cause() {
    for _ in 0..scaled(300, 100) {
        let (a, ha) = Context::background().with_cancel();
        let (b, hb) = Context::background().with_cancel();
        let (merged, _mh) = a.merge(&b);
        let (child, _ch) = merged.with_cancel();
        let (grandchild, _gh) = child.with_value(0u8).with_cancel();
        let barrier = Arc::new(Barrier::new(2));
        let other_barrier = barrier.clone();
        let t = thread::spawn(move || {
            other_barrier.wait();
            hb.cancel_with_cause(Why(2));
        });
        barrier.wait();
        ha.cancel_with_cause(Why(1));
        t.join().unwrap();
        let cause = why_of(&merged).unwrap();
        assert!(cause == 1 || cause == 2);
        assert_eq!(why_of(&child), Some(cause));
        assert_eq!(why_of(&grandchild), Some(cause));
    }
}

#[test]
fn the_other_parent_cancelled_while_merges_are_being_created() {
    for _ in 0..scaled(50, 15) {
        let (server, server_handle) = Context::background().with_cancel();
        let (request, _rh) = Context::background().with_cancel();
        let creator_server = server.clone();
        let creator = thread::spawn(move || {
            let mut merges = Vec::new();
            let mut born_done = 0;
            while born_done < 20 {
                let (m, h) = request.merge(&creator_server);
                born_done += usize::from(m.is_done());
                merges.push((m, h));
            }
            merges
        });
        thread::yield_now();
        server_handle.cancel_with_cause(Why(5));
        for (m, _h) in creator.join().unwrap() {
            assert!(m.is_done(), "a merge created around the other's cancel stayed live");
            assert_eq!(why_of(&m), Some(5));
        }
    }
}
