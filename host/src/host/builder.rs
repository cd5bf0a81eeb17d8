//! [`HostBuilder`]: every host setting with its default, validated and
//! compiled into the runtime's and deployment's settings at `build`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::{Host, Inner};
use crate::capability::Capability;
use crate::deploy::{self, Deployer, cache};
use crate::engine::{self, EngineSettings, Ticker};
use crate::error::{Error, Result};
use crate::events::{Clock, Events, SystemClock};
use crate::function::WASM32_MAX_MEMORY;
use crate::guest::abi;
use crate::logs::{LogSink, TracingLogSink};
use crate::runtime::{self, Core, Threads};
use crate::util::host_secret;

/// Builds a [`Host`]. Every setting has a default; `build` validates them
/// and names the field it refuses.
#[derive(Debug, Clone)]
pub struct HostBuilder {
    cache_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    concurrency_limit: u32,
    max_idle_instances: u32,
    workers: usize,
    max_memory: u64,
    epoch_tick: Duration,
    max_module_size: usize,
    max_wasm_stack: usize,
    maintenance_interval: Duration,
    metrics: bool,
    log_sink: Option<SinkHandle>,
    clock: ClockHandle,
    event_concurrency: Option<usize>,
    capabilities: Vec<Capability>,
    fuel_metering: bool,
}

/// The event clock (Debug/Clone for the builder).
#[derive(Clone)]
struct ClockHandle(Arc<dyn Clock>);

impl std::fmt::Debug for ClockHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// A shared [`LogSink`] (Debug/Clone for the builder).
#[derive(Clone)]
struct SinkHandle(Arc<dyn LogSink>);

impl std::fmt::Debug for SinkHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LogSink")
    }
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            cache_dir: Some(cache::default_cache_dir()),
            data_dir: None,
            concurrency_limit: 1000,
            max_idle_instances: 1000,
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            maintenance_interval: Duration::from_secs(1),
            metrics: true,
            log_sink: Some(SinkHandle(Arc::new(TracingLogSink))),
            max_memory: WASM32_MAX_MEMORY,
            epoch_tick: Duration::from_millis(5),
            max_module_size: 64 << 20,
            max_wasm_stack: 512 << 10,
            clock: ClockHandle(Arc::new(SystemClock)),
            event_concurrency: None,
            capabilities: Vec::new(),
            fuel_metering: false,
        }
    }
}

