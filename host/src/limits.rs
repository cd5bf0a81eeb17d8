//! Admission control: concurrency limits with Lambda's semantics.
//!
//! The host has a global limit (default 1,000 invocations in flight,
//! queued or running). A function with *reserved* concurrency R draws from
//! its own [`Gate`] of size R: R slots are guaranteed to it and it can
//! never use more. Every other function draws from the shared *unreserved*
//! gate, of size `global − Σ reserved`. So one function's burst can exhaust
//! at most its own gate (if reserved) or the unreserved one, never another
//! function's reservation.
//!
//! The fast path is one compare-and-swap on the gate's counter. At the
//! limit, a caller either gets [`Error::Throttled`] at once or, when the
//! function allows a wait, parks until a slot frees or its wait bound
//! passes (blocking callers on a condvar; async callers register a waker
//! that a release wakes and that the host's ticker expires). Nothing
//! queues without a slot, so no queue grows without bound.

use std::sync::Arc;
use std::task::Waker;
use std::time::Instant;

use self::sync::{AtomicU32, AtomicU64, Condvar, Mutex, Ordering};

/// The primitives the gate is built on: atomics, parking_lot's mutex and
/// condvar; loom's under `--cfg loom`, where `loom-tests/` model-checks
/// this file (every interleaving of a few threads: no lost wake-up, never
/// more holders than the limit).
#[cfg(not(loom))]
mod sync {
    pub(super) use parking_lot::Mutex;
    pub(super) use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    /// A condvar whose waits take and give back the guard.
    #[derive(Default)]
    pub(super) struct Condvar(parking_lot::Condvar);

    impl Condvar {
        /// Waits until notified or `until`; `true` if it timed out.
        pub(super) fn wait_until<T>(
            &self,
            guard: &mut parking_lot::MutexGuard<'_, T>,
            until: std::time::Instant,
        ) -> bool {
            self.0.wait_until(guard, until).timed_out()
        }

        pub(super) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(super) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

#[cfg(loom)]
mod sync {
    pub(super) use loom::sync::atomic::{AtomicU32, AtomicU64, Ordering};

    /// loom's mutex with parking_lot's `lock()` (no poisoning).
    pub(super) struct Mutex<T>(loom::sync::Mutex<T>);

    impl<T> Mutex<T> {
        pub(super) fn new(v: T) -> Mutex<T> {
            Mutex(loom::sync::Mutex::new(v))
        }

        pub(super) fn lock(&self) -> Guard<'_, T> {
            Guard(Some(self.0.lock().unwrap()))
        }
    }

    /// A guard a condvar wait can take and give back through `&mut`.
    pub(super) struct Guard<'a, T>(Option<loom::sync::MutexGuard<'a, T>>);

    impl<T> std::ops::Deref for Guard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().unwrap()
        }
    }

    impl<T> std::ops::DerefMut for Guard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().unwrap()
        }
    }

    pub(super) struct Condvar(loom::sync::Condvar);

    impl Default for Condvar {
        fn default() -> Condvar {
            Condvar(loom::sync::Condvar::new())
        }
    }

    impl Condvar {
        /// loom has no clock: a timed wait is a wait that only a notify
        /// ends, so a lost wake-up is a deadlock loom reports.
        pub(super) fn wait_until<T>(
            &self,
            guard: &mut Guard<'_, T>,
            _until: std::time::Instant,
        ) -> bool {
            let g = guard.0.take().unwrap();
            guard.0 = Some(self.0.wait(g).unwrap());
            false
        }

        pub(super) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(super) fn notify_all(&self) {
            self.0.notify_all();
        }
    }
}

/// The waiters bit of [`Gate::state`]; the low 32 bits count holders.
const WAITERS: u64 = 1 << 32;
const COUNT: u64 = WAITERS - 1;

/// A counting gate: at most `limit` holders at once.
///
/// The holder count and the "someone waits" flag share one atomic word,
/// so a release (`fetch_sub`) and a waiter announcing itself (`fetch_or`)
/// are read-modify-writes of the same location and totally ordered:
/// either the release sees the flag and wakes the waiter, or the waiter's
/// announcement sees the freed slot and takes it. (With the flag in a
/// separate atomic this was the store-buffer pattern, and a waiter could
/// sleep through the release that freed its slot until its wait bound;
/// the loom model in `loom-tests/` found it.)
pub(crate) struct Gate {
    /// Holders (low 32 bits) and [`WAITERS`].
    state: AtomicU64,
    limit: AtomicU32,
    waiters: Mutex<Waiters>,
    cond: Condvar,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("in_flight", &self.in_flight())
            .field("limit", &self.limit())
            .finish()
    }
}

#[derive(Default)]
struct Waiters {
    threads: usize,
    tasks: Vec<(Waker, Instant)>,
}

impl Gate {
    pub(crate) fn new(limit: u32) -> Arc<Gate> {
        Arc::new(Gate {
            state: AtomicU64::new(0),
            limit: AtomicU32::new(limit),
            waiters: Mutex::new(Waiters::default()),
            cond: Condvar::default(),
        })
    }

