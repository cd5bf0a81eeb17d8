//! [`FunctionConfig`]: what a function is registered with, checked field
//! by field, and how it becomes the instance's [`Spec`] and the function's
//! [`Policy`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::Policy;
use crate::capability::Grants;
use crate::error::{Error, Result};
use crate::guest::Spec;

/// wasm32 linear memory cannot exceed 4 GiB.
pub const WASM32_MAX_MEMORY: u64 = 4 << 30;
/// Longest timeout accepted (Lambda's 15 minutes).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(15 * 60);
/// Most bytes of environment (`KEY=VALUE` pairs) a function may have
/// (Lambda's 4 KB).
pub const MAX_ENV_BYTES: usize = 4096;
/// Most annotations a function version may carry, and most bytes of keys
/// and values together (see [`FunctionConfig::annotate`]).
pub const MAX_ANNOTATIONS: (usize, usize) = (64, 16 << 10);
/// Most function-level annotations a function may carry, and most bytes of
/// keys and values together (see [`Host::annotate_function`](crate::Host::annotate_function)).
pub const MAX_FUNCTION_ANNOTATIONS: (usize, usize) = (256, 1 << 20);

/// Refuses `annotations` past `(entries, bytes)`.
pub(crate) fn check_annotations(
    annotations: &BTreeMap<String, String>,
    (max_entries, max_bytes): (usize, usize),
) -> Result<()> {
    let bytes: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if annotations.len() > max_entries || bytes > max_bytes {
        return Err(Error::config(
            "annotations",
            format!(
                "{} entries of {bytes} bytes; at most {max_entries} entries of {max_bytes} bytes",
                annotations.len()
            ),
        ));
    }
    Ok(())
}

/// Where a function's WebAssembly comes from.
#[derive(Debug, Clone)]
pub enum ModuleSource {
    /// Module bytes (binary, or WAT text).
    Bytes(bytes::Bytes),
    /// A file holding the module.
    File(PathBuf),
}

/// Everything needed to register a function: its code and its quotas.
///
/// Defaults follow Lambda where it makes sense: 128 MiB of memory, 3 s
/// timeout, 6 MiB sync payloads; `/tmp` defaults to 64 MiB because it lives
/// in host memory (see [`FunctionConfig::tmp_quota`]).
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    pub(crate) name: String,
    pub(crate) source: ModuleSource,
    pub(crate) memory_limit: u64,
    pub(crate) timeout: Duration,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) tmp_quota: u64,
    pub(crate) max_input: usize,
    pub(crate) max_output: usize,
    pub(crate) max_log_bytes: usize,
    pub(crate) reserved_concurrency: Option<u32>,
    pub(crate) provisioned_concurrency: u32,
    pub(crate) reuse: Option<Reuse>,
    pub(crate) max_wait: Duration,
    pub(crate) grants: Vec<String>,
    pub(crate) tenant: Option<String>,
    pub(crate) max_host_calls: u32,
    pub(crate) max_host_call_bytes: usize,
    pub(crate) max_fuel: Option<u64>,
    pub(crate) snapshot: bool,
    pub(crate) annotations: BTreeMap<String, String>,
}

/// Lambda-style execution-environment reuse (see
/// [`FunctionConfig::reuse`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reuse {
    /// An instance serves at most this many invocations, then is dropped.
    pub max_uses: u32,
    /// An instance idle this long is released (scale to zero).
    pub idle_ttl: Duration,
}

impl FunctionConfig {
    /// A function named `name` whose module is `bytes` (binary or WAT text).
    pub fn from_bytes(name: impl Into<String>, bytes: impl Into<bytes::Bytes>) -> FunctionConfig {
        FunctionConfig::new(name.into(), ModuleSource::Bytes(bytes.into()))
    }

    /// A function named `name` whose module is read from `path`.
    pub fn from_file(name: impl Into<String>, path: impl Into<PathBuf>) -> FunctionConfig {
        FunctionConfig::new(name.into(), ModuleSource::File(path.into()))
    }

