//! The worker pool: admitted invocations queued on a bounded lock-free
//! channel, run by worker threads, answered to a future, a batch slot or
//! a callback.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use parking_lot::Mutex;

use super::Core;
use super::maintenance::Maint;
use crate::error::{Error, Result};
use crate::fault;
use crate::function::Function;
use crate::guest::EventCtx;
use crate::invocation::Invocation;
use crate::limits::Permit;

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
    Future(tokio::sync::oneshot::Sender<Result<Invocation>>),
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

impl Core {
    /// Queues an admitted invocation for the workers.
    pub(crate) fn enqueue(&self, job: Job) {
        // The queue holds at most the admitted invocations, so it has room.
        if let Err(e) = self.queue.0.try_send(Msg::Job(job))
            && let Msg::Job(job) = e.into_inner()
        {
            self.reject_queued(job);
        }
    }

    pub(super) fn reject_queued(&self, job: Job) {
        let e = Error::ShuttingDown;
        job.function
            .metrics
            .rejected
            .fetch_add(1, Ordering::Relaxed);
        job.function.metrics.error(e.kind());
        job.reply.send(Err(e));
    }

    /// A worker: runs queued jobs until told to stop.
    ///
    /// Answers to futures are held back while more work is queued (a few
    /// short invocations' worth, see [`Held`]), so a task awaiting many
    /// futures is woken once per run of completions rather than once per
    /// invocation: each wake of a sleeping executor thread is a futex
    /// wake and a context switch that the workers' own cores pay for.
    fn work(self: Arc<Self>) {
        let mut held = Held::default();
        loop {
            let msg = match self.queue.1.try_recv() {
                Ok(msg) => msg,
                Err(_) => {
                    // Nothing queued: answer what is held before sleeping.
                    held.flush();
                    match self.queue.1.recv() {
                        Ok(msg) => msg,
                        Err(_) => break,
                    }
                }
            };
            match msg {
                Msg::Job(job) => {
                    if self.is_shutting_down() {
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
                    let reply = match job.reply {
                        Reply::Future(tx) if !self.queue.1.is_empty() => match held.hold(tx, inv) {
                            None => continue,
                            Some((tx, inv)) => (Reply::Future(tx), inv),
                        },
                        other => (other, inv),
                    };
                    held.flush();
                    // The reply may run the embedder's or the event
                    // system's code: a panic there must not end the worker.
                    let (reply, inv) = reply;
                    let _ = fault::catch("an invocation's reply", || reply.send(Ok(inv)));
                }
                Msg::Stop => break,
            }
        }
        held.flush();
    }
}

/// Future answers a worker holds back (see [`Core::work`]): at most
/// [`Held::MAX`] (256), of invocations that took at most [`Held::SHORT`]
/// (50 µs), for at most [`Held::AGE`] (500 µs) since the first, and only
/// while more work is queued: enough to turn a run of short invocations
/// into one wake, never enough to make an answer wait long. (Measured
/// with one worker: 16 answers / 200 µs gave 0.76x of `invoke_batch`,
/// 256 / 500 µs 0.92x; a longer age gained under 2 %.)
#[derive(Default)]
struct Held {
    answers: Vec<(tokio::sync::oneshot::Sender<Result<Invocation>>, Invocation)>,
    since: Option<std::time::Instant>,
}

impl Held {
    const MAX: usize = 256;
    const SHORT: Duration = Duration::from_micros(50);
    const AGE: Duration = Duration::from_micros(500);

    /// Holds `inv` for `tx`, or gives both back to be sent now.
    fn hold(
        &mut self,
        tx: tokio::sync::oneshot::Sender<Result<Invocation>>,
        inv: Invocation,
    ) -> Option<(tokio::sync::oneshot::Sender<Result<Invocation>>, Invocation)> {
        let now = std::time::Instant::now();
        let fresh = self.since.is_none_or(|t| now - t < Self::AGE);
        if inv.report.duration > Self::SHORT || self.answers.len() >= Self::MAX || !fresh {
            return Some((tx, inv));
        }
        self.since.get_or_insert(now);
        self.answers.push((tx, inv));
        None
    }

    /// Sends every held answer.
    fn flush(&mut self) {
        self.since = None;
        for (tx, inv) in self.answers.drain(..) {
            // A dropped receiver (the future was dropped) is no error.
            let _ = fault::catch("an invocation's reply", || {
                let _ = tx.send(Ok(inv));
            });
        }
    }
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
