//! The [`Host`]: registry of functions, and the invoke entry point.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use wasmtime::{Linker, Module};

use crate::abi::{self, Provided};
use crate::cache::{self, ArtifactCache, Lookup};
use crate::capability::Capability;
use crate::engine::{self, EngineSettings, Ticker};
use crate::error::{Error, Result};
use crate::events::{Clock, Events, SystemClock};
use crate::function::{
    Function, FunctionConfig, FunctionInfo, FunctionSpec, ModuleSource, WASM32_MAX_MEMORY,
};
use crate::limits::{Gate, Permit};
use crate::logs::{LogSink, Logs, TracingLogSink};
use crate::metering::{PriceModel, Usage, UsageSummary};
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::persist::{self, DataDir, SavedFunction, SavedVersion};
use crate::pool::WarmPool;
use crate::registry::{Alias, Entry, check_alias, split};
use crate::report::Report;
use crate::runtime::{Batch, Core, Job, Reply, ShutdownReport, Threads};
use crate::sandbox::EventCtx;
use crate::snapshot;

/// Builds a [`Host`]. Every setting has a default; `build` validates them
/// and names the field it refuses.
#[derive(Debug, Clone)]
pub struct HostBuilder {
    pub(crate) cache_dir: Option<PathBuf>,
    data_dir: Option<PathBuf>,
    pub(crate) concurrency_limit: u32,
    pub(crate) max_idle_instances: u32,
    pub(crate) workers: usize,
    pub(crate) max_memory: u64,
    pub(crate) epoch_tick: Duration,
    max_module_size: usize,
    pub(crate) max_wasm_stack: usize,
    pub(crate) maintenance_interval: Duration,
    pub(crate) metrics: bool,
    pub(crate) log_sink: Option<SinkHandle>,
    clock: ClockHandle,
    event_concurrency: Option<usize>,
    pub(crate) capabilities: Vec<Capability>,
    pub(crate) fuel_metering: bool,
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
pub(crate) struct SinkHandle(pub Arc<dyn LogSink>);

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
        let mut linker = Linker::new(&engine);
        let mut provided = Provided::default();
        crate::wasi::add_to_linker(&mut linker, &mut provided)
            .and_then(|()| abi::add_to_linker(&mut linker, &mut provided))
            .map_err(|e| Error::config("engine", format!("{e:#}")))?;
        let cache = match &self.cache_dir {
            Some(dir) => {
                Some(ArtifactCache::new(dir.clone(), &engine).map_err(|e| Error::io(dir, e))?)
            }
            None => None,
        };
        let secret = host_secret();
        let data = match &self.data_dir {
            Some(d) => Some(DataDir::open(d.clone())?),
            None => None,
        };
        let core = Arc::new(Core::new(
            engine.clone(),
            linker,
            provided,
            cache,
            data,
            self.clone(),
            secret,
        ));
        let threads = Threads::start(&core).map_err(|e| Error::io("worker threads", e))?;
        let c = core.clone();
        let ticker = Ticker::start(engine, self.epoch_tick, move || c.on_tick())
            .map_err(|e| Error::io("epoch thread", e))?;
        let events = Events::open(
            core.clone(),
            self.data_dir.as_deref(),
            self.clock.0.clone(),
            self.event_concurrency.unwrap_or(self.workers * 2),
        )?;
        let host = Host {
            inner: Arc::new(Inner {
                _ticker: ticker,
                events,
                _threads: threads,
                core,
            }),
        };
        host.restore()?;
        // Dispatching starts once the registry is restored, so stored
        // events find their functions.
        host.inner.events.start_dispatcher()?;
        Ok(host)
    }
}

/// Runs registered functions, each invocation in its own sandbox.
///
/// Cloning a `Host` is cheap and shares everything.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

// Field order is drop order: the ticker stops first, then the workers
// and maintenance thread (graceful shutdown), then the shared core.
struct Inner {
    _ticker: Ticker,
    events: Events,
    _threads: Threads,
    core: Arc<Core>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Sources and the dispatcher stop before the workers do; the
        // dispatcher records what finished.
        self.events.begin_stop();
        self.core.shutdown(Duration::from_secs(30));
        self.events.finish_stop();
    }
}

/// Registry counters (see [`Host::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostStats {
    /// Modules compiled by this host (0 when every register hit the cache).
    pub compiles: u64,
    /// Registers served from the artifact cache.
    pub cache_hits: u64,
    /// Cache entries found corrupt or stale, removed and recompiled.
    pub cache_rejected: u64,
    /// Snapshots made at register time (the guest's init ran).
    pub snapshots_created: u64,
    /// Snapshots loaded from the cache (init did not run).
    pub snapshots_reused: u64,
}

