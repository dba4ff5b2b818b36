//! The edges leave nothing behind on the contexts they hang from, measured in live heap bytes
//! with a counting allocator: `tests/signal.rs` counts the signal registry's entries and
//! `tests/token.rs` counts tokio tasks, but neither would see a callback left on the parent
//! (an `after_func` moves up to the parent when its context is dropped). Each measurement has a
//! control that sees what a live registration costs, so a leak cannot pass as "small".
#![cfg(any(all(unix, feature = "signal"), feature = "tokio-util"))]

#[path = "../ctx-core/tests/heap/mod.rs"]
mod heap;

/// Calls per measurement.
const CALLS: usize = 10_000;

/// Under a byte per call: allocator noise and the harness's own bookkeeping, not a leak (each
/// control below measures a live registration at tens of bytes or more).
const SLACK: isize = CALLS as isize;

#[cfg(all(unix, feature = "signal"))]
mod signal {
    use ctx::Context;
    use ctx::signal::{Signal, notify};

    use super::{CALLS, SLACK, heap};

    const SIGNALS: [Signal; 2] = [Signal::Interrupt, Signal::Terminate];

    /// `CALLS` notify contexts on `parent`, every one dropped (half of them after a grandchild
    /// that outlived the context itself).
    fn notify_and_drop(parent: &Context) {
        for round in 0..CALLS {
            let (ctx, handle) = notify(parent, &SIGNALS).unwrap();
            if round % 2 == 0 {
                let grandchild = ctx.with_value(round);
                drop((ctx, handle));
                drop(grandchild);
            }
        }
    }

    #[test]
    fn dropped_notify_contexts_leave_nothing_on_a_live_parent() {
        let _serial = heap::serial();
        let (parent, _cancel_parent) = Context::background().with_cancel();
        // Installs the hooks, starts the delivery thread, sizes what is reused.
        notify_and_drop(&parent);
        let baseline = heap::live_bytes();
        notify_and_drop(&parent);
        heap::assert_back_to(baseline, SLACK, "dropped notify contexts");
        assert_eq!(ctx::signal::registrations(), 0);
    }

    /// The control: the same measurement sees each live registration.
    #[test]
    fn live_notify_contexts_are_measured() {
        let _serial = heap::serial();
        let (parent, _cancel_parent) = Context::background().with_cancel();
        notify_and_drop(&parent);
        let baseline = heap::live_bytes();
        let kept: Vec<_> = (0..CALLS).map(|_| notify(&parent, &SIGNALS).unwrap()).collect();
        let held = heap::live_bytes() - baseline;
        assert!(held >= 10 * SLACK, "{held} bytes for {CALLS} live registrations");
        drop(kept);
        heap::assert_back_to(baseline, SLACK, "after the drop");
        eprintln!("{} bytes per live notify context", held / CALLS as isize);
    }
}

#[cfg(feature = "tokio-util")]
mod token {
    use std::time::{Duration, Instant};

    use ctx::Context;
    use tokio_util::sync::CancellationToken;

    use super::{CALLS, SLACK, heap};

    /// Waits (yielding to the runtime) until every watcher task has ended.
    async fn until_no_task_is_alive() {
        let metrics = tokio::runtime::Handle::current().metrics();
        let started = Instant::now();
        while metrics.num_alive_tasks() > 0 {
            assert!(started.elapsed() < Duration::from_secs(30), "watcher tasks still alive");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// `CALLS` token-driven children of `parent`, every one dropped (half of them after a
    /// grandchild that outlived the child itself), then every watcher gone.
    async fn bridge_and_drop(parent: &Context, token: &CancellationToken) {
        for round in 0..CALLS {
            let (child, handle) = parent.with_cancellation_token(token);
            if round % 2 == 0 {
                let grandchild = child.with_value(round);
                drop((child, handle));
                drop(grandchild);
            }
        }
        until_no_task_is_alive().await;
    }

    /// Runs `test` on a fresh two-worker runtime while holding [`heap::serial`] (taken outside
    /// the runtime, so no lock is held across an `.await` of the test itself).
    fn serially<F: std::future::Future>(test: F) -> F::Output {
        let _serial = heap::serial();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_time()
            .build()
            .expect("a runtime");
        runtime.block_on(test)
    }

    #[test]
    fn dropped_token_children_leave_nothing_on_a_live_parent() {
        serially(async {
            let (parent, _cancel_parent) = Context::background().with_cancel();
            let token = CancellationToken::new();
            bridge_and_drop(&parent, &token).await;
            let baseline = heap::live_bytes();
            bridge_and_drop(&parent, &token).await;
            heap::assert_back_to(baseline, SLACK, "dropped token-driven children");
        });
    }

    /// The control: the same measurement sees each live child (and its watcher task).
    #[test]
    fn live_token_children_are_measured() {
        serially(async {
            let (parent, _cancel_parent) = Context::background().with_cancel();
            let token = CancellationToken::new();
            bridge_and_drop(&parent, &token).await;
            let baseline = heap::live_bytes();
            let kept: Vec<_> = (0..CALLS).map(|_| parent.with_cancellation_token(&token)).collect();
            let held = heap::live_bytes() - baseline;
            assert!(held >= 10 * SLACK, "{held} bytes for {CALLS} live children");
            drop(kept);
            until_no_task_is_alive().await;
            heap::assert_back_to(baseline, SLACK, "after the drop");
            eprintln!("{} bytes per live token-driven child", held / CALLS as isize);
        });
    }
}
