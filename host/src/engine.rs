//! The wasmtime engine fnhost runs on, and the epoch ticker that drives
//! deadlines.
//!
//! Settings (and why):
//! - pooling instance allocator with copy-on-write memory images: a fresh
//!   instance is a few page-table operations, not a copy;
//! - `linear_memory_keep_resident`/`table_keep_resident` of 2 MiB with
//!   `pagemap_scan`: slots are reset with memset instead of madvise where
//!   that is cheaper, which avoids cross-CPU TLB shootdowns on small VMs
//!   (see `shared/WASMTIME-NOTES.md`);
//! - no decommit batching (`decommit_batch_size(1)`): a released slot's
//!   pages past the 2 MiB kept resident are given back to the kernel when
//!   the instance ends, not when 32 slots have queued up. With batching,
//!   up to `min(cpus, 16) x 31` released slots stayed dirty, each up to its
//!   memory limit: a guest filling 64 MiB, called 10 times, left 639 MiB
//!   resident (HOSTILE 32). Now what stays resident after invocations is at
//!   most 2 MiB of memory + 2 MiB of table per slot used at once
//!   (BENCHMARKS.md has what this costs on the fresh path);
//! - epoch interruption for deadlines (cheaper than fuel); fuel only when
//!   the host asks for fuel metering (`HostBuilder::fuel_metering`);
//! - proposals that fnhost does not support are off: threads, GC,
//!   memory64, stack switching. A module needing one is refused at
//!   register time with wasmtime's message naming the feature;
//! - the component model is on: the pools are sized for components too
//!   (several core instances per slot, see `wasmtime_config_with_decommit_batch`).

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam::channel::{RecvTimeoutError, Sender, bounded};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::error::{Error, Result};

/// Core instances the pool holds per slot, on average.
const CORE_INSTANCES_PER_SLOT: u32 = 16;
/// Most core instances one component may have: its slot's share, so no
/// function's instances can take others' part of the pool.
const MAX_CORE_INSTANCES_PER_COMPONENT: u32 = CORE_INSTANCES_PER_SLOT;
/// Most tables one component may define (its slot's share).
const MAX_TABLES_PER_COMPONENT: u32 = 2;

/// Engine-level settings (chosen on the [`HostBuilder`](crate::HostBuilder)).
#[derive(Debug, Clone)]
pub(crate) struct EngineSettings {
    pub max_instances: u32,
    pub max_memory: u64,
    pub max_wasm_stack: usize,
    /// Fuel metering (a deterministic instruction count per invocation).
    pub fuel: bool,
}

/// The wasmtime [`Config`] an fnhost engine uses for `max_instances` pool
/// slots of up to `max_memory` bytes each: public so that benchmarks can
/// measure raw wasmtime with exactly the same settings.
pub fn wasmtime_config(max_instances: u32, max_memory: u64, max_wasm_stack: usize) -> Config {
    wasmtime_config_with_decommit_batch(max_instances, max_memory, max_wasm_stack, 1)
}

/// [`wasmtime_config`] with another decommit batch size: for the benchmark
/// that measures what batching would buy (fnhost itself always uses 1).
#[doc(hidden)]
pub fn wasmtime_config_with_decommit_batch(
    max_instances: u32,
    max_memory: u64,
    max_wasm_stack: usize,
    decommit_batch: usize,
) -> Config {
    let mut pool = PoolingAllocationConfig::new();
    // A slot is one function instance: a core module (one core instance,
    // memory and table) or a component, which has several core instances
    // (componentize-py's: 14, componentize-js's: 4, a Rust wasip2
    // component's: 3), one memory and two tables. A component may use at
    // most its slot's share of each pool; one over the maxima is
    // refused when it is compiled.
    pool.total_component_instances(max_instances)
        .total_core_instances(max_instances.saturating_mul(CORE_INSTANCES_PER_SLOT))
        .max_core_instances_per_component(MAX_CORE_INSTANCES_PER_COMPONENT)
        .total_memories(max_instances.saturating_mul(2))
        .max_memories_per_component(2)
        .total_tables(max_instances.saturating_mul(2))
        .max_tables_per_component(MAX_TABLES_PER_COMPONENT)
        .max_memory_size(max_memory as usize)
        .table_elements(100_000)
        .linear_memory_keep_resident(2 << 20)
        .table_keep_resident(2 << 20)
        .pagemap_scan(Enabled::Auto)
        .decommit_batch_size(decommit_batch)
        // No fiber stacks: fnhost never runs wasm on async fibers, and the
        // default pool of 1,000 reserves ~2 GiB and makes 1,000 guard-page
        // mprotects at build (and splits the mapping into 1,000 pieces to
        // unmap at drop): ~2-6 ms of every new process's start.
        .total_stacks(0);
    let mut cfg = Config::new();
    cfg.allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
        .memory_init_cow(true)
        .epoch_interruption(true)
        .max_wasm_stack(max_wasm_stack)
        .wasm_threads(false)
        .wasm_gc(false)
        .wasm_memory64(false)
        .wasm_stack_switching(false)
        .parallel_compilation(true);
    cfg
}

pub(crate) fn build_engine(s: &EngineSettings) -> Result<Engine> {
    let mut cfg = wasmtime_config(s.max_instances, s.max_memory, s.max_wasm_stack);
    cfg.consume_fuel(s.fuel);
    Engine::new(&cfg).map_err(|e| Error::config("engine", format!("{e:#}")))
}

/// Increments the engine epoch every `tick` on its own thread (never
/// inside an executor a spinning guest could starve). Stops on drop.
pub(crate) struct Ticker {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Ticker {
    pub(crate) fn start(
        engine: Engine,
        tick: Duration,
        on_tick: impl Fn() + Send + 'static,
    ) -> std::io::Result<Ticker> {
        let (stop, rx) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name("fnhost-epoch".into())
            .spawn(move || {
                // Sleeps in the channel wait; wakes once per tick.
                while let Err(RecvTimeoutError::Timeout) = rx.recv_timeout(tick) {
                    engine.increment_epoch();
                    on_tick();
                }
            })?;
        Ok(Ticker {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
