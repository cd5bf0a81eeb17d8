//! Deployment: everything between a [`FunctionConfig`] and a version the
//! runtime can invoke, and what keeps the table: publish (read and
//! size-check the module, artifact cache or compile, snapshot, ABI check,
//! link, reserve, provision), versions and aliases ([`versions`]),
//! persistence ([`persist`]), replication between hosts
//! ([`replication`]), the artifact cache ([`cache`]) and snapshots
//! ([`snapshot`]).
//!
//! It sits beside `events/`, above the runtime: it reads the registry and
//! reservations through [`Core`] and never runs an invocation itself.

pub(crate) mod cache;
pub(crate) mod persist;
mod replication;
mod snapshot;
mod versions;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use wasmtime::Linker;

use crate::capability::{Capability, Grants};
use crate::error::{Error, Result};
use crate::function::pool::WarmPool;
use crate::function::{Function, FunctionConfig, FunctionInfo, ModuleSource};
use crate::guest::{self, Linked, Provided, State};
use crate::metrics::Metrics;
use crate::runtime::Core;
use cache::{Artifact, ArtifactCache, Lookup};
use persist::DataDir;

/// What deployment reads of the host's settings.
pub(crate) struct Settings {
    pub max_module_size: usize,
    pub max_memory: u64,
    pub max_wasm_stack: usize,
    pub fuel_metering: bool,
    pub capabilities: Vec<Capability>,
    /// The artifact cache's directory (snapshots live under it too).
    pub cache_dir: Option<PathBuf>,
}

/// Counters of what registrations did.
#[derive(Default)]
pub(crate) struct Counters {
    pub compiles: AtomicU64,
    pub cache_hits: AtomicU64,
    pub cache_rejected: AtomicU64,
    /// Snapshots made (init ran) and loaded from the cache (init skipped).
    pub snapshots_created: AtomicU64,
    pub snapshots_reused: AtomicU64,
}

/// Publishes and removes versions, keeps the table on disk.
pub(crate) struct Deployer {
    core: Arc<Core>,
    linker: Linker<State>,
    component_linker: wasmtime::component::Linker<State>,
    provided: Provided,
    pub cache: Option<ArtifactCache>,
    data: Option<DataDir>,
    settings: Settings,
    /// Serialises changes to the table (version numbers, reservations).
    lock: Mutex<()>,
    pub counters: Counters,
}

/// Whether a publish numbers the version itself or restores one, and
/// whether it is published or a draft (`$LATEST` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Numbering {
    /// Published under the draft's number (replacing the draft) or the
    /// next one; registering what `$LATEST` already is publishes the
    /// draft, or nothing.
    Next,
    /// A draft: replaces the draft in place, else takes the next number
    /// unpublished; staging what `$LATEST` already is changes nothing.
    Stage,
    /// This number (restoring a data dir, replicating another host): the
    /// draft's when it is the draft's, else at least the next one.
    Exactly {
        version: u32,
        draft: bool,
        /// Its registration time (ms since the epoch; 0: now).
        modified_ms: u64,
    },
}

