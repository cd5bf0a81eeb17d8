//! The runtime: admission ([`admission`], the only place a request gets a
//! concurrency slot), running an invocation warm or cold ([`execute`],
//! the unwind boundary), the worker pool fed by a lock-free queue
//! ([`workers`], [`future`]), the maintenance thread (provisioned refill,
//! idle release: [`maintenance`]) and graceful shutdown.
//!
//! It knows the function layer (registry, functions, pools) and the guest
//! layer (instances), and nothing of deployment, events or the `Host`.

mod admission;
mod execute;
mod future;
mod maintenance;
mod settings;
mod ticket;
mod workers;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crossbeam::channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex};
use wasmtime::Engine;

pub(crate) use admission::{Slot, Wait};
pub use future::InvokeFuture;
pub(crate) use settings::Settings;
pub use ticket::{HttpAdmission, HttpTicket};
pub(crate) use workers::{Batch, Job, Reply, Threads};

use crate::function::pool::IdleBudget;
use crate::function::registry::Registry;
use crate::limits::Gate;
use crate::report::RequestId;
use maintenance::Maint;
use workers::Msg;

/// Everything the runtime's threads share.
pub(crate) struct Core {
    pub engine: Engine,
    pub registry: Registry,
    pub settings: Settings,
    pub secret: [u8; 32],
    request_prefix: u64,
    requests: AtomicU64,
    /// Shared by every function without reserved concurrency.
    unreserved: Arc<Gate>,
    /// Sum of reserved concurrency of registered functions.
    reserved_total: Mutex<u32>,
    pub idle_budget: IdleBudget,
    shutting_down: AtomicBool,
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    drained: (Mutex<()>, Condvar),
    queue: (Sender<Msg>, Receiver<Msg>),
    maint: (Sender<Maint>, Receiver<Maint>),
}

/// What [`Host::shutdown`](crate::Host::shutdown) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ShutdownReport {
    /// Queued invocations answered with [`Error::ShuttingDown`].
    pub rejected_queued: u64,
    /// Invocations still running when the grace period ended (they end by
    /// their own timeout; their callers still get their outcome).
    pub still_running: u32,
}

impl Core {
    pub(crate) fn new(engine: Engine, settings: Settings, secret: [u8; 32]) -> Core {
        let limit = settings.concurrency_limit;
        Core {
            request_prefix: u64::from_le_bytes(secret[..8].try_into().unwrap_or_default()),
            unreserved: Gate::new(limit),
            reserved_total: Mutex::new(0),
            idle_budget: IdleBudget::new(settings.max_idle_instances),
            queue: crossbeam::channel::bounded(limit as usize + settings.workers + 1),
            maint: crossbeam::channel::unbounded(),
            engine,
            registry: Registry::default(),
            settings,
            secret,
            requests: AtomicU64::new(0),
            shutting_down: AtomicBool::new(false),
            in_flight: AtomicU32::new(0),
            max_in_flight: AtomicU32::new(0),
            drained: (Mutex::new(()), Condvar::new()),
        }
    }

    pub(crate) fn host_in_flight(&self) -> (u32, u32) {
        (
            self.in_flight.load(Ordering::Relaxed),
            self.max_in_flight.load(Ordering::Relaxed),
        )
    }

    pub(crate) fn next_request_id(&self) -> RequestId {
        let n = self.requests.fetch_add(1, Ordering::Relaxed);
        RequestId(((self.request_prefix as u128) << 64) | n as u128)
    }

    /// Whether [`shutdown`](Core::shutdown) began.
    pub(crate) fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Acquire)
    }

    /// Stops admitting, answers queued invocations, waits up to `grace`
    /// for running ones.
    pub(crate) fn shutdown(&self, grace: Duration) -> ShutdownReport {
        let mut report = ShutdownReport::default();
        if self.shutting_down.swap(true, Ordering::AcqRel) {
            return report;
        }
        while let Ok(msg) = self.queue.1.try_recv() {
            if let Msg::Job(job) = msg {
                self.reject_queued(job);
                report.rejected_queued += 1;
            }
        }
        let until = Instant::now() + grace;
        let mut g = self.drained.0.lock();
        while self.in_flight.load(Ordering::Relaxed) > 0 {
            if self.drained.1.wait_until(&mut g, until).timed_out() {
                break;
            }
        }
        report.still_running = self.in_flight.load(Ordering::Relaxed);
        report
    }

    fn drop_idle(&self) {
        for f in self.registry.all() {
            f.pool.clear(&self.idle_budget);
        }
    }
}
