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
mod files;
mod queue;
mod schedule;
mod shapes;
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
pub use files::FileEvents;
pub use queue::{Message, QueueConfig, QueueMapping};
pub use schedule::{Schedule, ScheduleExpr};
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
use store::{DeadRecord, EventRecord, Op, Store};

/// Where an event goes after its last attempt (or after success).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Destination {
    /// The store's dead-letter list ([`Events::dead_letters`]): the event,
    /// its payload and the invocation record, kept until redriven or
    /// purged. The default on failure.
    DeadLetters,
    /// An event invocation of another function, whose payload is the
    /// invocation record.
    Function(String),
    /// A message on a queue ([`Events::create_queue`]) whose body is the
    /// invocation record.
    Queue(String),
    /// A publish to a topic ([`Events::create_topic`]) whose message is
    /// the invocation record.
    Topic(String),
    /// Nothing is kept (counted all the same).
    Discard,
}

/// Retry policy and destinations for a function's event invocations
/// (Lambda's `PutFunctionEventInvokeConfig`). Validated by
/// [`Events::configure`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventConfig {
    max_retries: u32,
    max_event_age: Duration,
    retry_delay: Duration,
    on_success: Option<Destination>,
    on_failure: Destination,
}

impl Default for EventConfig {
    /// Lambda's defaults: 2 retries, 6 hours, 1-minute base delay, failures
    /// to the dead letters, no on-success destination.
    fn default() -> Self {
        EventConfig {
            max_retries: 2,
            max_event_age: Duration::from_secs(6 * 3600),
            retry_delay: Duration::from_secs(60),
            on_success: None,
            on_failure: Destination::DeadLetters,
        }
    }
}

/// Fewest and most retries after a failed attempt.
pub const MAX_RETRIES: u32 = 2;
/// Shortest allowed maximum event age.
pub const MIN_EVENT_AGE: Duration = Duration::from_secs(60);
/// Longest allowed maximum event age.
pub const MAX_EVENT_AGE: Duration = Duration::from_secs(6 * 3600);
/// Longest wait between two waits for capacity.
const MAX_WAIT_BACKOFF: Duration = Duration::from_secs(300);

impl EventConfig {
    /// Retries after a failed attempt: 0 to 2 (default 2).
    pub fn max_retries(mut self, n: u32) -> Self {
        self.max_retries = n;
        self
    }

    /// How old an event may get, waiting or between retries, before it is
    /// given up: 60 s to 6 h (default 6 h).
    pub fn max_event_age(mut self, age: Duration) -> Self {
        self.max_event_age = age;
        self
    }

    /// Delay before the first retry; each later retry waits twice as long
    /// as the one before (default 60 s, as Lambda; 1 s to 15 min). Waits
    /// for capacity back off from `min(1 s, delay)` up to 5 minutes.
    pub fn retry_delay(mut self, delay: Duration) -> Self {
        self.retry_delay = delay;
        self
    }

    /// Where a successful event's record goes (default: nowhere).
    pub fn on_success(mut self, dest: Destination) -> Self {
        self.on_success = Some(dest);
        self
    }

    /// Where a failed event goes (default: [`Destination::DeadLetters`]).
    pub fn on_failure(mut self, dest: Destination) -> Self {
        self.on_failure = dest;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.max_retries > MAX_RETRIES {
            return Err(Error::config("max_retries", "must be 0, 1 or 2"));
        }
        if self.max_event_age < MIN_EVENT_AGE || self.max_event_age > MAX_EVENT_AGE {
            return Err(Error::config(
                "max_event_age",
                "must be between 60 seconds and 6 hours",
            ));
        }
        if self.retry_delay < Duration::from_secs(1) || self.retry_delay > Duration::from_secs(900)
        {
            return Err(Error::config(
                "retry_delay",
                "must be between 1 second and 15 minutes",
            ));
        }
        if self.on_success == Some(Destination::DeadLetters) {
            return Err(Error::config(
                "on_success",
                "dead letters are for failures; use a function, queue or topic",
            ));
        }
        Ok(())
    }

    /// When an event accepted at `accepted_ms` becomes too old.
    fn expiry(&self, accepted_ms: u64) -> u64 {
        accepted_ms.saturating_add(self.max_event_age.as_millis() as u64)
    }

