//! Event invocations and triggers: accept an event durably, run it
//! asynchronously, retry it, and dead-letter what never succeeds.
//!
//! - [`Events::send`] is Lambda's `Event` invocation type: the event is
//!   committed to the store (a redb file under the host's data dir) before
//!   `send` returns its id; a dispatcher thread runs it on the worker pool.
//! - Retries follow Lambda's defaults ([`EventConfig`]): a failed attempt
//!   is retried twice, after 1 and 2 minutes; waiting for capacity (or for
//!   the function to exist) goes on until the event is 6 hours old. Then
//!   the event goes to its on-failure [`Destination`] with a Lambda-shaped
//!   invocation record.
//! - Delivery is **at least once**: an attempt cut short by a crash runs
//!   again after restart, so handlers make effects idempotent with the
//!   event id the guest sees (`Context::event_id` in the guest SDK).
//! - Triggers are [`EventSource`]s, each on a thread of its own: the
//!   built-ins are [`Schedule`] (cron and rate expressions), queues
//!   ([`Events::map_queue`], SQS-style batches), topics
//!   ([`Events::publish`], SNS-style fan-out with filter policies) and
//!   watched directories ([`Events::watch_dir`], S3-style notifications).
//!   Embedders add their own with [`Events::add_source`].
//!
//! Every count adds up: `accepted = succeeded + dead_lettered + pending`
//! ([`EventStats`]).

mod clock;
mod config;
mod dispatch;
mod files;
mod queue;
mod schedule;
mod shapes;
mod source;
mod store;
mod topic;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use crossbeam::channel::{Receiver, Sender};
use parking_lot::{Condvar, Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::error::{Error, ErrorKind, Result};
use crate::guest::EventCtx;
use crate::invocation::Invocation;
use crate::runtime::{Core, Job, Reply, Slot, Wait};

pub use clock::{Clock, ManualClock, SystemClock, Wake};
pub use config::{
    DeadLetter, Destination, EventConfig, EventStats, MAX_EVENT_AGE, MAX_RETRIES, MIN_EVENT_AGE,
};
use dispatch::dead_letter;
pub use files::FileEvents;
pub use queue::{Message, QueueConfig, QueueMapping};
pub use schedule::{Schedule, ScheduleExpr};
pub use source::{EventSource, SourceContext, SourceId};
use source::{Running, Signal};
pub use store::ErrorRecord;
pub use topic::{Published, Subscription};

/// Where event invocations go: the host's own durable store ([`Events`],
/// the default) or a queue shared by several hosts (the CLI's cluster
/// mode puts them on a NATS JetStream work-queue stream). The HTTP
/// gateway's `Event` invocation type sends through this trait, so it does
/// not care which one runs.
pub trait EventBackend: Send + Sync {
    /// Accepts an event for `target` (`name`, `name:version`, `name:alias`)
    /// after checking that it exists and that the payload fits; returns
    /// the event's id once the event is durable (or, for an in-memory
    /// store, stored). May block on I/O: call it off an async executor.
    fn send_event(&self, target: &str, payload: Bytes) -> Result<String>;

    /// Whether accepted events survive this process dying.
    fn is_durable(&self) -> bool;
}

impl EventBackend for Events {
    fn send_event(&self, target: &str, payload: Bytes) -> Result<String> {
        self.send(target, payload)
    }

    fn is_durable(&self) -> bool {
        Events::is_durable(self)
    }
}

use clock::{from_ms, ms};
use store::{Counter, DeadRecord, EventRecord, Op, Store};

/// A finished attempt, on its way to the dispatcher.
struct Done {
    rec: EventRecord,
    payload: Bytes,
    result: Result<Invocation>,
}

/// The event system of one [`Host`](crate::Host) (see the module docs).
/// Cloning is cheap and shares everything.
#[derive(Clone)]
pub struct Events {
    sh: Arc<Shared>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Events")
            .field("durable", &self.sh.store.durable())
            .finish()
    }
}