/// The result of an invocation that ran: the outcome, the guest's logs and
/// the usage report. Produced even when the guest failed.
#[derive(Debug)]
pub struct Invocation {
    /// The output bytes, or what went wrong while the guest ran.
    pub outcome: Result<Bytes, Error>,
    /// Captured stdout/stderr.
    pub logs: Logs,
    /// Usage and timing.
    pub report: Report,
}

impl Invocation {
    /// The output, or the error the guest run ended with.
    pub fn output(&self) -> Result<&[u8], &Error> {
        self.outcome.as_ref().map(|b| &b[..])
    }

    /// Consumes the invocation, keeping only the outcome.
    pub fn into_output(self) -> Result<Bytes> {
        self.outcome
    }
}

impl Host {
    /// A builder with default settings.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// Registers a function: reads and size-checks the module, loads it from
    /// the artifact cache or compiles it, checks it against ABI v1, links
    /// it, reserves its concurrency and prepares its provisioned instances.
    /// Nothing is registered if any step fails.
    ///
    /// Registering a name that exists publishes its next version: versions
    /// are immutable and numbered from 1; `$LATEST` is the newest. With a
    /// data dir the table and the module bytes are persisted.
    pub fn register(&self, cfg: FunctionConfig) -> Result<FunctionInfo> {
        let info = self.publish(cfg, None)?;
        self.persist()?;
        Ok(info)
    }

    /// The pre-initialised module for `bytes`: from the snapshot cache, or
    /// made now by running init (and cached).
    fn snapshot_of(
        &self,
        bytes: &[u8],
        module_hash: &str,
        cfg: &FunctionConfig,
        spec: &Arc<FunctionSpec>,
    ) -> Result<Vec<u8>> {
        let core = &self.inner.core;
        let s = &core.settings;
        let engine = format!(
            "wasmtime-48.0.8 stack={} fuel={} max_memory={}",
            s.max_wasm_stack, s.fuel_metering, s.max_memory
        );
        let key = snapshot::key(module_hash, cfg, &engine);
        let file = core.snapshot_dir.as_ref().map(|d| snapshot::path(d, &key));
        let seal = |snap: &[u8]| {
            let mut h = blake3::Hasher::new();
            h.update(key.as_bytes());
            h.update(snap);
            h.finalize().to_hex().to_string()
        };
        if let Some(f) = &file
            && let Ok(snap) = std::fs::read(f)
            // A torn or foreign file (its seal does not match) is ignored
            // and made again.
            && std::fs::read_to_string(f.with_extension("b3")).is_ok_and(|s| s == seal(&snap))
            && wasmtime::Module::validate(&core.engine, &snap).is_ok()
        {
            core.snapshots_reused.fetch_add(1, Ordering::Relaxed);
            return Ok(snap);
        }
        let snap = snapshot::create(core, bytes, spec.clone())?;
        if snap.bytes.len() > s.max_module_size {
            return Err(Error::ModuleTooLarge {
                size: snap.bytes.len(),
                max: s.max_module_size,
            });
        }
        core.snapshots_created.fetch_add(1, Ordering::Relaxed);
        let snap = match snap {
            snapshot::Snapshot {
                bytes,
                cacheable: true,
            } => bytes,
            // Init called the host: usable here, never from disk.
            snapshot::Snapshot { bytes, .. } => return Ok(bytes),
        };
        if let Some(f) = &file {
            // Best effort: a cache that cannot be written costs a re-init
            // next time, nothing else.
            // The seal goes last: a snapshot without it is never used.
            let written = persist::write_file_atomic(f, &snap).and_then(|()| {
                persist::write_file_atomic(&f.with_extension("b3"), seal(&snap).as_bytes())
            });
            if let Err(e) = written {
                tracing::warn!(target: "fnhost::snapshot", path = %f.display(), error = %e, "snapshot not cached");
            }
        }
        Ok(snap)
    }