    pub(crate) fn limit(&self) -> u32 {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn set_limit(&self, limit: u32) {
        self.limit.store(limit, Ordering::Relaxed);
        // A raised limit may let waiters in.
        self.wake_all();
    }

    /// Slots held now.
    pub(crate) fn in_flight(&self) -> u32 {
        (self.state.load(Ordering::Relaxed) & COUNT) as u32
    }

    fn has_waiters(&self) -> bool {
        self.state.load(Ordering::Relaxed) & WAITERS != 0
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_acquire(&self) -> bool {
        let limit = u64::from(self.limit.load(Ordering::Relaxed));
        self.state
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |s| {
                ((s & COUNT) < limit).then_some(s + 1)
            })
            .is_ok()
    }

    /// Sets the waiters flag (under the waiters lock), then tries for a
    /// slot: the flag's read-modify-write comes after any release it
    /// missed, so that release's slot is seen here.
    fn announce_and_try(&self) -> bool {
        self.state.fetch_or(WAITERS, Ordering::AcqRel);
        self.try_acquire()
    }

    /// Takes a slot, parking the thread until `until` at the longest.
    pub(crate) fn acquire_until(&self, until: Instant) -> bool {
        if self.try_acquire() {
            return true;
        }
        let mut w = self.waiters.lock();
        w.threads += 1;
        let got = loop {
            // Re-check under the lock, after announcing: a release that
            // ran before would otherwise be missed.
            if self.announce_and_try() {
                break true;
            }
            if self.cond.wait_until(&mut w, until) {
                break self.try_acquire();
            }
        };
        w.threads -= 1;
        self.update_has_waiters(&w);
        got
    }

    /// For async callers: takes a slot, or registers `waker` to be woken
    /// when one may be free or when `until` passes.
    pub(crate) fn poll_acquire(&self, waker: &Waker, until: Instant) -> bool {
        if self.try_acquire() {
            return true;
        }
        let mut w = self.waiters.lock();
        w.tasks.push((waker.clone(), until));
        // Our registration stays even when this gets the slot; the
        // spurious wake it may cause later is harmless.
        self.announce_and_try()
    }

    pub(crate) fn release(&self) {
        let before = self.state.fetch_sub(1, Ordering::AcqRel);
        if before & WAITERS != 0 {
            let mut w = self.waiters.lock();
            if w.threads > 0 {
                self.cond.notify_one();
            }
            // Wake every async waiter: each retries; the losers re-register.
            for (waker, _) in w.tasks.drain(..) {
                waker.wake();
            }
            self.update_has_waiters(&w);
        }
    }

    fn wake_all(&self) {
        let mut w = self.waiters.lock();
        self.cond.notify_all();
        for (waker, _) in w.tasks.drain(..) {
            waker.wake();
        }
        self.update_has_waiters(&w);
    }

    /// Wakes async waiters whose wait bound has passed (called by the
    /// host's ticker), so they can give up with `Throttled`.
    pub(crate) fn expire_waiters(&self, now: Instant) {
        if !self.has_waiters() {
            return;
        }
        let mut w = self.waiters.lock();
        let mut i = 0;
        while i < w.tasks.len() {
            if w.tasks[i].1 <= now {
                let (waker, _) = w.tasks.swap_remove(i);
                waker.wake();
            } else {
                i += 1;
            }
        }
        self.update_has_waiters(&w);
    }

    /// Clears the waiters flag when nobody waits any more (under the lock,
    /// which every announcement holds).
    fn update_has_waiters(&self, w: &Waiters) {
        if w.threads == 0 && w.tasks.is_empty() {
            self.state.fetch_and(!WAITERS, Ordering::AcqRel);
        }
    }
}

/// A held concurrency slot; released on drop.
#[derive(Debug)]
pub(crate) struct Permit {
    gate: Arc<Gate>,
}

impl Permit {
    pub(crate) fn new(gate: Arc<Gate>) -> Permit {
        Permit { gate }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.gate.release();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn never_exceeds_its_limit_under_contention() {
        let gate = Gate::new(3);
        let max = Arc::new(AtomicU32::new(0));
        let inside = Arc::new(AtomicU32::new(0));
        let got = Arc::new(AtomicU32::new(0));
        std::thread::scope(|s| {
            for _ in 0..8 {
                let (gate, max, inside, got) =
                    (gate.clone(), max.clone(), inside.clone(), got.clone());
                s.spawn(move || {
                    for _ in 0..2000 {
                        if gate.acquire_until(Instant::now() + Duration::from_millis(50)) {
                            let n = inside.fetch_add(1, Ordering::SeqCst) + 1;
                            max.fetch_max(n, Ordering::SeqCst);
                            inside.fetch_sub(1, Ordering::SeqCst);
                            got.fetch_add(1, Ordering::SeqCst);
                            gate.release();
                        }
                    }
                });
            }
        });
        assert!(max.load(Ordering::SeqCst) <= 3);
        assert_eq!(gate.in_flight(), 0);
        assert!(got.load(Ordering::SeqCst) > 0);
    }

    #[test]
    fn waiting_caller_gets_the_released_slot() {
        let gate = Gate::new(1);
        assert!(gate.try_acquire());
        assert!(!gate.try_acquire());
        std::thread::scope(|s| {
            let g = gate.clone();
            let waiter = s.spawn(move || g.acquire_until(Instant::now() + Duration::from_secs(30)));
            // Release only once the waiter is registered.
            while !gate.has_waiters() {
                std::thread::yield_now();
            }
            gate.release();
            assert!(waiter.join().unwrap());
        });
        assert_eq!(gate.in_flight(), 1);
    }

    #[test]
    fn wait_bound_expires() {
        let gate = Gate::new(0);
        assert!(!gate.acquire_until(Instant::now() + Duration::from_millis(5)));
    }
}
