//! The process-wide state behind [`notify`](super::notify): signal-hook's actions, the thread
//! that delivers signals to contexts, and the live registrations.
//!
//! Shape of one registration: `parent → A (with_cancel) → V (with_value(Registration)) → B
//! (with_cancel)`. The caller gets `B` and its handle. The registry holds `A`'s handle, so a
//! signal can cancel `B` (through `A`) without keeping `B` alive; `V` owns the [`Registration`]
//! value, which is dropped exactly when `B` and everything derived from it are gone; `B` carries
//! an `after_func` that fires when it is done for any other reason.
//!
//! Invariants (each `fn` says which it keeps):
//! 1. **Hooks are installed once per signal and never removed**, in this order: (a)
//!    `register_conditional_default(signal, kill_next)`, (b) `register(signal, kill_next)`,
//!    (c) the delivery thread's iterator. Removing them would not help: signal-hook's registry
//!    keeps its handler installed, so the signal would be ignored, not defaulted. A signal the
//!    process inherited as ignored gets no (a): ignoring it is its "default".
//! 2. **`kill_next[s]` is `false` while a registration lists `s`**, and `true` otherwise. The
//!    handler itself sets it (action (b), after (a) has read it), so the delivery right after one
//!    that found listeners runs the default action even before the delivery thread has cancelled
//!    them; a registration made after that sets it back to `false`.
//! 3. **A registration is removed exactly once**, from `State::live`, under the lock, by the
//!    first of: the delivery thread (a signal it lists), its `after_func` (done otherwise), the
//!    drop of its `Registration` (every clone and handle gone). Listener counts and `kill_next`
//!    are updated in the same critical section.
//! 4. **No ctx call under the lock.** Cancelling runs `after_func` callbacks, which take the lock
//!    (invariant 3); so entries are taken out under the lock and cancelled or dropped after it.

use std::collections::BTreeMap;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use super::{Received, Signal, SignalSet};
use crate::{AfterFunc, CancelHandle, Context};

/// The registry's state; one per process.
static STATE: Mutex<State> = Mutex::new(State {
    delivery: None,
    kill_next: [const { None }; 4],
    hooks: 0,
    live: BTreeMap::new(),
    listeners: [0; 4],
});

/// Registration ids; never reused.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

struct State {
    /// The delivery thread's iterator handle, once started.
    delivery: Option<Handle>,
    /// Per signal (by `Signal::index`): `Some` once its hooks are installed (invariant 1), with
    /// the flag that arms the default action (invariant 2).
    kill_next: [Option<Arc<AtomicBool>>; 4],
    /// How many signal-hook actions are installed (for `installed_hooks`).
    hooks: usize,
    live: BTreeMap<u64, Entry>,
    /// Per signal: how many live registrations list it.
    listeners: [usize; 4],
}

/// A live registration, as the registry holds it.
struct Entry {
    signals: SignalSet,
    /// Cancels `A`, hence the caller's context.
    cancel: CancelHandle,
    /// The `after_func` on the caller's context; `None` until `notify` has registered it.
    when_done: Option<AfterFunc>,
}

/// The value layer's content: removes the registration when the caller's context and everything
/// derived from it are gone.
struct Registration {
    id: u64,
}

impl Drop for Registration {
    /// Invariant 3.
    fn drop(&mut self) {
        remove(self.id);
    }
}

fn lock() -> MutexGuard<'static, State> {
    // Every critical section leaves the state consistent before anything that could panic.
    STATE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// See [`notify`](super::notify). Keeps invariants 1 to 4.
pub(super) fn notify(parent: &Context, signals: SignalSet) -> io::Result<(Context, CancelHandle)> {
    if parent.is_done() {
        return Ok(parent.with_cancel());
    }
    install(signals)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    let (outer, cancel) = parent.with_cancel();
    let (ctx, handle) = outer.with_value(Registration { id }).with_cancel();
    {
        let mut state = lock();
        for signal in signals.iter() {
            state.listeners[signal.index()] += 1;
            state.arm(signal);
        }
        state.live.insert(id, Entry { signals, cancel, when_done: None });
    }
    // If the context is done already (its parent was cancelled meanwhile, or a signal came),
    // `after_func` runs this soon, on ctx's timer thread, and it removes the entry then.
    let when_done = ctx.after_func(move || remove(id));
    let unused = match lock().live.get_mut(&id) {
        Some(entry) => entry.when_done.replace(when_done),
        None => Some(when_done),
    };
    drop(unused);
    Ok((ctx, handle))
}

/// Installs the hooks of every signal in `signals` that has none yet, and starts the delivery
/// thread on first use. Keeps invariant 1; on error, what was installed stays installed and
/// listened to by nobody (so its signals still get their default action).
fn install(signals: SignalSet) -> io::Result<()> {
    let mut state = lock();
    for signal in signals.iter() {
        if state.kill_next[signal.index()].is_some() {
            continue;
        }
        let raw = raw(signal);
        let named = |err: io::Error| {
            io::Error::new(err.kind(), format!("ctx::signal: cannot catch {signal}: {err}"))
        };
        if state.delivery.is_none() {
            state.delivery = Some(start_delivery().map_err(named)?);
        }
        // `true` until a registration lists the signal: no listener, default action.
        let kill_next = Arc::new(AtomicBool::new(true));
        // Read before the first hook replaces the inherited disposition.
        if !inherited_ignored(raw) {
            signal_hook::flag::register_conditional_default(raw, kill_next.clone())
                .map_err(named)?;
            state.hooks += 1;
        }
        signal_hook::flag::register(raw, kill_next.clone()).map_err(named)?;
        state.hooks += 1;
        let delivery = state.delivery.as_ref().expect("started above");
        delivery.add_signal(raw).map_err(named)?;
        state.hooks += 1;
        state.kill_next[signal.index()] = Some(kill_next);
    }
    Ok(())
}

