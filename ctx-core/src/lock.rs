//! The lock of a tree node: a lock whose unlock is one plain store.
//!
//! # Why not `std::sync::Mutex`
//! Every child takes its parent's lock twice in its life (to link at derive, to unlink at drop
//! or cancel), and on the machine we measure an uncontended atomic read-modify-write costs about
//! 8 ns: with std's mutex a child's create + drop executed 12 of them in about 95 ns, nearly all
//! of its time (`scripts/instructions.sh` counts them). std's futex mutex
//! spends two per round trip: a compare-exchange to lock and a swap to unlock, the swap because
//! the unlocker must learn whether a thread is parked and needs a wake-up; it also keeps poison
//! flags, which this crate ignores. A lock that never parks a thread has nobody to wake, so its
//! unlock is a `Release` store: an ordinary move on x86 and a store-release elsewhere, no
//! read-modify-write. That saves one atomic operation per lock round trip: a child's create +
//! drop went from 12 to 10, and from about 95 to 80 ns (BENCHMARKS.md).
//!
//! # Why never parking is enough here
//! A node's critical sections are short and bounded: no foreign code runs under a node lock
//! (tree invariant 4) but cloning, comparing and replacing a `Waker`, and the longest work done
//! under one is a dependents page of 1,024 slots allocated and linked. A thread that finds the
//! lock taken spins a little (127 `spin_loop` hints in all, in doubling rounds), then gives
//! its time slice away with `yield_now` so that a holder preempted on a busy machine runs again,
//! and after 64 yields sleeps 20 µs at a time, so that even a waiter with a
//! real-time priority above the holder's lets it run. It is not fair (nor is std's mutex).
//!
//! # Invariants
//! 1. **One holder.** `locked` is `true` exactly while one [`LockGuard`] exists: it is set by a
//!    successful compare-exchange from `false` in [`Lock::lock`] and cleared only by that
//!    guard's `Drop`.
//! 2. **Each holder sees the previous holder's writes.** The compare-exchange that takes the lock
//!    is `Acquire`, the store that releases it `Release`.
//! 3. **`value` is reached only through a guard or `&mut self`.** The guard's `Deref` /
//!    `DerefMut` and the lock's and guard's `Sync` impls are the only `unsafe` code of the
//!    crate (and, under loom, `get_mut`'s reach into loom's cell); `get_mut` needs no lock
//!    (`&mut self` excludes every guard).
//! 4. **Thread bounds are `std::sync::Mutex`'s.** The lock is `Sync` for a `Send` value; a guard
//!    is `Sync` only for a `Sync` value (it lends `&T` to whoever shares it) and `Send` for a
//!    `Send` one (unlocking is a store, which any thread may make).
//!
//! # Model checking
//! Under `--cfg loom` the flag is loom's atomic and the value lives in loom's `UnsafeCell`, which
//! records each guard's access: the `spin_lock_*` models of `tests/loom.rs` check invariants 1
//! and 2 on every interleaving (two racing threads and a contended waiter; a `Relaxed` lock or
//! unlock, or a lock taken without the compare-exchange, fails them: RELIABILITY.md). The tree's
//! own models lock with loom's blocking `Mutex` in its place ([`Lock`] under loom): a waiter
//! that spins, even yielding to the model at every turn, multiplies the interleavings loom must
//! explore beyond what those models can finish, and what they check (the tree's invariants)
//! needs from its lock only what the `spin_lock_*` models establish.

use std::ops::{Deref, DerefMut};

use crate::sync::{AtomicBool, Ordering};

#[cfg(not(loom))]
use std::cell::UnsafeCell;

#[cfg(loom)]
use loom::cell::UnsafeCell;

/// The lock of a tree node: [`SpinLock`]. Under loom, loom's blocking `Mutex` stands in (see
/// the module doc).
#[cfg(not(loom))]
pub(crate) type Lock<T> = SpinLock<T>;
/// Access to a [`Lock`]ed value.
#[cfg(not(loom))]
pub(crate) type LockGuard<'a, T> = SpinGuard<'a, T>;

#[cfg(loom)]
pub(crate) use loom_stand_in::{Lock, LockGuard};

/// A value behind a lock that spins, yields, then sleeps to wait, and unlocks with one store.
pub struct SpinLock<T> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: a `Lock` hands its value to one thread at a time (invariants 1 and 2), as a `Mutex`
// does, so sharing the lock between threads only ever moves the value across them: `T: Send`
// is all it needs.
unsafe impl<T: Send> Sync for SpinLock<T> {}

/// Access to a locked value; unlocks when dropped.
pub struct SpinGuard<'a, T> {
    lock: &'a SpinLock<T>,
    /// Loom's record of this guard's access to the value, ended before the unlock.
    #[cfg(loom)]
    access: Option<loom::cell::MutPtr<T>>,
}

