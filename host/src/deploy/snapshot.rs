//! Snapshots after init (SnapStart for Wasm): at register time the guest's
//! init runs once, in a sandbox with the function's env and quotas, and
//! the resulting memory and globals become a pre-initialised module
//! ([`wasmtime_wizer`]). Every instance then starts with init already
//! done. See docs/snapshots.md.
//!
//! The snapshot is stored next to the artifact cache
//! (`<cache dir>/snapshots/<key>.wasm`), keyed by everything init can
//! observe: the module's hash, env, memory limit, `/tmp` quota, grants and
//! tenant, plus the engine settings init ran under (wasmtime version, wasm
//! stack size, fuel). A new process with the same key loads it without
//! running init.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use wasmtime::{Module, Store, Val};
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

use super::Deployer;
use super::cache::engine_fingerprint;
use crate::error::{Error, Result};
use crate::function::FunctionConfig;
use crate::guest::{self, Call, Failure, Spec, State};
use crate::util::fs;

/// The snapshot key: everything that can change what init computes (the
/// function's settings, and the engine settings init runs under).
fn key(module_hash: &str, cfg: &FunctionConfig, engine: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"fnhost-snapshot-1\0");
    h.update(engine.as_bytes());
    h.update(module_hash.as_bytes());
    for (k, v) in &cfg.env {
        h.update(&[0]);
        h.update(k.as_bytes());
        h.update(b"=");
        h.update(v.as_bytes());
    }
    // Init can read its name (argv[0], context) and its limits.
    h.update(&[2]);
    h.update(cfg.name.as_bytes());
    h.update(&cfg.memory_limit.to_le_bytes());
    h.update(&cfg.tmp_quota.to_le_bytes());
    h.update(&(cfg.timeout.as_nanos() as u64).to_le_bytes());
    h.update(&cfg.max_fuel.unwrap_or(0).to_le_bytes());
    h.update(&cfg.max_host_calls.to_le_bytes());
    h.update(&(cfg.max_host_call_bytes as u64).to_le_bytes());
    h.update(cfg.tenant.as_deref().unwrap_or("").as_bytes());
    for g in &cfg.grants {
        h.update(&[1]);
        h.update(g.as_bytes());
    }
    h.finalize().to_hex().to_string()
}

/// Where snapshots live, if the host has a cache dir.
fn path(dir: &Path, key: &str) -> PathBuf {
    dir.join(format!("{key}.wasm"))
}

impl Deployer {
    /// The pre-initialised module for `bytes`: from the snapshot cache, or
    /// made now by running init (and cached). A cached snapshot is a
    /// sealed file whose seal covers its key: a torn or foreign file is
    /// ignored and made again.
    pub(super) fn snapshot_of(
        &self,
        bytes: &[u8],
        module_hash: &str,
        cfg: &FunctionConfig,
        spec: &Arc<Spec>,
    ) -> Result<Vec<u8>> {
        let s = &self.settings;
        let engine = &self.core.engine;
        // What init ran under: the engine's own fingerprint (its version
        // and code-affecting settings) and the runtime limits it saw.
        let under = format!(
            "{} stack={} fuel={} max_memory={}",
            engine_fingerprint(engine),
            s.max_wasm_stack,
            s.fuel_metering,
            s.max_memory
        );
        let key = key(module_hash, cfg, &under);
        let file = s
            .cache_dir
            .as_ref()
            .map(|d| path(&d.join("snapshots"), &key));
        if let Some(f) = &file
            && let Some(snap) = fs::read_sealed(f, key.as_bytes())
            && wasmtime::Module::validate(engine, &snap).is_ok()
        {
            self.counters
                .snapshots_reused
                .fetch_add(1, Ordering::Relaxed);
            return Ok(snap);
        }
        let snap = create(self, bytes, spec.clone())?;
        if snap.bytes.len() > s.max_module_size {
            return Err(Error::ModuleTooLarge {
                size: snap.bytes.len(),
                max: s.max_module_size,
            });
        }
        self.counters
            .snapshots_created
            .fetch_add(1, Ordering::Relaxed);
        if !snap.cacheable {
            // Init called the host: usable here, never from disk.
            return Ok(snap.bytes);
        }
        if let Some(f) = &file
            // Best effort: a cache that cannot be written costs a re-init
            // next time, nothing else.
            && let Err(e) = fs::write_sealed(f, key.as_bytes(), &snap.bytes)
        {
            tracing::warn!(target: "fnhost::snapshot", path = %f.display(), error = %e, "snapshot not cached");
        }
        Ok(snap.bytes)
    }
}

