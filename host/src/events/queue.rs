//! Durable queues and the SQS-style event source that feeds a function
//! batches from one: batch size, batch window, visibility timeout,
//! partial batch failures and a redrive to the queue's dead letters.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use bytes::Bytes;

use super::clock::{from_ms, ms};
use super::shapes::{self, SqsRecord};
use super::store::{Counter, Messages, Op, StoredMessage};
use super::{EventSource, Events, Shared, SourceContext, SourceId};
use crate::error::{Error, Result};

/// A queue's settings (SQS's queue attributes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    visibility_timeout: Duration,
    max_receive_count: Option<u32>,
}

impl Default for QueueConfig {
    /// 30 s visibility timeout (as SQS); a message received 5 times
    /// without being deleted moves to the queue's dead letters.
    fn default() -> Self {
        QueueConfig {
            visibility_timeout: Duration::from_secs(30),
            max_receive_count: Some(5),
        }
    }
}

impl QueueConfig {
    /// How long a received message stays hidden from other receivers
    /// (0 s to 12 h). A message not deleted by then is received again.
    pub fn visibility_timeout(mut self, t: Duration) -> Self {
        self.visibility_timeout = t;
        self
    }

    /// Receives after which an undeleted message moves to the queue's dead
    /// letters (1 to 1000; `None`: never, as SQS without a redrive policy).
    pub fn max_receive_count(mut self, n: Option<u32>) -> Self {
        self.max_receive_count = n;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.visibility_timeout > Duration::from_secs(12 * 3600) {
            return Err(Error::config(
                "visibility_timeout",
                "must be at most 12 hours",
            ));
        }
        if matches!(self.max_receive_count, Some(n) if n == 0 || n > 1000) {
            return Err(Error::config(
                "max_receive_count",
                "must be between 1 and 1000",
            ));
        }
        Ok(())
    }
}

/// How a queue feeds a function ([`Events::map_queue`]), as a Lambda SQS
/// event source mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueMapping {
    batch_size: usize,
    batch_window: Duration,
    report_batch_item_failures: bool,
}

impl Default for QueueMapping {
    /// Batches of up to 10, no window, whole-batch failure semantics.
    fn default() -> Self {
        QueueMapping {
            batch_size: 10,
            batch_window: Duration::ZERO,
            report_batch_item_failures: false,
        }
    }
}

impl QueueMapping {
    /// Most messages per invocation (1 to 10,000).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = n;
        self
    }

    /// How long to gather messages before invoking with a batch smaller
    /// than `batch_size` (0 to 300 s, measured from the first visible
    /// message).
    pub fn batch_window(mut self, w: Duration) -> Self {
        self.batch_window = w;
        self
    }

    /// Partial batch responses (`ReportBatchItemFailures`): the handler
    /// returns `{"batchItemFailures": [{"itemIdentifier": "<messageId>"}]}`
    /// and only those messages are retried. Without it, an invocation that
    /// succeeds deletes the whole batch and one that fails retries it.
    pub fn report_batch_item_failures(mut self, on: bool) -> Self {
        self.report_batch_item_failures = on;
        self
    }

    fn validate(&self) -> Result<()> {
        if self.batch_size == 0 || self.batch_size > 10_000 {
            return Err(Error::config("batch_size", "must be between 1 and 10,000"));
        }
        if self.batch_window > Duration::from_secs(300) {
            return Err(Error::config("batch_window", "must be at most 300 seconds"));
        }
        Ok(())
    }
}

/// A queue message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The message id (a UUID).
    pub id: String,
    /// What deletes it ([`Events::delete_message`]).
    pub receipt: u64,
    /// The body.
    pub body: String,
    /// String attributes.
    pub attributes: BTreeMap<String, String>,
    /// How often it was received.
    pub receive_count: u32,
    /// When it was sent.
    pub sent_at: SystemTime,
}

fn message(seq: u64, m: StoredMessage) -> Message {
    Message {
        id: m.id,
        receipt: seq,
        body: m.body,
        attributes: m.attributes,
        receive_count: m.receive_count,
        sent_at: from_ms(m.sent_ms),
    }
}

/// Largest message body, as SQS.
pub const MAX_MESSAGE_BYTES: usize = 256 << 10;