    fn publish(&self, cfg: FunctionConfig, explicit_version: Option<u32>) -> Result<FunctionInfo> {
        let core = &self.inner.core;
        let span = tracing::info_span!("register", function = %cfg.name);
        let _enter = span.enter();
        let s = &core.settings;
        cfg.validate(s.max_memory)?;
        let grants = core.resolve_grants(&cfg.grants)?;
        if cfg.max_fuel.is_some() && !s.fuel_metering {
            return Err(Error::config(
                "max_fuel",
                "the host was built without fuel_metering",
            ));
        }
        if core.shutting_down.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        // Registrations are rare; one at a time keeps version numbers and
        // reservations simple.
        let _registering = core.register_lock.lock();
        let prev = core.registry.get(&cfg.name);
        let prev_latest = prev
            .as_ref()
            .and_then(|e| e.latest().map(|(v, f)| (*v, f.clone())));

        let bytes = match &cfg.source {
            ModuleSource::Bytes(b) => b.clone(),
            ModuleSource::File(p) => {
                let size = std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len();
                if size > s.max_module_size as u64 {
                    return Err(Error::ModuleTooLarge {
                        size: size as usize,
                        max: s.max_module_size,
                    });
                }
                Bytes::from(std::fs::read(p).map_err(|e| Error::io(p, e))?)
            }
        };
        if bytes.len() > s.max_module_size {
            return Err(Error::ModuleTooLarge {
                size: bytes.len(),
                max: s.max_module_size,
            });
        }
        let module_hash = blake3::hash(&bytes).to_hex().to_string();
        // Registering the same code and configuration again publishes
        // nothing new (as Lambda's PublishVersion with no change).
        if explicit_version.is_none()
            && let Some((_, latest)) = &prev_latest
            && latest.module_hash == module_hash
            && persist::same_settings(&latest.config, &cfg)
        {
            return Ok(latest.info());
        }
        let spec = Arc::new(FunctionSpec::new(
            &cfg,
            core.secret,
            grants,
            s.fuel_metering.then(|| cfg.max_fuel.unwrap_or(u64::MAX)),
        ));
        let module = if cfg.snapshot {
            let snap = self.snapshot_of(&bytes, &module_hash, &cfg, &spec)?;
            self.load_or_compile(&snap, &blake3::hash(&snap).to_hex())?
        } else {
            self.load_or_compile(&bytes, &module_hash)?
        };
        let kept = match &core.data {
            Some(d) => {
                d.store_module(&module_hash, &bytes)?;
                persist::with_module_file(&cfg, d.module_path(&module_hash))
            }
            None => {
                let mut c = cfg.clone();
                c.source = ModuleSource::Bytes(Bytes::new());
                c
            }
        };
        let exports = abi::check(&module, &core.provided)?;
        let pre = core
            .linker
            .instantiate_pre(&module)
            .map_err(|e| Error::InvalidModule {
                reason: format!("{e:#}"),
            })?;
        let prev_reserved = prev_latest.as_ref().and_then(|(_, f)| f.reserved);
        let gate = match (cfg.reserved_concurrency, &prev_latest) {
            (None, _) => core.unreserved.clone(),
            (Some(r), Some((_, p))) if p.reserved == Some(r) => p.gate.clone(),
            (Some(r), _) => Gate::new(r),
        };
        self.reserve(prev_reserved, cfg.reserved_concurrency)?;
        let next = prev_latest.as_ref().map_or(1, |(v, _)| v + 1);
        let version = explicit_version.unwrap_or(next).max(next);
        let function = Arc::new(Function {
            spec,
            pre,
            exports,
            module_hash,
            gate,
            reserved: cfg.reserved_concurrency,
            metrics: Metrics::new(),
            pool: WarmPool::default(),
            version,
            version_label: version.to_string().into(),
            config: kept,
        });
        // Provisioned instances are ready before the version is visible; a
        // failing init fails the registration and registers nothing.
        let published = core.refill(&function).and_then(|()| {
            core.registry.update(&cfg.name, |e| {
                let mut e = e.cloned().unwrap_or(Entry {
                    versions: Default::default(),
                    aliases: Default::default(),
                });
                e.versions.insert(version, function.clone());
                Ok((Some(e), ()))
            })
        });
        if let Err(e) = published {
            function.pool.clear(&core.idle_budget);
            let _ = self.reserve(cfg.reserved_concurrency, prev_reserved);
            return Err(e);
        }
        core.drain_inactive(&cfg.name);
        let info = function.info();
        tracing::info!(module_hash = %info.module_hash, version, "registered");
        Ok(info)
    }

