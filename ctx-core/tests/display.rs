//! What users read: Go's `Display` chain of a context, `Error`'s messages and conversions, and
//! `Cause`'s forwarding and downcasting.

mod common;

use std::collections::HashSet;
use std::error::Error as _;
use std::fmt;
use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{DEFAULT_THREAD_STACK, Why, on_thread_with_stack};
use ctx_core::{Cause, Context, Error};

struct RequestId;

#[test]
fn roots_display_like_go() {
    assert_eq!(Context::background().to_string(), "context.Background");
    assert_eq!(Context::todo().to_string(), "context.TODO");
}

#[test]
fn chains_display_root_first() {
    let (c, _h) = Context::background().with_cancel();
    assert_eq!(c.to_string(), "context.Background.WithCancel");
    let v = c.with_value(RequestId);
    assert_eq!(v.to_string(), "context.Background.WithCancel.WithValue(display::RequestId)");
    assert_eq!(
        v.without_cancel().to_string(),
        "context.Background.WithCancel.WithValue(display::RequestId).WithoutCancel"
    );
    let (t, _th) = Context::todo().with_value(5u8).with_cancel();
    assert_eq!(t.to_string(), "context.TODO.WithValue(u8).WithCancel");
}

#[test]
fn merges_show_the_other_chain() {
    let (a, _ha) = Context::background().with_cancel();
    let b = Context::todo().with_value(1u16);
    let (m, _hm) = a.merge(&b);
    assert_eq!(m.to_string(), "context.Background.WithCancel.Merge(context.TODO.WithValue(u16))");
}

#[test]
fn deadlines_show_the_instant_and_the_time_left() {
    let at = Instant::now() + Duration::from_secs(3600);
    let (d, _h) = Context::background().with_deadline(at);
    let shown = d.to_string();
    let prefix = format!("context.Background.WithDeadline({at:?} [");
    assert!(shown.starts_with(&prefix), "{shown}");
    assert!(shown.ends_with("])"), "{shown}");
    let remaining = &shown[prefix.len()..shown.len() - 2];
    assert!(
        remaining.ends_with('s') && remaining != "0ns",
        "remaining time shown as {remaining:?}"
    );
    // A deadline later than the parent's is a plain cancel layer, as in Go.
    let (later, _lh) = d.with_timeout(Duration::from_secs(7200));
    assert!(later.to_string().ends_with("]).WithCancel"), "{later}");
    // Expired: no time left.
    let (expired, _eh) = Context::background().with_deadline(Instant::now());
    assert!(expired.to_string().ends_with(" [0ns])"), "{expired}");
}

#[test]
fn debug_shows_the_chain_and_the_state() {
    let (c, h) = Context::background().with_cancel();
    let live = format!("{c:?}");
    assert!(live.contains("context.Background.WithCancel") && live.contains("None"), "{live}");
    h.cancel();
    let done = format!("{c:?}");
    assert!(done.contains("Canceled"), "{done}");
    assert!(format!("{h:?}").contains("true"), "{h:?}");
    let guard = h.clone().drop_guard();
    assert!(!format!("{guard:?}").is_empty());
    let registration = c.after_func(|| {});
    assert!(!format!("{registration:?}").is_empty());
}

#[test]
fn display_of_a_million_deep_chain_does_not_recurse() {
    on_thread_with_stack(DEFAULT_THREAD_STACK, || {
        let mut ctx = Context::background();
        for _ in 0..1_000_000 {
            ctx = ctx.with_value(());
        }
        let shown = ctx.to_string();
        assert!(shown.starts_with("context.Background.WithValue(()).WithValue(())"));
        assert_eq!(shown.matches(".WithValue(())").count(), 1_000_000);
    });
}

#[test]
fn error_messages_are_gos() {
    assert_eq!(Error::Canceled.to_string(), "context canceled");
    assert_eq!(Error::DeadlineExceeded.to_string(), "context deadline exceeded");
    assert!(!Error::Canceled.is_timeout());
    assert!(Error::DeadlineExceeded.is_timeout());
    assert!(Error::Canceled.source().is_none());
    let set: HashSet<Error> = [Error::Canceled, Error::Canceled, Error::DeadlineExceeded].into();
    assert_eq!(set.len(), 2);
    let copy = Error::Canceled;
    assert_eq!(copy, Error::Canceled);
}

