//! Registration and the table, delegated to deployment.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::{Host, HostStats};
use crate::error::{Error, Result};
use crate::function::registry::{Alias, Entry};
use crate::function::{FunctionConfig, FunctionInfo};

impl Host {
    /// Registers a function: reads and size-checks the module, loads it from
    /// the artifact cache or compiles it, checks it against ABI v1, links
    /// it, reserves its concurrency and prepares its provisioned instances.
    /// Nothing is registered if any step fails.
    ///
    /// Registering a name that exists publishes its next version: versions
    /// are immutable and numbered from 1; `$LATEST` is the newest.
    /// Registering what `$LATEST` already is (same module, same settings)
    /// publishes nothing new (a staged draft is published). With a data
    /// dir the table and the module bytes are persisted; without one the
    /// module bytes are kept in memory with each version.
    pub fn register(&self, cfg: FunctionConfig) -> Result<FunctionInfo> {
        self.inner.deploy.register(cfg)
    }

    /// Makes `cfg` the function's `$LATEST` without publishing a version
    /// (Lambda's `UpdateFunctionCode` without `Publish`): `$LATEST`
    /// becomes a *draft*, replaced in place by the next `stage`, published
    /// by [`publish_version`](Host::publish_version) or
    /// [`register`](Host::register). A draft runs as `name` and
    /// `name:$LATEST` and through aliases to `$LATEST` only: its number
    /// ([`FunctionInfo::version`], with [`FunctionInfo::draft`] set) is not
    /// addressable, listed by [`versions`](Host::versions) or aliasable
    /// until published. Checked, compiled and linked like `register`;
    /// staging what `$LATEST` already is changes nothing. A new name
    /// stages its first version.
    pub fn stage(&self, cfg: FunctionConfig) -> Result<FunctionInfo> {
        self.inner.deploy.stage(cfg)
    }

    /// Publishes `name`'s draft under its number (Lambda's
    /// `PublishVersion`). Without a draft, or when the draft's module and
    /// settings are the newest published version's, nothing new is
    /// published and that version is returned.
    pub fn publish_version(&self, name: &str) -> Result<FunctionInfo> {
        self.inner.deploy.publish_latest(name)
    }

    /// The configuration `name` (or `name:version`, `name:alias`: its
    /// primary version) was registered with, its module as a file in the
    /// data dir or as bytes: change it and [`stage`](Host::stage) or
    /// [`register`](Host::register) it to make a new version from it.
    pub fn function_config(&self, name: &str) -> Result<FunctionConfig> {
        self.inner
            .core
            .registry
            .resolve_primary(name)
            .map(|f| f.config.clone())
    }

    /// Removes a function and all its versions and aliases: new
    /// invocations get `NotFound`; running ones finish; idle instances and
    /// reserved concurrency are released.
    pub fn unregister(&self, name: &str) -> Result<()> {
        self.inner.deploy.unregister(name)?;
        self.inner.events.remove_config(name).map(drop)
    }

    /// Removes published version `version` of `name`. Refused (naming the
    /// alias) while an alias points to it. When it is also `$LATEST` (no
    /// draft), `$LATEST` keeps its code and settings as a draft under the
    /// next number, so a number is never reused.
    pub fn remove_version(&self, name: &str, version: u32) -> Result<()> {
        self.inner.deploy.remove_version(name, version)
    }

    /// Creates or moves alias `alias` of `name` atomically: invocations
    /// already running finish on the version they started on; new ones use
    /// the new target. Idle instances of versions nothing points to any
    /// more are released.
    pub fn set_alias(&self, name: &str, alias: &str, target: Alias) -> Result<()> {
        self.inner.deploy.set_alias(name, alias, target)
    }

    /// Removes alias `alias` of `name`.
    pub fn remove_alias(&self, name: &str, alias: &str) -> Result<()> {
        self.inner.deploy.remove_alias(name, alias)
    }

    /// Sets (`Some`) or removes (`None`) the function-level annotation
    /// `key` of `name`: caller metadata kept with the function as a whole
    /// (not with a version), persisted with the table and replicated like
    /// it (the gateway keeps Lambda's function URL configs here). Removed
    /// with the function. At most [`MAX_FUNCTION_ANNOTATIONS`](crate::MAX_FUNCTION_ANNOTATIONS)
    /// (entries, bytes). Returns whether anything changed.
    pub fn annotate_function(&self, name: &str, key: &str, value: Option<&str>) -> Result<bool> {
        self.inner.deploy.annotate_function(name, key, value)
    }

    /// `name`'s function-level annotations (see
    /// [`annotate_function`](Host::annotate_function)).
    pub fn function_annotations(&self, name: &str) -> Result<BTreeMap<String, String>> {
        Ok(self.entry(name)?.annotations.clone())
    }

    /// A number that moves whenever any function, version, alias or
    /// function-level annotation changes (here or by replication): a
    /// caller that keeps an index derived from the table rebuilds it when
    /// this differs from what it saw.
    pub fn registry_generation(&self) -> u64 {
        self.inner.core.registry.generation()
    }

    /// `name`'s table entry, portable to another host: every version
    /// (module hash and configuration), every alias, whether `$LATEST` is
    /// a draft, and its event config if one was set (`"events"`), as JSON
    /// — the form the data dir's `registry.json` holds per function (the
    /// event config is kept in the event store there). A cluster shares
    /// registries this way ([`apply_function`](Host::apply_function) on
    /// the other side).
    pub fn export_function(&self, name: &str) -> Result<serde_json::Value> {
        let mut table = self.inner.deploy.export_function(name)?;
        if let Some(c) = self.inner.events.configured(name) {
            table["events"] = serde_json::to_value(c).unwrap_or_default();
        }
        Ok(table)
    }