    fn new(name: String, source: ModuleSource) -> FunctionConfig {
        FunctionConfig {
            name,
            source,
            memory_limit: 128 << 20,
            timeout: Duration::from_secs(3),
            env: Vec::new(),
            tmp_quota: 64 << 20,
            max_input: 6 << 20,
            max_output: 6 << 20,
            max_log_bytes: 256 << 10,
            reserved_concurrency: None,
            provisioned_concurrency: 0,
            reuse: None,
            max_wait: Duration::ZERO,
            grants: Vec::new(),
            tenant: None,
            max_host_calls: 10_000,
            max_host_call_bytes: 1 << 20,
            max_fuel: None,
            snapshot: false,
            annotations: BTreeMap::new(),
        }
    }

    /// Attaches `value` under `key` to this version: caller metadata the
    /// host never interprets (the gateway keeps Lambda's `Description`,
    /// `Handler`, `Role` and the package's `CodeSha256` here). Annotations
    /// are persisted and replicated with the version and count as
    /// settings: registering the same module with other annotations is a
    /// change. At most [`MAX_ANNOTATIONS`] (entries, bytes).
    pub fn annotate(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.annotations.insert(key.into(), value.into());
        self
    }

    /// The annotations (see [`annotate`](FunctionConfig::annotate)).
    pub fn annotations(&self) -> &BTreeMap<String, String> {
        &self.annotations
    }

    /// The environment, in the order given.
    pub fn env_vars(&self) -> &[(String, String)] {
        &self.env
    }

    /// Removes every environment variable (to set a new environment).
    pub fn clear_env(mut self) -> Self {
        self.env.clear();
        self
    }

    /// The same configuration with other code.
    pub fn with_source(mut self, source: ModuleSource) -> Self {
        self.source = source;
        self
    }

    /// Snapshot after init (default off): at register time the guest's
    /// init runs once with this function's env and quotas, and every
    /// instance starts from the resulting state, so fresh instances skip
    /// init. A failing init fails the register with init's error. See
    /// docs/snapshots.md for what init may and may not do.
    pub fn snapshot(mut self, on: bool) -> Self {
        self.snapshot = on;
        self
    }

    /// Fuel budget per invocation (needs `HostBuilder::fuel_metering`):
    /// the handler (a cold instance's init runs under the same budget,
    /// refilled before the handler) stops with
    /// [`Error::OutOfFuel`](crate::Error::OutOfFuel) after this many units
    /// (about one per wasm instruction). A deterministic CPU quota: the
    /// same input stops at the same point on every machine.
    pub fn max_fuel(mut self, fuel: u64) -> Self {
        self.max_fuel = Some(fuel);
        self
    }

    /// Grants the capability `name` (see [`crate::capability`]): the
    /// function may call it. Grants are resolved when the function is
    /// registered; a name the host does not define fails the register.
    pub fn grant(mut self, name: impl Into<String>) -> Self {
        self.grants.push(name.into());
        self
    }

    /// A tenant label, seen by host functions
    /// ([`CallContext::tenant`](crate::capability::CallContext::tenant))
    /// and part of the function's key-value namespace.
    pub fn tenant(mut self, label: impl Into<String>) -> Self {
        self.tenant = Some(label.into());
        self
    }

    /// Most host calls per invocation (default 10,000); calls past it
    /// return a limit error to the guest.
    pub fn max_host_calls(mut self, n: u32) -> Self {
        self.max_host_calls = n;
        self
    }

    /// Largest host-call request and response, in bytes (default 1 MiB).
    pub fn max_host_call_bytes(mut self, n: usize) -> Self {
        self.max_host_call_bytes = n;
        self
    }

    /// Reserved concurrency: this many concurrent invocations are set
    /// aside for this function from the host's global limit, and it may
    /// never run more. Without it the function shares the unreserved pool.
    pub fn reserved_concurrency(mut self, n: u32) -> Self {
        self.reserved_concurrency = Some(n);
        self
    }

