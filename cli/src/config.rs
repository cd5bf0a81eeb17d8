//! `fnhost.toml`: the functions a server runs, validated once and
//! converted into host types. Unknown keys and bad values are refused with
//! the file, the key and the reason.
//!
//! ```toml
//! listen = "127.0.0.1:9000"      # optional
//! concurrency = 1000             # optional: the host's global limit
//! max_body = "6MB"               # optional: largest request body
//! data_dir = "data"              # optional: persist versions and aliases
//!
//! [[function]]
//! name = "hello"
//! module = "hello.wasm"          # relative to this file
//! memory = "128MB"
//! timeout = "3s"
//! tmp_quota = "64MB"
//! env = { GREETING = "Hi" }
//! reserved_concurrency = 10
//! provisioned_concurrency = 1
//! reuse = { max_uses = 1000, idle_ttl = "5m" }
//! routes = ["ANY /hello/{proxy+}", "GET /hi"]
//! # Event invocations: Lambda's PutFunctionEventInvokeConfig
//! events = { max_retries = 1, retry_delay = "5s", max_event_age = "1h" }
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use fnhost::FunctionConfig;
use serde::Deserialize;

/// A whole config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: Option<String>,
    /// Global concurrency limit.
    pub concurrency: Option<u32>,
    /// Largest request body, e.g. `"6MB"`.
    pub max_body: Option<String>,
    /// Where the registry (versions, aliases, modules) is persisted.
    pub data_dir: Option<PathBuf>,
    /// The functions.
    #[serde(default, rename = "function")]
    pub functions: Vec<FunctionEntry>,
}

/// One `[[function]]` table.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionEntry {
    /// Function name.
    pub name: String,
    /// Path of the `.wasm` module (relative to the config file).
    pub module: PathBuf,
    /// Memory limit, e.g. `"128MB"`.
    pub memory: Option<String>,
    /// Timeout, e.g. `"3s"`.
    pub timeout: Option<String>,
    /// `/tmp` quota, e.g. `"64MB"`.
    pub tmp_quota: Option<String>,
    /// Environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Reserved concurrency.
    pub reserved_concurrency: Option<u32>,
    /// Provisioned concurrency.
    pub provisioned_concurrency: Option<u32>,
    /// Warm reuse.
    pub reuse: Option<ReuseEntry>,
    /// HTTP trigger routes: `"METHOD /path"`, `{param}` and a final
    /// `{proxy+}` allowed; `ANY` matches every method.
    #[serde(default)]
    pub routes: Vec<String>,
    /// Retry policy of event invocations.
    pub events: Option<EventsEntry>,
}

/// `events = { max_retries = .., retry_delay = "..", max_event_age = ".." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsEntry {
    /// Retries after a failed attempt (0-2).
    pub max_retries: Option<u32>,
    /// Delay before the first retry (doubles after), e.g. `"5s"`.
    pub retry_delay: Option<String>,
    /// Oldest an event may get, e.g. `"1h"`.
    pub max_event_age: Option<String>,
}

/// `reuse = { max_uses = .., idle_ttl = ".." }`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReuseEntry {
    /// Invocations per instance.
    pub max_uses: u32,
    /// Idle time before release, e.g. `"5m"`.
    pub idle_ttl: String,
}

/// Splits `"128MB"` into `(128, "MB")`; `what` names the expected form.
fn number_and_unit<'a>(s: &'a str, what: &str) -> Result<(u64, &'a str)> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = num
        .parse()
        .with_context(|| format!("{s:?} is not {what}"))?;
    Ok((n, unit))
}

/// Parses `"128MB"`, `"1GiB"`, `"512kb"` or a plain byte count. MB and MiB
/// both mean 2^20 bytes (as Lambda's memory sizes do).
pub fn parse_size(s: &str) -> Result<u64> {
    let (n, unit) = number_and_unit(s, "a size like \"128MB\"")?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        other => bail!("{s:?}: unknown size unit {other:?} (use B, KB, MB or GB)"),
    };
    n.checked_mul(mult)
        .with_context(|| format!("{s:?} is too large"))
}

/// Parses `"3s"`, `"500ms"`, `"2m"`, `"1h"`.
pub fn parse_duration(s: &str) -> Result<Duration> {
    let (n, unit) = number_and_unit(s, "a duration like \"3s\"")?;
    Ok(match unit.trim() {
        "ms" => Duration::from_millis(n),
        "s" | "" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        other => bail!("{s:?}: unknown duration unit {other:?} (use ms, s, m or h)"),
    })
}

impl Config {
    /// Reads and parses `path`; every error names the file.
    pub fn load(path: &Path) -> Result<Config> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Config::parse(&text).with_context(|| format!("in {}", path.display()))
    }

    /// Parses config text (syntax, unknown keys, types, then values).
    pub fn parse(text: &str) -> Result<Config> {
        let cfg: Config =
            toml::from_str(text).map_err(|e| anyhow::anyhow!("{}", e.to_string().trim_end()))?;
        if let Some(b) = &cfg.max_body {
            parse_size(b).context("key `max_body`")?;
        }
        let mut seen = std::collections::HashSet::new();
        for (i, f) in cfg.functions.iter().enumerate() {
            if !seen.insert(&f.name) {
                bail!("key `function[{i}].name`: {:?} appears twice", f.name);
            }
            for r in &f.routes {
                crate::http::Route::parse(r, &f.name)
                    .with_context(|| format!("key `function[{i}].routes`"))?;
            }
        }
        Ok(cfg)
    }

    /// Largest request body in bytes (default 6 MiB + 1 KiB of framing).
    pub fn max_body(&self) -> u64 {
        self.max_body
            .as_deref()
            .and_then(|b| parse_size(b).ok())
            .unwrap_or((6 << 20) + 1024)
    }
}

