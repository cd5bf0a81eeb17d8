//! The runtime's settings: plain data, compiled from the validated
//! [`HostBuilder`](crate::HostBuilder) once, at build.

use std::sync::Arc;
use std::time::Duration;

use crate::logs::LogSink;

/// What the runtime's threads and the invoke path read.
#[derive(Clone)]
pub(crate) struct Settings {
    /// Invocations in flight across all functions.
    pub concurrency_limit: u32,
    /// Idle warm instances kept across all functions.
    pub max_idle_instances: u32,
    /// Worker threads serving the queue.
    pub workers: usize,
    /// Deadline granularity.
    pub epoch_tick: Duration,
    /// How often idle instances are released and provisioned ones refilled.
    pub maintenance_interval: Duration,
    /// Count per-function metrics.
    pub metrics: bool,
    /// Where reports and logs go.
    pub log_sink: Option<Arc<dyn LogSink>>,
}