    /// Moves the function's reservation from `old` to `new`, keeping the
    /// unreserved pool = global limit − Σ reserved.
    fn reserve(&self, old: Option<u32>, new: Option<u32>) -> Result<()> {
        let core = &self.inner.core;
        let limit = core.settings.concurrency_limit;
        let mut total = core.reserved_total.lock();
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
        core.unreserved.set_limit(limit - *total);
        Ok(())
    }

    fn load_or_compile(&self, bytes: &[u8], hash: &str) -> Result<Module> {
        let core = &self.inner.core;
        if let Some(cache) = &core.cache {
            match cache.load(&core.engine, hash) {
                Lookup::Hit(m) => {
                    core.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(m);
                }
                Lookup::Rejected(why) => {
                    core.cache_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%why, "artifact cache entry rejected; recompiling");
                }
                Lookup::Miss => {}
            }
        }
        let span = tracing::info_span!("compile", bytes = bytes.len());
        let _enter = span.enter();
        let module = Module::new(&core.engine, bytes).map_err(|e| Error::InvalidModule {
            reason: format!("{e:#}"),
        })?;
        core.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &core.cache
            && let Err(e) = cache.store(hash, &module)
        {
            tracing::warn!(error = %e, dir = %cache.dir().display(), "could not write artifact cache");
        }
        Ok(module)
    }

    /// Removes a function and all its versions and aliases: new
    /// invocations get `NotFound`; running ones finish; idle instances and
    /// reserved concurrency are released.
    pub fn unregister(&self, name: &str) -> Result<()> {
        let core = &self.inner.core;
        let _registering = core.register_lock.lock();
        let entry = core.registry.update(name, |e| match e {
            Some(e) => Ok((None, e.clone())),
            None => Err(Error::NotFound { name: name.into() }),
        })?;
        for f in entry.versions.values() {
            f.pool.clear(&core.idle_budget);
        }
        let reserved = entry.latest().and_then(|(_, f)| f.reserved);
        self.reserve(reserved, None)?;
        drop(_registering);
        self.persist()
    }

    /// Removes version `version` of `name`. Refused (naming the alias) while
    /// an alias points to it, and for the newest version (`$LATEST`).
    pub fn remove_version(&self, name: &str, version: u32) -> Result<()> {
        let core = &self.inner.core;
        let _registering = core.register_lock.lock();
        let removed = core.registry.update(name, |e| {
            let e = e.ok_or_else(|| Error::NotFound { name: name.into() })?;
            let f = e
                .versions
                .get(&version)
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    name: format!("{name}:{version}"),
                })?;
            if let Some((alias, _)) = e.aliases.iter().find(|(_, a)| {
                a.version == version || a.additional.is_some_and(|(v, _)| v == version)
            }) {
                return Err(Error::InUse {
                    what: format!("{name}:{version}"),
                    by: format!("alias `{name}:{alias}`"),
                });
            }
            if e.latest().is_some_and(|(v, _)| *v == version) {
                return Err(Error::InUse {
                    what: format!("{name}:{version}"),
                    by: "$LATEST (publish a newer version or unregister the function)".into(),
                });
            }
            let mut next = e.clone();
            next.versions.remove(&version);
            Ok((Some(next), f))
        })?;
        removed.pool.clear(&core.idle_budget);
        drop(_registering);
        self.persist()
    }

    /// Creates or moves alias `alias` of `name` atomically: invocations
    /// already running finish on the version they started on; new ones use
    /// the new target. Idle instances of versions nothing points to any
    /// more are released.
    pub fn set_alias(&self, name: &str, alias: &str, target: Alias) -> Result<()> {
        let core = &self.inner.core;
        core.registry.update(name, |e| {
            let e = e.ok_or_else(|| Error::NotFound { name: name.into() })?;
            check_alias(name, e, alias, &target)?;
            let mut next = e.clone();
            next.aliases.insert(alias.to_string(), target);
            Ok((Some(next), ()))
        })?;
        core.drain_inactive(name);
        self.persist()
    }

    /// Removes alias `alias` of `name`.
    pub fn remove_alias(&self, name: &str, alias: &str) -> Result<()> {
        let core = &self.inner.core;
        core.registry.update(name, |e| {
            let e = e.ok_or_else(|| Error::NotFound { name: name.into() })?;
            let mut next = e.clone();
            next.aliases.remove(alias).ok_or_else(|| Error::NotFound {
                name: format!("{name}:{alias}"),
            })?;
            Ok((Some(next), ()))
        })?;
        core.drain_inactive(name);
        self.persist()
    }

    /// `name`'s versions and aliases as persisted.
    fn saved(&self, name: &str) -> Option<SavedFunction> {
        let e = self.inner.core.registry.get(name)?;
        Some(SavedFunction {
            versions: e
                .versions
                .iter()
                .map(|(v, f)| SavedVersion {
                    version: *v,
                    module_hash: f.module_hash.clone(),
                    config: f.config.clone(),
                })
                .collect(),
            aliases: e.aliases.clone(),
            name: name.to_string(),
        })
    }

    /// Writes the registry table to the data dir (no-op without one).
    fn persist(&self) -> Result<()> {
        let core = &self.inner.core;
        let Some(data) = &core.data else {
            return Ok(());
        };
        let _registering = core.register_lock.lock();
        let saved: Vec<SavedFunction> = core
            .registry
            .names()
            .into_iter()
            .filter_map(|name| self.saved(&name))
            .collect();
        data.save(&saved)
    }

    /// `name`'s table entry, portable to another host: every version
    /// (module hash and configuration) and every alias, as JSON — the
    /// same form the data dir's `registry.json` holds per function. A
    /// cluster shares registries this way ([`apply_function`](Host::apply_function)
    /// on the other side).
    pub fn export_function(&self, name: &str) -> Result<serde_json::Value> {
        self.saved(name)
            .map(|f| persist::function_json(&f))
            .ok_or_else(|| Error::NotFound { name: name.into() })
    }

    /// Makes `name` here match `table` (what [`export_function`](Host::export_function)
    /// gave on another host; `None`: the function is gone): publishes the
    /// versions this host lacks under their numbers, moves and removes
    /// aliases, removes versions the table no longer has. `module` supplies
    /// a module's bytes by hash (they are checked against it). When this
    /// host's history of `name` cannot be brought in line step by step (a
    /// version with the same number but other code or settings, or newer
    /// versions here), the function is unregistered and rebuilt from the
    /// table. Returns whether anything changed.
    pub fn apply_function(
        &self,
        name: &str,
        table: Option<&serde_json::Value>,
        module: &mut dyn FnMut(&str) -> std::result::Result<Bytes, String>,
    ) -> Result<bool> {
        let have = self.saved(name);
        let Some(table) = table else {
            if have.is_some() {
                self.unregister(name)?;
            }
            return Ok(have.is_some());
        };
        let want = persist::function_from_json(name, table, &|h| PathBuf::from(h))
            .map_err(|why| Error::config("table", format!("function `{name}`: {why}")))?;
        let mut have: BTreeMap<u32, SavedVersion> = have
            .map(|f| f.versions.into_iter().map(|v| (v.version, v)).collect())
            .unwrap_or_default();
        let mut changed = false;
        let have_max = have.keys().next_back().copied().unwrap_or(0);
        let want_max = want.versions.last().map_or(0, |v| v.version);
        let diverged = have_max > want_max
            || want.versions.iter().any(|w| match have.get(&w.version) {
                Some(h) => {
                    h.module_hash != w.module_hash || !persist::same_settings(&h.config, &w.config)
                }
                None => w.version < have_max,
            });
        if diverged {
            self.unregister(name)?;
            have.clear();
            changed = true;
        }
        for w in &want.versions {
            if have.contains_key(&w.version) {
                continue;
            }
            let bytes = module(&w.module_hash).map_err(|reason| Error::Store {
                reason: format!(
                    "module {} of `{name}:{}`: {reason}",
                    w.module_hash, w.version
                ),
            })?;
            if blake3::hash(&bytes).to_hex().as_str() != w.module_hash {
                return Err(Error::Store {
                    reason: format!(
                        "module of `{name}:{}` does not match its hash {}",
                        w.version, w.module_hash
                    ),
                });
            }
            let mut cfg = w.config.clone();
            cfg.source = ModuleSource::Bytes(bytes);
            self.publish(cfg, Some(w.version))?;
            changed = true;
        }
        let aliases = self.aliases(name)?;
        for (alias, target) in &want.aliases {
            if aliases.get(alias) != Some(target) {
                self.set_alias(name, alias, *target)?;
                changed = true;
            }
        }
        for alias in aliases.keys().filter(|a| !want.aliases.contains_key(*a)) {
            self.remove_alias(name, alias)?;
            changed = true;
        }
        for v in have
            .keys()
            .filter(|v| !want.versions.iter().any(|w| w.version == **v))
        {
            self.remove_version(name, *v)?;
            changed = true;
        }
        if changed {
            self.persist()?;
        }
        Ok(changed)
    }

    /// The compiled form of the module whose hash is `module_hash`, as this
    /// host's artifact cache holds it: `(key, bytes)`, where `key` names
    /// the module hash and the engine fingerprint (only hosts of the same
    /// build and settings can load it). `None` without a cache or an entry.
    pub fn artifact(&self, module_hash: &str) -> Option<(String, Vec<u8>)> {
        let cache = self.inner.core.cache.as_ref()?;
        Some((cache.stem(module_hash), cache.read(module_hash)?))
    }

    /// The key [`artifact`](Host::artifact) would give `module_hash` here
    /// (`None` without an artifact cache).
    pub fn artifact_key(&self, module_hash: &str) -> Option<String> {
        Some(self.inner.core.cache.as_ref()?.stem(module_hash))
    }

    /// Puts a compiled artifact another host of the same build made into
    /// this host's cache, so registering the module does not compile it.
    /// The bytes are native code: install only what comes from a host you
    /// trust (a cluster authenticates them first). Wasmtime still refuses
    /// artifacts of another version or configuration at load, and such an
    /// entry is then compiled again.
    pub fn install_artifact(&self, module_hash: &str, bytes: &[u8]) -> Result<()> {
        let Some(cache) = &self.inner.core.cache else {
            return Ok(());
        };
        cache
            .install(module_hash, bytes)
            .map_err(|e| Error::io(cache.dir(), e))
    }

    /// Re-registers what the data dir holds (through the artifact cache).
    fn restore(&self) -> Result<()> {
        let core = &self.inner.core;
        let Some(data) = &core.data else {
            return Ok(());
        };
        for f in data.load()? {
            for v in f.versions {
                self.publish(v.config, Some(v.version))?;
            }
            for (alias, target) in f.aliases {
                core.registry.update(&f.name, |e| {
                    let e = e.ok_or_else(|| Error::NotFound {
                        name: f.name.clone(),
                    })?;
                    check_alias(&f.name, e, &alias, &target)?;
                    let mut next = e.clone();
                    next.aliases.insert(alias.clone(), target);
                    Ok((Some(next), ()))
                })?;
            }
        }
        Ok(())
    }

    /// Published versions of `name`, oldest first.
    pub fn versions(&self, name: &str) -> Result<Vec<u32>> {
        let e = self.entry(name)?;
        Ok(e.versions.keys().copied().collect())
    }

    /// Aliases of `name`.
    pub fn aliases(&self, name: &str) -> Result<BTreeMap<String, Alias>> {
        Ok(self.entry(name)?.aliases.clone())
    }

    fn entry(&self, name: &str) -> Result<Arc<Entry>> {
        self.inner
            .core
            .registry
            .get(name)
            .ok_or_else(|| Error::NotFound { name: name.into() })
    }

    /// What `name` (or `name:version`, `name:alias`) resolves to now.
    pub fn function_info(&self, name: &str) -> Result<FunctionInfo> {
        self.inner
            .core
            .registry
            .resolve(name)
            .map(|(f, _)| f.info())
    }

    /// Every registered function ($LATEST of each), sorted by name.
    pub fn functions(&self) -> Vec<FunctionInfo> {
        let core = &self.inner.core;
        core.registry
            .names()
            .iter()
            .filter_map(|n| core.registry.resolve(n).ok().map(|(f, _)| f.info()))
            .collect()
    }

    /// Registry counters.
    pub fn stats(&self) -> HostStats {
        let c = &self.inner.core;
        HostStats {
            compiles: c.compiles.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_rejected: c.cache_rejected.load(Ordering::Relaxed),
            snapshots_created: c.snapshots_created.load(Ordering::Relaxed),
            snapshots_reused: c.snapshots_reused.load(Ordering::Relaxed),
        }
    }

    /// Counters of one function (all its versions), or of one version
    /// (`name:3`).
    pub fn function_metrics(&self, name: &str) -> Result<MetricsSnapshot> {
        let (base, qualifier) = split(name);
        let e = self.entry(base)?;
        let mut total = MetricsSnapshot::default();
        let mut max = 0;
        for (v, f) in &e.versions {
            if qualifier.is_none() || qualifier == Some(&*v.to_string()) {
                let m = f.metrics.snapshot();
                max = max.max(m.max_in_flight);
                total.absorb(&m);
            }
        }
        // Versions share one concurrency gate; the per-version maxima bound
        // the function's from below.
        total.max_in_flight = max;
        Ok(total)
    }

    fn per_function(&self) -> Vec<(String, MetricsSnapshot)> {
        self.inner
            .core
            .registry
            .names()
            .into_iter()
            .filter_map(|n| self.function_metrics(&n).ok().map(|m| (n, m)))
            .collect()
    }

    /// Host-wide counters: the sum over registered functions, with the
    /// host's own current and peak concurrency.
    pub fn metrics(&self) -> MetricsSnapshot {
        let mut total = MetricsSnapshot::default();
        for f in self.inner.core.registry.all() {
            total.absorb(&f.metrics.snapshot());
        }
        let (now, max) = self.inner.core.host_in_flight();
        total.in_flight = now;
        total.max_in_flight = max;
        total
    }

    /// Usage and cost per function and in total under `prices`, from the
    /// counters since the host started.
    pub fn usage(&self, prices: &PriceModel) -> UsageSummary {
        let per = self
            .per_function()
            .into_iter()
            .map(|(n, m)| (n, Usage::of(&m)))
            .collect();
        UsageSummary::new(per, prices)
    }

    /// All metrics in the Prometheus text format (what the gateway's
    /// `/metrics` serves).
    pub fn prometheus(&self) -> String {
        crate::metrics::render_prometheus(&self.per_function(), &self.metrics())
    }

    /// Instances of `name` (all versions, or one: `name:3`) alive now:
    /// `(live, idle)`.
    pub fn instances(&self, name: &str) -> Result<(u32, usize)> {
        let (base, qualifier) = split(name);
        let e = self.entry(base)?;
        Ok(e.versions
            .iter()
            .filter(|(v, _)| qualifier.is_none() || qualifier == Some(&*v.to_string()))
            .fold((0, 0), |(l, i), (_, f)| {
                (l + f.pool.live(), i + f.pool.idle())
            }))
    }

    /// Releases reuse-mode instances idle past their TTL as of `now` (the
    /// maintenance thread does this every interval; tests pass a chosen
    /// clock). Returns how many were released.
    pub fn release_idle(&self, now: Instant) -> usize {
        self.inner.core.reap(now)
    }

    /// Removes every artifact-cache entry (no-op without a cache).
    pub fn clear_artifact_cache(&self) -> Result<()> {
        match &self.inner.core.cache {
            Some(c) => c.clear().map_err(|e| Error::io(c.dir(), e)),
            None => Ok(()),
        }
    }

    /// Invokes `name` with `payload` on the calling thread, after the same
    /// admission control as every path (concurrency limits, payload cap).
    ///
    /// `Err` means no guest code ran (unknown function, payload too large,
    /// throttled, shutting down); otherwise the [`Invocation`] carries the
    /// outcome, logs and report.
    pub fn invoke(&self, name: &str, payload: &[u8]) -> Result<Invocation> {
        let (f, version) = self.inner.core.registry.resolve(name)?;
        let permit = self.inner.core.admit(&f, payload.len())?;
        Ok(self.inner.core.execute(&f, version, payload, permit, None))
    }

    /// Invokes `name` on the host's worker pool through the lock-free
    /// queue. The future works on any executor; admission happens when it
    /// is first polled, and waiting for a slot (up to the function's
    /// `max_wait`) never blocks the executor.
    pub fn invoke_async(&self, name: &str, payload: impl Into<Bytes>) -> InvokeFuture {
        self.future(name, payload.into(), None)
    }

    /// [`invoke_async`](Host::invoke_async) for an event that a queue
    /// outside this host delivers (a cluster's shared event stream): the
    /// guest sees `event_id` and `attempt` (1 on the first) in its context,
    /// as it does for the host's own event invocations. Retries, ages and
    /// dead letters are the caller's.
    pub fn invoke_event_async(
        &self,
        name: &str,
        payload: impl Into<Bytes>,
        event_id: &str,
        attempt: u32,
    ) -> InvokeFuture {
        let ctx = EventCtx {
            id: Arc::from(event_id),
            attempt,
        };
        self.future(name, payload.into(), Some(ctx))
    }

    fn future(&self, name: &str, payload: Bytes, event: Option<EventCtx>) -> InvokeFuture {
        InvokeFuture {
            state: match self.inner.core.registry.resolve(name) {
                Ok((f, version)) => FutState::Admit {
                    core: self.inner.core.clone(),
                    f,
                    version,
                    payload,
                    event,
                    wait_until: None,
                },
                Err(e) => FutState::Ready(Some(Err(e))),
            },
        }
    }

    /// Invokes `name` once per payload on the worker pool and blocks until
    /// all are done: the queue path with many invocations in flight and a
    /// single wake-up of the caller. Each payload passes admission on its
    /// own; one that is refused (throttled, too large, shutting down) gets
    /// its error in its slot. Results are in payload order.
    pub fn invoke_batch(
        &self,
        name: &str,
        payloads: Vec<Bytes>,
    ) -> Result<Vec<Result<Invocation>>> {
        let core = &self.inner.core;
        let (f, version) = core.registry.resolve(name)?;
        let batch = Batch::new(payloads.len());
        for (i, payload) in payloads.into_iter().enumerate() {
            match core.admit(&f, payload.len()) {
                Ok(permit) => core.enqueue(Job {
                    function: f.clone(),
                    version,
                    payload,
                    permit,
                    event: None,
                    reply: Reply::Batch(batch.clone(), i),
                }),
                Err(e) => batch.fill(i, Err(e)),
            }
        }
        Ok(batch.wait())
    }

    /// Graceful shutdown: stop admitting (new invocations get
    /// [`Error::ShuttingDown`]), answer every queued invocation with
    /// `ShuttingDown`, and wait up to `grace` for running ones to finish.
    /// Dropping the last `Host` handle does the same with 30 s of grace.
    pub fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.inner.events.begin_stop();
        let report = self.inner.core.shutdown(grace);
        self.inner.events.finish_stop();
        report
    }

    /// The event system: event invocations, retries, dead letters,
    /// queues, topics, schedules and file triggers (see [`events`](crate::events)).
    pub fn events(&self) -> &Events {
        &self.inner.events
    }
}

