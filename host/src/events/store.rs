//! The durable event store: a [redb](https://www.redb.org) database.
//!
//! Why redb: a pure-Rust embedded key-value store with ACID transactions
//! and copy-on-write B-trees, crash-safe by design (a commit is durable
//! when `commit` returns; a torn write leaves the previous commit intact),
//! a stable file format, no C toolchain and no background threads. The
//! event workload is small records with ordered range scans (the due
//! index, a queue's messages in order), which a B-tree serves directly.
//!
//! Every change goes through [`Store::apply`]: one write transaction for a
//! list of [`Op`]s, so "delete the event and write its dead letter" or
//! "one event per topic subscriber" happens entirely or not at all.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use bytes::Bytes;
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// id -> [`EventRecord`] (JSON).
const EVENTS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("events");
/// id -> payload bytes, for pending and dead-lettered events.
const PAYLOADS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("payloads");
/// (due ms, id) -> target: pending events in the order they come due.
const DUE: TableDefinition<'_, (u64, &str), &str> = TableDefinition::new("due");
/// id -> [`DeadRecord`] (JSON).
const DEAD: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("dead_letters");
/// (queue, seq) -> [`StoredMessage`] (JSON).
const MESSAGES: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("messages");
/// (queue, seq) -> [`StoredMessage`] (JSON) moved to the queue's dead letters.
const QUEUE_DEAD: TableDefinition<'_, (&str, u64), &[u8]> = TableDefinition::new("queue_dead");
/// name -> count.
const COUNTERS: TableDefinition<'_, &str, u64> = TableDefinition::new("counters");
/// function name -> event invoke config (JSON).
const CONFIGS: TableDefinition<'_, &str, &[u8]> = TableDefinition::new("event_configs");

/// A pending event, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct EventRecord {
    pub id: String,
    /// `name`, `name:version` or `name:alias`.
    pub target: String,
    /// Who sent it: `invoke`, `schedule:<rule>`, `topic:<name>`, ...
    pub source: String,
    pub accepted_ms: u64,
    pub due_ms: u64,
    /// Attempts that ran the function and failed.
    pub attempts: u32,
    /// Times it waited for capacity or for its function to exist.
    pub waits: u32,
    pub last_error: Option<ErrorRecord>,
}

impl EventRecord {
    /// A new event, due now, with no attempts yet.
    pub(crate) fn fresh(id: String, target: String, source: String, now_ms: u64) -> EventRecord {
        EventRecord {
            id,
            target,
            source,
            accepted_ms: now_ms,
            due_ms: now_ms,
            attempts: 0,
            waits: 0,
            last_error: None,
        }
    }
}

/// The error an attempt ended with, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    /// The error type: the guest's error kind, or the host's
    /// ([`ErrorKind::as_str`](crate::ErrorKind::as_str)).
    pub kind: String,
    /// The message.
    pub message: String,
}

/// A dead letter, as stored (the payload stays in `PAYLOADS`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeadRecord {
    pub event: EventRecord,
    pub condition: String,
    pub dead_ms: u64,
    /// The Lambda-shaped invocation record.
    pub record: serde_json::Value,
}

/// A queue message, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredMessage {
    pub id: String,
    pub body: String,
    pub attributes: BTreeMap<String, String>,
    pub sent_ms: u64,
    pub receive_count: u32,
    pub visible_ms: u64,
    pub first_receive_ms: Option<u64>,
}

/// One change; see [`Store::apply`].
pub(crate) enum Op {
    /// Adds an event unless one with its id is pending or dead-lettered.
    InsertEvent(EventRecord, Bytes),
    /// Rewrites a pending event (retry bookkeeping), moving its due entry.
    UpdateEvent { old_due_ms: u64, rec: EventRecord },
    /// Removes a pending event and its payload.
    DeleteEvent { id: String, due_ms: u64 },
    /// Moves a pending event to the dead letters (its payload stays).
    Kill { due_ms: u64, dead: DeadRecord },
    /// Removes a dead letter and its payload.
    DeleteDead(String),
    /// Appends a message to a queue.
    PushMessage { queue: String, msg: StoredMessage },
    /// Rewrites a message in place (receive bookkeeping).
    UpdateMessage {
        queue: String,
        seq: u64,
        msg: StoredMessage,
    },
    /// Deletes a message (counted if it was there).
    DeleteMessage { queue: String, seq: u64 },
    /// Moves a message to its queue's dead letters.
    KillMessage {
        queue: String,
        seq: u64,
        msg: StoredMessage,
    },
    /// Adds to a counter.
    Count(Counter, u64),
    /// Stores a function's event config.
    PutConfig(String, Vec<u8>),
    /// Removes a function's event config.
    DeleteConfig(String),
}