// SAFETY: a shared guard lends only `&T` (`Deref`), so sharing the guard between threads shares
// the value: sound exactly when `T: Sync`, as for `std::sync::MutexGuard`. Without this impl the
// guard would be `Sync` whenever `T: Send` (through its `&SpinLock<T>`), and two threads could
// then write a `Cell` through one `&SpinGuard`. Moving a guard to another thread is sound for
// `T: Send` (no owner thread to unlock on), which the auto impl of `Send` already requires.
unsafe impl<T: Sync> Sync for SpinGuard<'_, T> {}

impl<T> SpinLock<T> {
    /// A lock holding `value`, unlocked.
    pub fn new(value: T) -> SpinLock<T> {
        SpinLock { locked: AtomicBool::new(false), value: UnsafeCell::new(value) }
    }

    /// Takes the lock, waiting as the module doc says if another thread holds it.
    /// Invariants 1 and 2: `Acquire` on success.
    #[inline]
    pub fn lock(&self) -> SpinGuard<'_, T> {
        if self.locked.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed).is_err()
        {
            self.lock_contended();
        }
        SpinGuard {
            lock: self,
            #[cfg(loom)]
            access: Some(self.value.get_mut()),
        }
    }

    /// Waits until the lock is free, reading it without writing (so that waiters do not take
    /// its cache line from each other), then tries to take it; again if another thread won.
    #[cold]
    fn lock_contended(&self) {
        let mut backoff = Backoff::default();
        loop {
            while self.locked.load(Ordering::Relaxed) {
                backoff.wait();
            }
            if self
                .locked
                .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                return;
            }
        }
    }

    /// The value, with no locking: `&mut self` proves that no guard exists (invariant 3).
    pub fn get_mut(&mut self) -> &mut T {
        #[cfg(not(loom))]
        {
            self.value.get_mut()
        }
        #[cfg(loom)]
        {
            // SAFETY: `&mut self` excludes every guard and every other access for as long as the
            // returned reference lives (invariant 3).
            self.value.with_mut(|value| unsafe { &mut *value })
        }
    }
}

impl<T> Deref for SpinGuard<'_, T> {
    type Target = T;

    #[inline]
    fn deref(&self) -> &T {
        #[cfg(not(loom))]
        {
            // SAFETY: this guard holds the lock (invariant 1), so no other guard exists and no
            // `&mut self` borrow of the lock can: the value is not mutated while this shared
            // borrow (tied to the guard's) lives.
            unsafe { &*self.lock.value.get() }
        }
        #[cfg(loom)]
        {
            let access = self.access.as_ref().expect("a guard's access lasts until its drop");
            // SAFETY: as above; loom checks the claim.
            unsafe { &*access.deref() }
        }
    }
}

impl<T> DerefMut for SpinGuard<'_, T> {
    #[inline]
    fn deref_mut(&mut self) -> &mut T {
        #[cfg(not(loom))]
        {
            // SAFETY: this guard holds the lock (invariant 1) and is borrowed mutably, so this is
            // the only reference to the value while the borrow lives.
            unsafe { &mut *self.lock.value.get() }
        }
        #[cfg(loom)]
        {
            let access = self.access.as_ref().expect("a guard's access lasts until its drop");
            // SAFETY: as above; loom checks the claim.
            unsafe { access.deref() }
        }
    }
}

impl<T> Drop for SpinGuard<'_, T> {
    /// Invariants 1 and 2: `Release`, so that the next holder sees what this one wrote.
    #[inline]
    fn drop(&mut self) {
        #[cfg(loom)]
        drop(self.access.take());
        self.lock.locked.store(false, Ordering::Release);
    }
}

/// The tree's lock under loom: loom's blocking `Mutex` (see "Model checking").
#[cfg(loom)]
mod loom_stand_in {
    pub(crate) type LockGuard<'a, T> = loom::sync::MutexGuard<'a, T>;

    pub(crate) struct Lock<T>(loom::sync::Mutex<T>);

    impl<T> Lock<T> {
        pub(crate) fn new(value: T) -> Lock<T> {
            Lock(loom::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> LockGuard<'_, T> {
            self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
        }

        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap_or_else(std::sync::PoisonError::into_inner)
        }
    }
}

/// How a waiter waits: spins that double up to `SPIN_LIMIT` hints, then `YIELD_LIMIT` yields,
/// then sleeps of `SLEEP`.
#[derive(Default)]
struct Backoff {
    step: u32,
}

