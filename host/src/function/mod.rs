//! Functions: the configuration a function is registered with
//! ([`config`]), the registered [`Function`] (a linked module, its spec
//! and policy, gate, counters, warm pool), the pool, and the registry of
//! versions and aliases.
//!
//! This layer knows the guest layer (it holds [`Linked`] modules and
//! pools [`Instance`](crate::guest::Instance)s) and nothing above it.

mod config;
pub(crate) mod pool;
pub(crate) mod registry;

use std::sync::Arc;
use std::time::Duration;

pub(crate) use config::check_annotations;
pub use config::{
    FunctionConfig, MAX_ANNOTATIONS, MAX_ENV_BYTES, MAX_FUNCTION_ANNOTATIONS, MAX_TIMEOUT,
    ModuleSource, Reuse, WASM32_MAX_MEMORY,
};

use crate::guest::{Linked, Spec};
use crate::limits::Gate;
use crate::metrics::Metrics;
use pool::WarmPool;

/// How the runtime treats a function's invocations and instances.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Policy {
    /// Largest payload accepted.
    pub max_input: usize,
    /// How long an invocation may wait for a slot.
    pub max_wait: Duration,
    /// Ready instances kept (provisioned concurrency).
    pub provisioned: u32,
    /// Warm reuse, if on.
    pub reuse: Option<Reuse>,
}

/// A registered function: checked, compiled and pre-linked, with its
/// concurrency gate, counters and warm instances.
pub(crate) struct Function {
    pub spec: Arc<Spec>,
    pub policy: Policy,
    pub linked: Linked,
    /// BLAKE3 of the module bytes, hex.
    pub module_hash: String,
    /// Its own gate when it has reserved concurrency, else the host's
    /// unreserved gate.
    pub gate: Arc<Gate>,
    pub reserved: Option<u32>,
    pub metrics: Metrics,
    pub pool: WarmPool,
    /// Version number (1, 2, ...).
    pub version: u32,
    /// The version as reports show it.
    pub version_label: Arc<str>,
    /// The configuration it was registered with (the module as a file in
    /// the data dir, or its bytes without one): what persistence saves.
    pub config: FunctionConfig,
    /// When it was registered, ms since the Unix epoch.
    pub modified_ms: u64,
}

/// What a registered function is, for callers (`Host::function_info`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionInfo {
    /// Name.
    pub name: String,
    /// Version number of this code (1 for the first registration).
    pub version: u32,
    /// BLAKE3 hash of the module bytes (hex): the content address.
    pub module_hash: String,
    /// Memory limit in bytes.
    pub memory_limit: u64,
    /// Timeout.
    pub timeout: Duration,
    /// `/tmp` quota in bytes.
    pub tmp_quota: u64,
    /// Reserved concurrency, if any.
    pub reserved_concurrency: Option<u32>,
    /// Provisioned (pre-initialised) instances kept ready.
    pub provisioned_concurrency: u32,
    /// Warm-reuse settings, if enabled.
    pub reuse: Option<Reuse>,
    /// Largest accepted payload in bytes.
    pub max_input: usize,
    /// How long an invocation may wait for a concurrency slot.
    pub max_wait: Duration,
    /// An HTTP component (world `wasi:http/proxy`): invoked with
    /// [`Host::invoke_http`](crate::Host::invoke_http), not a payload.
    pub is_http: bool,
    /// When this version was registered (for a `$LATEST` draft: last
    /// changed); restored and replicated with it.
    pub last_modified: std::time::SystemTime,
    /// `$LATEST` is an unpublished draft and this is it: its number is
    /// not addressable (see [`Host::stage`](crate::Host::stage)).
    pub draft: bool,
}

impl Function {
    pub(crate) fn info(&self) -> FunctionInfo {
        FunctionInfo {
            name: self.spec.name.to_string(),
            version: self.version,
            module_hash: self.module_hash.clone(),
            memory_limit: self.spec.memory_limit,
            timeout: self.spec.timeout,
            tmp_quota: self.spec.tmp_quota,
            reserved_concurrency: self.reserved,
            provisioned_concurrency: self.policy.provisioned,
            reuse: self.policy.reuse,
            max_input: self.policy.max_input,
            max_wait: self.policy.max_wait,
            is_http: self.linked.is_http(),
            last_modified: std::time::UNIX_EPOCH + Duration::from_millis(self.modified_ms),
            draft: false,
        }
    }
}