/// The event system's persisted counters (their keys in the counters
/// table are [`Counter::key`], unchanged across versions).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Counter {
    Accepted,
    Succeeded,
    DeadLettered,
    Retried,
    Waited,
    Redriven,
    MessagesSent,
    MessagesDeleted,
    MessagesDeadLettered,
    Published,
    Deliveries,
    Filtered,
    InternalErrors,
}

impl Counter {
    /// Its key in the store.
    pub(crate) fn key(self) -> &'static str {
        match self {
            Counter::Accepted => "accepted",
            Counter::Succeeded => "succeeded",
            Counter::DeadLettered => "dead_lettered",
            Counter::Retried => "retried",
            Counter::Waited => "waited",
            Counter::Redriven => "redriven",
            Counter::MessagesSent => "messages_sent",
            Counter::MessagesDeleted => "messages_deleted",
            Counter::MessagesDeadLettered => "messages_dead_lettered",
            Counter::Published => "published",
            Counter::Deliveries => "deliveries",
            Counter::Filtered => "filtered",
            Counter::InternalErrors => "internal_errors",
        }
    }
}

/// The counters read back from the store.
#[derive(Debug, Default)]
pub(crate) struct Counts(BTreeMap<String, u64>);

impl Counts {
    pub(crate) fn get(&self, c: Counter) -> u64 {
        self.0.get(c.key()).copied().unwrap_or(0)
    }
}

/// Which of a queue's messages [`Store::messages`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Messages {
    /// Messages still in the queue, visible or not.
    Live,
    /// Messages the queue gave up on.
    Dead,
}

/// The key of the queue-message sequence number in the counters table.
const SEQ: &str = "seq";

/// Opens, reads and writes the event database.
pub(crate) struct Store {
    db: Database,
    durable: bool,
}

fn err(e: impl std::fmt::Display) -> Error {
    Error::Store {
        reason: e.to_string(),
    }
}

/// A stored payload (empty if missing).
fn payload_of(payloads: &redb::ReadOnlyTable<&str, &[u8]>, id: &str) -> Result<Bytes> {
    Ok(payloads
        .get(id)
        .map_err(err)?
        .map(|p| Bytes::copy_from_slice(p.value()))
        .unwrap_or_default())
}

