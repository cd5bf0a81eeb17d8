//! The function registry: immutable numbered versions, `$LATEST`, and
//! aliases with optional weighted routing.
//!
//! Each function is an [`Entry`] behind an `Arc`; every change builds a new
//! entry and swaps it in under the write lock, so a reader sees either the
//! old table or the new one, never half of a change (an alias flip is
//! atomic). An invocation holds the `Arc<Function>` of the version it
//! resolved to, so it finishes on that version whatever moves meanwhile.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use parking_lot::RwLock;

use super::Function;
use crate::error::{Error, Result};
use crate::target::{FunctionRef, Qualifier};

/// Where an alias points: a version, optionally sharing traffic with a
/// second one (`additional = Some((version, weight))`, weight in 0..=1).
/// `version` may be [`Alias::LATEST`] (the alias follows `$LATEST`; no
/// second version then, as on Lambda); `additional` is a published
/// version.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Alias {
    /// The primary version.
    pub version: u32,
    /// A second version and the share of invocations it gets.
    pub additional: Option<(u32, f64)>,
}

impl Alias {
    /// The `version` of an alias that follows `$LATEST` (numbers start at 1).
    pub const LATEST: u32 = 0;

    /// All traffic to `version`.
    pub fn to(version: u32) -> Alias {
        Alias {
            version,
            additional: None,
        }
    }

    /// `weight` (0..=1) of traffic to `other`, the rest to `version`.
    pub fn weighted(version: u32, other: u32, weight: f64) -> Alias {
        Alias {
            version,
            additional: Some((other, weight)),
        }
    }
}

/// One function: its versions and aliases.
#[derive(Clone, Default)]
pub(crate) struct Entry {
    pub versions: BTreeMap<u32, Arc<Function>>,
    pub aliases: BTreeMap<String, Alias>,
    /// The newest version is a draft: it is `$LATEST`, but not published
    /// (its number is not addressable, no alias may point to it, and it
    /// can be replaced in place). Lambda's mutable `$LATEST`.
    pub draft: bool,
    /// Function-level annotations (see [`Host::annotate_function`](crate::Host::annotate_function)).
    pub annotations: BTreeMap<String, String>,
}

impl Entry {
    /// `$LATEST`: the newest version, draft or not.
    pub(crate) fn latest(&self) -> Option<(&u32, &Arc<Function>)> {
        self.versions.last_key_value()
    }

    /// The draft's number, if the newest version is one.
    pub(crate) fn draft_version(&self) -> Option<u32> {
        self.draft.then(|| self.latest().map(|(v, _)| *v)).flatten()
    }

    /// A published version (it exists and is not the draft).
    pub(crate) fn published(&self, version: u32) -> Option<&Arc<Function>> {
        if self.draft_version() == Some(version) {
            return None;
        }
        self.versions.get(&version)
    }

    /// The newest published version.
    pub(crate) fn newest_published(&self) -> Option<(&u32, &Arc<Function>)> {
        let skip = usize::from(self.draft);
        self.versions.iter().rev().nth(skip)
    }
}

#[derive(Default)]
pub(crate) struct Registry {
    map: RwLock<HashMap<String, Arc<Entry>>>,
    /// Counts changes (see [`Registry::generation`]).
    changes: std::sync::atomic::AtomicU64,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new({
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |d| d.as_nanos() as u64);
        let id = &t as *const u64 as u64;
        (t ^ id.rotate_left(32)) | 1
    });
}

/// A uniform number in [0, 1) from a per-thread xorshift generator (for
/// weighted routing; not for anything secret).
fn uniform() -> f64 {
    RNG.with(|r| {
        let mut x = r.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        r.set(x);
        (x >> 11) as f64 / (1u64 << 53) as f64
    })
}

impl Registry {
    /// A number that moves on every change of the table (for callers that
    /// keep something derived from it).
    pub(crate) fn generation(&self) -> u64 {
        self.changes.load(std::sync::atomic::Ordering::Acquire)
    }

    pub(crate) fn get(&self, name: &str) -> Option<Arc<Entry>> {
        self.map.read().get(name).cloned()
    }