/// The write that appends a message to `queue`.
pub(crate) fn push_op(
    sh: &Shared,
    queue: &str,
    body: String,
    attributes: BTreeMap<String, String>,
    now_ms: u64,
) -> Op {
    Op::PushMessage {
        queue: queue.to_string(),
        msg: StoredMessage {
            id: sh.core.next_request_id().to_string(),
            body,
            attributes,
            sent_ms: now_ms,
            receive_count: 0,
            visible_ms: now_ms,
            first_receive_ms: None,
        },
    }
}

impl Events {
    /// Creates (or reconfigures) a queue. Its messages are stored with the
    /// events and survive restarts; its settings are the embedder's to set
    /// at each start.
    pub fn create_queue(&self, name: &str, config: QueueConfig) -> Result<()> {
        config.validate()?;
        if name.is_empty() || name.len() > 80 || name.contains(':') {
            return Err(Error::config(
                "queue",
                "a queue name is 1 to 80 characters without `:`",
            ));
        }
        self.sh.queues.write().insert(name.to_string(), config);
        Ok(())
    }

    fn queue_config(&self, name: &str) -> Result<QueueConfig> {
        self.sh
            .queues
            .read()
            .get(name)
            .copied()
            .ok_or_else(|| Error::NoSuch {
                what: "queue",
                name: name.to_string(),
            })
    }

    /// Appends a message (committed when this returns); returns its id.
    pub fn send_message(
        &self,
        queue: &str,
        body: impl Into<String>,
        attributes: BTreeMap<String, String>,
    ) -> Result<String> {
        self.queue_config(queue)?;
        let body = body.into();
        if body.len() > MAX_MESSAGE_BYTES {
            return Err(Error::PayloadTooLarge {
                size: body.len(),
                max: MAX_MESSAGE_BYTES,
            });
        }
        let op = push_op(&self.sh, queue, body, attributes, ms(self.sh.clock.now()));
        let id = match &op {
            Op::PushMessage { msg, .. } => msg.id.clone(),
            _ => String::new(),
        };
        self.sh
            .store
            .apply(vec![op, Op::Count(Counter::MessagesSent, 1)])?;
        self.sh.signal.bump();
        Ok(id)
    }

    /// Receives up to `max` visible messages, hiding them for the queue's
    /// visibility timeout (SQS `ReceiveMessage`). Messages past the
    /// queue's receive limit move to its dead letters instead.
    pub fn receive_messages(&self, queue: &str, max: usize) -> Result<Vec<Message>> {
        let cfg = self.queue_config(queue)?;
        Ok(receive(&self.sh, queue, &cfg, max)?
            .into_iter()
            .map(|(seq, m)| message(seq, m))
            .collect())
    }

    /// Deletes a received message (SQS `DeleteMessage`); deleting one
    /// that is already gone does nothing.
    pub fn delete_message(&self, queue: &str, receipt: u64) -> Result<()> {
        self.queue_config(queue)?;
        self.sh.store.apply(vec![Op::DeleteMessage {
            queue: queue.to_string(),
            seq: receipt,
        }])?;
        Ok(())
    }

    /// Every message in `queue`, visible or not, without receiving it.
    pub fn queue_messages(&self, queue: &str) -> Result<Vec<Message>> {
        self.listed(queue, Messages::Live)
    }

    /// The messages `queue` gave up on (received too often).
    pub fn queue_dead_letters(&self, queue: &str) -> Result<Vec<Message>> {
        self.listed(queue, Messages::Dead)
    }

    fn listed(&self, queue: &str, which: Messages) -> Result<Vec<Message>> {
        Ok(self
            .sh
            .store
            .messages(queue, which)?
            .into_iter()
            .map(|(seq, m)| message(seq, m))
            .collect())
    }

    /// Feeds `queue` to `function` in batches, as a Lambda SQS event
    /// source mapping; returns the source (stop it with
    /// [`remove_source`](Events::remove_source)).
    pub fn map_queue(
        &self,
        queue: &str,
        function: &str,
        mapping: QueueMapping,
    ) -> Result<SourceId> {
        mapping.validate()?;
        self.queue_config(queue)?;
        self.sh.core.registry.resolve(function)?;
        let id = self.add_source(
            &format!("sqs:{queue}->{function}"),
            QueuePoller {
                queue: queue.to_string(),
                function: function.to_string(),
                mapping,
                first_seen: None,
            },
        )?;
        self.sh.mapped.write().insert(id, queue.to_string());
        Ok(id)
    }