impl FunctionEntry {
    /// The host-side configuration; module paths are relative to `base`.
    pub fn to_config(&self, base: &Path, index: usize) -> Result<FunctionConfig> {
        let key = |k: &str| format!("key `function[{index}].{k}`");
        let module = if self.module.is_absolute() {
            self.module.clone()
        } else {
            base.join(&self.module)
        };
        let mut c = FunctionConfig::from_file(self.name.clone(), module);
        if let Some(m) = &self.memory {
            c = c.memory_limit(parse_size(m).with_context(|| key("memory"))?);
        }
        if let Some(t) = &self.timeout {
            c = c.timeout(parse_duration(t).with_context(|| key("timeout"))?);
        }
        if let Some(q) = &self.tmp_quota {
            c = c.tmp_quota(parse_size(q).with_context(|| key("tmp_quota"))?);
        }
        for (k, v) in &self.env {
            c = c.env(k, v);
        }
        if let Some(r) = self.reserved_concurrency {
            c = c.reserved_concurrency(r);
        }
        if let Some(p) = self.provisioned_concurrency {
            c = c.provisioned_concurrency(p);
        }
        if let Some(r) = &self.reuse {
            c = c.reuse(
                r.max_uses,
                parse_duration(&r.idle_ttl).with_context(|| key("reuse.idle_ttl"))?,
            );
        }
        Ok(c)
    }

    /// The event invoke config (`None` when the table has no `events`).
    pub fn event_config(&self, index: usize) -> Result<Option<fnhost::events::EventConfig>> {
        let Some(e) = &self.events else {
            return Ok(None);
        };
        let key = |k: &str| format!("key `function[{index}].events.{k}`");
        let mut c = fnhost::events::EventConfig::default();
        if let Some(n) = e.max_retries {
            c = c.max_retries(n);
        }
        if let Some(d) = &e.retry_delay {
            c = c.retry_delay(parse_duration(d).with_context(|| key("retry_delay"))?);
        }
        if let Some(a) = &e.max_event_age {
            c = c.max_event_age(parse_duration(a).with_context(|| key("max_event_age"))?);
        }
        Ok(Some(c))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(parse_size("128MB").unwrap(), 128 << 20);
        assert_eq!(parse_size("1 GiB").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(
            parse_size("12XB")
                .unwrap_err()
                .to_string()
                .contains("unknown size unit")
        );
        assert!(parse_size("MB").is_err());
        assert_eq!(parse_duration("3s").unwrap(), Duration::from_secs(3));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert!(parse_duration("3 fortnights").is_err());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_named() {
        let e =
            Config::parse("[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nmemroy = \"1MB\"\n")
                .unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("unknown field `memroy`"), "{msg}");
        let e = Config::parse("max_body = \"lots\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("key `max_body`"), "{e:#}");
        let e = Config::parse(
            "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nroutes = [\"FETCH /x\"]\n",
        )
        .unwrap_err();
        assert!(
            format!("{e:#}").contains("key `function[0].routes`"),
            "{e:#}"
        );
        let cfg =
            Config::parse("[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nmemory = \"12XB\"\n")
                .unwrap();
        let e = cfg.functions[0].to_config(Path::new("."), 0).unwrap_err();
        assert!(
            format!("{e:#}").contains("key `function[0].memory`"),
            "{e:#}"
        );
    }

    #[test]
    fn event_configs_parse_and_bad_ones_are_named() {
        let f = |events: &str| {
            Config::parse(&format!(
                "[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\nevents = {events}\n"
            ))
        };
        let cfg = f(r#"{ max_retries = 1, retry_delay = "5s", max_event_age = "1h" }"#).unwrap();
        let ec = cfg.functions[0].event_config(0).unwrap().unwrap();
        assert_eq!(ec.retries(), 1);
        assert_eq!(ec.event_age(), Duration::from_secs(3600));
        assert_eq!(ec.retry_after(1), Duration::from_secs(5));
        assert_eq!(ec.retry_after(2), Duration::from_secs(10));
        let none = Config::parse("[[function]]\nname = \"a\"\nmodule = \"a.wasm\"\n").unwrap();
        assert!(none.functions[0].event_config(0).unwrap().is_none());
        let e = f(r#"{ retries = 1 }"#).unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown field `retries`"),
            "{e:#}"
        );
        let cfg = f(r#"{ retry_delay = "soon" }"#).unwrap();
        let e = cfg.functions[0].event_config(0).unwrap_err();
        assert!(
            format!("{e:#}").contains("key `function[0].events.retry_delay`"),
            "{e:#}"
        );
    }
}
