//! `wasi:clocks/monotonic-clock` for components, with every subscription
//! ended by the invocation's deadline at the latest.
//!
//! Epoch interruption stops a guest only while wasm runs; a `poll` on a
//! clock subscription blocks in the host. wasmtime-wasi's clock would let
//! `subscribe-duration(1 hour)` + `poll` (what `sleep` compiles to) hold a
//! worker for the hour. Here a subscription wakes by the deadline, and one
//! that woke there marks the invocation timed out (`Timeout`), even if the
//! guest returns before the next epoch check.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker, Resource};
use wasmtime_wasi::p2::{DynPollable, Pollable};

use super::super::state::State;

wasmtime::component::bindgen!({
    path: "wit",
    world: "fnhost:host-fs/clock",
    with: {
        "wasi:io": wasmtime_wasi::p2::bindings::sync::io,
    },
    imports: { default: trappable },
});

use wasi::clocks::monotonic_clock;

/// Adds the clock (shadowing wasmtime-wasi's).
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    monotonic_clock::add_to_linker::<State, HasSelf<State>>(linker, |s| s)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// A sleep until `until` (already clamped to the deadline); `cut` is set
/// when it wakes at the deadline instead of when the guest asked.
struct Sleep {
    until: Instant,
    cut: Option<Arc<AtomicBool>>,
}

#[wasmtime_wasi::async_trait]
impl Pollable for Sleep {
    async fn ready(&mut self) {
        tokio::time::sleep_until(tokio::time::Instant::from_std(self.until)).await;
        if let Some(cut) = &self.cut {
            cut.store(true, Ordering::Relaxed);
        }
    }
}

impl State {
    fn sleep_until(&mut self, until: Instant) -> wasmtime::Result<Resource<DynPollable>> {
        let deadline = self.call.deadline;
        let p2 = self.p2();
        let cut = (until >= deadline).then(|| p2.deadline_hit.clone());
        let until = until.min(deadline);
        let table = &mut p2.table;
        let sleep = table.push(Sleep { until, cut })?;
        wasmtime_wasi::p2::subscribe(table, sleep)
    }
}

impl monotonic_clock::Host for State {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(self.p2().clock_base.elapsed().as_nanos() as u64)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let base = self.p2().clock_base;
        // Past the representable future: the deadline comes first anyway.
        let until = base
            .checked_add(Duration::from_nanos(when))
            .unwrap_or(self.call.deadline);
        self.sleep_until(until)
    }

    fn subscribe_duration(&mut self, d: u64) -> wasmtime::Result<Resource<DynPollable>> {
        let until = Instant::now()
            .checked_add(Duration::from_nanos(d))
            .unwrap_or(self.call.deadline);
        self.sleep_until(until)
    }
}