    /// Whether a mapped queue has a message visible at `now_ms`.
    pub(crate) fn mapped_queue_has_visible(&self, now_ms: u64) -> bool {
        let mapped: HashSet<String> = self.sh.mapped.read().values().cloned().collect();
        mapped.iter().any(|q| {
            self.sh
                .store
                .messages(q, Messages::Live)
                .is_ok_and(|m| m.iter().any(|(_, m)| m.visible_ms <= now_ms))
        })
    }
}

/// Takes up to `max` visible messages, hides them and counts the receive;
/// messages over the receive limit go to the dead letters instead.
fn receive(
    sh: &Shared,
    queue: &str,
    cfg: &QueueConfig,
    max: usize,
) -> Result<Vec<(u64, StoredMessage)>> {
    let _g = sh.queue_lock.lock();
    let now = ms(sh.clock.now());
    let mut ops = Vec::new();
    let mut out = Vec::new();
    for (seq, mut m) in sh.store.messages(queue, Messages::Live)? {
        if out.len() >= max {
            break;
        }
        if m.visible_ms > now {
            continue;
        }
        if cfg.max_receive_count.is_some_and(|n| m.receive_count >= n) {
            ops.push(Op::KillMessage {
                queue: queue.to_string(),
                seq,
                msg: m,
            });
            ops.push(Op::Count(Counter::MessagesDeadLettered, 1));
            continue;
        }
        m.receive_count += 1;
        m.visible_ms = now.saturating_add(cfg.visibility_timeout.as_millis() as u64);
        m.first_receive_ms.get_or_insert(now);
        ops.push(Op::UpdateMessage {
            queue: queue.to_string(),
            seq,
            msg: m.clone(),
        });
        out.push((seq, m));
    }
    if !ops.is_empty() {
        sh.store.apply(ops)?;
    }
    Ok(out)
}

/// The SQS event source mapping.
struct QueuePoller {
    queue: String,
    function: String,
    mapping: QueueMapping,
    /// When the poller first saw a visible message it has not taken yet
    /// (the batch window runs from there).
    first_seen: Option<u64>,
}

impl EventSource for QueuePoller {
    fn run(&mut self, ctx: &SourceContext) -> Result<()> {
        let sh = &ctx.events().sh;
        loop {
            let seen = sh.signal.current();
            if ctx.stopping() {
                return Ok(());
            }
            let cfg = ctx.events().queue_config(&self.queue)?;
            let now = ms(sh.clock.now());
            let msgs = sh.store.messages(&self.queue, Messages::Live)?;
            let visible = msgs.iter().filter(|(_, m)| m.visible_ms <= now).count();
            let next_visible = msgs
                .iter()
                .map(|(_, m)| m.visible_ms)
                .filter(|&t| t > now)
                .min();
            if visible == 0 {
                self.first_seen = None;
                ctx.wait_change(seen, next_visible.map(from_ms));
                continue;
            }
            let first = *self.first_seen.get_or_insert(now);
            let window_end = first.saturating_add(self.mapping.batch_window.as_millis() as u64);
            if visible < self.mapping.batch_size && now < window_end {
                let wake = next_visible.map_or(window_end, |t| t.min(window_end));
                ctx.wait_change(seen, Some(from_ms(wake)));
                continue;
            }
            self.first_seen = None;
            sh.busy.fetch_add(1, Ordering::AcqRel);
            let r = self.handle_batch(sh, &cfg);
            sh.busy.fetch_sub(1, Ordering::AcqRel);
            sh.signal.bump();
            r?;
        }
    }
}

