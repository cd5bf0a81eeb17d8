//! Registry persistence under the host's data dir, so a restarted host
//! comes back with the same functions, versions and aliases (and, through
//! the artifact cache, without compiling).
//!
//! Layout: `modules/<blake3>.wasm` (content-addressed module bytes, written
//! once) and `registry.json` (the table), rewritten atomically (temporary
//! file + rename) after every change.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::function::registry::Alias;
use crate::function::{FunctionConfig, ModuleSource, Reuse};
use crate::util::fs::write_atomic;

/// One persisted version: module hash and configuration.
#[derive(Debug)]
pub(crate) struct SavedVersion {
    pub version: u32,
    pub module_hash: String,
    pub config: FunctionConfig,
    /// When it was registered, in ms since the Unix epoch (0: unknown, a
    /// table from before the field).
    pub modified_ms: u64,
}

/// One persisted function.
#[derive(Debug)]
pub(crate) struct SavedFunction {
    pub name: String,
    pub versions: Vec<SavedVersion>,
    pub aliases: BTreeMap<String, Alias>,
    /// The newest version is an unpublished draft (`$LATEST` only).
    pub draft: bool,
    /// Function-level annotations.
    pub annotations: BTreeMap<String, String>,
}

pub(crate) struct DataDir {
    dir: PathBuf,
}

/// A version's configuration as the table stores it (its module is the
/// version's `module` hash). Fields added after the first release are
/// optional, so older tables still load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct StoredConfig {
    memory_limit: u64,
    timeout_ms: u64,
    env: Vec<(String, String)>,
    tmp_quota: u64,
    max_input: usize,
    max_output: usize,
    max_log_bytes: usize,
    #[serde(default)]
    reserved_concurrency: Option<u32>,
    provisioned_concurrency: u32,
    #[serde(default)]
    reuse: Option<StoredReuse>,
    max_wait_ms: u64,
    #[serde(default)]
    grants: Vec<String>,
    #[serde(default)]
    tenant: Option<String>,
    #[serde(default)]
    max_host_calls: Option<u32>,
    #[serde(default)]
    max_host_call_bytes: Option<usize>,
    #[serde(default)]
    max_fuel: Option<u64>,
    #[serde(default)]
    snapshot: bool,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct StoredReuse {
    max_uses: u32,
    idle_ttl_ms: u64,
}

impl StoredConfig {
    fn of(c: &FunctionConfig) -> StoredConfig {
        StoredConfig {
            memory_limit: c.memory_limit,
            timeout_ms: c.timeout.as_millis() as u64,
            env: c.env.clone(),
            tmp_quota: c.tmp_quota,
            max_input: c.max_input,
            max_output: c.max_output,
            max_log_bytes: c.max_log_bytes,
            reserved_concurrency: c.reserved_concurrency,
            provisioned_concurrency: c.provisioned_concurrency,
            reuse: c.reuse.map(|r| StoredReuse {
                max_uses: r.max_uses,
                idle_ttl_ms: r.idle_ttl.as_millis() as u64,
            }),
            max_wait_ms: c.max_wait.as_millis() as u64,
            grants: c.grants.clone(),
            tenant: c.tenant.clone(),
            max_host_calls: Some(c.max_host_calls),
            max_host_call_bytes: Some(c.max_host_call_bytes),
            max_fuel: c.max_fuel,
            snapshot: c.snapshot,
            annotations: c.annotations.clone(),
        }
    }

    fn into_config(self, name: &str, module: PathBuf) -> FunctionConfig {
        let mut c = FunctionConfig::from_file(name, module)
            .memory_limit(self.memory_limit)
            .timeout(Duration::from_millis(self.timeout_ms))
            .tmp_quota(self.tmp_quota)
            .max_input(self.max_input)
            .max_output(self.max_output)
            .max_log_bytes(self.max_log_bytes)
            .provisioned_concurrency(self.provisioned_concurrency)
            .max_wait(Duration::from_millis(self.max_wait_ms))
            .snapshot(self.snapshot);
        for (k, v) in self.env {
            c = c.env(k, v);
        }
        for g in self.grants {
            c = c.grant(g);
        }
        if let Some(t) = self.tenant {
            c = c.tenant(t);
        }
        if let Some(n) = self.max_host_calls {
            c = c.max_host_calls(n);
        }
        if let Some(n) = self.max_fuel {
            c = c.max_fuel(n);
        }
        if let Some(n) = self.max_host_call_bytes {
            c = c.max_host_call_bytes(n);
        }
        if let Some(r) = self.reserved_concurrency {
            c = c.reserved_concurrency(r);
        }
        c.annotations = self.annotations;
        c.reuse = self.reuse.map(|r| Reuse {
            max_uses: r.max_uses,
            idle_ttl: Duration::from_millis(r.idle_ttl_ms),
        });
        c
    }
}

