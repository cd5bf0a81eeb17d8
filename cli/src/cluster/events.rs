//! The shared event queue: event invocations on a JetStream work-queue
//! stream, pulled by every node through one durable consumer.
//!
//! - **Send**: the event is published to `fnhost.events.<function>` with
//!   its id as `Nats-Msg-Id` (JetStream drops a re-send with the same id
//!   inside the duplicate window) and acknowledged by the stream before
//!   the caller gets the id.
//! - **Run**: a node pulls as many events as it has free slots, runs each
//!   with the event id and attempt in the guest's context, and tells
//!   JetStream "in progress" while it runs, so only a node that stops
//!   answering (dies) has its events redelivered after the ack wait.
//! - **Outcome** (Lambda's semantics): success → a record on
//!   `fnhost.results.<function>`, then ack; a failed attempt with retries
//!   left → nak with the function's retry delay (the attempt number is
//!   JetStream's delivery count); out of retries, or older than the
//!   function's maximum event age → a dead letter on
//!   `fnhost.dlq.<function>`, then ack. A throttled start is not an
//!   attempt: the node waits for a slot and tries again.
//! - Results and dead letters are published before the ack and carry the
//!   event id as `Nats-Msg-Id`, so a node dying between the two gives a
//!   duplicate that JetStream drops inside its duplicate window (and that
//!   readers can drop by id after it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use async_nats::jetstream::{self, stream};
use bytes::Bytes;
use fnhost::events::EventBackend;
use fnhost::{Error, wire};
use futures::StreamExt as _;
use serde_json::{Value, json};

use super::{
    Cluster, DEAD_LETTER_STREAM, EVENTS_CONSUMER, EVENTS_STREAM, RESULTS_STREAM, nats_error,
};

/// Header naming the invocation target (`name`, `name:version`, `name:alias`).
pub const TARGET: &str = "Fnhost-Target";
/// Header carrying the event id on results and dead letters.
pub const EVENT_ID: &str = "Fnhost-Event-Id";
/// Header with the attempt number (results) or attempts made (dead letters).
pub const ATTEMPTS: &str = "Fnhost-Attempts";
/// Header with the node that ran the event.
pub const NODE: &str = "Fnhost-Node";
/// Header with the version that ran (results).
pub const VERSION: &str = "Fnhost-Version";
/// Header with the error (JSON, see `fnhost::wire`) of a dead letter.
pub const ERROR: &str = "Fnhost-Error";
/// Header with why an event was dead-lettered: `RetriesExhausted`,
/// `EventAgeExceeded` or `Refused`.
pub const REASON: &str = "Fnhost-Reason";