#[test]
fn errors_convert_to_io_errors_of_the_right_kind() {
    let canceled: io::Error = Error::Canceled.into();
    assert_eq!(canceled.kind(), io::ErrorKind::Interrupted);
    assert_eq!(canceled.to_string(), "context canceled");
    assert_eq!(canceled.get_ref().and_then(|e| e.downcast_ref::<Error>()), Some(&Error::Canceled));
    let timed_out: io::Error = Error::DeadlineExceeded.into();
    assert_eq!(timed_out.kind(), io::ErrorKind::TimedOut);
    assert_eq!(timed_out.to_string(), "context deadline exceeded");
    // Works with `?` in an io function.
    fn read(ctx: &Context) -> io::Result<()> {
        ctx.check()?;
        Ok(())
    }
    let (ctx, h) = Context::background().with_cancel();
    assert!(read(&ctx).is_ok());
    h.cancel();
    assert_eq!(read(&ctx).unwrap_err().kind(), io::ErrorKind::Interrupted);
}

#[derive(Debug)]
struct Outer(io::Error);

impl fmt::Display for Outer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("outer failure")
    }
}

impl std::error::Error for Outer {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

#[test]
fn cause_forwards_display_debug_and_source_and_downcasts() {
    let (ctx, handle) = Context::background().with_cancel();
    handle.cancel_with_cause(Outer(io::Error::other("disk on fire")));
    let cause = ctx.cause().unwrap();
    assert_eq!(cause.to_string(), "outer failure");
    assert_eq!(format!("{cause:?}"), format!("{:?}", Outer(io::Error::other("disk on fire"))));
    assert!(cause.is::<Outer>());
    assert!(!cause.is::<Why>());
    assert_eq!(cause.downcast_ref::<Outer>().unwrap().0.to_string(), "disk on fire");
    assert_eq!(cause.source().unwrap().to_string(), "disk on fire", "source() forwards");
    let borrowed: &(dyn std::error::Error + Send + Sync + 'static) = cause.as_error();
    assert_eq!(borrowed.to_string(), "outer failure");
    let as_ref: &(dyn std::error::Error + Send + Sync + 'static) = cause.as_ref();
    assert!(as_ref.is::<Outer>());
    // Clones share the error.
    let clone = cause.clone();
    assert!(std::ptr::eq(
        clone.downcast_ref::<Outer>().unwrap(),
        cause.downcast_ref::<Outer>().unwrap()
    ));
    // A cause goes into Box<dyn Error> with `?`.
    fn fails(cause: Cause) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Err(cause)?
    }
    assert_eq!(fails(cause).unwrap_err().to_string(), "outer failure");
}

#[test]
fn causes_of_plain_errors() {
    let canceled = Cause::from(Error::Canceled);
    assert_eq!(canceled.to_string(), "context canceled");
    assert_eq!(format!("{canceled:?}"), "Canceled");
    assert_eq!(canceled.downcast_ref::<Error>(), Some(&Error::Canceled));
    assert!(canceled.is::<Error>());
    assert_eq!(
        Cause::new(Error::DeadlineExceeded).downcast_ref::<Error>(),
        Some(&Error::DeadlineExceeded)
    );
    let wrapped = Cause::new(Cause::new(Why(3)));
    assert_eq!(wrapped.downcast_ref::<Why>(), Some(&Why(3)), "a Cause is not wrapped twice");
    let shared: Arc<dyn std::error::Error + Send + Sync> = Arc::new(Why(4));
    let from_arc = Cause::from_arc(shared.clone());
    assert_eq!(from_arc.downcast_ref::<Why>(), Some(&Why(4)));
    assert_eq!(from_arc.to_string(), "why #4");
}

#[test]
fn deadline_causes_are_deadline_exceeded_or_the_given_one() {
    let (plain, _h) = Context::background().with_deadline(Instant::now());
    let cause = plain.cause().unwrap();
    assert_eq!(cause.to_string(), "context deadline exceeded");
    assert_eq!(cause.downcast_ref::<Error>(), Some(&Error::DeadlineExceeded));
    let (custom, _h) = Context::background().with_timeout_cause(Duration::ZERO, Why(8));
    assert_eq!(custom.err(), Some(Error::DeadlineExceeded));
    assert_eq!(custom.cause().unwrap().downcast_ref::<Why>(), Some(&Why(8)));
}

/// `Display` walks a context's own chain with a loop, but prints a merge's other parent by
/// recursing into its `Display`: contexts nested through `other` (`b.merge(&a)` in a loop, which
/// drop, cancel, `value` and `deadline` all handle iteratively) overflow the stack. Run alone:
/// the overflow aborts the whole test binary.
#[test]
fn display_of_deeply_nested_merges_does_not_overflow() {
    on_thread_with_stack(DEFAULT_THREAD_STACK, || {
        let mut ctx = Context::background();
        for _ in 0..100_000 {
            ctx = Context::background().merge(&ctx).0;
        }
        let shown = ctx.to_string();
        assert_eq!(shown.matches(".Merge(").count(), 100_000);
    });
}