/// One function's entry of the table.
#[derive(Debug, Serialize, Deserialize)]
struct StoredFunction {
    /// By version number (as a string: JSON keys).
    versions: BTreeMap<String, StoredVersion>,
    #[serde(default)]
    aliases: BTreeMap<String, StoredAlias>,
    /// The newest version is an unpublished draft.
    #[serde(default, skip_serializing_if = "is_false")]
    draft: bool,
    /// Function-level annotations.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredVersion {
    /// BLAKE3 of the module bytes, hex.
    module: String,
    config: StoredConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    modified_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredAlias {
    version: u32,
    #[serde(default)]
    additional: Option<(u32, f64)>,
}

impl DataDir {
    pub(crate) fn open(dir: PathBuf) -> Result<DataDir> {
        std::fs::create_dir_all(dir.join("modules")).map_err(|e| Error::io(&dir, e))?;
        Ok(DataDir { dir })
    }

    fn table(&self) -> PathBuf {
        self.dir.join("registry.json")
    }

    /// Path of a stored module.
    pub(crate) fn module_path(&self, hash: &str) -> PathBuf {
        self.dir.join("modules").join(format!("{hash}.wasm"))
    }

    /// Stores module bytes under their hash (once).
    pub(crate) fn store_module(&self, hash: &str, bytes: &[u8]) -> Result<()> {
        let p = self.module_path(hash);
        if !p.exists() {
            write_atomic(&p, bytes).map_err(|e| Error::io(&p, e))?;
        }
        Ok(())
    }

    /// Writes the whole table.
    pub(crate) fn save(&self, functions: &[SavedFunction]) -> Result<()> {
        let out: serde_json::Map<String, Value> = functions
            .iter()
            .map(|f| (f.name.clone(), function_json(f)))
            .collect();
        let text =
            serde_json::to_vec_pretty(&json!({"format": 1, "functions": out})).unwrap_or_default();
        let p = self.table();
        write_atomic(&p, &text).map_err(|e| Error::io(&p, e))
    }

    /// Reads the table (empty when there is none yet).
    pub(crate) fn load(&self) -> Result<Vec<SavedFunction>> {
        let p = self.table();
        let bytes = match std::fs::read(&p) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(Error::io(&p, e)),
        };
        let bad = |why: &str| Error::config("data_dir", format!("{}: {why}", p.display()));
        let v: Value = serde_json::from_slice(&bytes).map_err(|e| bad(&e.to_string()))?;
        v.get("functions")
            .and_then(Value::as_object)
            .ok_or_else(|| bad("no `functions`"))?
            .iter()
            .map(|(name, f)| {
                function_from_json(name, f, &|h| self.module_path(h)).map_err(|e| bad(&e))
            })
            .collect()
    }
}

/// One function's entry of the table: `{"versions": {"1": {"module",
/// "config"}}, "aliases": {"live": {"version", "additional"}}}`.
pub(crate) fn function_json(f: &SavedFunction) -> Value {
    let stored = StoredFunction {
        versions: f
            .versions
            .iter()
            .map(|v| {
                let version = StoredVersion {
                    module: v.module_hash.clone(),
                    config: StoredConfig::of(&v.config),
                    modified_ms: (v.modified_ms != 0).then_some(v.modified_ms),
                };
                (v.version.to_string(), version)
            })
            .collect(),
        aliases: f
            .aliases
            .iter()
            .map(|(n, a)| {
                let alias = StoredAlias {
                    version: a.version,
                    additional: a.additional,
                };
                (n.clone(), alias)
            })
            .collect(),
        draft: f.draft,
        annotations: f.annotations.clone(),
    };
    serde_json::to_value(stored).unwrap_or_default()
}

/// Reads what [`function_json`] wrote; each version's module is
/// `module_path(hash)`. The error says what is wrong.
pub(crate) fn function_from_json(
    name: &str,
    f: &Value,
    module_path: &dyn Fn(&str) -> PathBuf,
) -> std::result::Result<SavedFunction, String> {
    let stored = StoredFunction::deserialize(f).map_err(|e| e.to_string())?;
    let mut versions = Vec::new();
    for (num, ver) in stored.versions {
        let version: u32 = num
            .parse()
            .ok()
            .filter(|v: &u32| v.to_string() == num)
            .ok_or_else(|| format!("version {num:?} is not a number"))?;
        if version == 0 || version == u32::MAX {
            return Err(format!(
                "version {num} is out of range (1 to {})",
                u32::MAX - 1
            ));
        }
        let hash = ver.module;
        if !(hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit())) {
            return Err(format!("`{name}:{version}` has no valid module hash"));
        }
        let config = ver.config.into_config(name, module_path(&hash));
        versions.push(SavedVersion {
            version,
            module_hash: hash,
            config,
            modified_ms: ver.modified_ms.unwrap_or(0),
        });
    }
    versions.sort_by_key(|v| v.version);
    crate::function::check_annotations(
        &stored.annotations,
        crate::function::MAX_FUNCTION_ANNOTATIONS,
    )
    .map_err(|e| e.to_string())?;
    let aliases = stored
        .aliases
        .into_iter()
        .map(|(alias, t)| {
            let target = Alias {
                version: t.version,
                additional: t.additional,
            };
            (alias, target)
        })
        .collect();
    Ok(SavedFunction {
        name: name.to_string(),
        versions,
        aliases,
        draft: stored.draft,
        annotations: stored.annotations,
    })
}

