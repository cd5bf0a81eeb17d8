//! The [`Host`]: registry of functions, and the invoke entry point.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use parking_lot::RwLock;
use wasmtime::{Engine, Linker, Module};

use crate::abi::{self, Provided};
use crate::cache::{self, ArtifactCache, Lookup};
use crate::engine::{self, EngineSettings, Ticker};
use crate::error::{Error, Result};
use crate::function::{
    Function, FunctionConfig, FunctionInfo, FunctionSpec, ModuleSource, WASM32_MAX_MEMORY,
};
use crate::logs::Logs;
use crate::report::{Report, RequestId};
use crate::sandbox::{self, Call, State};

/// Builds a [`Host`]. Every setting has a default; `build` validates them
/// and names the field it refuses.
#[derive(Debug, Clone)]
pub struct HostBuilder {
    cache_dir: Option<PathBuf>,
    max_instances: u32,
    max_memory: u64,
    epoch_tick: Duration,
    max_module_size: usize,
    max_wasm_stack: usize,
}

impl Default for HostBuilder {
    fn default() -> Self {
        HostBuilder {
            cache_dir: Some(cache::default_cache_dir()),
            max_instances: 1000,
            max_memory: WASM32_MAX_MEMORY,
            epoch_tick: Duration::from_millis(5),
            max_module_size: 64 << 20,
            max_wasm_stack: 512 << 10,
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

    /// Compile every module on register; keep nothing on disk.
    pub fn no_artifact_cache(mut self) -> Self {
        self.cache_dir = None;
        self
    }

    /// Instances that may exist at once (pool slots; default 1,000).
    pub fn max_instances(mut self, n: u32) -> Self {
        self.max_instances = n;
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

    /// Validates the settings and starts the host.
    pub fn build(self) -> Result<Host> {
        if self.max_instances == 0 {
            return Err(Error::config("max_instances", "must be at least 1"));
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
        if self.max_module_size == 0 {
            return Err(Error::config("max_module_size", "must be above 0"));
        }
        let engine = engine::build_engine(&EngineSettings {
            max_instances: self.max_instances,
            max_memory: self.max_memory,
            max_wasm_stack: self.max_wasm_stack,
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
        let ticker = Ticker::start(engine.clone(), self.epoch_tick)
            .map_err(|e| Error::io("epoch thread", e))?;
        let secret = host_secret();
        Ok(Host {
            inner: Arc::new(Inner {
                request_prefix: u64::from_le_bytes(secret[..8].try_into().unwrap_or_default()),
                secret,
                engine,
                linker,
                provided,
                cache,
                functions: RwLock::new(HashMap::new()),
                settings: self,
                counters: Counters::default(),
                _ticker: ticker,
            }),
        })
    }
}

/// Runs registered functions, each invocation in its own sandbox.
///
/// Cloning a `Host` is cheap and shares everything.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

struct Inner {
    engine: Engine,
    linker: Linker<State>,
    provided: Provided,
    cache: Option<ArtifactCache>,
    functions: RwLock<HashMap<String, Arc<Function>>>,
    settings: HostBuilder,
    secret: [u8; 32],
    request_prefix: u64,
    counters: Counters,
    _ticker: Ticker,
}

#[derive(Default)]
struct Counters {
    compiles: AtomicU64,
    cache_hits: AtomicU64,
    cache_rejected: AtomicU64,
    requests: AtomicU64,
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
    /// the artifact cache or compiles it, checks it against ABI v1 and links
    /// it. Nothing is registered if any step fails.
    pub fn register(&self, cfg: FunctionConfig) -> Result<FunctionInfo> {
        let span = tracing::info_span!("register", function = %cfg.name);
        let _enter = span.enter();
        let s = &self.inner.settings;
        cfg.validate(s.max_memory)?;
        if self.inner.functions.read().contains_key(&cfg.name) {
            return Err(Error::AlreadyExists { name: cfg.name });
        }
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
        let module = self.load_or_compile(&bytes, &module_hash)?;
        let exports = abi::check(&module, &self.inner.provided)?;
        let pre = self
            .inner
            .linker
            .instantiate_pre(&module)
            .map_err(|e| Error::InvalidModule {
                reason: format!("{e:#}"),
            })?;
        let function = Arc::new(Function {
            spec: Arc::new(FunctionSpec::new(&cfg, self.inner.secret)),
            pre,
            exports,
            module_hash,
        });
        let info = function.info();
        let mut map = self.inner.functions.write();
        if map.contains_key(&cfg.name) {
            return Err(Error::AlreadyExists { name: cfg.name });
        }
        map.insert(cfg.name, function);
        tracing::info!(module_hash = %info.module_hash, "registered");
        Ok(info)
    }

    fn load_or_compile(&self, bytes: &[u8], hash: &str) -> Result<Module> {
        let c = &self.inner.counters;
        if let Some(cache) = &self.inner.cache {
            match cache.load(&self.inner.engine, hash) {
                Lookup::Hit(m) => {
                    c.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(m);
                }
                Lookup::Rejected(why) => {
                    c.cache_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%why, "artifact cache entry rejected; recompiling");
                }
                Lookup::Miss => {}
            }
        }
        let span = tracing::info_span!("compile", bytes = bytes.len());
        let _enter = span.enter();
        let module = Module::new(&self.inner.engine, bytes).map_err(|e| Error::InvalidModule {
            reason: format!("{e:#}"),
        })?;
        c.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.inner.cache
            && let Err(e) = cache.store(hash, &module)
        {
            tracing::warn!(error = %e, dir = %cache.dir().display(), "could not write artifact cache");
        }
        Ok(module)
    }

    /// Removes a function; invocations already running finish.
    pub fn unregister(&self, name: &str) -> Result<()> {
        self.inner
            .functions
            .write()
            .remove(name)
            .map(|_| ())
            .ok_or_else(|| Error::NotFound { name: name.into() })
    }

    /// What is registered under `name`.
    pub fn function_info(&self, name: &str) -> Result<FunctionInfo> {
        self.function(name).map(|f| f.info())
    }

    /// Every registered function, sorted by name.
    pub fn functions(&self) -> Vec<FunctionInfo> {
        let mut v: Vec<_> = self
            .inner
            .functions
            .read()
            .values()
            .map(|f| f.info())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn function(&self, name: &str) -> Result<Arc<Function>> {
        self.inner
            .functions
            .read()
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound { name: name.into() })
    }

    /// Registry counters.
    pub fn stats(&self) -> HostStats {
        let c = &self.inner.counters;
        HostStats {
            compiles: c.compiles.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_rejected: c.cache_rejected.load(Ordering::Relaxed),
        }
    }

    /// Removes every artifact-cache entry (no-op without a cache).
    pub fn clear_artifact_cache(&self) -> Result<()> {
        match &self.inner.cache {
            Some(c) => c.clear().map_err(|e| Error::io(c.dir(), e)),
            None => Ok(()),
        }
    }

    /// Invokes `name` with `payload` in a fresh instance, on the calling
    /// thread.
    ///
    /// `Err` means no guest code ran (unknown function, payload too large);
    /// otherwise the [`Invocation`] carries the outcome, logs and report.
    pub fn invoke(&self, name: &str, payload: &[u8]) -> Result<Invocation> {
        let function = self.function(name)?;
        let spec = &function.spec;
        if payload.len() > spec.max_input {
            return Err(Error::PayloadTooLarge {
                size: payload.len(),
                max: spec.max_input,
            });
        }
        let request_id = self.next_request_id();
        let span = tracing::debug_span!("invoke", function = %spec.name, request_id = %request_id);
        let _enter = span.enter();
        Ok(self.run_fresh(&function, payload, request_id))
    }

    fn next_request_id(&self) -> RequestId {
        let n = self.inner.counters.requests.fetch_add(1, Ordering::Relaxed);
        RequestId(((self.inner.request_prefix as u128) << 64) | n as u128)
    }

    fn run_fresh(&self, function: &Function, payload: &[u8], request_id: RequestId) -> Invocation {
        let start = SystemTime::now();
        let t0 = Instant::now();
        let call = Call::new(&function.spec, request_id, t0);
        let (outcome, init, duration, store) =
            match sandbox::start(function, call, self.inner.settings.epoch_tick) {
                Ok(mut inst) => {
                    let t1 = Instant::now();
                    let out = inst.invoke(payload);
                    (out, t1 - t0, t1.elapsed(), inst.store)
                }
                Err((e, store)) => (Err(e), t0.elapsed(), Duration::ZERO, store),
            };
        let st = store.into_data();
        Invocation {
            report: Report {
                request_id,
                function: st.func.name.clone(),
                version: "$LATEST".into(),
                start,
                duration,
                init_duration: Some(init),
                memory_limit: st.func.memory_limit,
                max_memory_used: st.limiter.peak as u64,
                error: outcome.as_ref().err().map(Error::kind),
            },
            logs: st.call.logs.finish(),
            outcome: outcome.map(Bytes::from),
        }
    }
}

/// 32 bytes of OS randomness for request ids and guest random seeds.
fn host_secret() -> [u8; 32] {
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