/// Creates the three streams (or checks they exist).
pub(super) async fn open_streams(
    js: &jetstream::Context,
    _ack_wait: Duration,
) -> anyhow::Result<()> {
    let day = Duration::from_secs(24 * 3600);
    for (name, subjects, retention, max_age) in [
        (
            EVENTS_STREAM,
            "fnhost.events.>",
            stream::RetentionPolicy::WorkQueue,
            Duration::ZERO,
        ),
        (
            RESULTS_STREAM,
            "fnhost.results.>",
            stream::RetentionPolicy::Limits,
            day,
        ),
        // Dead letters are kept 14 days (SQS's longest retention).
        (
            DEAD_LETTER_STREAM,
            "fnhost.dlq.>",
            stream::RetentionPolicy::Limits,
            14 * day,
        ),
    ] {
        js.get_or_create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            retention,
            max_age,
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// A fresh event id: 128 bits shown as a UUID, unique across nodes and
/// restarts (node name, time and a counter, hashed).
fn new_id(node: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = blake3::Hasher::new();
    h.update(node.as_bytes());
    h.update(&std::process::id().to_le_bytes());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    h.update(&now.as_nanos().to_le_bytes());
    h.update(&NEXT.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    let b = h.finalize();
    let v = u128::from_le_bytes(b.as_bytes()[..16].try_into().unwrap_or_default());
    fnhost::RequestId(v).to_string()
}

fn header<'a>(h: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    h?.get(name).map(|v| v.as_str())
}

impl Cluster {
    /// Puts an event for `target` on the shared stream after the same
    /// checks as a local send (the function exists, the payload fits);
    /// returns its id once JetStream has stored it.
    pub async fn send_event_async(&self, target: &str, payload: Bytes) -> fnhost::Result<String> {
        let info = self.host.function_info(target)?;
        if payload.len() > info.max_input {
            return Err(Error::PayloadTooLarge {
                size: payload.len(),
                max: info.max_input,
            });
        }
        let id = new_id(&self.opts.node);
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        headers.insert(TARGET, target);
        let ack = self
            .js
            .publish_with_headers(format!("fnhost.events.{}", info.name), headers, payload)
            .await
            .map_err(|e| nats_error("event send", e))?;
        ack.await.map_err(|e| nats_error("event send", e))?;
        self.stats.events_sent.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// Events pending on the stream, held by nodes, succeeded (results
    /// kept) and dead-lettered, cluster-wide.
    pub async fn event_counts(&self) -> fnhost::Result<Value> {
        let count = |name: &'static str| async move {
            let mut s = self
                .js
                .get_stream(name)
                .await
                .map_err(|e| nats_error("stream info", e))?;
            let info = s.info().await.map_err(|e| nats_error("stream info", e))?;
            Ok::<u64, Error>(info.state.messages)
        };
        let events = self
            .js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| nats_error("stream info", e))?;
        let in_flight = events
            .consumer_info(EVENTS_CONSUMER)
            .await
            .map(|c| c.num_ack_pending as u64)
            .unwrap_or(0);
        Ok(json!({
            "pending": count(EVENTS_STREAM).await?,
            "in_flight": in_flight,
            "succeeded": count(RESULTS_STREAM).await?,
            "dead_lettered": count(DEAD_LETTER_STREAM).await?,
        }))
    }

    pub(super) async fn events_consumer(&self) -> fnhost::Result<PullConsumer> {
        let stream = self
            .js
            .get_stream(EVENTS_STREAM)
            .await
            .map_err(|e| nats_error("event stream", e))?;
        stream
            .get_or_create_consumer(
                EVENTS_CONSUMER,
                pull::Config {
                    durable_name: Some(EVENTS_CONSUMER.into()),
                    description: Some("fnhost nodes: event invocations".into()),
                    ack_policy: AckPolicy::Explicit,
                    ack_wait: self.opts.ack_wait,
                    max_deliver: -1,
                    max_ack_pending: 100_000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| nats_error("event consumer", e))
    }

    /// The event worker: pulls as many events as there are free slots and
    /// runs each on its own task.
    pub(super) async fn run_events(self: Arc<Self>, consumer: PullConsumer) {
        let mut stop = self.stopping();
        loop {
            if *stop.borrow() {
                return;
            }
            let first = tokio::select! {
                p = self.event_slots.clone().acquire_owned() => p,
                _ = stop.changed() => return,
            };
            let Ok(first) = first else { return };
            let mut permits = vec![first];
            while let Ok(p) = self.event_slots.clone().try_acquire_owned() {
                permits.push(p);
            }
            let batch = consumer
                .fetch()
                .max_messages(permits.len())
                .expires(Duration::from_secs(1))
                .messages()
                .await;
            let mut batch = match batch {
                Ok(b) => b,
                Err(e) => {
                    tracing::warn!(target: "fnhost::cluster", error = %e, "event fetch");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            while let Some(msg) = batch.next().await {
                let msg = match msg {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(target: "fnhost::cluster", error = %e, "event fetch");
                        break;
                    }
                };
                let Some(permit) = permits.pop() else { break };
                let me = self.clone();
                tokio::spawn(async move {
                    me.run_event(msg).await;
                    drop(permit);
                });
            }
        }
    }

    /// One delivery of one event, to its outcome.
    async fn run_event(&self, msg: jetstream::Message) {
        let (attempt, published) = match msg.info() {
            Ok(i) => (
                u32::try_from(i.delivered).unwrap_or(u32::MAX),
                SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(i.published.unix_timestamp_nanos().max(0) as u64),
            ),
            Err(_) => (1, SystemTime::now()),
        };
        let headers = msg.headers.as_ref();
        let id = header(headers, "Nats-Msg-Id").unwrap_or("").to_string();
        let Some(target) = header(headers, TARGET).map(str::to_string) else {
            let e = Error::Remote {
                kind: fnhost::ErrorKind::InvalidConfig,
                message: format!("event on {} has no {TARGET} header", msg.subject),
            };
            self.dead_letter(&msg, &id, "?", attempt, "Refused", &e)
                .await;
            return;
        };
        let cfg = self.host.events().config(&target);
        let progress_every = (self.opts.ack_wait / 3).max(Duration::from_millis(100));
        loop {
            if SystemTime::now() > published + cfg.event_age() {
                let e = Error::Remote {
                    kind: fnhost::ErrorKind::Timeout,
                    message: format!(
                        "event is older than the maximum event age of {:?}",
                        cfg.event_age()
                    ),
                };
                self.dead_letter(
                    &msg,
                    &id,
                    &target,
                    attempt.saturating_sub(1),
                    "EventAgeExceeded",
                    &e,
                )
                .await;
                return;
            }
            let run = self
                .host
                .invoke_event_async(&target, msg.payload.clone(), &id, attempt);
            tokio::pin!(run);
            let mut ticker = tokio::time::interval(progress_every);
            ticker.tick().await;
            let outcome = loop {
                tokio::select! {
                    r = &mut run => break r,
                    _ = ticker.tick() => {
                        let _ = msg.ack_with(AckKind::Progress).await;
                    }
                }
            };
            match outcome {
                // Waiting for a slot is not an attempt.
                Err(Error::Throttled { .. }) => {
                    let _ = msg.ack_with(AckKind::Progress).await;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // This node is stopping: another one takes it now.
                Err(Error::ShuttingDown) => {
                    let _ = msg.ack_with(AckKind::Nak(None)).await;
                    return;
                }
                Err(refused) => {
                    self.dead_letter(&msg, &id, &target, attempt, "Refused", &refused)
                        .await;
                    return;
                }
                Ok(inv) => match inv.outcome {
                    Ok(output) => {
                        let mut h = HeaderMap::new();
                        h.insert("Nats-Msg-Id", id.as_str());
                        h.insert(EVENT_ID, id.as_str());
                        h.insert(TARGET, target.as_str());
                        h.insert(ATTEMPTS, attempt.to_string().as_str());
                        h.insert(NODE, self.opts.node.as_str());
                        h.insert(VERSION, &*inv.report.version);
                        let subject = format!("fnhost.results.{}", inv.report.function);
                        if self.publish(subject, h, output).await.is_err() {
                            let _ = msg
                                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                                .await;
                            return;
                        }
                        if msg.double_ack().await.is_ok() {
                            self.stats.events_succeeded.fetch_add(1, Ordering::Relaxed);
                        }
                        return;
                    }
                    Err(e) if attempt <= cfg.retries() => {
                        tracing::info!(target: "fnhost::cluster", event = %id, attempt, error = %e, "event attempt failed; retrying");
                        self.stats.events_retried.fetch_add(1, Ordering::Relaxed);
                        let _ = msg
                            .ack_with(AckKind::Nak(Some(cfg.retry_after(attempt))))
                            .await;
                        return;
                    }
                    Err(e) => {
                        self.dead_letter(&msg, &id, &target, attempt, "RetriesExhausted", &e)
                            .await;
                        return;
                    }
                },
            }
        }
    }

    async fn publish(&self, subject: String, headers: HeaderMap, body: Bytes) -> Result<(), ()> {
        let sent = async {
            self.js
                .publish_with_headers(subject, headers, body)
                .await?
                .await
                .map(drop)
                .map_err(async_nats::Error::from)
        };
        sent.await.map_err(|e: async_nats::Error| {
            tracing::warn!(target: "fnhost::cluster", error = %e, "could not publish an event outcome; the event will be redelivered");
        })
    }

    /// Publishes the dead letter (original payload, error, attempts), then
    /// acks the event.
    async fn dead_letter(
        &self,
        msg: &jetstream::Message,
        id: &str,
        target: &str,
        attempts: u32,
        reason: &str,
        error: &Error,
    ) {
        let mut h = HeaderMap::new();
        h.insert("Nats-Msg-Id", id);
        h.insert(EVENT_ID, id);
        h.insert(TARGET, target);
        h.insert(ATTEMPTS, attempts.to_string().as_str());
        h.insert(NODE, self.opts.node.as_str());
        h.insert(REASON, reason);
        h.insert(ERROR, wire::error_to_json(error).to_string().as_str());
        let function = target.split(':').next().unwrap_or("unknown");
        let function = if function.is_empty() || function == "?" {
            "unknown"
        } else {
            function
        };
        tracing::warn!(target: "fnhost::cluster", event = %id, %target, attempts, reason, error = %error, "event dead-lettered");
        if self
            .publish(format!("fnhost.dlq.{function}"), h, msg.payload.clone())
            .await
            .is_err()
        {
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
        if msg.double_ack().await.is_ok() {
            self.stats
                .events_dead_lettered
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The cluster as the gateway's event backend: `Event` invocations go on
/// the shared stream.
impl EventBackend for Cluster {
    fn send_event(&self, target: &str, payload: Bytes) -> fnhost::Result<String> {
        // Called from a blocking thread (the gateway uses spawn_blocking).
        self.runtime
            .block_on(self.send_event_async(target, payload))
    }

    fn is_durable(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_distinct() {
        let a = new_id("n1");
        let b = new_id("n1");
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(a.matches('-').count(), 4);
    }
}