    /// The configured number of retries.
    pub fn retries(&self) -> u32 {
        self.max_retries
    }

    /// The configured maximum event age.
    pub fn event_age(&self) -> Duration {
        self.max_event_age
    }

    /// The delay before the retry that follows failed attempt `attempts`
    /// (1 for the first): the retry delay, doubled for each later retry.
    pub fn retry_after(&self, attempts: u32) -> Duration {
        self.retry_delay * 2u32.saturating_pow(attempts.saturating_sub(1).min(16))
    }

    fn wait_after(&self, waits: u32) -> Duration {
        (self.retry_delay.min(Duration::from_secs(1)) * 2u32.saturating_pow(waits.min(16)))
            .min(MAX_WAIT_BACKOFF)
    }
}

/// A dead-lettered event.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The event's id.
    pub id: String,
    /// The function it was sent to.
    pub target: String,
    /// Who sent it (`invoke`, `schedule:<rule>`, `topic:<name>`, ...).
    pub source: String,
    /// The event's payload.
    pub payload: Bytes,
    /// Why it was given up: `RetriesExhausted`, `EventAgeExceeded` or
    /// `PayloadTooLarge`.
    pub condition: String,
    /// Attempts that ran the function.
    pub attempts: u32,
    /// The last attempt's error, if one ran.
    pub error: Option<ErrorRecord>,
    /// The Lambda-shaped invocation record (what destinations receive).
    pub record: serde_json::Value,
    /// When it was accepted.
    pub accepted_at: SystemTime,
    /// When it was given up.
    pub dead_at: SystemTime,
}

/// Event counters, persisted with the store, so they add up across
/// restarts: `accepted == succeeded + dead_lettered + pending`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EventStats {
    /// Events committed to the store (an id sent twice counts once).
    pub accepted: u64,
    /// Events whose attempt succeeded.
    pub succeeded: u64,
    /// Events given up and sent to their on-failure destination.
    pub dead_lettered: u64,
    /// Failed attempts that were scheduled for a retry.
    pub retried: u64,
    /// Times an event waited for capacity or for its function.
    pub waited: u64,
    /// Events stored and not finished (including those running now).
    pub pending: u64,
    /// Events running now (this process).
    pub in_flight: u64,
    /// Redriven dead letters (each is accepted again).
    pub redriven: u64,
    /// Queue messages sent / deleted after processing / moved to their
    /// queue's dead letters.
    pub messages_sent: u64,
    /// See `messages_sent`.
    pub messages_deleted: u64,
    /// See `messages_sent`.
    pub messages_dead_lettered: u64,
    /// Topic publishes, deliveries to subscribers, and subscribers
    /// skipped by their filter policy.
    pub published: u64,
    /// See `published`.
    pub deliveries: u64,
    /// See `published`.
    pub filtered: u64,
    /// Times recording finished attempts hit a host bug (a panic, caught):
    /// those events stayed stored and ran again.
    pub internal_errors: u64,
}

/// Identifies an event source added with [`Events::add_source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(u64);

/// A trigger: something that produces events. It runs on a thread of its
/// own until the host stops it.
///
/// ```
/// use fnhost::events::{EventSource, SourceContext};
///
/// /// Sends one event per line of a fixed list, then idles.
/// struct Lines(Vec<String>, String);
///
/// impl EventSource for Lines {
///     fn run(&mut self, ctx: &SourceContext) -> fnhost::Result<()> {
///         for line in self.0.drain(..) {
///             ctx.events().send(&self.1, line.into_bytes())?;
///         }
///         ctx.wait_for_stop();
///         Ok(())
///     }
/// }
/// ```
pub trait EventSource: Send + 'static {
    /// Produces events until [`SourceContext::stopping`]; blocking waits
    /// go through the context so that stopping (and a manual clock) wake
    /// them.
    fn run(&mut self, ctx: &SourceContext) -> Result<()>;
}

/// What an [`EventSource`] runs with.
pub struct SourceContext {
    events: Events,
    stop: Arc<AtomicBool>,
    name: String,
    added: SystemTime,
}

impl fmt::Debug for SourceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceContext")
            .field("name", &self.name)
            .finish()
    }
}

impl SourceContext {
    /// The event system: send events, publish, push messages.
    pub fn events(&self) -> &Events {
        &self.events
    }

