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

use serde_json::{Value, json};

use crate::error::{Error, Result};
use crate::function::registry::Alias;
use crate::function::{FunctionConfig, ModuleSource, Reuse};
use crate::util::fs::write_atomic;

/// One persisted version: module hash and configuration.
pub(crate) struct SavedVersion {
    pub version: u32,
    pub module_hash: String,
    pub config: FunctionConfig,
}

/// One persisted function.
pub(crate) struct SavedFunction {
    pub name: String,
    pub versions: Vec<SavedVersion>,
    pub aliases: BTreeMap<String, Alias>,
}

pub(crate) struct DataDir {
    dir: PathBuf,
}

fn config_json(c: &FunctionConfig) -> Value {
    json!({
        "memory_limit": c.memory_limit,
        "timeout_ms": c.timeout.as_millis() as u64,
        "env": c.env,
        "tmp_quota": c.tmp_quota,
        "max_input": c.max_input,
        "max_output": c.max_output,
        "max_log_bytes": c.max_log_bytes,
        "reserved_concurrency": c.reserved_concurrency,
        "provisioned_concurrency": c.provisioned_concurrency,
        "reuse": c.reuse.map(|r| json!({"max_uses": r.max_uses, "idle_ttl_ms": r.idle_ttl.as_millis() as u64})),
        "max_wait_ms": c.max_wait.as_millis() as u64,
        "grants": c.grants,
        "tenant": c.tenant,
        "max_host_calls": c.max_host_calls,
        "max_host_call_bytes": c.max_host_call_bytes,
        "max_fuel": c.max_fuel,
        "snapshot": c.snapshot,
    })
}

fn config_from(name: &str, module: PathBuf, v: &Value) -> Option<FunctionConfig> {
    let u = |k: &str| v.get(k)?.as_u64();
    let mut c = FunctionConfig::from_file(name, module)
        .memory_limit(u("memory_limit")?)
        .timeout(Duration::from_millis(u("timeout_ms")?))
        .tmp_quota(u("tmp_quota")?)
        .max_input(u("max_input")? as usize)
        .max_output(u("max_output")? as usize)
        .max_log_bytes(u("max_log_bytes")? as usize)
        .provisioned_concurrency(u("provisioned_concurrency")? as u32)
        .max_wait(Duration::from_millis(u("max_wait_ms")?));
    for pair in v.get("env")?.as_array()? {
        c = c.env(pair.get(0)?.as_str()?, pair.get(1)?.as_str()?);
    }
    // Fields added later: absent in older tables.
    for g in v
        .get("grants")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        c = c.grant(g.as_str()?);
    }
    if let Some(t) = v.get("tenant").and_then(Value::as_str) {
        c = c.tenant(t);
    }
    if let Some(n) = u("max_host_calls") {
        c = c.max_host_calls(n as u32);
    }
    if v.get("snapshot").and_then(Value::as_bool) == Some(true) {
        c = c.snapshot(true);
    }
    if let Some(n) = u("max_fuel") {
        c = c.max_fuel(n);
    }
    if let Some(n) = u("max_host_call_bytes") {
        c = c.max_host_call_bytes(n as usize);
    }
    if let Some(r) = u("reserved_concurrency") {
        c = c.reserved_concurrency(r as u32);
    }
    if let Some(r) = v.get("reuse").filter(|r| !r.is_null()) {
        c.reuse = Some(Reuse {
            max_uses: r.get("max_uses")?.as_u64()? as u32,
            idle_ttl: Duration::from_millis(r.get("idle_ttl_ms")?.as_u64()?),
        });
    }
    Some(c)
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
    let versions: serde_json::Map<String, Value> = f
        .versions
        .iter()
        .map(|v| {
            (
                v.version.to_string(),
                json!({"module": v.module_hash, "config": config_json(&v.config)}),
            )
        })
        .collect();
    let aliases: serde_json::Map<String, Value> = f
        .aliases
        .iter()
        .map(|(n, a)| {
            (
                n.clone(),
                json!({"version": a.version, "additional": a.additional}),
            )
        })
        .collect();
    json!({"versions": versions, "aliases": aliases})
}

/// Reads what [`function_json`] wrote; each version's module is
/// `module_path(hash)`. The error says what is wrong.
pub(crate) fn function_from_json(
    name: &str,
    f: &Value,
    module_path: &dyn Fn(&str) -> PathBuf,
) -> std::result::Result<SavedFunction, String> {
    let mut versions = Vec::new();
    for (num, ver) in f
        .get("versions")
        .and_then(Value::as_object)
        .ok_or("no `versions`")?
    {
        let version: u32 = num.parse().map_err(|_| "a version is not a number")?;
        let hash = ver
            .get("module")
            .and_then(Value::as_str)
            .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or("a version has no module hash")?;
        let config = ver
            .get("config")
            .and_then(|c| config_from(name, module_path(hash), c))
            .ok_or_else(|| format!("`{name}:{version}` has a bad config"))?;
        versions.push(SavedVersion {
            version,
            module_hash: hash.to_string(),
            config,
        });
    }
    versions.sort_by_key(|v| v.version);
    let mut aliases = BTreeMap::new();
    if let Some(a) = f.get("aliases").and_then(Value::as_object) {
        for (alias, t) in a {
            let version = t
                .get("version")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
                .ok_or("an alias has no version")?;
            let additional = t.get("additional").and_then(Value::as_array).and_then(|p| {
                Some((
                    u32::try_from(p.first()?.as_u64()?).ok()?,
                    p.get(1)?.as_f64()?,
                ))
            });
            aliases.insert(
                alias.clone(),
                Alias {
                    version,
                    additional,
                },
            );
        }
    }
    Ok(SavedFunction {
        name: name.to_string(),
        versions,
        aliases,
    })
}

/// Do two configs set the same quotas and environment (modules aside)?
pub(crate) fn same_settings(a: &FunctionConfig, b: &FunctionConfig) -> bool {
    config_json(a) == config_json(b)
}

/// A config with its module moved to `path` (what is kept per version).
pub(crate) fn with_module_file(cfg: &FunctionConfig, path: PathBuf) -> FunctionConfig {
    let mut c = cfg.clone();
    c.source = ModuleSource::File(path);
    c
}