    /// No reserved concurrency: the function shares the unreserved pool
    /// (the default; undoes [`reserved_concurrency`](FunctionConfig::reserved_concurrency)).
    pub fn unreserved(mut self) -> Self {
        self.reserved_concurrency = None;
        self
    }

    /// Provisioned concurrency: keep this many instances initialised
    /// ahead of time (refilled in the background), so invocations that
    /// find one start warm. Without [`reuse`](Self::reuse) each prepared
    /// instance still serves exactly one invocation.
    pub fn provisioned_concurrency(mut self, n: u32) -> Self {
        self.provisioned_concurrency = n;
        self
    }

    /// Warm reuse: keep an instance after a successful invocation and
    /// run later invocations of this function in it (state in memory and
    /// `/tmp` persists within that instance only, as in Lambda). An
    /// instance that trapped, timed out or ran out of memory is never
    /// reused. Default: a fresh instance per invocation.
    pub fn reuse(mut self, max_uses: u32, idle_ttl: Duration) -> Self {
        self.reuse = Some(Reuse { max_uses, idle_ttl });
        self
    }

    /// At its concurrency limit, wait up to this long for a slot before
    /// throttling (backpressure). Default 0: throttle at once.
    pub fn max_wait(mut self, wait: Duration) -> Self {
        self.max_wait = wait;
        self
    }

    /// Linear-memory limit in bytes (default 128 MiB): whole MiB (as
    /// Lambda's 1 MB steps), at most the host's `max_memory` (wasm32:
    /// ≤ 4 GiB). It is also the memory that usage is billed for.
    pub fn memory_limit(mut self, bytes: u64) -> Self {
        self.memory_limit = bytes;
        self
    }

    /// Wall-clock deadline covering instantiation, init and handler
    /// (default 3 s, at most 15 min).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Adds an environment variable visible to this function only.
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// Byte quota of the private `/tmp` (default 64 MiB). `/tmp` is held in
    /// host memory, so this also bounds the host memory one instance's
    /// scratch files can take. 0 makes `/tmp` read-only and empty.
    pub fn tmp_quota(mut self, bytes: u64) -> Self {
        self.tmp_quota = bytes;
        self
    }

    /// Largest payload accepted (default 6 MiB, Lambda's sync limit).
    pub fn max_input(mut self, bytes: usize) -> Self {
        self.max_input = bytes;
        self
    }

    /// Largest output a guest may return (default 6 MiB).
    pub fn max_output(mut self, bytes: usize) -> Self {
        self.max_output = bytes;
        self
    }

    /// Most stdout/stderr bytes kept per invocation (default 256 KiB); more
    /// is dropped and counted.
    pub fn max_log_bytes(mut self, bytes: usize) -> Self {
        self.max_log_bytes = bytes;
        self
    }

    /// The module's bytes: the ones given, or the file's contents.
    pub fn module_bytes(&self) -> Result<bytes::Bytes> {
        match &self.source {
            ModuleSource::Bytes(b) => Ok(b.clone()),
            ModuleSource::File(p) => std::fs::read(p)
                .map(bytes::Bytes::from)
                .map_err(|e| Error::io(p, e)),
        }
    }

    /// The function's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What every instance of this function reads.
    pub(crate) fn spec(&self, secret: [u8; 32], grants: Grants, fuel: Option<u64>) -> Spec {
        Spec {
            fuel,
            grants,
            tenant: self.tenant.as_deref().map(Arc::from),
            max_host_calls: self.max_host_calls,
            max_host_call_bytes: self.max_host_call_bytes,
            name: self.name.as_str().into(),
            env: self.env.iter().map(|(k, v)| format!("{k}={v}")).collect(),
            memory_limit: self.memory_limit,
            timeout: self.timeout,
            tmp_quota: self.tmp_quota,
            max_output: self.max_output,
            max_log_bytes: self.max_log_bytes,
            secret,
        }
    }