    /// The source's name as given to [`Events::add_source`].
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event clock's time when the source was added (a schedule
    /// fires for every time after this, even if its thread starts late).
    pub fn added_at(&self) -> SystemTime {
        self.added
    }

    /// The event clock's time.
    pub fn now(&self) -> SystemTime {
        self.events.sh.clock.now()
    }

    /// Whether the source should return.
    pub fn stopping(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Waits until the event clock reaches `t`: `true` then, `false` if
    /// the source is being stopped.
    pub fn wait_until(&self, t: SystemTime) -> bool {
        loop {
            let seen = self.events.sh.signal.current();
            if self.stopping() {
                return false;
            }
            if self.now() >= t {
                return true;
            }
            self.wait_change(seen, Some(t));
        }
    }

    /// Blocks until the source is stopped.
    pub fn wait_for_stop(&self) {
        while !self.stopping() {
            let seen = self.events.sh.signal.current();
            if self.stopping() {
                return;
            }
            self.wait_change(seen, None);
        }
    }

    /// Waits for any change (an event, a message, a clock move, a stop)
    /// after generation `seen`, or until the clock reaches `until`.
    fn wait_change(&self, seen: u64, until: Option<SystemTime>) {
        let sh = &self.events.sh;
        sh.signal.wait(&*sh.clock, seen, until, Some(&self.stop));
    }
}

/// Wakes every waiter of the event system: the dispatcher, sources and
/// [`Events::wait_idle`] callers. A generation count makes a wake-up
/// between "look" and "wait" impossible to miss.
pub(crate) struct Signal {
    generation: Mutex<u64>,
    cv: Condvar,
}

impl Signal {
    fn current(&self) -> u64 {
        *self.generation.lock()
    }

    fn bump(&self) {
        *self.generation.lock() += 1;
        self.cv.notify_all();
    }

    /// Waits until the generation moves past `seen`, `until` comes on
    /// `clock`, or `stop` is set.
    fn wait(
        &self,
        clock: &dyn Clock,
        seen: u64,
        until: Option<SystemTime>,
        stop: Option<&AtomicBool>,
    ) {
        let mut g = self.generation.lock();
        while *g == seen && !stop.is_some_and(|s| s.load(Ordering::Acquire)) {
            match until {
                Some(u) if clock.now() >= u => return,
                Some(u) => match clock.sleep_hint(u) {
                    Some(d) => {
                        self.cv.wait_for(&mut g, d);
                    }
                    None => self.cv.wait(&mut g),
                },
                None => self.cv.wait(&mut g),
            }
        }
    }
}

impl Wake for Signal {
    fn wake(&self) {
        self.bump();
    }
}

impl std::task::Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.bump();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.bump();
    }
}