/// A snapshot and whether it may be cached on disk (not when init called
/// the host: capability implementations are the embedder's and cannot be
/// part of the key).
struct Snapshot {
    pub bytes: Vec<u8>,
    pub cacheable: bool,
}

/// Runs init on `bytes` under `spec` and returns the pre-initialised
/// module. Init's failure is the register's error (classified as for any
/// invocation: guest error, trap, timeout, out of memory). Wizer is fed
/// untrusted modules: a panic inside it is an `InvalidModule` error.
fn create(d: &Deployer, bytes: &[u8], spec: Arc<Spec>) -> Result<Snapshot> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        create_inner(d, bytes, spec)
    }))
    .unwrap_or_else(|_| {
        Err(Error::InvalidModule {
            reason: "cannot snapshot this module (the pre-initialiser rejected it)".into(),
        })
    })
}

fn create_inner(d: &Deployer, bytes: &[u8], spec: Arc<Spec>) -> Result<Snapshot> {
    let core = &d.core;
    let mut wizer = Wizer::new();
    wizer.init_func(guest::abi::exports::INIT);
    let invalid = |e: wasmtime::Error| Error::InvalidModule {
        reason: format!("cannot snapshot: {e:#}"),
    };
    let (cx, instrumented) = wizer.instrument(bytes).map_err(invalid)?;
    let module = Module::new(&core.engine, &instrumented).map_err(invalid)?;
    // The same ABI checks as any register (init's export types included),
    // before any guest code runs.
    guest::abi::check(&module, &d.provided)?;
    let call = Call::new(&spec, core.next_request_id(), Instant::now());
    let mut store = guest::new_store(&core.engine, spec, call, core.settings.epoch_tick);
    let instance = match run_init(d, &mut store, &module) {
        Ok(i) => i,
        Err(f) => {
            let e = guest::classify(&mut store, f);
            let logs = std::mem::take(&mut store.data_mut().call.logs).finish();
            tracing::warn!(target: "fnhost::snapshot", error = %e,
                logs = %logs.to_display_string(), "init failed while snapshotting");
            return Err(e);
        }
    };
    let cacheable = store.data().call.host_calls == 0;
    let mut state = Captured {
        store: &mut store,
        instance,
    };
    let bytes = poll_ready(wizer.snapshot(&cx, &mut state)).map_err(invalid)?;
    Ok(Snapshot { bytes, cacheable })
}

/// Instantiates and runs `_initialize` then `fnhost_init`, as a fresh
/// instance would.
fn run_init(
    d: &Deployer,
    store: &mut Store<State>,
    module: &Module,
) -> Result<wasmtime::Instance, Failure> {
    use guest::abi::exports;
    let instance = d.linker.instantiate(&mut *store, module)?;
    store.data_mut().memory = instance.get_memory(&mut *store, exports::MEMORY);
    if let Ok(f) = instance.get_typed_func::<(), ()>(&mut *store, exports::INITIALIZE) {
        f.call(&mut *store, ())?;
    }
    if let Ok(f) = instance.get_typed_func::<(), i32>(&mut *store, exports::INIT) {
        let status = f.call(&mut *store, ())?;
        guest::check_status(store.data_mut(), status, exports::INIT)?;
    }
    Ok(instance)
}

/// The snapshot's futures never wait (our state is in memory): poll once.
fn poll_ready<T>(fut: impl std::future::Future<Output = T>) -> T {
    let mut fut = std::pin::pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

/// The instance after init, as wizer reads it.
struct Captured<'a> {
    store: &'a mut Store<State>,
    instance: wasmtime::Instance,
}

impl InstanceState for Captured<'_> {
    async fn global_get(&mut self, name: &str, _hint: ValType) -> SnapshotVal {
        // Wizer asks only for the globals its instrumentation exported.
        let v = self
            .instance
            .get_global(&mut *self.store, name)
            .map(|g| g.get(&mut *self.store));
        match v {
            Some(Val::I64(x)) => SnapshotVal::I64(x),
            Some(Val::F32(x)) => SnapshotVal::F32(x),
            Some(Val::F64(x)) => SnapshotVal::F64(x),
            Some(Val::V128(x)) => SnapshotVal::V128(x.as_u128()),
            Some(Val::I32(x)) => SnapshotVal::I32(x),
            _ => SnapshotVal::I32(0),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        match self.instance.get_memory(&mut *self.store, name) {
            Some(m) => contents(m.data(&*self.store)),
            None => contents(&[]),
        }
    }
}
