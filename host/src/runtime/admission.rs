//! Admission: the one order in which a request becomes an invocation.
//!
//! 1. [`Core::check`]: what needs no slot (shutting down, payload cap);
//! 2. [`Core::acquire`]: a concurrency slot from the function's gate, now,
//!    blocking up to a bound, or by registering a waker (async callers and
//!    the event dispatcher never block a thread);
//! 3. [`Core::admitted`] counts the request, or [`Core::refused`] counts
//!    it with its refusal: every request is counted once.
//!
//! [`Core::admit`] is the blocking path; [`InvokeFuture`](super::InvokeFuture)
//! and the event dispatcher run the same steps around their own waiting.
//! Reserved concurrency is carved out of the host's limit here too.

use std::sync::atomic::Ordering;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::Core;
use crate::error::{Error, ErrorKind, Result};
use crate::function::Function;
use crate::limits::{Gate, Permit};
use std::sync::Arc;

/// How [`Core::acquire`] may wait for a slot.
pub(crate) enum Wait<'a> {
    /// Park the thread for `wait` at the longest (the clock is read only
    /// when there is no slot at once).
    Block { wait: Duration },
    /// Register `waker` to be woken when a slot may be free or `until`
    /// passes.
    Poll { waker: &'a Waker, until: Instant },
}

/// What [`Core::acquire`] got.
pub(crate) enum Slot {
    Got(Permit),
    /// Not yet; the waker will be woken (only for [`Wait::Poll`]).
    Pending,
    /// None free within the bound.
    Full,
}

impl Core {
    /// Step 1: the checks that need no slot. Counts nothing.
    pub(crate) fn check(&self, f: &Function, payload_len: usize) -> Result<()> {
        if self.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        if payload_len > f.policy.max_input {
            return Err(Error::PayloadTooLarge {
                size: payload_len,
                max: f.policy.max_input,
            });
        }
        Ok(())
    }

    /// Step 2: a slot of `f`'s gate.
    pub(crate) fn acquire(&self, f: &Function, wait: Wait<'_>) -> Slot {
        let gate = &f.gate;
        let got = match wait {
            Wait::Block { wait } => {
                gate.try_acquire() || (!wait.is_zero() && gate.acquire_until(Instant::now() + wait))
            }
            Wait::Poll { waker, until } => {
                if gate.poll_acquire(waker, until) {
                    true
                } else if Instant::now() < until {
                    return Slot::Pending;
                } else {
                    false
                }
            }
        };
        if got {
            Slot::Got(Permit::new(gate.clone()))
        } else {
            Slot::Full
        }
    }

    /// Step 3, admitted: counts the request.
    pub(crate) fn admitted(&self, f: &Function) {
        f.metrics.submitted.fetch_add(1, Ordering::Relaxed);
    }

    /// Undoes [`admitted`](Core::admitted) for a request admitted and
    /// then never run (an HTTP ticket dropped unused).
    pub(crate) fn unadmitted(&self, f: &Function) {
        f.metrics.submitted.fetch_sub(1, Ordering::Relaxed);
    }

    /// Step 3, refused: counts the request and its refusal, and returns
    /// the error.
    pub(crate) fn refused(&self, f: &Function, e: Error) -> Error {
        let m = &f.metrics;
        m.submitted.fetch_add(1, Ordering::Relaxed);
        match e.kind() {
            ErrorKind::Throttled => m.throttled.fetch_add(1, Ordering::Relaxed),
            _ => m.rejected.fetch_add(1, Ordering::Relaxed),
        };
        m.error(e.kind());
        e
    }

    /// The error of a request that found no slot.
    pub(crate) fn throttled(&self, f: &Function) -> Error {
        Error::Throttled {
            function: f.spec.name.to_string(),
            limit: f.gate.limit(),
        }
    }

    /// Blocking admission: a slot now, or within the function's wait bound.
    pub(crate) fn admit(&self, f: &Function, payload_len: usize) -> Result<Permit> {
        self.check(f, payload_len).map_err(|e| self.refused(f, e))?;
        match self.acquire(
            f,
            Wait::Block {
                wait: f.policy.max_wait,
            },
        ) {
            Slot::Got(permit) => {
                self.admitted(f);
                Ok(permit)
            }
            Slot::Pending | Slot::Full => Err(self.refused(f, self.throttled(f))),
        }
    }

    /// The gate a function with `reserved` concurrency draws from: its own
    /// (kept from `prev` when the reservation is unchanged) or the host's
    /// unreserved one.
    pub(crate) fn gate_for(&self, reserved: Option<u32>, prev: Option<&Function>) -> Arc<Gate> {
        match (reserved, prev) {
            (None, _) => self.unreserved.clone(),
            (Some(r), Some(p)) if p.reserved == Some(r) => p.gate.clone(),
            (Some(r), _) => Gate::new(r),
        }
    }

    /// Moves a function's reservation from `old` to `new`, keeping the
    /// unreserved gate = global limit − Σ reserved.
    pub(crate) fn reserve(&self, old: Option<u32>, new: Option<u32>) -> Result<()> {
        let limit = self.settings.concurrency_limit;
        let mut total = self.reserved_total.lock();
        let without = *total - old.unwrap_or(0);
        if let Some(r) = new
            && r > limit - without
        {
            return Err(Error::config(
                "reserved_concurrency",
                format!(
                    "{r} is more than the {} left unreserved of the host's {limit}",
                    limit - without
                ),
            ));
        }
        *total = without + new.unwrap_or(0);
        self.unreserved.set_limit(limit - *total);
        Ok(())
    }
}