/// Whether the process was started with `raw` ignored, as `nohup` starts a program with SIGHUP
/// ignored and a non-interactive shell starts a background job with SIGINT and SIGQUIT ignored.
/// Such a signal keeps no default action to give back: with no listener, signal-hook's handler
/// forwards it to the inherited `SIG_IGN`, so it stays ignored, as Go's `signal.Stop` leaves it.
///
/// Read from the kernel's `SigIgn` mask in `/proc/self/status` (std has no safe `sigaction`,
/// and the workspace forbids `unsafe`); only meaningful before ctx's hooks for `raw` exist.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn inherited_ignored(raw: i32) -> bool {
    let Ok(status) = std::fs::read_to_string("/proc/self/status") else { return false };
    status
        .lines()
        .find_map(|line| line.strip_prefix("SigIgn:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| (1..=64).contains(&raw) && mask & (1 << (raw - 1)) != 0)
}

/// Elsewhere the inherited disposition cannot be read without `sigaction` (see the module docs
/// of [`signal`](super)): an inherited `SIG_IGN` is not detected.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn inherited_ignored(_raw: i32) -> bool {
    false
}

/// Starts the thread that turns deliveries into cancellations. It blocks reading signal-hook's
/// self-pipe and lives as long as the process.
fn start_delivery() -> io::Result<Handle> {
    let mut signals = Signals::new(std::iter::empty::<i32>())?;
    let handle = signals.handle();
    std::thread::Builder::new().name("ctx-signal".into()).spawn(move || {
        for raw_signal in signals.forever() {
            if let Some(signal) = Signal::ALL.into_iter().find(|s| raw(*s) == raw_signal) {
                deliver(signal);
            }
        }
    })?;
    Ok(handle)
}

/// Cancels every registration that lists `signal`, with the cause [`Received`]. Keeps
/// invariants 3 and 4.
fn deliver(signal: Signal) {
    let taken: Vec<Entry> = {
        let mut state = lock();
        let ids: Vec<u64> = state
            .live
            .iter()
            .filter(|(_, entry)| entry.signals.contains(signal))
            .map(|(id, _)| *id)
            .collect();
        ids.into_iter().filter_map(|id| state.take(id)).collect()
    };
    for entry in taken {
        // A panicking `after_func` of the user's is resumed in the canceller; it must not end
        // this thread (the panic hook has reported it), or no later signal would be delivered.
        let _ = panic::catch_unwind(AssertUnwindSafe(|| {
            entry.cancel.cancel_with_cause(Received { signal });
        }));
        entry.retire();
    }
}

/// Removes registration `id` if it is still live. Keeps invariants 3 and 4.
fn remove(id: u64) {
    let entry = lock().take(id);
    if let Some(entry) = entry {
        entry.retire();
    }
}

impl State {
    /// Takes registration `id` out, updating listener counts and `kill_next` (invariants 2, 3).
    fn take(&mut self, id: u64) -> Option<Entry> {
        let entry = self.live.remove(&id)?;
        for signal in entry.signals.iter() {
            self.listeners[signal.index()] -= 1;
            if self.listeners[signal.index()] == 0 {
                self.disarm(signal);
            }
        }
        Some(entry)
    }

    /// A registration lists `signal`: its next delivery cancels, not kills (invariant 2).
    fn arm(&self, signal: Signal) {
        self.set_kill_next(signal, false);
    }

    /// Nobody lists `signal` any more: its next delivery gets the default action (invariant 2).
    fn disarm(&self, signal: Signal) {
        self.set_kill_next(signal, true);
    }

    fn set_kill_next(&self, signal: Signal, kill: bool) {
        if let Some(flag) = &self.kill_next[signal.index()] {
            // SeqCst, as signal-hook reads it in the handler; the flag publishes nothing else.
            flag.store(kill, Ordering::SeqCst);
        }
    }
}

impl Entry {
    /// Unhooks the entry's `after_func` (it may have moved to `A` if the caller's context was
    /// dropped), then drops the handle of `A`, which lets `A` go. Called outside the lock.
    fn retire(self) {
        if let Some(when_done) = self.when_done {
            when_done.stop();
        }
    }
}

/// The signal's number on this platform.
fn raw(signal: Signal) -> i32 {
    match signal {
        Signal::Interrupt => SIGINT,
        Signal::Terminate => SIGTERM,
        Signal::Hangup => SIGHUP,
        Signal::Quit => SIGQUIT,
    }
}

/// See [`registrations`](super::registrations).
pub(super) fn registrations() -> usize {
    lock().live.len()
}

/// See [`installed_hooks`](super::installed_hooks).
pub(super) fn installed_hooks() -> usize {
    lock().hooks
}