/// Do two configs set the same quotas and environment (modules aside)?
pub(crate) fn same_settings(a: &FunctionConfig, b: &FunctionConfig) -> bool {
    StoredConfig::of(a) == StoredConfig::of(b)
}

/// A config with its module moved to `path` (what is kept per version).
pub(crate) fn with_module_file(cfg: &FunctionConfig, path: PathBuf) -> FunctionConfig {
    let mut c = cfg.clone();
    c.source = ModuleSource::File(path);
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A table entry as the first releases wrote it: no grants, tenant,
    /// host-call limits, fuel or snapshot fields, nulls for unset options.
    const OLD_ENTRY: &str = r#"{
        "versions": {"2": {"module": "ab00000000000000000000000000000000000000000000000000000000000000",
            "config": {"memory_limit": 67108864, "timeout_ms": 1500, "env": [["A", "1"], ["B", "two"]],
                "tmp_quota": 1048576, "max_input": 1000, "max_output": 2000, "max_log_bytes": 3000,
                "reserved_concurrency": null, "provisioned_concurrency": 1, "reuse": {"max_uses": 5, "idle_ttl_ms": 60000},
                "max_wait_ms": 250}}},
        "aliases": {"live": {"version": 2, "additional": null}, "canary": {"version": 2, "additional": [3, 0.25]}}
    }"#;

    #[test]
    fn old_tables_load_and_round_trip() {
        let v: Value = serde_json::from_str(OLD_ENTRY).unwrap();
        let f = function_from_json("f", &v, &|h| PathBuf::from(format!("/m/{h}.wasm"))).unwrap();
        assert_eq!(f.versions.len(), 1);
        let c = &f.versions[0].config;
        assert_eq!(f.versions[0].version, 2);
        assert_eq!(c.memory_limit, 64 << 20);
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(
            c.env,
            vec![("A".into(), "1".into()), ("B".into(), "two".into())]
        );
        assert_eq!(
            (c.max_input, c.max_output, c.max_log_bytes),
            (1000, 2000, 3000)
        );
        assert_eq!(c.provisioned_concurrency, 1);
        assert_eq!(c.reserved_concurrency, None);
        assert_eq!(
            c.reuse,
            Some(Reuse {
                max_uses: 5,
                idle_ttl: Duration::from_secs(60)
            })
        );
        assert_eq!(c.max_wait, Duration::from_millis(250));
        // Absent later fields keep FunctionConfig's defaults.
        let d = FunctionConfig::from_bytes("f", &b""[..]);
        assert_eq!(
            (c.max_host_calls, c.max_host_call_bytes),
            (d.max_host_calls, d.max_host_call_bytes)
        );
        assert!(c.grants.is_empty() && c.tenant.is_none() && c.max_fuel.is_none() && !c.snapshot);
        assert_eq!(f.aliases["live"], Alias::to(2));
        assert_eq!(f.aliases["canary"], Alias::weighted(2, 3, 0.25));
        // What is written now reads back the same.
        let again = function_from_json("f", &function_json(&f), &|h| {
            PathBuf::from(format!("/m/{h}.wasm"))
        })
        .unwrap();
        assert!(same_settings(c, &again.versions[0].config));
        assert_eq!(again.aliases, f.aliases);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let read = |s: &str| {
            function_from_json("f", &serde_json::from_str(s).unwrap(), &|h| {
                PathBuf::from(h)
            })
        };
        assert!(read(r#"{"aliases": {}}"#).unwrap_err().contains("versions"));
        let bad_hash = OLD_ENTRY.replace("ab0000", "zz0000");
        assert_eq!(
            read(&bad_hash).unwrap_err(),
            "`f:2` has no valid module hash"
        );
        let bad_number = OLD_ENTRY.replace(r#""2": {"module""#, r#""02": {"module""#);
        assert_eq!(
            read(&bad_number).unwrap_err(),
            r#"version "02" is not a number"#
        );
        for out_of_range in ["0", "4294967295"] {
            let entry = OLD_ENTRY.replace(
                r#""2": {"module""#,
                &format!(r#""{out_of_range}": {{"module""#),
            );
            assert!(
                read(&entry).unwrap_err().contains("out of range"),
                "{out_of_range}"
            );
        }
        let no_timeout = OLD_ENTRY.replace(r#""timeout_ms": 1500, "#, "");
        assert!(read(&no_timeout).unwrap_err().contains("timeout_ms"));
    }
}
