//! The admission gate (`host/src/limits.rs`, compiled here against loom's
//! atomics, mutex and condvar) under every interleaving loom explores:
//! never more holders than the limit, and no lost wake-up — a waiter
//! registered before a release (or a raised limit) always gets the slot or
//! is woken. loom's timed wait ends only by a notify, so a lost wake-up is
//! a deadlock it reports.
#![cfg(loom)]
#![allow(dead_code)]

#[path = "../../host/src/limits.rs"]
mod limits;

use std::sync::Arc;
use std::task::{Wake, Waker};
use std::time::{Duration, Instant};

use limits::Gate;
use loom::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

fn far() -> Instant {
    Instant::now() + Duration::from_secs(3600)
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    b.preemption_bound = Some(3);
    b.check(f);
}

#[test]
fn never_more_holders_than_the_limit() {
    model(|| {
        let gate = Gate::new(1);
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..2)
            .map(|_| {
                let (gate, inside) = (gate.clone(), inside.clone());
                loom::thread::spawn(move || {
                    if gate.try_acquire() {
                        assert_eq!(inside.fetch_add(1, Ordering::SeqCst), 0, "two holders");
                        inside.fetch_sub(1, Ordering::SeqCst);
                        gate.release();
                        true
                    } else {
                        false
                    }
                })
            })
            .collect();
        let got: usize = threads
            .into_iter()
            .map(|t| t.join().unwrap() as usize)
            .sum();
        assert!(got >= 1, "with one slot and nobody else, someone gets it");
        assert_eq!(gate.in_flight(), 0);
    });
}

#[test]
fn a_blocked_waiter_is_woken_by_a_release() {
    model(|| {
        let gate = Gate::new(1);
        assert!(gate.try_acquire());
        let g = gate.clone();
        let waiter = loom::thread::spawn(move || g.acquire_until(far()));
        gate.release();
        assert!(
            waiter.join().unwrap(),
            "the waiter must get the released slot"
        );
        assert_eq!(gate.in_flight(), 1);
    });
}

#[test]
fn a_blocked_waiter_is_woken_by_a_raised_limit() {
    model(|| {
        let gate = Gate::new(0);
        let g = gate.clone();
        let waiter = loom::thread::spawn(move || g.acquire_until(far()));
        gate.set_limit(1);
        assert!(waiter.join().unwrap());
        assert_eq!(gate.in_flight(), 1);
    });
}

/// A waker that records being woken.
struct Flag(AtomicBool);

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.0.store(true, Ordering::SeqCst);
    }
}

#[test]
fn an_async_waiter_gets_the_slot_or_is_woken() {
    model(|| {
        let gate = Gate::new(1);
        assert!(gate.try_acquire());
        let flag = Arc::new(Flag(AtomicBool::new(false)));
        let waker = Waker::from(flag.clone());
        let g = gate.clone();
        let poller = loom::thread::spawn(move || g.poll_acquire(&waker, far()));
        gate.release();
        let got = poller.join().unwrap();
        // Either it took the slot, or the release woke it (so its next poll
        // takes the slot): a registered waiter is never forgotten.
        assert!(got || flag.0.load(Ordering::SeqCst), "lost wake-up");
        if !got {
            assert!(
                gate.try_acquire(),
                "the woken waiter's next poll gets the slot"
            );
        }
    });
}

#[test]
fn two_blocked_waiters_both_get_the_two_released_slots() {
    model(|| {
        let gate = Gate::new(2);
        assert!(gate.try_acquire() && gate.try_acquire());
        let waiters: Vec<_> = (0..2)
            .map(|_| {
                let g = gate.clone();
                loom::thread::spawn(move || g.acquire_until(far()))
            })
            .collect();
        gate.release();
        gate.release();
        for w in waiters {
            assert!(w.join().unwrap());
        }
        assert_eq!(gate.in_flight(), 2);
    });
}