impl HostBuilder {
    /// Directory of the compiled-artifact cache (default:
    /// [`default_cache_dir`](crate::default_cache_dir)).
    pub fn cache_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.cache_dir = Some(dir.into());
        self
    }

    /// Keep the registry (functions, versions, aliases and module bytes)
    /// under `dir`, and restore it when the host is built: a restarted host
    /// comes back with the same table (default: nothing is persisted).
    pub fn data_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.data_dir = Some(dir.into());
        self
    }

    /// Compile every module on register; keep nothing on disk.
    pub fn no_artifact_cache(mut self) -> Self {
        self.cache_dir = None;
        self
    }

    /// Invocations in flight (queued or running) across all functions
    /// (default 1,000, Lambda's). Reserved concurrency is carved out of it.
    pub fn concurrency_limit(mut self, n: u32) -> Self {
        self.concurrency_limit = n;
        self
    }

    /// Most idle warm instances kept across all functions (default 1,000).
    /// Pool slots = concurrency limit + this, so idle instances never
    /// starve running invocations.
    pub fn max_idle_instances(mut self, n: u32) -> Self {
        self.max_idle_instances = n;
        self
    }

    /// Worker threads serving [`Host::invoke_async`] (default: available
    /// cores). [`Host::invoke`] runs on the caller's thread.
    pub fn workers(mut self, n: usize) -> Self {
        self.workers = n;
        self
    }

    /// Per-function metrics and metering (default on). Off, invocations
    /// skip all counting (for measuring what counting costs); reports are
    /// still produced.
    pub fn metrics(mut self, on: bool) -> Self {
        self.metrics = on;
        self
    }

    /// Where each invocation's report and logs go (default:
    /// [`TracingLogSink`]).
    pub fn log_sink(mut self, sink: impl LogSink) -> Self {
        self.log_sink = Some(SinkHandle(Arc::new(sink)));
        self
    }

    /// Send reports and logs nowhere (they are still returned to callers).
    pub fn no_log_sink(mut self) -> Self {
        self.log_sink = None;
        self
    }

    /// How often idle instances are released and provisioned ones
    /// refilled (default 1 s).
    pub fn maintenance_interval(mut self, every: Duration) -> Self {
        self.maintenance_interval = every;
        self
    }

    /// Largest memory limit a function may ask for (default and maximum
    /// 4 GiB, wasm32's ceiling). Sizes the pool's address-space reservation.
    pub fn max_memory(mut self, bytes: u64) -> Self {
        self.max_memory = bytes;
        self
    }

    /// Deadline granularity (default 5 ms): a timed-out invocation ends
    /// within one tick after its timeout.
    pub fn epoch_tick(mut self, tick: Duration) -> Self {
        self.epoch_tick = tick;
        self
    }

    /// Modules above this many bytes are refused before compilation
    /// (default 64 MiB); this also bounds compile time.
    pub fn max_module_size(mut self, bytes: usize) -> Self {
        self.max_module_size = bytes;
        self
    }

    /// Wasm stack per invocation (default 512 KiB); deeper recursion traps
    /// with a stack overflow.
    pub fn max_wasm_stack(mut self, bytes: usize) -> Self {
        self.max_wasm_stack = bytes;
        self
    }

    /// The clock events and triggers read (schedules, retry delays, event
    /// age, queue visibility); default: the system clock. Tests pass a
    /// [`ManualClock`](crate::events::ManualClock). Invocation deadlines
    /// always use real time.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = ClockHandle(clock);
        self
    }

    /// Fuel metering (default off): every invocation counts the wasm
    /// instructions it runs (reported as `Report::fuel_used`, a
    /// deterministic CPU measure) and stops with [`Error::OutOfFuel`] past
    /// its function's [`FunctionConfig::max_fuel`]. Counting instructions
    /// makes compiled code slower, and wasmtime's fuel is an engine-wide
    /// setting, so it is a host-wide choice.
    pub fn fuel_metering(mut self, on: bool) -> Self {
        self.fuel_metering = on;
        self
    }

    /// Defines a capability functions may be granted
    /// ([`FunctionConfig::grant`]); a later one with the same name
    /// replaces it. See [`crate::capability`].
    pub fn capability(mut self, cap: Capability) -> Self {
        self.capabilities.retain(|c| c.name() != cap.name());
        self.capabilities.push(cap);
        self
    }

    /// Defines several capabilities (e.g. [`capability::kv`](crate::capability::kv)).
    pub fn capabilities(self, caps: impl IntoIterator<Item = Capability>) -> Self {
        caps.into_iter().fold(self, HostBuilder::capability)
    }

    /// Most event invocations running at once (default: twice the
    /// workers); the rest wait in the store.
    pub fn event_concurrency(mut self, n: usize) -> Self {
        self.event_concurrency = Some(n);
        self
    }

    /// Validates the settings and starts the host.
    pub fn build(self) -> Result<Host> {
        if self.concurrency_limit == 0 || self.concurrency_limit > 100_000 {
            return Err(Error::config(
                "concurrency_limit",
                "must be between 1 and 100,000",
            ));
        }
        if self.max_idle_instances > 100_000 {
            return Err(Error::config(
                "max_idle_instances",
                "must be at most 100,000",
            ));
        }
        if self.workers == 0 || self.workers > 1024 {
            return Err(Error::config("workers", "must be between 1 and 1,024"));
        }
        if self.maintenance_interval < Duration::from_millis(1) {
            return Err(Error::config(
                "maintenance_interval",
                "must be at least 1 ms",
            ));
        }
        if self.max_memory < 64 << 10 || self.max_memory > WASM32_MAX_MEMORY {
            return Err(Error::config(
                "max_memory",
                "must be between one 64 KiB page and 4 GiB (wasm32 linear memory caps at 4 GiB)",
            ));
        }
        if self.epoch_tick < Duration::from_micros(100) || self.epoch_tick > Duration::from_secs(1)
        {
            return Err(Error::config(
                "epoch_tick",
                "must be between 100 µs and 1 s",
            ));
        }
        if self.max_wasm_stack < 64 << 10 || self.max_wasm_stack > 64 << 20 {
            return Err(Error::config(
                "max_wasm_stack",
                "must be between 64 KiB and 64 MiB",
            ));
        }
        if let Some(c) = self
            .capabilities
            .iter()
            .find(|c| c.name().is_empty() || c.name().len() > abi::host_call::MAX_NAME as usize)
        {
            return Err(Error::config(
                "capability",
                format!("{:?}: names are 1 to 256 bytes", c.name()),
            ));
        }
        if matches!(self.event_concurrency, Some(n) if n == 0 || n > 100_000) {
            return Err(Error::config(
                "event_concurrency",
                "must be between 1 and 100,000",
            ));
        }
        if self.max_module_size == 0 {
            return Err(Error::config("max_module_size", "must be above 0"));
        }
        let engine = engine::build_engine(&EngineSettings {
            max_instances: self.concurrency_limit + self.max_idle_instances,
            max_memory: self.max_memory,
            max_wasm_stack: self.max_wasm_stack,
            fuel: self.fuel_metering,
        })?;
        let runtime = runtime::Settings {
            concurrency_limit: self.concurrency_limit,
            max_idle_instances: self.max_idle_instances,
            workers: self.workers,
            epoch_tick: self.epoch_tick,
            maintenance_interval: self.maintenance_interval,
            metrics: self.metrics,
            log_sink: self.log_sink.map(|s| s.0),
        };
        let core = Arc::new(Core::new(engine.clone(), runtime, host_secret()));
        let deploy = Deployer::new(
            core.clone(),
            deploy::Settings {
                max_module_size: self.max_module_size,
                max_memory: self.max_memory,
                max_wasm_stack: self.max_wasm_stack,
                fuel_metering: self.fuel_metering,
                capabilities: self.capabilities,
                cache_dir: self.cache_dir,
            },
            self.data_dir.clone(),
        )?;
        let threads = Threads::start(&core).map_err(|e| Error::io("worker threads", e))?;
        let c = core.clone();
        let ticker = Ticker::start(engine, self.epoch_tick, move || c.on_tick())
            .map_err(|e| Error::io("epoch thread", e))?;
        let events = Events::open(
            core.clone(),
            self.data_dir.as_deref(),
            self.clock.0,
            self.event_concurrency.unwrap_or(self.workers * 2),
        )?;
        let host = Host {
            inner: Arc::new(Inner {
                _ticker: ticker,
                events,
                _threads: threads,
                deploy,
                core,
            }),
        };
        host.inner.deploy.restore()?;
        // Dispatching starts once the registry is restored, so stored
        // events find their functions.
        host.inner.events.start_dispatcher()?;
        Ok(host)
    }
}