/// Proof that the caller holds the deploy lock.
pub(super) type Held<'a> = parking_lot::MutexGuard<'a, ()>;

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl Deployer {
    pub(crate) fn new(
        core: Arc<Core>,
        settings: Settings,
        data_dir: Option<PathBuf>,
    ) -> Result<Deployer> {
        let engine_err = |e: wasmtime::Error| Error::config("engine", format!("{e:#}"));
        let (linker, provided) = guest::linker(&core.engine).map_err(engine_err)?;
        let component_linker = guest::component::linker(&core.engine).map_err(engine_err)?;
        let cache = match &settings.cache_dir {
            Some(dir) => {
                Some(ArtifactCache::new(dir.clone(), &core.engine).map_err(|e| Error::io(dir, e))?)
            }
            None => None,
        };
        let data = match data_dir {
            Some(d) => Some(DataDir::open(d)?),
            None => None,
        };
        Ok(Deployer {
            core,
            linker,
            component_linker,
            provided,
            cache,
            data,
            settings,
            lock: Mutex::new(()),
            counters: Counters::default(),
        })
    }

    /// Publishes `cfg` as a new version and saves the table.
    pub(crate) fn register(&self, cfg: FunctionConfig) -> Result<FunctionInfo> {
        let info = self.publish(cfg, Numbering::Next)?;
        self.persist()?;
        Ok(info)
    }

    /// Makes `cfg` the function's `$LATEST` without publishing it (the
    /// draft), and saves the table.
    pub(crate) fn stage(&self, cfg: FunctionConfig) -> Result<FunctionInfo> {
        let info = self.publish(cfg, Numbering::Stage)?;
        self.persist()?;
        Ok(info)
    }

    /// Publishes `name`'s draft; without one, or when the draft is what the
    /// newest published version already is, that version (nothing new).
    pub(crate) fn publish_latest(&self, name: &str) -> Result<FunctionInfo> {
        let held = self.lock.lock();
        let info = self.publish_draft(&held, name)?;
        drop(held);
        self.persist()?;
        Ok(info)
    }

    /// [`publish_latest`](Deployer::publish_latest) under the deploy lock,
    /// without saving.
    fn publish_draft(&self, _held: &Held<'_>, name: &str) -> Result<FunctionInfo> {
        self.core.registry.update(name, |e| {
            let e = e.ok_or_else(|| Error::NotFound { name: name.into() })?;
            let (_, latest) = e
                .latest()
                .ok_or_else(|| Error::NotFound { name: name.into() })?;
            let newest = e.newest_published().map(|(_, f)| f);
            if !e.draft {
                return Ok((Some(e.clone()), latest.info()));
            }
            if let Some(p) = newest.filter(|p| unchanged(p, &latest.module_hash, &latest.config)) {
                return Ok((Some(e.clone()), p.info()));
            }
            let mut next = e.clone();
            next.draft = false;
            Ok((Some(next), latest.info()))
        })
    }

    /// The capabilities `names` refer to; an unknown name is an
    /// `InvalidConfig` error naming it.
    fn resolve_grants(&self, names: &[String]) -> Result<Grants> {
        let mut grants = Grants::new();
        for name in names {
            let cap = self
                .settings
                .capabilities
                .iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    Error::config(
                        "grants",
                        format!("no capability `{name}` is defined on this host"),
                    )
                })?;
            grants.insert(name.as_str().into(), cap.clone());
        }
        Ok(grants)
    }

    /// The module's bytes, refused above the size cap before they are read.
    fn module_bytes(&self, cfg: &FunctionConfig) -> Result<Bytes> {
        let max = self.settings.max_module_size;
        let too_large = |size: usize| Error::ModuleTooLarge { size, max };
        let bytes = match &cfg.source {
            ModuleSource::Bytes(b) => b.clone(),
            ModuleSource::File(p) => {
                let size = std::fs::metadata(p).map_err(|e| Error::io(p, e))?.len();
                if size > max as u64 {
                    return Err(too_large(size as usize));
                }
                Bytes::from(std::fs::read(p).map_err(|e| Error::io(p, e))?)
            }
        };
        if bytes.len() > max {
            return Err(too_large(bytes.len()));
        }
        Ok(bytes)
    }

    fn publish(&self, cfg: FunctionConfig, numbering: Numbering) -> Result<FunctionInfo> {
        // Registrations are rare; one at a time keeps version numbers and
        // reservations simple.
        let held = self.lock.lock();
        self.publish_held(&held, cfg, numbering)
    }

    /// [`publish`](Deployer::publish) under the deploy lock.
    fn publish_held(
        &self,
        held: &Held<'_>,
        cfg: FunctionConfig,
        numbering: Numbering,
    ) -> Result<FunctionInfo> {
        let core = &self.core;
        let span = tracing::info_span!("register", function = %cfg.name);
        let _enter = span.enter();
        let s = &self.settings;
        cfg.validate(s.max_memory)?;
        let grants = self.resolve_grants(&cfg.grants)?;
        if cfg.max_fuel.is_some() && !s.fuel_metering {
            return Err(Error::config(
                "max_fuel",
                "the host was built without fuel_metering",
            ));
        }
        if core.is_shutting_down() {
            return Err(Error::ShuttingDown);
        }
        let prev = core.registry.get(&cfg.name);
        let prev_latest = prev
            .as_ref()
            .and_then(|e| e.latest().map(|(v, f)| (*v, f.clone())));
        let prev_draft = prev.as_ref().and_then(|e| e.draft_version());
        let bytes = self.module_bytes(&cfg)?;
        let module_hash = blake3::hash(&bytes).to_hex().to_string();
        if let Some((_, latest)) = &prev_latest
            && matches!(numbering, Numbering::Next | Numbering::Stage)
            && unchanged(latest, &module_hash, &cfg)
        {
            if numbering == Numbering::Next && prev_draft.is_some() {
                return self.publish_draft(held, &cfg.name);
            }
            let mut info = latest.info();
            info.draft = prev_draft.is_some();
            return Ok(info);
        }
        let spec = Arc::new(cfg.spec(
            core.secret,
            grants,
            s.fuel_metering.then(|| cfg.max_fuel.unwrap_or(u64::MAX)),
        ));
        let is_component = guest::component::is_component(&bytes);
        if cfg.snapshot && is_component {
            return Err(Error::config(
                "snapshot",
                "snapshots are of core modules; a component is pre-initialised by the \
                 toolchain that built it (componentize-js and componentize-py already \
                 snapshot their runtime)",
            ));
        }
        let artifact = if cfg.snapshot {
            let snap = self.snapshot_of(&bytes, &module_hash, &cfg, &spec)?;
            self.load_or_compile(&snap, &blake3::hash(&snap).to_hex())?
        } else {
            self.load_or_compile(&bytes, &module_hash)?
        };
        let kept = match &self.data {
            Some(d) => {
                d.store_module(&module_hash, &bytes)?;
                persist::with_module_file(&cfg, d.module_path(&module_hash))
            }
            // Without a data dir the bytes stay in memory with the
            // version, so it can be re-registered with other settings.
            None => cfg.clone().with_source(ModuleSource::Bytes(bytes.clone())),
        };
        let linked = self.link(&artifact)?;
        if linked.is_http() && cfg.reuse.is_some() {
            return Err(Error::config(
                "reuse",
                "an HTTP component gets a fresh instance per request: its response \
                 body and request resources must not outlive the request",
            ));
        }
        let prev_fn = prev_latest.as_ref().map(|(_, f)| &**f);
        let prev_reserved = prev_fn.and_then(|f| f.reserved);
        let gate = core.gate_for(cfg.reserved_concurrency, prev_fn);
        core.reserve(prev_reserved, cfg.reserved_concurrency)?;
        let next = match &prev_latest {
            None => 1,
            Some((v, _)) => v.checked_add(1).ok_or_else(|| {
                Error::config("version", "no version number is left for this function")
            })?,
        };
        let (version, draft, modified_ms) = match numbering {
            Numbering::Next => (prev_draft.unwrap_or(next), false, now_ms()),
            Numbering::Stage => (prev_draft.unwrap_or(next), true, now_ms()),
            Numbering::Exactly {
                version,
                draft,
                modified_ms,
            } => {
                // Restoring and replicating give versions in order: one
                // that would be renumbered is a history that diverged.
                let v = match prev_draft {
                    Some(d) if d == version => d,
                    _ if version >= next => version,
                    _ => {
                        return Err(Error::Store {
                            reason: format!(
                                "`{}:{version}` comes after version {} here",
                                cfg.name,
                                next - 1
                            ),
                        });
                    }
                };
                (
                    v,
                    draft,
                    if modified_ms == 0 {
                        now_ms()
                    } else {
                        modified_ms
                    },
                )
            }
        };
        let function = Arc::new(Function {
            spec,
            policy: cfg.policy(),
            linked,
            module_hash,
            gate,
            reserved: cfg.reserved_concurrency,
            metrics: Metrics::new(),
            pool: WarmPool::default(),
            version,
            version_label: version.to_string().into(),
            config: kept,
            modified_ms,
        });
        // Provisioned instances are ready before the version is visible; a
        // failing init fails the registration and registers nothing.
        let published = core.refill(&function).and_then(|()| {
            core.registry.update(&cfg.name, |e| {
                let mut e = e.cloned().unwrap_or_default();
                let replaced = e.versions.insert(version, function.clone());
                e.draft = draft;
                Ok((Some(e), replaced))
            })
        });
        match published {
            // A replaced draft's idle instances go; running ones finish.
            Ok(replaced) => {
                if let Some(old) = replaced {
                    old.pool.clear(&core.idle_budget);
                }
            }
            Err(e) => {
                function.pool.clear(&core.idle_budget);
                let _ = core.reserve(cfg.reserved_concurrency, prev_reserved);
                return Err(e);
            }
        }
        core.drain_inactive(&cfg.name);
        let mut info = function.info();
        info.draft = draft;
        tracing::info!(module_hash = %info.module_hash, version, draft, "registered");
        Ok(info)
    }

    /// Checks a compiled guest against what fnhost provides and pre-links
    /// it.
    fn link(&self, artifact: &Artifact) -> Result<Linked> {
        match artifact {
            Artifact::Module(module) => {
                let exports = guest::abi::check(module, &self.provided)?;
                let pre =
                    self.linker
                        .instantiate_pre(module)
                        .map_err(|e| Error::InvalidModule {
                            reason: format!("{e:#}"),
                        })?;
                Ok(Linked::Core { pre, exports })
            }
            Artifact::Component(c) => {
                guest::component::link(&self.component_linker, c).map(Linked::Component)
            }
        }
    }

    fn load_or_compile(&self, bytes: &[u8], hash: &str) -> Result<Artifact> {
        let engine = &self.core.engine;
        let n = &self.counters;
        let component = guest::component::is_component(bytes);
        if let Some(cache) = &self.cache {
            match cache.load(engine, hash, component) {
                Lookup::Hit(m) => {
                    n.cache_hits.fetch_add(1, Ordering::Relaxed);
                    return Ok(m);
                }
                Lookup::Rejected(why) => {
                    n.cache_rejected.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(%why, "artifact cache entry rejected; recompiling");
                }
                Lookup::Miss => {}
            }
        }
        let span = tracing::info_span!("compile", bytes = bytes.len());
        let _enter = span.enter();
        let artifact = Artifact::compile(engine, bytes).map_err(|e| Error::InvalidModule {
            reason: format!("{e:#}"),
        })?;
        n.compiles.fetch_add(1, Ordering::Relaxed);
        if let Some(cache) = &self.cache
            && let Err(e) = cache.store(hash, &artifact)
        {
            tracing::warn!(error = %e, dir = %cache.dir().display(), "could not write artifact cache");
        }
        Ok(artifact)
    }
}

/// Is `f` already `module_hash` with `cfg`'s settings?
fn unchanged(f: &Function, module_hash: &str, cfg: &FunctionConfig) -> bool {
    f.module_hash == module_hash && persist::same_settings(&f.config, cfg)
}
