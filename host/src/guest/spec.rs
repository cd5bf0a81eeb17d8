//! What every instance of a function reads: its quotas, environment,
//! grants and secret, fixed at register time and shared by `Arc`.

use std::sync::Arc;
use std::time::Duration;

use crate::capability::Grants;

/// The instance-side settings of one function version.
#[derive(Debug)]
pub(crate) struct Spec {
    pub name: Arc<str>,
    /// `KEY=VALUE` strings, rendered once at register time.
    pub env: Vec<String>,
    pub memory_limit: u64,
    pub timeout: Duration,
    pub tmp_quota: u64,
    pub max_output: usize,
    pub max_log_bytes: usize,
    /// Host secret for per-instance random seeds.
    pub secret: [u8; 32],
    /// Capabilities granted, resolved at register time.
    pub grants: Grants,
    pub tenant: Option<Arc<str>>,
    pub max_host_calls: u32,
    pub max_host_call_bytes: usize,
    /// Fuel budget per invocation, when the host meters fuel.
    pub fuel: Option<u64>,
}
