//! The invocation engine behind [`Host`](crate::Host): admission control,
//! running an invocation (warm or cold), the worker pool fed by a
//! lock-free queue, the maintenance thread (provisioned refill, idle
//! release) and graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossbeam::channel::{Receiver, RecvTimeoutError, Sender};
use parking_lot::{Condvar, Mutex};
use wasmtime::{Engine, Linker};

use crate::abi::Provided;
use crate::cache::ArtifactCache;
use crate::error::{Error, ErrorKind, Result};
use crate::function::Function;
use crate::host::{HostBuilder, Invocation};
use crate::limits::{Gate, Permit};
use crate::persist::DataDir;
use crate::pool::IdleBudget;
use crate::registry::{Entry, Registry};
use crate::report::{Report, RequestId};
use crate::sandbox::{self, Call, EventCtx, Instance, State};

thread_local! {
    /// `$LATEST`, shared rather than allocated per report.
    static LATEST: Arc<str> = Arc::from("$LATEST");
}

/// Everything the host's threads share.
pub(crate) struct Core {
    pub engine: Engine,
    pub linker: Linker<State>,
    pub provided: Provided,
    pub cache: Option<ArtifactCache>,
    /// Where the registry is persisted, if anywhere.
    pub data: Option<DataDir>,
    pub registry: Registry,
    /// Serialises registrations (version numbers, reservations).
    pub register_lock: Mutex<()>,
    pub settings: HostBuilder,
    pub secret: [u8; 32],
    request_prefix: u64,
    requests: AtomicU64,
    pub compiles: AtomicU64,
    /// Snapshots made (init ran) and loaded from the cache (init skipped).
    pub snapshots_created: AtomicU64,
    pub snapshots_reused: AtomicU64,
    /// `<cache dir>/snapshots`, when the host has a cache dir.
    pub snapshot_dir: Option<std::path::PathBuf>,
    pub cache_hits: AtomicU64,
    pub cache_rejected: AtomicU64,
    /// Shared by every function without reserved concurrency.
    pub unreserved: Arc<Gate>,
    /// Sum of reserved concurrency of registered functions.
    pub reserved_total: Mutex<u32>,
    pub idle_budget: IdleBudget,
    pub shutting_down: AtomicBool,
    in_flight: AtomicU32,
    max_in_flight: AtomicU32,
    drained: (Mutex<()>, Condvar),
    queue: (Sender<Msg>, Receiver<Msg>),
    maint: (Sender<Maint>, Receiver<Maint>),
}

/// Settles `in_flight` when an invocation ends, however it ends (also
/// when a panic unwinds through [`Core::execute`]).
struct InFlight<'a>(&'a Core);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let core = self.0;
        if core.in_flight.fetch_sub(1, Ordering::Relaxed) == 1
            && core.shutting_down.load(Ordering::Relaxed)
        {
            let _g = core.drained.0.lock();
            core.drained.1.notify_all();
        }
    }
}

/// The function's running-invocations gauge, left however the invocation
/// ends.
struct Running<'a>(&'a Function);

impl<'a> Running<'a> {
    fn enter(f: &'a Function) -> Running<'a> {
        f.metrics.enter();
        Running(f)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.metrics.leave();
    }
}

/// A live instance taken for an invocation: uncounted from its pool when
/// dropped, unless [`kept`](LiveInstance::kept) (put back for reuse).
struct LiveInstance<'a>(&'a crate::pool::WarmPool);

impl LiveInstance<'_> {
    fn kept(self) {
        std::mem::forget(self);
    }
}

impl Drop for LiveInstance<'_> {
    fn drop(&mut self) {
        self.0.forget_one();
    }
}

/// Work for the worker pool.
pub(crate) enum Msg {
    Job(Job),
    Stop,
}

/// One queued invocation; it holds its concurrency slot while queued.
pub(crate) struct Job {
    pub function: Arc<Function>,
    /// The version asked for (`None`: `$LATEST`).
    pub version: Option<u32>,
    pub payload: Bytes,
    pub permit: Permit,
    /// Set for event invocations.
    pub event: Option<EventCtx>,
    pub reply: Reply,
}

/// Where a queued invocation's outcome goes.
pub(crate) enum Reply {
    /// One awaiting future.
    Future(futures_channel::oneshot::Sender<Result<Invocation>>),
    /// Slot `index` of a batch; the caller is woken once, when the last
    /// slot is filled.
    Batch(Arc<Batch>, usize),
    /// A callback run on the worker (the event dispatcher's completion).
    Callback(Box<dyn FnOnce(Result<Invocation>) + Send>),
}

