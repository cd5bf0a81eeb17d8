//! Host panics: the one way fnhost catches them ([`catch`], used by every
//! unwind boundary), and fault injection for the tests of those boundaries
//! (HOSTILE 30).
//!
//! Injection is hidden from the docs and off unless a test arms it: the
//! invoke path pays one relaxed atomic load. A test arms a [`Point`] for one function
//! name (names are unique per test, so tests running in parallel do not
//! see each other's faults) and a number of hits; each hit panics, as a
//! host bug there would.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Where a fault can be injected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// Inside an invocation, after its instance exists and before the
    /// handler runs (worker, caller's thread, async and event paths alike).
    Execute,
    /// In the event dispatcher, while it records a finished attempt.
    Settle,
}

static ARMED: AtomicBool = AtomicBool::new(false);
static FAULTS: Mutex<Vec<(Point, String, u32)>> = Mutex::new(Vec::new());

/// Makes the next `times` hits of `point` for `function` panic.
pub fn arm(point: Point, function: &str, times: u32) {
    let mut f = FAULTS.lock();
    f.push((point, function.to_string(), times));
    ARMED.store(true, Ordering::Release);
}

/// Hits left for `point` and `function`.
pub fn remaining(point: Point, function: &str) -> u32 {
    FAULTS
        .lock()
        .iter()
        .filter(|(p, f, _)| *p == point && f == function)
        .map(|(.., n)| *n)
        .sum()
}

/// Panics if a fault is armed here.
#[inline]
pub(crate) fn hit(point: Point, function: &str) {
    if !ARMED.load(Ordering::Relaxed) {
        return;
    }
    let fire = {
        let mut faults = FAULTS.lock();
        let fire = faults
            .iter_mut()
            .find(|(p, f, n)| *p == point && f == function && *n > 0)
            .map(|(.., n)| *n -= 1)
            .is_some();
        faults.retain(|(.., n)| *n > 0);
        if faults.is_empty() {
            ARMED.store(false, Ordering::Release);
        }
        fire
    };
    if fire {
        // Unwinds as a panic does, without the panic hook's report (a soak
        // injects thousands).
        std::panic::resume_unwind(Box::new(format!(
            "fault injected at {point:?} for `{function}`"
        )));
    }
}

/// Runs `f`; a panic in it is caught, logged as `what` panicking, and
/// returned as its message. Every unwind boundary of the host goes
/// through here.
pub(crate) fn catch<R>(what: &str, f: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).map_err(|p| {
        let message = panic_message(&*p);
        tracing::error!(target: "fnhost::panic", site = what, panic = %message, "host code panicked");
        message
    })
}

/// The text of a caught panic.
fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