    /// How the runtime admits and keeps this function's instances.
    pub(crate) fn policy(&self) -> Policy {
        Policy {
            max_input: self.max_input,
            max_wait: self.max_wait,
            provisioned: self.provisioned_concurrency,
            reuse: self.reuse,
        }
    }

    /// Checks every field; the error names the first bad one.
    pub(crate) fn validate(&self, host_max_memory: u64) -> Result<()> {
        let n = &self.name;
        if !crate::target::valid_name(n) {
            return Err(Error::config(
                "name",
                format!("{n:?}: use 1-64 characters from A-Z, a-z, 0-9, '-' and '_'"),
            ));
        }
        if self.memory_limit < 1 << 20 || !self.memory_limit.is_multiple_of(1 << 20) {
            return Err(Error::config(
                "memory_limit",
                format!(
                    "{} bytes: must be a whole number of MiB, at least 1 MiB",
                    self.memory_limit
                ),
            ));
        }
        if self.memory_limit > host_max_memory {
            return Err(Error::config(
                "memory_limit",
                format!(
                    "{} bytes is over the host's max_memory of {host_max_memory} bytes \
                     (wasm32 linear memory caps at 4 GiB)",
                    self.memory_limit
                ),
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err(Error::config(
                "timeout",
                format!("{:?}: must be above 0 and at most 15 minutes", self.timeout),
            ));
        }
        let mut env_bytes = 0;
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(Error::config(
                    "env",
                    format!("{k:?}: keys must be non-empty without '=' or NUL; values without NUL"),
                ));
            }
            env_bytes += k.len() + v.len() + 1;
        }
        if env_bytes > MAX_ENV_BYTES {
            return Err(Error::config(
                "env",
                format!("{env_bytes} bytes; at most {MAX_ENV_BYTES} allowed"),
            ));
        }
        check_annotations(&self.annotations, MAX_ANNOTATIONS)?;
        if self.max_host_call_bytes == 0 || self.max_host_call_bytes > 64 << 20 {
            return Err(Error::config(
                "max_host_call_bytes",
                "must be between 1 byte and 64 MiB",
            ));
        }
        if let Some(t) = &self.tenant
            && (t.is_empty() || t.len() > 64 || t.contains('/'))
        {
            return Err(Error::config(
                "tenant",
                format!("{t:?}: 1 to 64 characters without '/'"),
            ));
        }
        for (field, v) in [
            ("max_input", self.max_input),
            ("max_output", self.max_output),
        ] {
            if v as u64 > WASM32_MAX_MEMORY / 2 {
                return Err(Error::config(field, "must be at most 2 GiB"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    fn field_of(cfg: FunctionConfig) -> &'static str {
        match cfg.validate(WASM32_MAX_MEMORY) {
            Err(Error::InvalidConfig { field, .. }) => field,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn bad_values_name_their_field() {
        let base = || FunctionConfig::from_bytes("f", &b""[..]);
        assert!(base().validate(WASM32_MAX_MEMORY).is_ok());
        assert_eq!(
            field_of(FunctionConfig::from_bytes("a b", &b""[..])),
            "name"
        );
        assert_eq!(field_of(FunctionConfig::from_bytes("", &b""[..])), "name");
        assert_eq!(field_of(base().memory_limit(1000)), "memory_limit");
        assert_eq!(field_of(base().memory_limit(5 << 30)), "memory_limit");
        assert_eq!(field_of(base().timeout(Duration::ZERO)), "timeout");
        assert_eq!(
            field_of(base().timeout(Duration::from_secs(901))),
            "timeout"
        );
        assert_eq!(field_of(base().env("A=B", "c")), "env");
        assert_eq!(field_of(base().env("A", "x".repeat(5000))), "env");
        assert_eq!(field_of(base().max_output(3 << 30)), "max_output");
    }
}