impl Reply {
    fn send(self, r: Result<Invocation>) {
        match self {
            Reply::Future(tx) => {
                let _ = tx.send(r);
            }
            Reply::Batch(b, i) => b.fill(i, r),
            Reply::Callback(f) => f(r),
        }
    }
}

/// Results of an [`invoke_batch`](crate::Host::invoke_batch) call.
pub(crate) struct Batch {
    slots: Box<[Mutex<Option<Result<Invocation>>>]>,
    remaining: std::sync::atomic::AtomicUsize,
    caller: std::thread::Thread,
}

impl Batch {
    pub(crate) fn new(n: usize) -> Arc<Batch> {
        Arc::new(Batch {
            slots: (0..n).map(|_| Mutex::new(None)).collect(),
            remaining: std::sync::atomic::AtomicUsize::new(n),
            caller: std::thread::current(),
        })
    }

    pub(crate) fn fill(&self, i: usize, r: Result<Invocation>) {
        *self.slots[i].lock() = Some(r);
        if self.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.caller.unpark();
        }
    }

    /// Parks the calling thread until every slot is filled.
    pub(crate) fn wait(self: Arc<Self>) -> Vec<Result<Invocation>> {
        while self.remaining.load(Ordering::Acquire) > 0 {
            std::thread::park();
        }
        self.slots
            .iter()
            .map(|s| s.lock().take().unwrap_or(Err(Error::ShuttingDown)))
            .collect()
    }
}