/// A running source: its id, stop flag and thread.
type Running = (SourceId, Arc<AtomicBool>, JoinHandle<()>);

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
        config.validate()?;
        if function.contains(':') {
            return Err(Error::config(
                "function",
                "event configs are per function name, without a version or alias",
            ));
        }
        self.sh.core.registry.resolve(function)?;
        for d in config.on_success.iter().chain([&config.on_failure]) {
            self.check_destination(d)?;
        }
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
        let get = |k: &str| c.get(k).copied().unwrap_or(0);
        Ok(EventStats {
            accepted: get("accepted"),
            succeeded: get("succeeded"),
            dead_lettered: get("dead_lettered"),
            retried: get("retried"),
            waited: get("waited"),
            redriven: get("redriven"),
            pending,
            in_flight: self.sh.in_flight.load(Ordering::Relaxed) as u64,
            messages_sent: get("messages_sent"),
            messages_deleted: get("messages_deleted"),
            messages_dead_lettered: get("messages_dead_lettered"),
            published: get("published"),
            deliveries: get("deliveries"),
            filtered: get("filtered"),
            internal_errors: get("internal_errors"),
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
            Op::Count("redriven", 1),
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

fn dead_letter(d: DeadRecord, payload: Bytes) -> DeadLetter {
    DeadLetter {
        id: d.event.id,
        target: d.event.target,
        source: d.event.source,
        payload,
        condition: d.condition,
        attempts: d.event.attempts,
        error: d.event.last_error,
        record: d.record,
        accepted_at: from_ms(d.event.accepted_ms),
        dead_at: from_ms(d.dead_ms),
    }
}

/// Is this error the function's own failure (an attempt that counts)?
fn is_function_error(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::Timeout
            | ErrorKind::OutOfMemory
            | ErrorKind::OutOfFuel
            | ErrorKind::Trap
            | ErrorKind::Guest
            | ErrorKind::OutputTooLarge
            | ErrorKind::AbiViolation
            | ErrorKind::Instantiate
            | ErrorKind::Internal
    )
}

fn error_record(e: &Error) -> ErrorRecord {
    match e {
        Error::Guest { kind, message } => ErrorRecord {
            kind: kind.clone(),
            message: message.clone(),
        },
        other => ErrorRecord {
            kind: other.kind().as_str().to_string(),
            message: other.to_string(),
        },
    }
}

impl Shared {
    fn function_name(target: &str) -> &str {
        target.split(':').next().unwrap_or(target)
    }

    fn config_for(&self, target: &str) -> EventConfig {
        self.configs
            .read()
            .get(Self::function_name(target))
            .cloned()
            .unwrap_or_default()
    }

    /// The dispatcher: records finished attempts, starts due events, and
    /// sleeps until the next is due or something changes.
    fn dispatch_loop(self: Arc<Self>) {
        let mut in_flight: HashSet<String> = HashSet::new();
        let waker = std::task::Waker::from(self.signal.clone());
        loop {
            let seen = self.signal.current();
            let done: Vec<Done> = self.completions.1.try_iter().collect();
            if !done.is_empty() {
                // The dispatcher's unwind boundary (HOSTILE 30): a bug
                // while recording outcomes costs those records, not the
                // dispatcher. Their events stay stored as they were and
                // run again (a retry, as after any failure).
                for d in &done {
                    in_flight.remove(&d.rec.id);
                }
                if crate::fault::catch("recording event outcomes", || self.settle(done)).is_err() {
                    let _ = self.store.apply(vec![Op::Count("internal_errors", 1)]);
                }
                // Only once the outcomes are stored: waiters never see an
                // idle system before its results.
                self.in_flight.store(in_flight.len(), Ordering::Release);
                self.signal.bump();
            }
            let stopping = self.stopping.load(Ordering::Acquire) || self.core.is_shutting_down();
            if stopping && (in_flight.is_empty() || self.halt.load(Ordering::Acquire)) {
                return;
            }
            let mut blocked = HashSet::new();
            if !stopping {
                let _ = crate::fault::catch("dispatching events", || {
                    self.dispatch_due(&mut in_flight, &mut blocked, &waker)
                });
            }
            let next = if stopping || in_flight.len() >= self.max_in_flight {
                None
            } else {
                match self.store.next_due(&in_flight, &blocked) {
                    Ok(t) => t.map(from_ms),
                    Err(e) => {
                        tracing::error!(target: "fnhost::events", error = %e, "reading the event store");
                        Some(self.clock.now() + Duration::from_secs(1))
                    }
                }
            };
            self.signal.wait(&*self.clock, seen, next, None);
        }
    }

    /// Starts as many due events as capacity allows.
    fn dispatch_due(
        &self,
        in_flight: &mut HashSet<String>,
        blocked: &mut HashSet<String>,
        waker: &std::task::Waker,
    ) {
        loop {
            let free = self.max_in_flight.saturating_sub(in_flight.len());
            if free == 0 {
                return;
            }
            let now = self.clock.now();
            let due = match self.store.due(ms(now), free * 2 + 8, in_flight, blocked) {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(target: "fnhost::events", error = %e, "reading the event store");
                    return;
                }
            };
            if due.is_empty() {
                return;
            }
            let mut started_or_blocked = false;
            for (rec, payload) in due {
                if in_flight.len() >= self.max_in_flight {
                    return;
                }
                if blocked.contains(&rec.target) {
                    continue;
                }
                started_or_blocked = true;
                self.dispatch_one(rec, payload, now, in_flight, blocked, waker);
            }
            if !started_or_blocked {
                return;
            }
        }
    }

    fn dispatch_one(
        &self,
        rec: EventRecord,
        payload: Bytes,
        now: SystemTime,
        in_flight: &mut HashSet<String>,
        blocked: &mut HashSet<String>,
        waker: &std::task::Waker,
    ) {
        let cfg = self.config_for(&rec.target);
        let target = rec.target.clone();
        let now_ms = ms(now);
        let expires = cfg.expiry(rec.accepted_ms);
        let ops = if now_ms > expires {
            self.give_up(rec, &payload, "EventAgeExceeded", &cfg, None, now_ms)
        } else {
            match self.core.registry.resolve(&rec.target) {
                Err(_) => self.wait_again(rec, &cfg, now_ms, expires, &payload),
                Ok((f, version)) => {
                    // The runtime's admission order: checks, then a slot.
                    match self.core.check(&f, payload.len()) {
                        Ok(()) => {}
                        Err(Error::ShuttingDown) => {
                            // Stays stored for the next start; skip it now.
                            blocked.insert(rec.target);
                            return;
                        }
                        Err(e) => {
                            let e = self.core.refused(&f, e);
                            let ops = self.give_up(
                                EventRecord {
                                    last_error: Some(error_record(&e)),
                                    ..rec
                                },
                                &payload,
                                "PayloadTooLarge",
                                &cfg,
                                None,
                                now_ms,
                            );
                            if !self.commit(ops) {
                                blocked.insert(target);
                            }
                            return;
                        }
                    }
                    let until = Instant::now() + Duration::from_secs(60);
                    let permit = match self.core.acquire(&f, Wait::Poll { waker, until }) {
                        Slot::Got(permit) => permit,
                        Slot::Pending | Slot::Full => {
                            blocked.insert(rec.target);
                            return;
                        }
                    };
                    self.core.admitted(&f);
                    in_flight.insert(rec.id.clone());
                    self.in_flight.store(in_flight.len(), Ordering::Release);
                    let ctx = EventCtx {
                        id: Arc::from(rec.id.as_str()),
                        attempt: rec.attempts + 1,
                    };
                    let tx = self.completions.0.clone();
                    let signal = self.signal.clone();
                    let job_payload = payload.clone();
                    self.core.enqueue(Job {
                        function: f,
                        version,
                        payload: job_payload,
                        permit,
                        event: Some(ctx),
                        reply: Reply::Callback(Box::new(move |result| {
                            let _ = tx.send(Done {
                                rec,
                                payload,
                                result,
                            });
                            signal.bump();
                        })),
                    });
                    return;
                }
            }
        };
        // A store that refuses the write: skip the event this round
        // rather than fetch it again at once.
        if !self.commit(ops) {
            blocked.insert(target);
        }
    }

    /// Applies `ops`; `false` (logged) if the store refused them.
    fn commit(&self, ops: Vec<Op>) -> bool {
        if ops.is_empty() {
            return true;
        }
        let ok = match self.store.apply(ops) {
            Ok(_) => true,
            Err(e) => {
                tracing::error!(target: "fnhost::events", error = %e, "writing the event store");
                false
            }
        };
        self.signal.bump();
        ok
    }

    /// The event waits (no capacity, function missing) and comes due
    /// again later, or is given up if that would pass its max age.
    fn wait_again(
        &self,
        rec: EventRecord,
        cfg: &EventConfig,
        now_ms: u64,
        expires: u64,
        payload: &Bytes,
    ) -> Vec<Op> {
        let due = now_ms.saturating_add(cfg.wait_after(rec.waits).as_millis() as u64);
        if due > expires {
            return self.give_up(rec, payload, "EventAgeExceeded", cfg, None, now_ms);
        }
        let old_due_ms = rec.due_ms;
        vec![
            Op::UpdateEvent {
                old_due_ms,
                rec: EventRecord {
                    due_ms: due,
                    waits: rec.waits + 1,
                    ..rec
                },
            },
            Op::Count("waited", 1),
        ]
    }

    /// Records finished attempts in one commit.
    fn settle(&self, done: Vec<Done>) {
        let now_ms = ms(self.clock.now());
        let mut ops = Vec::new();
        for Done {
            rec,
            payload,
            result,
        } in done
        {
            // Not run (shutting down): it stays pending for the next start.
            let Ok(inv) = result else {
                continue;
            };
            crate::fault::hit(
                crate::fault::Point::Settle,
                Self::function_name(&rec.target),
            );
            let cfg = self.config_for(&rec.target);
            match inv.outcome {
                Ok(out) => {
                    let mut rec = rec;
                    rec.attempts += 1;
                    ops.push(Op::DeleteEvent {
                        id: rec.id.clone(),
                        due_ms: rec.due_ms,
                    });
                    ops.push(Op::Count("succeeded", 1));
                    if let Some(dest) = &cfg.on_success {
                        let record = shapes::invocation_record(
                            &rec,
                            &payload,
                            "Success",
                            Ok(&out),
                            &inv.report.version,
                            now_ms,
                        );
                        ops.extend(self.deliver(dest, &record, &rec).unwrap_or_default());
                    }
                }
                Err(e) if is_function_error(e.kind()) => {
                    let rec = EventRecord {
                        attempts: rec.attempts + 1,
                        last_error: Some(error_record(&e)),
                        ..rec
                    };
                    let expires = cfg.expiry(rec.accepted_ms);
                    let due =
                        now_ms.saturating_add(cfg.retry_after(rec.attempts).as_millis() as u64);
                    let condition = if rec.attempts > cfg.max_retries {
                        Some("RetriesExhausted")
                    } else if due > expires {
                        Some("EventAgeExceeded")
                    } else {
                        None
                    };
                    if let Some(condition) = condition {
                        ops.extend(self.give_up(
                            rec,
                            &payload,
                            condition,
                            &cfg,
                            Some(&inv.report.version),
                            now_ms,
                        ));
                    } else {
                        let old_due_ms = rec.due_ms;
                        ops.push(Op::UpdateEvent {
                            old_due_ms,
                            rec: EventRecord { due_ms: due, ..rec },
                        });
                        ops.push(Op::Count("retried", 1));
                    }
                }
                // A host-side refusal after admission: wait and retry.
                Err(_) => {
                    let expires = cfg.expiry(rec.accepted_ms);
                    ops.extend(self.wait_again(rec, &cfg, now_ms, expires, &payload));
                }
            }
        }
        self.commit(ops);
    }

    /// Gives an event up: its record goes to the on-failure destination.
    fn give_up(
        &self,
        rec: EventRecord,
        payload: &Bytes,
        condition: &str,
        cfg: &EventConfig,
        version: Option<&str>,
        now_ms: u64,
    ) -> Vec<Op> {
        let err = rec.last_error.clone();
        let record = shapes::invocation_record(
            &rec,
            payload,
            condition,
            Err(err.as_ref()),
            version.unwrap_or("$LATEST"),
            now_ms,
        );
        let mut ops = vec![Op::Count("dead_lettered", 1)];
        // A destination that is gone (a topic not re-created after a
        // restart) falls back to the dead letters: nothing is lost.
        match self.deliver(&cfg.on_failure, &record, &rec) {
            Some(delivered) if cfg.on_failure != Destination::DeadLetters => {
                ops.push(Op::DeleteEvent {
                    id: rec.id.clone(),
                    due_ms: rec.due_ms,
                });
                ops.extend(delivered);
            }
            _ => ops.push(Op::Kill {
                due_ms: rec.due_ms,
                dead: DeadRecord {
                    event: rec,
                    condition: condition.to_string(),
                    dead_ms: now_ms,
                    record,
                },
            }),
        }
        ops
    }

    /// The writes that hand `record` to a destination; `None` if the
    /// destination does not exist.
    fn deliver(
        &self,
        dest: &Destination,
        record: &serde_json::Value,
        rec: &EventRecord,
    ) -> Option<Vec<Op>> {
        let body = record.to_string();
        let source = format!("destination:{}", rec.target);
        let now = ms(self.clock.now());
        match dest {
            Destination::Function(target) => Some(vec![Op::InsertEvent(
                EventRecord::fresh(
                    self.core.next_request_id().to_string(),
                    target.clone(),
                    source,
                    now,
                ),
                Bytes::from(body),
            )]),
            Destination::Queue(q) => {
                Some(vec![queue::push_op(self, q, body, BTreeMap::new(), now)])
            }
            Destination::Topic(t) => {
                match topic::publish_ops(self, t, &body, &BTreeMap::new(), now) {
                    Ok((ops, _)) => Some(ops),
                    Err(e) => {
                        tracing::error!(target: "fnhost::events", topic = %t, error = %e, "destination topic missing");
                        None
                    }
                }
            }
            Destination::DeadLetters | Destination::Discard => Some(Vec::new()),
        }
    }
}