impl QueuePoller {
    /// Receives one batch, invokes the function with it, and deletes what
    /// succeeded.
    fn handle_batch(&self, sh: &Shared, cfg: &QueueConfig) -> Result<()> {
        let batch = receive(sh, &self.queue, cfg, self.mapping.batch_size)?;
        if batch.is_empty() {
            return Ok(());
        }
        let records: Vec<SqsRecord<'_>> = batch
            .iter()
            .map(|(seq, m)| SqsRecord {
                id: &m.id,
                receipt: *seq,
                body: &m.body,
                attributes: &m.attributes,
                sent_ms: m.sent_ms,
                receive_count: m.receive_count,
                first_receive_ms: m.first_receive_ms.unwrap_or(m.sent_ms),
            })
            .collect();
        let payload = Bytes::from(shapes::sqs_event(&self.queue, &records).to_string());
        let failed: HashSet<&str> = match invoke(sh, &self.function, &payload) {
            // Not run for want of capacity (or at shutdown): the receive
            // does not count, and the batch is visible again a second
            // later (no busy loop against a full function).
            Err(Error::Throttled { .. } | Error::ShuttingDown) => {
                let again = ms(sh.clock.now()).saturating_add(1000);
                let ops = batch
                    .iter()
                    .map(|(seq, m)| Op::UpdateMessage {
                        queue: self.queue.clone(),
                        seq: *seq,
                        msg: StoredMessage {
                            receive_count: m.receive_count - 1,
                            visible_ms: again,
                            ..m.clone()
                        },
                    })
                    .collect();
                sh.store.apply(ops)?;
                return Ok(());
            }
            // Not run because of the batch or the mapping (function gone,
            // batch over its input cap): a failed receive, so the
            // messages reach the dead letters in the end.
            Err(_) => batch.iter().map(|(_, m)| m.id.as_str()).collect(),
            Ok(Err(_)) => batch.iter().map(|(_, m)| m.id.as_str()).collect(),
            Ok(Ok(out)) if self.mapping.report_batch_item_failures => {
                let ids: HashSet<&str> = batch.iter().map(|(_, m)| m.id.as_str()).collect();
                match batch_item_failures(&out, &ids) {
                    Some(f) => f,
                    // An invalid response fails the whole batch (as Lambda).
                    None => ids,
                }
            }
            Ok(Ok(_)) => HashSet::new(),
        };
        let ops: Vec<Op> = batch
            .iter()
            // Failed ones are visible again after the visibility timeout.
            .filter(|(_, m)| !failed.contains(m.id.as_str()))
            .map(|(seq, _)| Op::DeleteMessage {
                queue: self.queue.clone(),
                seq: *seq,
            })
            .collect();
        sh.store.apply(ops)?;
        Ok(())
    }
}

/// Runs `function` synchronously: `Err` if it did not run.
fn invoke(sh: &Shared, function: &str, payload: &[u8]) -> Result<Result<Bytes>> {
    let (f, version) = sh.core.registry.resolve(function)?;
    let permit = sh.core.admit(&f, payload.len())?;
    Ok(sh.core.execute(&f, version, payload, permit, None).outcome)
}

/// The ids a partial batch response lists, or `None` if the response is
/// invalid (not JSON of that shape, or naming a message not in the batch).
fn batch_item_failures<'a>(out: &[u8], batch: &HashSet<&'a str>) -> Option<HashSet<&'a str>> {
    let trimmed = out.trim_ascii();
    if trimmed.is_empty() || trimmed == b"null" {
        return Some(HashSet::new());
    }
    let v: serde_json::Value = serde_json::from_slice(trimmed).ok()?;
    let list = match v.get("batchItemFailures") {
        None | Some(serde_json::Value::Null) => return Some(HashSet::new()),
        Some(serde_json::Value::Array(a)) => a,
        Some(_) => return None,
    };
    let mut failed = HashSet::new();
    for item in list {
        let id = item.get("itemIdentifier")?.as_str()?;
        failed.insert(*batch.get(id)?);
    }
    Some(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_batch_responses_are_checked() {
        let batch: HashSet<&str> = ["a", "b"].into_iter().collect();
        let f = |s: &str| batch_item_failures(s.as_bytes(), &batch);
        assert_eq!(f(""), Some(HashSet::new()));
        assert_eq!(f("{}"), Some(HashSet::new()));
        assert_eq!(f(r#"{"batchItemFailures":[]}"#), Some(HashSet::new()));
        assert_eq!(
            f(r#"{"batchItemFailures":[{"itemIdentifier":"b"}]}"#),
            Some(["b"].into_iter().collect())
        );
        // Unknown id, missing id, wrong shape: the whole batch failed.
        assert_eq!(f(r#"{"batchItemFailures":[{"itemIdentifier":"z"}]}"#), None);
        assert_eq!(f(r#"{"batchItemFailures":[{}]}"#), None);
        assert_eq!(f(r#"{"batchItemFailures":"a"}"#), None);
        assert_eq!(f("not json"), None);
    }
}
