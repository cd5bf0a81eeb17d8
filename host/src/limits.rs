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
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::task::Waker;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// A counting gate: at most `limit` holders at once.
#[derive(Debug)]
pub(crate) struct Gate {
    in_flight: AtomicU32,
    limit: AtomicU32,
    has_waiters: AtomicBool,
    waiters: Mutex<Waiters>,
    cond: Condvar,
}

#[derive(Debug, Default)]
struct Waiters {
    threads: usize,
    tasks: Vec<(Waker, Instant)>,
}

impl Gate {
    pub(crate) fn new(limit: u32) -> Arc<Gate> {
        Arc::new(Gate {
            in_flight: AtomicU32::new(0),
            limit: AtomicU32::new(limit),
            has_waiters: AtomicBool::new(false),
            waiters: Mutex::new(Waiters::default()),
            cond: Condvar::new(),
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

    #[cfg(test)]
    pub(crate) fn in_flight(&self) -> u32 {
        self.in_flight.load(Ordering::Relaxed)
    }

    /// Takes a slot if one is free.
    pub(crate) fn try_acquire(&self) -> bool {
        let limit = self.limit.load(Ordering::Relaxed);
        self.in_flight
            .fetch_update(Ordering::Acquire, Ordering::Relaxed, |n| {
                (n < limit).then_some(n + 1)
            })
            .is_ok()
    }

    /// Takes a slot, parking the thread until `until` at the longest.
    pub(crate) fn acquire_until(&self, until: Instant) -> bool {
        if self.try_acquire() {
            return true;
        }
        let mut w = self.waiters.lock();
        w.threads += 1;
        self.has_waiters.store(true, Ordering::SeqCst);
        let got = loop {
            // Re-check under the lock: a release that ran before we
            // registered would otherwise be missed.
            if self.try_acquire() {
                break true;
            }
            if self.cond.wait_until(&mut w, until).timed_out() {
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
        self.has_waiters.store(true, Ordering::SeqCst);
        if self.try_acquire() {
            // Our registration stays; the spurious wake it may cause later
            // is harmless.
            return true;
        }
        false
    }

    pub(crate) fn release(&self) {
        self.in_flight.fetch_sub(1, Ordering::Release);
        if self.has_waiters.load(Ordering::SeqCst) {
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
        if !self.has_waiters.load(Ordering::Relaxed) {
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

    fn update_has_waiters(&self, w: &Waiters) {
        self.has_waiters
            .store(w.threads > 0 || !w.tasks.is_empty(), Ordering::SeqCst);
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

#[cfg(test)]
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
            while !gate.has_waiters.load(Ordering::SeqCst) {
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