struct Shared {
    core: Arc<Core>,
    store: Store,
    clock: Arc<dyn Clock>,
    signal: Arc<Signal>,
    configs: RwLock<HashMap<String, EventConfig>>,
    queues: RwLock<HashMap<String, QueueConfig>>,
    topics: RwLock<HashMap<String, Vec<(u64, Subscription)>>>,
    /// Queues an event source mapping reads.
    mapped: RwLock<HashMap<SourceId, String>>,
    /// Set by `finish_stop`: the dispatcher records what is in the
    /// channel and returns, even with attempts still running.
    halt: AtomicBool,
    /// Serialises queue receives (read, then mark invisible).
    queue_lock: Mutex<()>,
    completions: (Sender<Done>, Receiver<Done>),
    in_flight: AtomicUsize,
    /// Queue mappings handling a batch right now.
    busy: AtomicUsize,
    max_in_flight: usize,
    /// No new dispatches; sources return.
    stopping: AtomicBool,
    next_id: AtomicU64,
    dispatcher: Mutex<Option<JoinHandle<()>>>,
    sources: Mutex<Vec<Running>>,
}

impl Events {
    /// Opens the store (`<data dir>/events.redb`, or memory when the host
    /// has no data dir).
    pub(crate) fn open(
        core: Arc<Core>,
        data_dir: Option<&Path>,
        clock: Arc<dyn Clock>,
        max_in_flight: usize,
    ) -> Result<Events> {
        let store = match data_dir {
            Some(d) => Store::open(&d.join("events.redb"))?,
            None => Store::in_memory()?,
        };
        let mut configs = HashMap::new();
        for (name, json) in store.configs()? {
            if let Ok(c) = serde_json::from_slice::<EventConfig>(&json) {
                configs.insert(name, c);
            }
        }
        let signal = Arc::new(Signal {
            generation: Mutex::new(0),
            cv: Condvar::new(),
        });
        let weak: std::sync::Weak<dyn Wake> = Arc::downgrade(&signal) as _;
        clock.on_change(weak);
        let events = Events {
            sh: Arc::new(Shared {
                core,
                store,
                clock,
                signal,
                configs: RwLock::new(configs),
                queues: RwLock::new(HashMap::new()),
                topics: RwLock::new(HashMap::new()),
                mapped: RwLock::new(HashMap::new()),
                halt: AtomicBool::new(false),
                queue_lock: Mutex::new(()),
                completions: crossbeam::channel::unbounded(),
                in_flight: AtomicUsize::new(0),
                busy: AtomicUsize::new(0),
                max_in_flight,
                stopping: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
                dispatcher: Mutex::new(None),
                sources: Mutex::new(Vec::new()),
            }),
        };
        Ok(events)
    }

    /// Starts the dispatcher thread.
    pub(crate) fn start_dispatcher(&self) -> Result<()> {
        let sh = self.sh.clone();
        let handle = std::thread::Builder::new()
            .name("fnhost-events".into())
            .spawn(move || sh.dispatch_loop())
            .map_err(|e| Error::io("event dispatcher thread", e))?;
        *self.sh.dispatcher.lock() = Some(handle);
        Ok(())
    }

    /// Whether accepted events survive a crash (the host has a data dir).
    pub fn is_durable(&self) -> bool {
        self.sh.store.durable()
    }