    /// Makes `name` here match `table` (what [`export_function`](Host::export_function)
    /// gave on another host; `None`: the function is gone): publishes the
    /// versions this host lacks under their numbers, moves and removes
    /// aliases, removes versions the table no longer has. `module` supplies
    /// a module's bytes by hash (they are checked against it). When this
    /// host's history of `name` cannot be brought in line step by step (a
    /// version with the same number but other code or settings, or newer
    /// versions here), the function is unregistered and rebuilt from the
    /// table. The event config follows the table's `"events"` (removed
    /// when it has none). Returns whether anything changed.
    pub fn apply_function(
        &self,
        name: &str,
        table: Option<&serde_json::Value>,
        module: &mut dyn FnMut(&str) -> std::result::Result<Bytes, String>,
    ) -> Result<bool> {
        let mut changed = self.inner.deploy.apply_function(name, table, module)?;
        let events = &self.inner.events;
        let want = match table.and_then(|t| t.get("events")) {
            Some(c) => Some(
                serde_json::from_value::<crate::events::EventConfig>(c.clone()).map_err(|e| {
                    Error::config("table", format!("function `{name}`: events: {e}"))
                })?,
            ),
            None => None,
        };
        if want != events.configured(name) {
            match want {
                Some(c) => events.configure_replicated(name, c)?,
                None => {
                    events.remove_config(name)?;
                }
            }
            changed = true;
        }
        Ok(changed)
    }

    /// The compiled form of the module whose hash is `module_hash`, as this
    /// host's artifact cache holds it: `(key, bytes)`, where `key` names
    /// the module hash and the engine fingerprint (only hosts of the same
    /// build and settings can load it). `None` without a cache or an entry.
    pub fn artifact(&self, module_hash: &str) -> Option<(String, Vec<u8>)> {
        let cache = self.inner.deploy.cache.as_ref()?;
        Some((cache.stem(module_hash), cache.read(module_hash)?))
    }

    /// The key [`artifact`](Host::artifact) would give `module_hash` here
    /// (`None` without an artifact cache).
    pub fn artifact_key(&self, module_hash: &str) -> Option<String> {
        Some(self.inner.deploy.cache.as_ref()?.stem(module_hash))
    }

    /// Puts a compiled artifact another host of the same build made into
    /// this host's cache, so registering the module does not compile it.
    /// The bytes are native code: install only what comes from a host you
    /// trust (a cluster authenticates them first). Wasmtime still refuses
    /// artifacts of another version or configuration at load, and such an
    /// entry is then compiled again.
    pub fn install_artifact(&self, module_hash: &str, bytes: &[u8]) -> Result<()> {
        let Some(cache) = &self.inner.deploy.cache else {
            return Ok(());
        };
        cache
            .install(module_hash, bytes)
            .map_err(|e| Error::io(cache.dir(), e))
    }

    /// Removes every artifact-cache entry (no-op without a cache).
    pub fn clear_artifact_cache(&self) -> Result<()> {
        match &self.inner.deploy.cache {
            Some(c) => c.clear().map_err(|e| Error::io(c.dir(), e)),
            None => Ok(()),
        }
    }

    /// Published versions of `name`, oldest first (a draft is not one).
    pub fn versions(&self, name: &str) -> Result<Vec<u32>> {
        let e = self.entry(name)?;
        let draft = e.draft_version();
        Ok(e.versions
            .keys()
            .copied()
            .filter(|v| Some(*v) != draft)
            .collect())
    }

    /// Aliases of `name`.
    pub fn aliases(&self, name: &str) -> Result<BTreeMap<String, Alias>> {
        Ok(self.entry(name)?.aliases.clone())
    }

    pub(super) fn entry(&self, name: &str) -> Result<Arc<Entry>> {
        self.inner
            .core
            .registry
            .get(name)
            .ok_or_else(|| Error::NotFound { name: name.into() })
    }

    /// What `name` (or `name:version`, `name:alias`: its primary version)
    /// resolves to now.
    pub fn function_info(&self, name: &str) -> Result<FunctionInfo> {
        let registry = &self.inner.core.registry;
        let f = registry.resolve_primary(name)?;
        let mut info = f.info();
        info.draft = registry
            .get(f.spec.name.as_ref())
            .is_some_and(|e| e.draft_version() == Some(f.version));
        Ok(info)
    }

    /// Every registered function ($LATEST of each), sorted by name.
    pub fn functions(&self) -> Vec<FunctionInfo> {
        let core = &self.inner.core;
        core.registry
            .names()
            .iter()
            .filter_map(|n| self.function_info(n).ok())
            .collect()
    }

    /// The most invocations this host runs at once (its builder's
    /// `concurrency_limit`), shared by every function.
    pub fn concurrency_limit(&self) -> u32 {
        self.inner.core.settings.concurrency_limit
    }

    /// Registry counters.
    pub fn stats(&self) -> HostStats {
        let c = &self.inner.deploy.counters;
        HostStats {
            compiles: c.compiles.load(Ordering::Relaxed),
            cache_hits: c.cache_hits.load(Ordering::Relaxed),
            cache_rejected: c.cache_rejected.load(Ordering::Relaxed),
            snapshots_created: c.snapshots_created.load(Ordering::Relaxed),
            snapshots_reused: c.snapshots_reused.load(Ordering::Relaxed),
        }
    }
}
