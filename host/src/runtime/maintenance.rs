//! Off the invoke path: provisioned instances prepared and refilled,
//! reuse-mode instances released when idle past their TTL (scale to zero),
//! async waiters expired on every epoch tick.

use std::sync::Arc;
use std::time::Instant;

use crossbeam::channel::RecvTimeoutError;

use super::Core;
use crate::error::Result;
use crate::function::Function;
use crate::function::registry::Entry;
use crate::guest::{self, Call, Instance};

/// Work for the maintenance thread.
pub(crate) enum Maint {
    Refill(Arc<Function>),
    Stop,
}

impl Core {
    /// Creates an instance off the invoke path (provisioned concurrency).
    pub(crate) fn prepare(&self, f: &Function) -> Result<Instance> {
        let t0 = Instant::now();
        // Its own id: init that seeds itself (random_get, random.bytes)
        // differs per provisioned instance.
        let call = Call::new(&f.spec, self.next_request_id(), t0);
        let mut inst =
            guest::start(&f.linked, &f.spec, call, self.settings.epoch_tick).map_err(|(e, _)| e)?;
        inst.init_duration = t0.elapsed();
        inst.last_used = Instant::now();
        f.pool.created();
        Ok(inst)
    }

    /// Tops a function's ready instances up to its provisioned count.
    pub(crate) fn refill(&self, f: &Function) -> Result<()> {
        while f.pool.idle() < f.policy.provisioned as usize && !self.is_shutting_down() {
            let inst = self.prepare(f)?;
            f.pool.put(inst, &self.idle_budget);
        }
        Ok(())
    }

    /// Releases reuse-mode instances idle past their TTL (scale to zero),
    /// keeping provisioned ones. Returns how many were released.
    pub(crate) fn reap(&self, now: Instant) -> usize {
        let mut n = 0;
        for f in self.registry.all() {
            if let Some(r) = f.policy.reuse {
                n += f.pool.reap(
                    now,
                    r.idle_ttl,
                    f.policy.provisioned as usize,
                    &self.idle_budget,
                );
            }
        }
        n
    }

    pub(super) fn maintain(self: Arc<Self>) {
        let interval = self.settings.maintenance_interval;
        loop {
            match self.maint.1.recv_timeout(interval) {
                Ok(Maint::Refill(f)) => {
                    if let Err(e) = self.refill(&f) {
                        tracing::warn!(function = %f.spec.name, error = %e, "provisioned refill failed");
                    }
                }
                Ok(Maint::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.reap(Instant::now());
                    for f in self.active() {
                        let _ = self.refill(&f);
                    }
                }
            }
        }
    }

    /// Called every epoch tick: lets async waiters past their wait bound
    /// give up.
    pub(crate) fn on_tick(&self) {
        let now = Instant::now();
        self.unreserved.expire_waiters(now);
        for f in self.registry.all() {
            if f.reserved.is_some() {
                f.gate.expire_waiters(now);
            }
        }
    }

    /// Versions something points to: `$LATEST` and alias targets.
    pub(crate) fn active(&self) -> Vec<Arc<Function>> {
        let mut out = Vec::new();
        for name in self.registry.names() {
            if let Some(e) = self.registry.get(&name) {
                out.extend(
                    active_versions(&e)
                        .into_iter()
                        .filter_map(|v| e.versions.get(&v).cloned()),
                );
            }
        }
        out
    }

    /// Releases the idle instances of `name`'s versions that nothing points
    /// to any more (they stay invocable by number, cold).
    pub(crate) fn drain_inactive(&self, name: &str) {
        if let Some(e) = self.registry.get(name) {
            let active = active_versions(&e);
            for (v, f) in &e.versions {
                if !active.contains(v) {
                    f.pool.clear(&self.idle_budget);
                }
            }
        }
    }
}

fn active_versions(e: &Entry) -> Vec<u32> {
    let mut v: Vec<u32> = e.latest().map(|(v, _)| *v).into_iter().collect();
    for a in e.aliases.values() {
        v.push(a.version);
        v.extend(a.additional.map(|(x, _)| x));
    }
    v
}