    /// The event clock.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.sh.clock
    }

    /// Event invocation: checks that `target` (`name`, `name:version` or
    /// `name:alias`) exists and that the payload fits, commits the event,
    /// and returns its id. The function runs soon after, asynchronously.
    pub fn send(&self, target: &str, payload: impl Into<Bytes>) -> Result<String> {
        let id = self.new_id();
        self.send_with_id(&id, target, payload, "invoke")?;
        Ok(id)
    }

    /// Like [`send`](Self::send) with a caller-chosen id: an id that is
    /// already pending or dead-lettered is not stored again (`Ok(false)`),
    /// which makes re-sending after a crash safe. `source` labels where it
    /// came from (kept in dead letters).
    pub fn send_with_id(
        &self,
        id: &str,
        target: &str,
        payload: impl Into<Bytes>,
        source: &str,
    ) -> Result<bool> {
        let payload = payload.into();
        let op = self.insert_op(id, target, payload, source)?;
        let new = self.sh.store.apply(vec![op])?;
        self.sh.signal.bump();
        Ok(new.first().copied().unwrap_or(false))
    }

    /// Sends many events in one commit (much cheaper per event than
    /// `send`). All are checked first; nothing is stored if one is refused.
    pub fn send_batch(&self, events: Vec<(String, Bytes)>) -> Result<Vec<String>> {
        let mut ids = Vec::with_capacity(events.len());
        let mut ops = Vec::with_capacity(events.len());
        for (target, payload) in events {
            let id = self.new_id();
            ops.push(self.insert_op(&id, &target, payload, "invoke")?);
            ids.push(id);
        }
        self.sh.store.apply(ops)?;
        self.sh.signal.bump();
        Ok(ids)
    }

    /// Checks an event and builds its insert.
    fn insert_op(&self, id: &str, target: &str, payload: Bytes, source: &str) -> Result<Op> {
        if self.sh.stopping.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        if id.is_empty() || id.len() > 256 {
            return Err(Error::config("id", "must be 1 to 256 bytes"));
        }
        let (f, _) = self.sh.core.registry.resolve(target)?;
        if payload.len() > f.policy.max_input {
            return Err(Error::PayloadTooLarge {
                size: payload.len(),
                max: f.policy.max_input,
            });
        }
        let now = ms(self.sh.clock.now());
        Ok(Op::InsertEvent(
            EventRecord::fresh(id.to_string(), target.to_string(), source.to_string(), now),
            payload,
        ))
    }

    /// A fresh id in UUID form, unique across processes.
    pub(crate) fn new_id(&self) -> String {
        self.sh.core.next_request_id().to_string()
    }

    /// Sets `function`'s retry policy and destinations (persisted with the
    /// store). Destinations must exist: queues and topics by name,
    /// functions registered.
    pub fn configure(&self, function: &str, config: EventConfig) -> Result<()> {
        for d in config.on_success.iter().chain([&config.on_failure]) {
            self.check_destination(d)?;
        }
        self.keep_config(function, config)
    }

    /// [`configure`](Events::configure) without the destination checks:
    /// a config another host accepted, whose destinations may arrive here
    /// after it (replication applies functions one by one). An event
    /// whose destination is missing when it finishes is counted as lost
    /// to it, as when a destination is removed.
    pub(crate) fn configure_replicated(&self, function: &str, config: EventConfig) -> Result<()> {
        self.keep_config(function, config)
    }

    fn keep_config(&self, function: &str, config: EventConfig) -> Result<()> {
        config.validate()?;
        if function.contains(':') {
            return Err(Error::config(
                "function",
                "event configs are per function name, without a version or alias",
            ));
        }
        self.sh.core.registry.resolve(function)?;
        let json = serde_json::to_vec(&config).unwrap_or_default();
        self.sh
            .store
            .apply(vec![Op::PutConfig(function.to_string(), json)])?;
        self.sh.configs.write().insert(function.to_string(), config);
        Ok(())
    }

    fn check_destination(&self, d: &Destination) -> Result<()> {
        let missing = |what: &'static str, name: &str| Error::NoSuch {
            what,
            name: name.to_string(),
        };
        match d {
            Destination::Function(t) => self.sh.core.registry.resolve(t).map(drop),
            Destination::Queue(q) if !self.sh.queues.read().contains_key(q) => {
                Err(missing("queue", q))
            }
            Destination::Topic(t) if !self.sh.topics.read().contains_key(t) => {
                Err(missing("topic", t))
            }
            _ => Ok(()),
        }
    }

    /// `function`'s event config if one was set ([`configure`](Events::configure)).
    pub fn configured(&self, function: &str) -> Option<EventConfig> {
        self.sh.configs.read().get(function).cloned()
    }

    /// Removes `function`'s event config (its events then follow the
    /// defaults); whether it had one.
    pub fn remove_config(&self, function: &str) -> Result<bool> {
        if !self.sh.configs.read().contains_key(function) {
            return Ok(false);
        }
        self.sh
            .store
            .apply(vec![Op::DeleteConfig(function.to_string())])?;
        Ok(self.sh.configs.write().remove(function).is_some())
    }

    /// `function`'s event config (the default if none was set).
    pub fn config(&self, function: &str) -> EventConfig {
        let name = function.split(':').next().unwrap_or(function);
        self.sh
            .configs
            .read()
            .get(name)
            .cloned()
            .unwrap_or_default()
    }

    /// Counters (see [`EventStats`]).
    pub fn stats(&self) -> Result<EventStats> {
        let (c, pending) = self.sh.store.counters()?;
        Ok(EventStats {
            accepted: c.get(Counter::Accepted),
            succeeded: c.get(Counter::Succeeded),
            dead_lettered: c.get(Counter::DeadLettered),
            retried: c.get(Counter::Retried),
            waited: c.get(Counter::Waited),
            redriven: c.get(Counter::Redriven),
            pending,
            in_flight: self.sh.in_flight.load(Ordering::Relaxed) as u64,
            messages_sent: c.get(Counter::MessagesSent),
            messages_deleted: c.get(Counter::MessagesDeleted),
            messages_dead_lettered: c.get(Counter::MessagesDeadLettered),
            published: c.get(Counter::Published),
            deliveries: c.get(Counter::Deliveries),
            filtered: c.get(Counter::Filtered),
            internal_errors: c.get(Counter::InternalErrors),
        })
    }

    /// Every dead letter, oldest id order.
    pub fn dead_letters(&self) -> Result<Vec<DeadLetter>> {
        Ok(self
            .sh
            .store
            .dead_letters()?
            .into_iter()
            .map(|(d, p)| dead_letter(d, p))
            .collect())
    }

    /// Sends a dead letter's event again (a new attempt count, a new age)
    /// and removes the dead letter, in one commit.
    pub fn redrive(&self, id: &str) -> Result<()> {
        let Some((dead, payload)) = self.sh.store.dead_letter(id)? else {
            return Err(Error::NoSuch {
                what: "dead letter",
                name: id.to_string(),
            });
        };
        // The dead letter goes first so the id is free for the insert.
        let now = ms(self.sh.clock.now());
        let e = dead.event;
        let rec = EventRecord::fresh(e.id, e.target, e.source, now);
        self.sh.store.apply(vec![
            Op::DeleteDead(id.to_string()),
            Op::InsertEvent(rec, payload),
            Op::Count(Counter::Redriven, 1),
        ])?;
        self.sh.signal.bump();
        Ok(())
    }

    /// Deletes a dead letter for good.
    pub fn purge_dead_letter(&self, id: &str) -> Result<()> {
        if self.sh.store.dead_letter(id)?.is_none() {
            return Err(Error::NoSuch {
                what: "dead letter",
                name: id.to_string(),
            });
        }
        self.sh.store.apply(vec![Op::DeleteDead(id.to_string())])?;
        Ok(())
    }

    /// Starts `source` on a thread of its own.
    pub fn add_source(&self, name: &str, mut source: impl EventSource) -> Result<SourceId> {
        // Checked under the lock `begin_stop` drains, so no source starts
        // after the stop and runs on.
        let mut sources = self.sh.sources.lock();
        if self.sh.stopping.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        let id = SourceId(self.sh.next_id.fetch_add(1, Ordering::Relaxed));
        let stop = Arc::new(AtomicBool::new(false));
        let ctx = SourceContext {
            events: self.clone(),
            stop: stop.clone(),
            name: name.to_string(),
            added: self.sh.clock.now(),
        };
        let handle = std::thread::Builder::new()
            .name(format!("fnhost-source-{name}"))
            .spawn(move || {
                // A source is the embedder's (or a poller's) code: a panic
                // in it stops that source, logged, and nothing else.
                match crate::fault::catch("an event source", || source.run(&ctx)) {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => {
                        tracing::error!(target: "fnhost::events", source = %ctx.name, error = %e,
                            "event source stopped with an error");
                    }
                    Err(_) => {
                        tracing::error!(target: "fnhost::events", source = %ctx.name,
                            "event source panicked and stopped");
                    }
                }
            })
            .map_err(|e| Error::io("event source thread", e))?;
        sources.push((id, stop, handle));
        Ok(id)
    }

    /// Stops a source and waits for its thread; `false` if unknown.
    pub fn remove_source(&self, id: SourceId) -> bool {
        let found = {
            let mut s = self.sh.sources.lock();
            s.iter()
                .position(|(i, ..)| *i == id)
                .map(|at| s.swap_remove(at))
        };
        self.sh.mapped.write().remove(&id);
        match found {
            Some((_, stop, handle)) => {
                stop.store(true, Ordering::Release);
                self.sh.signal.bump();
                // A source removing itself must not wait for itself.
                if handle.thread().id() != std::thread::current().id() {
                    let _ = handle.join();
                }
                true
            }
            None => false,
        }
    }

    /// Blocks until nothing is due now, nothing runs and no mapped queue
    /// has a visible message, or `timeout` (real time) passes: `true` if
    /// idle. Events scheduled later (retries, waits) do not count.
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, Events::is_idle)
    }

    /// Blocks until `done(self)` holds, re-checking after every change in
    /// the event system (a send, a finished attempt, a message, a clock
    /// move), or until `timeout` (real time) passes: whether it held.
    pub fn wait_for(&self, timeout: Duration, mut done: impl FnMut(&Events) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = self.sh.signal.current();
            if done(self) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            self.sh
                .signal
                .wait(&SystemClock, seen, Some(SystemTime::now() + left), None);
        }
    }

    fn is_idle(&self) -> bool {
        let sh = &self.sh;
        if sh.in_flight.load(Ordering::Acquire) > 0
            || !sh.completions.1.is_empty()
            || sh.busy.load(Ordering::Acquire) > 0
        {
            return false;
        }
        let now = ms(sh.clock.now());
        let none = HashSet::new();
        if matches!(sh.store.next_due(&none, &none), Ok(Some(t)) if t <= now) {
            return false;
        }
        !self.mapped_queue_has_visible(now)
    }

    /// Stops sources and dispatching: no new attempts start; sends are
    /// refused with [`Error::ShuttingDown`]. Pending events stay stored.
    pub(crate) fn begin_stop(&self) {
        if self.sh.stopping.swap(true, Ordering::AcqRel) {
            return;
        }
        let sources: Vec<_> = self.sh.sources.lock().drain(..).collect();
        for (_, stop, _) in &sources {
            stop.store(true, Ordering::Release);
        }
        self.sh.signal.bump();
        for (_, _, h) in sources {
            if h.thread().id() != std::thread::current().id() {
                let _ = h.join();
            }
        }
    }

    /// After the workers drained (or the grace period ended): records the
    /// completions that came in and ends the dispatcher. Attempts still
    /// running past the grace period are not recorded; their events stay
    /// stored and run again at the next start (at-least-once).
    pub(crate) fn finish_stop(&self) {
        self.begin_stop();
        self.sh.halt.store(true, Ordering::Release);
        self.sh.signal.bump();
        if let Some(h) = self.sh.dispatcher.lock().take() {
            let _ = h.join();
        }
    }
}