/// Work for the maintenance thread.
pub(crate) enum Maint {
    Refill(Arc<Function>),
    Stop,
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
    pub(crate) fn new(
        engine: Engine,
        linker: Linker<State>,
        provided: Provided,
        cache: Option<ArtifactCache>,
        data: Option<DataDir>,
        settings: HostBuilder,
        secret: [u8; 32],
    ) -> Core {
        let limit = settings.concurrency_limit;
        let snapshot_dir = settings.cache_dir.as_ref().map(|d| d.join("snapshots"));
        Core {
            request_prefix: u64::from_le_bytes(secret[..8].try_into().unwrap_or_default()),
            unreserved: Gate::new(limit),
            reserved_total: Mutex::new(0),
            idle_budget: IdleBudget::new(settings.max_idle_instances),
            queue: crossbeam::channel::bounded(limit as usize + settings.workers + 1),
            maint: crossbeam::channel::unbounded(),
            engine,
            linker,
            provided,
            cache,
            data,
            registry: Registry::default(),
            register_lock: Mutex::new(()),
            settings,
            secret,
            requests: AtomicU64::new(0),
            compiles: AtomicU64::new(0),
            snapshots_created: AtomicU64::new(0),
            snapshots_reused: AtomicU64::new(0),
            snapshot_dir,
            cache_hits: AtomicU64::new(0),
            cache_rejected: AtomicU64::new(0),
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

    /// The capabilities `names` refer to; an unknown name is an
    /// `InvalidConfig` error naming it.
    pub(crate) fn resolve_grants(&self, names: &[String]) -> Result<crate::capability::Grants> {
        let mut grants = crate::capability::Grants::new();
        for name in names {
            let cap = self
                .settings
                .capabilities
                .iter()
                .find(|c| c.name() == name)
                .ok_or_else(|| {
                    Error::config(
                        "grants",
                        format!("no capability `{name}` is defined on this host"),
                    )
                })?;
            grants.insert(name.as_str().into(), cap.clone());
        }
        Ok(grants)
    }

    /// Counts a refusal that happened before any slot was taken.
    fn refuse(&self, f: &Function, e: Error) -> Error {
        let m = &f.metrics;
        match e.kind() {
            ErrorKind::Throttled => m.throttled.fetch_add(1, Ordering::Relaxed),
            _ => m.rejected.fetch_add(1, Ordering::Relaxed),
        };
        m.error(e.kind());
        e
    }

    /// Checks everything that needs no slot; counts the request.
    pub(crate) fn precheck(&self, f: &Function, payload_len: usize) -> Result<()> {
        f.metrics.submitted.fetch_add(1, Ordering::Relaxed);
        if self.shutting_down.load(Ordering::Acquire) {
            return Err(self.refuse(f, Error::ShuttingDown));
        }
        if payload_len > f.spec.max_input {
            return Err(self.refuse(
                f,
                Error::PayloadTooLarge {
                    size: payload_len,
                    max: f.spec.max_input,
                },
            ));
        }
        Ok(())
    }

    pub(crate) fn throttled(&self, f: &Function) -> Error {
        self.refuse(
            f,
            Error::Throttled {
                function: f.spec.name.to_string(),
                limit: f.gate.limit(),
            },
        )
    }

    /// Blocking admission: a slot now, or within the function's wait bound.
    pub(crate) fn admit(&self, f: &Function, payload_len: usize) -> Result<Permit> {
        self.precheck(f, payload_len)?;
        let wait = f.spec.max_wait;
        let ok = f.gate.try_acquire()
            || (!wait.is_zero() && f.gate.acquire_until(Instant::now() + wait));
        if ok {
            Ok(Permit::new(f.gate.clone()))
        } else {
            Err(self.throttled(f))
        }
    }

    /// Runs one admitted invocation on the calling thread.
    ///
    /// This is the invoke path's unwind boundary (HOSTILE 30): whatever
    /// panics below it costs this invocation alone. Its caller gets an
    /// [`Error::Internal`] outcome (counted like any failure), the slot is
    /// released, `in_flight` settles, and the thread (a worker, the
    /// caller's, an event poller) goes on.
    pub(crate) fn execute(
        &self,
        f: &Arc<Function>,
        version: Option<u32>,
        payload: &[u8],
        permit: Permit,
        event: Option<EventCtx>,
    ) -> Invocation {
        let _permit = permit;
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(n, Ordering::Relaxed);
        let _settle = InFlight(self);
        let request_id = self.next_request_id();
        let start = SystemTime::now();
        crate::fault::catch("an invocation", || {
            self.run(f, version, payload, event, request_id, start)
        })
        .unwrap_or_else(|message| self.internal_failure(f, version, request_id, start, message))
    }

    /// The outcome of an invocation that a host panic cut short (`run`
    /// counts nothing before its last step, so this is the only count).
    fn internal_failure(
        &self,
        f: &Function,
        version: Option<u32>,
        request_id: RequestId,
        start: SystemTime,
        message: String,
    ) -> Invocation {
        tracing::error!(target: "fnhost::runtime", function = %f.spec.name,
            request_id = %request_id, "invocation ended by a host panic");
        let e = Error::Internal { message };
        let report = Report {
            request_id,
            function: f.spec.name.clone(),
            version: self.version_label(f, version),
            start,
            duration: start.elapsed().unwrap_or_default(),
            init_duration: None,
            memory_limit: f.spec.memory_limit,
            max_memory_used: 0,
            error: Some(e.kind()),
            fuel_used: None,
        };
        if self.settings.metrics {
            self.account(f, &report);
        }
        Invocation {
            outcome: Err(e),
            logs: crate::Logs::default(),
            report,
        }
    }

    fn version_label(&self, f: &Function, version: Option<u32>) -> Arc<str> {
        match version {
            Some(_) => f.version_label.clone(),
            None => LATEST.with(Arc::clone),
        }
    }

    /// One invocation, start to report (what [`execute`](Core::execute)
    /// guards).
    fn run(
        &self,
        f: &Arc<Function>,
        version: Option<u32>,
        payload: &[u8],
        event: Option<EventCtx>,
        request_id: RequestId,
        start: SystemTime,
    ) -> Invocation {
        let counting = self.settings.metrics;
        let _running = counting.then(|| Running::enter(f));
        let span =
            tracing::debug_span!("invoke", function = %f.spec.name, request_id = %request_id);
        let _enter = span.enter();
        let t0 = Instant::now();
        let mut call = Call::new(&f.spec, request_id, t0);
        call.version = version.map(|_| f.version_label.clone());
        call.event = event;
        let tick = self.settings.epoch_tick;
        // From the moment an instance is live for this invocation until it
        // is put back or ended, `LiveInstance` holds its count: a panic in
        // between still uncounts it.
        let (warm, cold) = match f.pool.take(&self.idle_budget) {
            Some(mut inst) => {
                let live = LiveInstance(&f.pool);
                inst.begin(call, tick);
                if f.spec.reuse.is_none() && f.spec.provisioned > 0 {
                    // The prepared instance is used up: refill off this path.
                    let _ = self.maint.0.try_send(Maint::Refill(f.clone()));
                }
                (Ok((inst, live)), false)
            }
            None => {
                let span = tracing::debug_span!("instantiate");
                let _e = span.enter();
                let started = sandbox::start(f, call, tick).map(|inst| {
                    f.pool.created();
                    (inst, LiveInstance(&f.pool))
                });
                (started, true)
            }
        };
        let (outcome, call, init, duration, peak, fuel_used) = match warm {
            Ok((mut inst, live)) => {
                crate::fault::hit(crate::fault::Point::Execute, &f.spec.name);
                let t1 = Instant::now();
                if cold {
                    inst.init_duration = t1 - t0;
                }
                let outcome = inst.invoke(payload);
                let t2 = Instant::now();
                let duration = t2 - t1;
                let peak = inst.peak_memory();
                let fuel_used = inst.fuel_used();
                let init = cold.then_some(inst.init_duration);
                let keep = f
                    .spec
                    .reuse
                    .is_some_and(|r| !inst.poisoned && inst.uses < r.max_uses)
                    && !self.shutting_down.load(Ordering::Relaxed);
                let call = if keep {
                    inst.last_used = t2;
                    let call = inst.take_call();
                    live.kept();
                    f.pool.put(inst, &self.idle_budget);
                    call
                } else {
                    drop(live);
                    inst.into_call()
                };
                (outcome, call, init, duration, peak, fuel_used)
            }
            Err((e, store)) => {
                let fuel_used = sandbox::fuel_used(&store);
                let st = store.into_data();
                (
                    Err(e),
                    st.call,
                    Some(t0.elapsed()),
                    Duration::ZERO,
                    st.limiter.peak as u64,
                    fuel_used,
                )
            }
        };
        let report = Report {
            request_id,
            function: f.spec.name.clone(),
            version: self.version_label(f, version),
            start,
            duration,
            init_duration: init,
            memory_limit: f.spec.memory_limit,
            max_memory_used: peak,
            error: outcome.as_ref().err().map(Error::kind),
            fuel_used,
        };
        if call.host_calls > 0 {
            let m = &f.metrics;
            m.host_calls
                .fetch_add(call.host_calls.into(), Ordering::Relaxed);
            m.host_calls_denied
                .fetch_add(call.host_calls_denied.into(), Ordering::Relaxed);
        }
        let logs = call.logs.finish();
        if let Some(sink) = &self.settings.log_sink {
            // The embedder's code: a panic in it costs these log lines, not
            // the invocation's outcome.
            let _ = crate::fault::catch("the log sink", || sink.0.record(&report, &logs));
        }
        // Last, so that a panic anywhere above is counted once, as Internal.
        if counting {
            self.account(f, &report);
        }
        Invocation {
            outcome: outcome.map(Bytes::from),
            logs,
            report,
        }
    }

    fn account(&self, f: &Function, r: &Report) {
        let m = &f.metrics;
        match r.error {
            None => m.succeeded.fetch_add(1, Ordering::Relaxed),
            Some(kind) => {
                m.error(kind);
                m.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        if r.is_cold() {
            m.cold_starts.fetch_add(1, Ordering::Relaxed);
        }
        m.duration.record(r.duration);
        let billed = r.billed_ms();
        m.billed_ms.fetch_add(billed, Ordering::Relaxed);
        m.mib_ms
            .fetch_add((r.memory_limit >> 20) * billed, Ordering::Relaxed);
    }

    /// Queues an admitted invocation for the workers.
    pub(crate) fn enqueue(&self, job: Job) {
        // The queue holds at most the admitted invocations, so it has room.
        if let Err(e) = self.queue.0.try_send(Msg::Job(job))
            && let Msg::Job(job) = e.into_inner()
        {
            self.reject_queued(job);
        }
    }

    fn reject_queued(&self, job: Job) {
        let e = Error::ShuttingDown;
        job.function
            .metrics
            .rejected
            .fetch_add(1, Ordering::Relaxed);
        job.function.metrics.error(e.kind());
        job.reply.send(Err(e));
    }

    /// A worker: runs queued jobs until told to stop.
    fn work(self: Arc<Self>) {
        while let Ok(msg) = self.queue.1.recv() {
            match msg {
                Msg::Job(job) => {
                    if self.shutting_down.load(Ordering::Acquire) {
                        self.reject_queued(job);
                        continue;
                    }
                    let inv = self.execute(
                        &job.function,
                        job.version,
                        &job.payload,
                        job.permit,
                        job.event,
                    );
                    // The reply may run the embedder's or the event
                    // system's code: a panic there must not end the worker.
                    let reply = job.reply;
                    let _ = crate::fault::catch("an invocation's reply", || reply.send(Ok(inv)));
                }
                Msg::Stop => break,
            }
        }
    }

    /// Creates an instance off the invoke path (provisioned concurrency).
    pub(crate) fn prepare(&self, f: &Function) -> Result<Instance> {
        let t0 = Instant::now();
        // Its own id: init that seeds itself (random_get, random.bytes)
        // differs per provisioned instance.
        let call = Call::new(&f.spec, self.next_request_id(), t0);
        let mut inst = sandbox::start(f, call, self.settings.epoch_tick).map_err(|(e, _)| e)?;
        inst.init_duration = t0.elapsed();
        inst.last_used = Instant::now();
        f.pool.created();
        Ok(inst)
    }

    /// Tops a function's ready instances up to its provisioned count.
    pub(crate) fn refill(&self, f: &Function) -> Result<()> {
        while f.pool.idle() < f.spec.provisioned as usize
            && !self.shutting_down.load(Ordering::Relaxed)
        {
            let inst = self.prepare(f)?;
            f.pool.put(inst, &self.idle_budget);
        }
        Ok(())
    }

    /// Releases reuse-mode instances idle past their TTL (scale to zero),
    /// keeping provisioned ones. Returns how many were released.
    pub(crate) fn reap(&self, now: Instant) -> usize {
        let mut n = 0;
        for f in self.registry.all() {
            if let Some(r) = f.spec.reuse {
                n += f.pool.reap(
                    now,
                    r.idle_ttl,
                    f.spec.provisioned as usize,
                    &self.idle_budget,
                );
            }
        }
        n
    }

    fn maintain(self: Arc<Self>) {
        let interval = self.settings.maintenance_interval;
        loop {
            match self.maint.1.recv_timeout(interval) {
                Ok(Maint::Refill(f)) => {
                    if let Err(e) = self.refill(&f) {
                        tracing::warn!(function = %f.spec.name, error = %e, "provisioned refill failed");
                    }
                }
                Ok(Maint::Stop) | Err(RecvTimeoutError::Disconnected) => break,
                Err(RecvTimeoutError::Timeout) => {
                    self.reap(Instant::now());
                    for f in self.active() {
                        let _ = self.refill(&f);
                    }
                }
            }
        }
    }

    /// Called every epoch tick: lets async waiters past their wait bound
    /// give up.
    pub(crate) fn on_tick(&self) {
        let now = Instant::now();
        self.unreserved.expire_waiters(now);
        for f in self.registry.all() {
            if f.reserved.is_some() {
                f.gate.expire_waiters(now);
            }
        }
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

    /// Versions something points to: `$LATEST` and alias targets.
    pub(crate) fn active(&self) -> Vec<Arc<Function>> {
        let mut out = Vec::new();
        for name in self.registry.names() {
            if let Some(e) = self.registry.get(&name) {
                out.extend(
                    active_versions(&e)
                        .into_iter()
                        .filter_map(|v| e.versions.get(&v).cloned()),
                );
            }
        }
        out
    }

    /// Releases the idle instances of `name`'s versions that nothing points
    /// to any more (they stay invocable by number, cold).
    pub(crate) fn drain_inactive(&self, name: &str) {
        if let Some(e) = self.registry.get(name) {
            let active = active_versions(&e);
            for (v, f) in &e.versions {
                if !active.contains(v) {
                    f.pool.clear(&self.idle_budget);
                }
            }
        }
    }
}

fn active_versions(e: &Entry) -> Vec<u32> {
    let mut v: Vec<u32> = e.latest().map(|(v, _)| *v).into_iter().collect();
    for a in e.aliases.values() {
        v.push(a.version);
        v.extend(a.additional.map(|(x, _)| x));
    }
    v
}

/// The threads a host runs; stopping them is part of dropping the host.
pub(crate) struct Threads {
    core: Arc<Core>,
    workers: Vec<JoinHandle<()>>,
    maintenance: Option<JoinHandle<()>>,
}

impl Threads {
    pub(crate) fn start(core: &Arc<Core>) -> std::io::Result<Threads> {
        let mut workers = Vec::new();
        for i in 0..core.settings.workers {
            let c = core.clone();
            workers.push(
                std::thread::Builder::new()
                    .name(format!("fnhost-worker-{i}"))
                    .spawn(move || c.work())?,
            );
        }
        let c = core.clone();
        let maintenance = Some(
            std::thread::Builder::new()
                .name("fnhost-maintenance".into())
                .spawn(move || c.maintain())?,
        );
        Ok(Threads {
            core: core.clone(),
            workers,
            maintenance,
        })
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.core.shutdown(Duration::from_secs(30));
        for _ in &self.workers {
            let _ = self.core.queue.0.send(Msg::Stop);
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let _ = self.core.maint.0.send(Maint::Stop);
        if let Some(m) = self.maintenance.take() {
            let _ = m.join();
        }
        self.core.drop_idle();
    }
}