/// Spin rounds of 1, 2, ... 2^(`SPIN_LIMIT` - 1) hints: 127 in all.
#[cfg(not(loom))]
const SPIN_LIMIT: u32 = 7;
/// Yields after the spins, before sleeping.
#[cfg(not(loom))]
const YIELD_LIMIT: u32 = SPIN_LIMIT + 64;
/// Long enough for the scheduler to run another thread, short next to any timeout.
#[cfg(not(loom))]
const SLEEP: std::time::Duration = std::time::Duration::from_micros(20);

impl Backoff {
    #[cfg(not(loom))]
    fn wait(&mut self) {
        if self.step < SPIN_LIMIT {
            for _ in 0..1u32 << self.step {
                std::hint::spin_loop();
            }
        } else if self.step < YIELD_LIMIT {
            std::thread::yield_now();
        } else {
            std::thread::sleep(SLEEP);
        }
        self.step = self.step.saturating_add(1);
    }

    /// Loom explores a spinning thread only if it yields to the model each time.
    #[cfg(loom)]
    fn wait(&mut self) {
        self.step = self.step.saturating_add(1);
        loom::thread::yield_now();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use std::sync::Arc;

    use super::SpinLock as Lock;

    /// Invariant 1 under real contention: increments made under the lock by several threads
    /// are never lost, and each holder sees the previous holder's writes (invariant 2), also
    /// through the waiting path (yields and sleeps: far more threads than cores, a long section).
    #[test]
    fn concurrent_holders_never_overlap() {
        const THREADS: usize = 8;
        const ROUNDS: usize = 2_000;
        let lock = Arc::new(Lock::new((0usize, 0usize)));
        let threads: Vec<_> = (0..THREADS)
            .map(|_| {
                let lock = lock.clone();
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        let mut guard = lock.lock();
                        let (a, b) = *guard;
                        assert_eq!(a, b, "a holder saw another holder's half-done write");
                        guard.0 = a + 1;
                        if round % 64 == 0 {
                            std::thread::yield_now();
                        }
                        guard.1 = b + 1;
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("no holder panicked");
        }
        assert_eq!(*lock.lock(), (THREADS * ROUNDS, THREADS * ROUNDS));
    }

    /// `Deref` lends `&T` through a shared guard, so a guard shared between threads shares the
    /// value: it may be `Sync` only if `T` is (as `std::sync::MutexGuard`), or a `Cell` behind
    /// one `&SpinGuard` could be written from two threads at once. The lock itself is `Sync` for
    /// any `Send` value, and a guard may move to another thread with a `Send` value.
    #[test]
    fn a_guard_is_shared_between_threads_only_if_its_value_may_be() {
        use std::cell::Cell;
        use std::marker::PhantomData;
        use std::rc::Rc;

        use super::SpinGuard;

        // An inherent constant applies only where its bounds hold; the trait's fills in elsewhere.
        struct Probe<T: ?Sized>(PhantomData<T>);
        trait Fallback {
            const SYNC: bool = false;
            const SEND: bool = false;
        }
        impl<T: ?Sized> Fallback for Probe<T> {}
        impl<T: ?Sized + Sync> Probe<T> {
            const SYNC: bool = true;
        }
        struct SendProbe<T: ?Sized>(PhantomData<T>);
        impl<T: ?Sized> Fallback for SendProbe<T> {}
        impl<T: ?Sized + Send> SendProbe<T> {
            const SEND: bool = true;
        }

        // What each type is, against what it must be: (type, Sync / Send, found, wanted).
        let bounds = [
            ("SpinGuard<u8>", "Sync", Probe::<SpinGuard<'static, u8>>::SYNC, true),
            // Two threads could write the `Cell` through one `&SpinGuard`.
            ("SpinGuard<Cell<u8>>", "Sync", Probe::<SpinGuard<'static, Cell<u8>>>::SYNC, false),
            ("SpinLock<Cell<u8>>", "Sync", Probe::<Lock<Cell<u8>>>::SYNC, true),
            ("SpinLock<Rc<u8>>", "Sync", Probe::<Lock<Rc<u8>>>::SYNC, false),
            ("SpinGuard<Cell<u8>>", "Send", SendProbe::<SpinGuard<'static, Cell<u8>>>::SEND, true),
            ("SpinGuard<Rc<u8>>", "Send", SendProbe::<SpinGuard<'static, Rc<u8>>>::SEND, false),
        ];
        for (ty, bound, found, wanted) in bounds {
            assert_eq!(found, wanted, "{ty}: {bound} is {found}, must be {wanted}");
        }
    }

    #[test]
    fn get_mut_reaches_the_value_without_locking() {
        let mut lock = Lock::new(vec![1]);
        lock.get_mut().push(2);
        assert_eq!(*lock.lock(), vec![1, 2]);
        drop(lock.lock());
        assert_eq!(lock.lock().len(), 2, "a dropped guard unlocked");
    }
}