/// Future returned by [`Host::invoke_async`].
#[must_use = "futures do nothing unless polled"]
pub struct InvokeFuture {
    state: FutState,
}

enum FutState {
    Admit {
        core: Arc<Core>,
        f: Arc<Function>,
        version: Option<u32>,
        payload: Bytes,
        event: Option<EventCtx>,
        wait_until: Option<Instant>,
    },
    Waiting(futures_channel::oneshot::Receiver<Result<Invocation>>),
    Ready(Option<Result<Invocation>>),
}

impl Future for InvokeFuture {
    type Output = Result<Invocation>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let next = match &mut self.state {
                FutState::Ready(r) => {
                    return Poll::Ready(r.take().unwrap_or(Err(Error::ShuttingDown)));
                }
                FutState::Waiting(rx) => {
                    return match Pin::new(rx).poll(cx) {
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(Ok(r)) => Poll::Ready(r),
                        // The job was dropped unanswered: only at shutdown.
                        Poll::Ready(Err(_)) => Poll::Ready(Err(Error::ShuttingDown)),
                    };
                }
                FutState::Admit {
                    core,
                    f,
                    version,
                    payload,
                    event,
                    wait_until,
                } => {
                    let until = match *wait_until {
                        Some(u) => u,
                        None => match core.precheck(f, payload.len()) {
                            // First poll: the checks that need no slot.
                            Err(e) => {
                                self.state = FutState::Ready(Some(Err(e)));
                                continue;
                            }
                            Ok(()) => *wait_until.insert(Instant::now() + f.spec.max_wait),
                        },
                    };
                    if f.gate.poll_acquire(cx.waker(), until) {
                        let (tx, rx) = futures_channel::oneshot::channel();
                        core.enqueue(Job {
                            function: f.clone(),
                            version: *version,
                            payload: std::mem::take(payload),
                            permit: Permit::new(f.gate.clone()),
                            event: event.take(),
                            reply: Reply::Future(tx),
                        });
                        FutState::Waiting(rx)
                    } else if Instant::now() < until {
                        return Poll::Pending;
                    } else {
                        FutState::Ready(Some(Err(core.throttled(f))))
                    }
                }
            };
            self.state = next;
        }
    }
}

/// 32 bytes of OS randomness for request ids and guest random seeds.
pub(crate) fn host_secret() -> [u8; 32] {
    let mut out = [0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut out))
        .is_ok()
    {
        return out;
    }
    // Fallback: std's randomly keyed hasher, mixed with the time.
    use std::hash::{BuildHasher, Hasher};
    let mut h = blake3::Hasher::new();
    for _ in 0..4 {
        let mut s = std::collections::hash_map::RandomState::new().build_hasher();
        s.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.update(&s.finish().to_le_bytes());
    }
    *h.finalize().as_bytes()
}
