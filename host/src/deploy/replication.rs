//! Replication: a function's table entry exported as JSON, and applied
//! on another host step by step (a cluster shares registries this way).

use std::collections::BTreeMap;
use std::path::PathBuf;

use bytes::Bytes;

use super::persist::{self, SavedVersion};
use super::{Deployer, Numbering};
use crate::error::{Error, Result};
use crate::function::ModuleSource;

impl Deployer {
    /// `name`'s table entry, portable to another host: every version
    /// (module hash and configuration) and every alias, as JSON — the
    /// same form the data dir's `registry.json` holds per function. A
    /// cluster shares registries this way ([`apply_function`](Host::apply_function)
    /// on the other side).
    pub(crate) fn export_function(&self, name: &str) -> Result<serde_json::Value> {
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
    pub(crate) fn apply_function(
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
        // A draft here may be replaced in place (or published) by the
        // table's version of the same number; published versions may not.
        let have_draft = have
            .as_ref()
            .filter(|f| f.draft)
            .and_then(|f| f.versions.last().map(|v| v.version));
        let mut have: BTreeMap<u32, SavedVersion> = have
            .map(|f| f.versions.into_iter().map(|v| (v.version, v)).collect())
            .unwrap_or_default();
        let mut changed = false;
        let settled = |v: &u32| Some(*v) != have_draft;
        let have_max = have.keys().copied().rfind(settled).unwrap_or(0);
        let want_max = want.versions.last().map_or(0, |v| v.version);
        let same = |h: &SavedVersion, w: &SavedVersion| {
            h.module_hash == w.module_hash && persist::same_settings(&h.config, &w.config)
        };
        let diverged = have_max > want_max
            || have_draft.is_some_and(|d| d > want_max)
            || want.versions.iter().any(|w| match have.get(&w.version) {
                Some(h) => settled(&w.version) && !same(h, w),
                // A version missing here, below what this host has
                // (its draft included), is history this host lost.
                None => w.version < have_max.max(have_draft.unwrap_or(0)),
            });
        if diverged {
            self.unregister(name)?;
            have.clear();
            changed = true;
        }
        for w in &want.versions {
            if have.get(&w.version).is_some_and(|h| same(h, w)) {
                continue;
            }
            // A module a version here already has (a draft republished
            // with other settings) is not fetched again.
            let bytes = match self.local_module(name, &w.module_hash) {
                Some(b) => b,
                None => module(&w.module_hash).map_err(|reason| Error::Store {
                    reason: format!(
                        "module {} of `{name}:{}`: {reason}",
                        w.module_hash, w.version
                    ),
                })?,
            };
            if blake3::hash(&bytes).to_hex().as_str() != w.module_hash {
                return Err(Error::Store {
                    reason: format!(
                        "module of `{name}:{}` does not match its hash {}",
                        w.version, w.module_hash
                    ),
                });
            }
            let cfg = w.config.clone().with_source(ModuleSource::Bytes(bytes));
            let numbering = Numbering::Exactly {
                version: w.version,
                draft: want.draft && w.version == want_max,
                modified_ms: w.modified_ms,
            };
            self.publish(cfg, numbering)?;
            changed = true;
        }
        changed |= self.set_draft(name, want.draft)?;
        let aliases = self
            .core
            .registry
            .get(name)
            .map(|e| e.aliases.clone())
            .unwrap_or_default();
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
        changed |= self.edit_annotations(name, |a| *a = want.annotations.clone())?;
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

    /// The bytes of module `hash` if a version of `name` here has it.
    fn local_module(&self, name: &str, hash: &str) -> Option<Bytes> {
        let e = self.core.registry.get(name)?;
        let f = e.versions.values().find(|f| f.module_hash == hash)?;
        f.config.module_bytes().ok()
    }

    /// Marks `name`'s newest version as a draft or published; whether
    /// that changed anything.
    fn set_draft(&self, name: &str, draft: bool) -> Result<bool> {
        let _registering = self.lock.lock();
        self.core.registry.update(name, |e| {
            let e = e.ok_or_else(|| Error::NotFound { name: name.into() })?;
            let mut next = e.clone();
            next.draft = draft;
            Ok((Some(next), e.draft != draft))
        })
    }
}
