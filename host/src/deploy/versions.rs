//! Changing the table: removing functions and versions, moving aliases,
//! and keeping it on disk (saved after every change, restored at build).

use std::collections::BTreeMap;

use super::persist::{SavedFunction, SavedVersion};
use super::{Deployer, Numbering};
use crate::error::{Error, Result};
use crate::function::registry::{Alias, Entry, check_alias};
use crate::function::{MAX_FUNCTION_ANNOTATIONS, check_annotations};

impl Deployer {
    /// Re-registers what the data dir holds (through the artifact cache).
    pub(crate) fn restore(&self) -> Result<()> {
        let core = &self.core;
        let Some(data) = &self.data else {
            return Ok(());
        };
        for f in data.load()? {
            let newest = f.versions.last().map(|v| v.version);
            for v in f.versions {
                let numbering = Numbering::Exactly {
                    version: v.version,
                    draft: f.draft && Some(v.version) == newest,
                    modified_ms: v.modified_ms,
                };
                self.publish(v.config, numbering)?;
            }
            if !f.annotations.is_empty() {
                self.edit_annotations(&f.name, |a| *a = f.annotations.clone())?;
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

    /// Removes a function and all its versions and aliases: new
    /// invocations get `NotFound`; running ones finish; idle instances and
    /// reserved concurrency are released.
    pub(crate) fn unregister(&self, name: &str) -> Result<()> {
        let core = &self.core;
        let _registering = self.lock.lock();
        let entry = core.registry.update(name, |e| match e {
            Some(e) => Ok((None, e.clone())),
            None => Err(Error::NotFound { name: name.into() }),
        })?;
        for f in entry.versions.values() {
            f.pool.clear(&core.idle_budget);
        }
        let reserved = entry.latest().and_then(|(_, f)| f.reserved);
        core.reserve(reserved, None)?;
        drop(_registering);
        self.persist()
    }

    /// Removes published version `version` of `name`. Refused (naming the
    /// alias) while an alias points to it. When it is also `$LATEST` (no
    /// draft), `$LATEST` keeps its code and settings as a draft under the
    /// next number, so numbers are never reused.
    pub(crate) fn remove_version(&self, name: &str, version: u32) -> Result<()> {
        let core = &self.core;
        // One lock over the check, the copy and the removal: no change
        // lands between them.
        let held = self.lock.lock();
        if let Some(e) = core.registry.get(name)
            && let Some((&newest, f)) = e.latest()
            && newest == version
            && !e.draft
            && alias_on(&e, version).is_none()
        {
            let keep = Numbering::Exactly {
                version: version.checked_add(1).ok_or_else(|| {
                    Error::config("version", "no version number is left for this function")
                })?,
                draft: true,
                modified_ms: f.modified_ms,
            };
            self.publish_held(&held, f.config.clone(), keep)?;
        }
        let removed = core.registry.update(name, |e| {
            let e = e.ok_or_else(|| Error::NotFound { name: name.into() })?;
            let f = e
                .published(version)
                .cloned()
                .ok_or_else(|| Error::NotFound {
                    name: format!("{name}:{version}"),
                })?;
            if let Some(alias) = alias_on(e, version) {
                return Err(Error::InUse {
                    what: format!("{name}:{version}"),
                    by: format!("alias `{name}:{alias}`"),
                });
            }
            if e.latest().is_some_and(|(v, _)| *v == version) {
                return Err(Error::InUse {
                    what: format!("{name}:{version}"),
                    by: "$LATEST (it changed while being removed: try again)".into(),
                });
            }
            let mut next = e.clone();
            next.versions.remove(&version);
            Ok((Some(next), f))
        })?;
        removed.pool.clear(&core.idle_budget);
        drop(held);
        self.persist()
    }

    /// Creates or moves alias `alias` of `name` atomically: invocations
    /// already running finish on the version they started on; new ones use
    /// the new target. Idle instances of versions nothing points to any
    /// more are released.
    pub(crate) fn set_alias(&self, name: &str, alias: &str, target: Alias) -> Result<()> {
        let core = &self.core;
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
    pub(crate) fn remove_alias(&self, name: &str, alias: &str) -> Result<()> {
        let core = &self.core;
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

    /// Changes `name`'s function-level annotations with `edit` (refused
    /// past [`MAX_FUNCTION_ANNOTATIONS`]); whether they changed. Not
    /// persisted here: callers persist.
    pub(super) fn edit_annotations(
        &self,
        name: &str,
        edit: impl FnOnce(&mut BTreeMap<String, String>),
    ) -> Result<bool> {
        self.core.registry.update(name, |e| {
            let e = e.ok_or_else(|| Error::NotFound { name: name.into() })?;
            let mut next = e.clone();
            edit(&mut next.annotations);
            check_annotations(&next.annotations, MAX_FUNCTION_ANNOTATIONS)?;
            let changed = next.annotations != e.annotations;
            Ok((Some(next), changed))
        })
    }

    /// Sets (`Some`) or removes (`None`) function-level annotation `key`
    /// of `name`, persisted; whether anything changed.
    pub(crate) fn annotate_function(
        &self,
        name: &str,
        key: &str,
        value: Option<&str>,
    ) -> Result<bool> {
        let changed = self.edit_annotations(name, |a| match value {
            Some(v) => {
                a.insert(key.to_string(), v.to_string());
            }
            None => {
                a.remove(key);
            }
        })?;
        if changed {
            self.persist()?;
        }
        Ok(changed)
    }

    /// `name`'s versions and aliases as persisted.
    pub(super) fn saved(&self, name: &str) -> Option<SavedFunction> {
        let e = self.core.registry.get(name)?;
        Some(SavedFunction {
            versions: e
                .versions
                .iter()
                .map(|(v, f)| SavedVersion {
                    version: *v,
                    module_hash: f.module_hash.clone(),
                    config: f.config.clone(),
                    modified_ms: f.modified_ms,
                })
                .collect(),
            aliases: e.aliases.clone(),
            draft: e.draft,
            annotations: e.annotations.clone(),
            name: name.to_string(),
        })
    }

    /// Writes the registry table to the data dir (no-op without one).
    pub(super) fn persist(&self) -> Result<()> {
        let core = &self.core;
        let Some(data) = &self.data else {
            return Ok(());
        };
        let _registering = self.lock.lock();
        let saved: Vec<SavedFunction> = core
            .registry
            .names()
            .into_iter()
            .filter_map(|name| self.saved(&name))
            .collect();
        data.save(&saved)
    }
}

/// An alias that routes to `version`.
fn alias_on(e: &Entry, version: u32) -> Option<&String> {
    e.aliases
        .iter()
        .find(|(_, a)| a.version == version || a.additional.is_some_and(|(v, _)| v == version))
        .map(|(name, _)| name)
}