fn to_json<T: Serialize>(v: &T) -> Vec<u8> {
    // Plain data with string keys: serialisation cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

fn from_json<T: for<'de> Deserialize<'de>>(what: &str, b: &[u8]) -> Result<T> {
    serde_json::from_slice(b).map_err(|e| err(format!("corrupt {what} record: {e}")))
}

impl Store {
    /// Opens (or creates) the database file at `path`.
    pub(crate) fn open(path: &Path) -> Result<Store> {
        let db = Database::create(path).map_err(|e| Error::Store {
            reason: format!("opening {}: {e}", path.display()),
        })?;
        Store::init(db, true)
    }

    /// A store that lives in memory only (a host without a data dir).
    pub(crate) fn in_memory() -> Result<Store> {
        let db = Database::builder()
            .create_with_backend(redb::backends::InMemoryBackend::new())
            .map_err(err)?;
        Store::init(db, false)
    }

    fn init(db: Database, durable: bool) -> Result<Store> {
        // Create every table so reads never meet a missing one.
        let tx = db.begin_write().map_err(err)?;
        {
            tx.open_table(EVENTS).map_err(err)?;
            tx.open_table(PAYLOADS).map_err(err)?;
            tx.open_table(DUE).map_err(err)?;
            tx.open_table(DEAD).map_err(err)?;
            tx.open_table(MESSAGES).map_err(err)?;
            tx.open_table(QUEUE_DEAD).map_err(err)?;
            tx.open_table(COUNTERS).map_err(err)?;
            tx.open_table(CONFIGS).map_err(err)?;
        }
        tx.commit().map_err(err)?;
        Ok(Store { db, durable })
    }

    pub(crate) fn durable(&self) -> bool {
        self.durable
    }

    /// Applies `ops` in one transaction; durable when this returns. For
    /// each [`Op::InsertEvent`], in order, whether it was new.
    pub(crate) fn apply(&self, ops: Vec<Op>) -> Result<Vec<bool>> {
        let mut inserted = Vec::new();
        let tx = self.db.begin_write().map_err(err)?;
        {
            let mut events = tx.open_table(EVENTS).map_err(err)?;
            let mut payloads = tx.open_table(PAYLOADS).map_err(err)?;
            let mut due = tx.open_table(DUE).map_err(err)?;
            let mut dead = tx.open_table(DEAD).map_err(err)?;
            let mut messages = tx.open_table(MESSAGES).map_err(err)?;
            let mut queue_dead = tx.open_table(QUEUE_DEAD).map_err(err)?;
            let mut counters = tx.open_table(COUNTERS).map_err(err)?;
            let mut configs = tx.open_table(CONFIGS).map_err(err)?;
            fn count(counters: &mut redb::Table<'_, &str, u64>, name: &str, n: u64) -> Result<()> {
                let old = counters.get(name).map_err(err)?.map_or(0, |v| v.value());
                counters.insert(name, old + n).map_err(err)?;
                Ok(())
            }
            for op in ops {
                match op {
                    Op::InsertEvent(rec, payload) => {
                        let exists = events.get(rec.id.as_str()).map_err(err)?.is_some()
                            || dead.get(rec.id.as_str()).map_err(err)?.is_some();
                        inserted.push(!exists);
                        if !exists {
                            events
                                .insert(rec.id.as_str(), to_json(&rec).as_slice())
                                .map_err(err)?;
                            payloads
                                .insert(rec.id.as_str(), &payload[..])
                                .map_err(err)?;
                            due.insert((rec.due_ms, rec.id.as_str()), rec.target.as_str())
                                .map_err(err)?;
                            count(&mut counters, Counter::Accepted.key(), 1)?;
                        }
                    }
                    Op::UpdateEvent { old_due_ms, rec } => {
                        due.remove((old_due_ms, rec.id.as_str())).map_err(err)?;
                        due.insert((rec.due_ms, rec.id.as_str()), rec.target.as_str())
                            .map_err(err)?;
                        events
                            .insert(rec.id.as_str(), to_json(&rec).as_slice())
                            .map_err(err)?;
                    }
                    Op::DeleteEvent { id, due_ms } => {
                        due.remove((due_ms, id.as_str())).map_err(err)?;
                        events.remove(id.as_str()).map_err(err)?;
                        payloads.remove(id.as_str()).map_err(err)?;
                    }
                    Op::Kill { due_ms, dead: d } => {
                        let id = d.event.id.as_str();
                        due.remove((due_ms, id)).map_err(err)?;
                        events.remove(id).map_err(err)?;
                        dead.insert(id, to_json(&d).as_slice()).map_err(err)?;
                    }
                    Op::DeleteDead(id) => {
                        dead.remove(id.as_str()).map_err(err)?;
                        payloads.remove(id.as_str()).map_err(err)?;
                    }
                    Op::PushMessage { queue, msg } => {
                        let seq = counters.get(SEQ).map_err(err)?.map_or(0, |v| v.value()) + 1;
                        counters.insert(SEQ, seq).map_err(err)?;
                        messages
                            .insert((queue.as_str(), seq), to_json(&msg).as_slice())
                            .map_err(err)?;
                    }
                    Op::UpdateMessage { queue, seq, msg } => {
                        messages
                            .insert((queue.as_str(), seq), to_json(&msg).as_slice())
                            .map_err(err)?;
                    }
                    Op::DeleteMessage { queue, seq } => {
                        if messages
                            .remove((queue.as_str(), seq))
                            .map_err(err)?
                            .is_some()
                        {
                            count(&mut counters, Counter::MessagesDeleted.key(), 1)?;
                        }
                    }
                    Op::KillMessage { queue, seq, msg } => {
                        messages.remove((queue.as_str(), seq)).map_err(err)?;
                        queue_dead
                            .insert((queue.as_str(), seq), to_json(&msg).as_slice())
                            .map_err(err)?;
                    }
                    Op::Count(c, n) => count(&mut counters, c.key(), n)?,
                    Op::PutConfig(name, json) => {
                        configs
                            .insert(name.as_str(), json.as_slice())
                            .map_err(err)?;
                    }
                    Op::DeleteConfig(name) => {
                        configs.remove(name.as_str()).map_err(err)?;
                    }
                }
            }
        }
        tx.commit().map_err(err)?;
        Ok(inserted)
    }

    /// Up to `limit` pending events due at `now_ms`, earliest first,
    /// skipping ids in `skip` and targets in `blocked`.
    pub(crate) fn due(
        &self,
        now_ms: u64,
        limit: usize,
        skip: &HashSet<String>,
        blocked: &HashSet<String>,
    ) -> Result<Vec<(EventRecord, Bytes)>> {
        let tx = self.db.begin_read().map_err(err)?;
        let due = tx.open_table(DUE).map_err(err)?;
        let events = tx.open_table(EVENTS).map_err(err)?;
        let payloads = tx.open_table(PAYLOADS).map_err(err)?;
        let mut out = Vec::new();
        for entry in due
            .range((0, "")..(now_ms.saturating_add(1), ""))
            .map_err(err)?
        {
            if out.len() >= limit {
                break;
            }
            let (k, target) = entry.map_err(err)?;
            let (_, id) = k.value();
            if skip.contains(id) || blocked.contains(target.value()) {
                continue;
            }
            let Some(rec) = events.get(id).map_err(err)? else {
                continue;
            };
            let rec: EventRecord = from_json("event", rec.value())?;
            let payload = payload_of(&payloads, id)?;
            out.push((rec, payload));
        }
        Ok(out)
    }

    /// When the earliest pending event not in `skip` and not for a target
    /// in `blocked` comes due.
    pub(crate) fn next_due(
        &self,
        skip: &HashSet<String>,
        blocked: &HashSet<String>,
    ) -> Result<Option<u64>> {
        let tx = self.db.begin_read().map_err(err)?;
        let due = tx.open_table(DUE).map_err(err)?;
        for entry in due.iter().map_err(err)? {
            let (k, target) = entry.map_err(err)?;
            let (t, id) = k.value();
            if !skip.contains(id) && !blocked.contains(target.value()) {
                return Ok(Some(t));
            }
        }
        Ok(None)
    }

    /// Every dead letter with its payload.
    pub(crate) fn dead_letters(&self) -> Result<Vec<(DeadRecord, Bytes)>> {
        let tx = self.db.begin_read().map_err(err)?;
        let dead = tx.open_table(DEAD).map_err(err)?;
        let payloads = tx.open_table(PAYLOADS).map_err(err)?;
        let mut out = Vec::new();
        for entry in dead.iter().map_err(err)? {
            let (id, rec) = entry.map_err(err)?;
            let rec: DeadRecord = from_json("dead letter", rec.value())?;
            let payload = payload_of(&payloads, id.value())?;
            out.push((rec, payload));
        }
        Ok(out)
    }

    /// One dead letter with its payload.
    pub(crate) fn dead_letter(&self, id: &str) -> Result<Option<(DeadRecord, Bytes)>> {
        let tx = self.db.begin_read().map_err(err)?;
        let dead = tx.open_table(DEAD).map_err(err)?;
        let payloads = tx.open_table(PAYLOADS).map_err(err)?;
        let Some(rec) = dead.get(id).map_err(err)? else {
            return Ok(None);
        };
        let rec: DeadRecord = from_json("dead letter", rec.value())?;
        let payload = payload_of(&payloads, id)?;
        Ok(Some((rec, payload)))
    }

    /// A queue's live messages or its dead letters, in order.
    pub(crate) fn messages(
        &self,
        queue: &str,
        which: Messages,
    ) -> Result<Vec<(u64, StoredMessage)>> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx
            .open_table(match which {
                Messages::Live => MESSAGES,
                Messages::Dead => QUEUE_DEAD,
            })
            .map_err(err)?;
        let mut out = Vec::new();
        for entry in table.range((queue, 0)..=(queue, u64::MAX)).map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            out.push((k.value().1, from_json("message", v.value())?));
        }
        Ok(out)
    }

    /// Every counter, and the pending events, read in one transaction
    /// (so they add up).
    pub(crate) fn counters(&self) -> Result<(Counts, u64)> {
        let tx = self.db.begin_read().map_err(err)?;
        let pending =
            redb::ReadableTableMetadata::len(&tx.open_table(DUE).map_err(err)?).map_err(err)?;
        let table = tx.open_table(COUNTERS).map_err(err)?;
        let mut out = BTreeMap::new();
        for entry in table.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            out.insert(k.value().to_string(), v.value());
        }
        Ok((Counts(out), pending))
    }

    /// Every stored function event config (JSON).
    pub(crate) fn configs(&self) -> Result<Vec<(String, Vec<u8>)>> {
        let tx = self.db.begin_read().map_err(err)?;
        let table = tx.open_table(CONFIGS).map_err(err)?;
        let mut out = Vec::new();
        for entry in table.iter().map_err(err)? {
            let (k, v) = entry.map_err(err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }
}