    /// Resolves `name[:qualifier]` to the version to run and its label
    /// (`$LATEST` or the version number).
    pub(crate) fn resolve(&self, qualified: &str) -> Result<(Arc<Function>, Option<u32>)> {
        self.resolve_with(qualified, true)
    }

    /// What `name[:qualifier]` names, an alias' primary version (no
    /// weighted pick).
    pub(crate) fn resolve_primary(&self, qualified: &str) -> Result<Arc<Function>> {
        self.resolve_with(qualified, false).map(|(f, _)| f)
    }

    fn resolve_with(&self, qualified: &str, route: bool) -> Result<(Arc<Function>, Option<u32>)> {
        let target = FunctionRef::parse(qualified);
        let not_found = || Error::NotFound {
            name: qualified.to_string(),
        };
        let map = self.map.read();
        let entry = map.get(target.name).ok_or_else(not_found)?;
        let version = match target.qualifier {
            Qualifier::Latest => {
                let (_, f) = entry.latest().ok_or_else(not_found)?;
                return Ok((f.clone(), None));
            }
            Qualifier::Version(v) => v,
            Qualifier::Alias(q) => {
                let alias = entry.aliases.get(q).ok_or_else(not_found)?;
                match alias.additional {
                    Some((other, w)) if route && uniform() < w => other,
                    _ if alias.version == Alias::LATEST => {
                        let (_, f) = entry.latest().ok_or_else(not_found)?;
                        return Ok((f.clone(), None));
                    }
                    _ => alias.version,
                }
            }
        };
        let f = entry.published(version).ok_or_else(not_found)?;
        Ok((f.clone(), Some(version)))
    }

    /// Every version of every function.
    pub(crate) fn all(&self) -> Vec<Arc<Function>> {
        self.map
            .read()
            .values()
            .flat_map(|e| e.versions.values().cloned())
            .collect()
    }

    /// Names, sorted.
    pub(crate) fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.map.read().keys().cloned().collect();
        v.sort();
        v
    }

    /// Applies `change` to `name`'s entry (or a new empty one) atomically;
    /// `None` from `change` removes the function.
    pub(crate) fn update<T>(
        &self,
        name: &str,
        change: impl FnOnce(Option<&Entry>) -> Result<(Option<Entry>, T)>,
    ) -> Result<T> {
        let mut map = self.map.write();
        let (next, out) = change(map.get(name).map(|e| &**e))?;
        self.changes
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        match next {
            Some(e) => {
                map.insert(name.to_string(), Arc::new(e));
            }
            None => {
                map.remove(name);
            }
        }
        Ok(out)
    }
}

/// Checks that `alias` names existing versions and a sane weight.
pub(crate) fn check_alias(
    name: &str,
    entry: &Entry,
    alias_name: &str,
    alias: &Alias,
) -> Result<()> {
    if !crate::target::valid_alias(alias_name) {
        return Err(Error::config(
            "alias",
            format!("{alias_name:?}: use letters, digits, '-' and '_', not a number or $LATEST"),
        ));
    }
    if alias.version == Alias::LATEST && alias.additional.is_some() {
        return Err(Error::config(
            "alias",
            "an alias to $LATEST cannot route to a second version",
        ));
    }
    let numbers = std::iter::once(alias.version).filter(|v| *v != Alias::LATEST);
    for v in numbers.chain(alias.additional.map(|(v, _)| v)) {
        if entry.published(v).is_none() {
            return Err(Error::NotFound {
                name: format!("{name}:{v}"),
            });
        }
    }
    if let Some((_, w)) = alias.additional
        && !(0.0..=1.0).contains(&w)
    {
        return Err(Error::config(
            "alias",
            format!("weight {w} must be between 0 and 1"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn uniform_is_in_range_and_spread() {
        let n = 100_000;
        let below: usize = (0..n).filter(|_| super::uniform() < 0.25).count();
        // 25 % ± 5σ (σ ≈ 137).
        assert!((24_300..25_700).contains(&below), "{below}");
    }
}
