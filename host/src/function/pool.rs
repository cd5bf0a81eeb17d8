//! Warm instances: provisioned concurrency, Lambda-style reuse, and
//! release after an idle period (scale to zero).
//!
//! Each function has a lock-free queue of ready instances. The invoke path
//! pops one (a warm start) or creates one (a cold start). After the
//! invocation, a healthy instance of a reuse-mode function goes back; all
//! others are dropped, which returns their pool slot to wasmtime. The
//! host's maintenance thread keeps each function's queue at its
//! provisioned size and drops reuse-mode instances idle past their TTL.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Instant;

use crossbeam::queue::SegQueue;

use crate::guest::Instance;

/// Ready instances of one function.
#[derive(Default)]
pub(crate) struct WarmPool {
    idle: SegQueue<Instance>,
    /// Instances alive for this function: idle plus running.
    live: AtomicU32,
}

/// Host-wide cap on idle instances, so idle ones never take the pool
/// slots that running invocations need.
pub(crate) struct IdleBudget {
    idle: AtomicU32,
    max: u32,
}

impl IdleBudget {
    pub(crate) fn new(max: u32) -> IdleBudget {
        IdleBudget {
            idle: AtomicU32::new(0),
            max,
        }
    }

    fn take(&self) -> bool {
        let max = self.max;
        self.idle
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok()
    }

    fn give_back(&self) {
        self.idle.fetch_sub(1, Ordering::AcqRel);
    }
}

impl WarmPool {
    /// A ready instance, if any.
    pub(crate) fn take(&self, budget: &IdleBudget) -> Option<Instance> {
        let inst = self.idle.pop()?;
        budget.give_back();
        Some(inst)
    }

    /// Parks a ready instance; drops it when the idle budget is spent.
    pub(crate) fn put(&self, inst: Instance, budget: &IdleBudget) {
        if budget.take() {
            self.idle.push(inst);
        } else {
            self.dropped(inst);
        }
    }

    pub(crate) fn created(&self) {
        self.live.fetch_add(1, Ordering::Relaxed);
    }

    /// Drops an instance (its pool slot returns to wasmtime).
    pub(crate) fn dropped(&self, inst: Instance) {
        drop(inst);
        self.forget_one();
    }

    /// Counts an instance the caller is dropping itself.
    pub(crate) fn forget_one(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    pub(crate) fn idle(&self) -> usize {
        self.idle.len()
    }

    pub(crate) fn live(&self) -> u32 {
        self.live.load(Ordering::Relaxed)
    }

    /// Drops idle instances whose last use is `ttl` or more before `now`,
    /// always keeping the `keep` most recently used. Returns how many were
    /// dropped.
    pub(crate) fn reap(
        &self,
        now: Instant,
        ttl: std::time::Duration,
        keep: usize,
        budget: &IdleBudget,
    ) -> usize {
        let n = self.idle.len();
        let mut all = Vec::with_capacity(n);
        for _ in 0..n {
            match self.take(budget) {
                Some(inst) => all.push(inst),
                None => break,
            }
        }
        all.sort_by_key(|i| std::cmp::Reverse(i.last_used));
        let mut dropped = 0;
        for (rank, inst) in all.into_iter().enumerate() {
            if rank >= keep && now.saturating_duration_since(inst.last_used) >= ttl {
                dropped += 1;
                self.dropped(inst);
            } else {
                self.put(inst, budget);
            }
        }
        dropped
    }

    /// Drops every idle instance.
    pub(crate) fn clear(&self, budget: &IdleBudget) {
        while let Some(inst) = self.take(budget) {
            self.dropped(inst);
        }
    }
}
