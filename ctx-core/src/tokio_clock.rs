//! With the `tokio-clock` feature, a deadline created inside a tokio runtime is also armed on
//! tokio's clock, so that tests using `tokio::time::pause` (or `start_paused`) see timeouts fire
//! when tokio's time reaches them.
//!
//! Invariants:
//! - The runtime-free timer (`timer.rs`) is always armed too; this is only a second, earlier
//!   trigger. Whichever fires first finishes the context; the other finds it done.
//! - The sleep task holds its node weakly and is aborted when the deadline is released (cancel,
//!   expiry or drop), so a cancelled context leaves no task behind.
//! - Its lock is a leaf: nothing else is locked while it is held.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::task::AbortHandle;

use crate::tree::{KindRef, Node};

/// The abort handle of a deadline's tokio sleep, once armed.
#[derive(Default)]
pub(crate) struct Sleep(Mutex<Option<AbortHandle>>);

impl Sleep {
    /// Aborts the sleep task, if one was armed. Idempotent.
    pub(crate) fn abort(&self) {
        let armed = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
        if let Some(task) = armed {
            task.abort();
        }
    }
}

/// Arms `node`'s deadline `at` on the current tokio runtime's clock, if there is one.
///
/// The runtime must have its time driver enabled; without it the sleep task panics (reported by
/// the panic hook) and the deadline is still fired by the timer thread.
pub(crate) fn spawn(node: &Arc<Node>, at: Instant) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let KindRef::Deadline(deadline) = node.kind() else { return };
    let wake_at = tokio::time::Instant::now() + at.saturating_duration_since(Instant::now());
    let weak = Arc::downgrade(node);
    let task = runtime.spawn(async move {
        tokio::time::sleep_until(wake_at).await;
        if let Some(node) = weak.upgrade() {
            node.fire_deadline();
        }
    });
    *deadline.tokio_sleep.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) =
        Some(task.abort_handle());
}
