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
//!   left → a new message carrying the failure count and the time the
//!   retry may run (the retry delay, doubling), then ack; out of retries,
//!   or older than the function's maximum event age → a dead letter on
//!   `fnhost.dlq.<function>`, then ack. A throttled start is not an
//!   attempt (the node waits for a slot), nor is a node dying with the
//!   event (JetStream redelivers the same message); a message delivered
//!   [`MAX_DELIVERIES`] times without an outcome is dead-lettered.
//! - Every outcome is stored before the ack and carries a `Nats-Msg-Id`
//!   (the event id; `id#n` for the retry after failure n), so a node dying
//!   between the two gives a duplicate that JetStream drops inside its
//!   duplicate window (and that readers can drop by id after it).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, PullConsumer, pull};
use async_nats::jetstream::message::AckKind;
use bytes::Bytes;
use fnhost::events::EventBackend;
use fnhost::{Error, wire};
use futures::StreamExt as _;
use serde_json::{Value, json};

use super::stream::*;
use super::{
    Cluster, DEAD_LETTER_STREAM, EVENTS_CONSUMER, EVENTS_STREAM, RESULTS_STREAM, nats_error,
    unavailable, unconfirmed,
};

/// Runs `work` while telling JetStream every `every` that `msg` is still
/// being worked on.
async fn in_progress<T>(
    msg: &jetstream::Message,
    every: Duration,
    work: impl std::future::Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        tokio::select! {
            r = &mut work => return r,
            _ = ticker.tick() => {
                let _ = msg.ack_with(AckKind::Progress).await;
            }
        }
    }
}

impl Cluster {
    /// Puts an event for `target` on the shared stream after the same
    /// checks as a local send (the function exists, the payload fits);
    /// returns its id once JetStream has stored it.
    pub async fn send_event_async(&self, target: &str, payload: Bytes) -> fnhost::Result<String> {
        let name = function_of(target);
        let info = match self.host.function_info(target) {
            // This node may not have applied a new function yet.
            Err(Error::NotFound { .. }) => {
                self.refresh(name).await;
                self.host.function_info(target)?
            }
            other => other?,
        };
        let max = info.max_input.min(self.max_message());
        if payload.len() > max {
            return Err(Error::PayloadTooLarge {
                size: payload.len(),
                max,
            });
        }
        // While NATS is away the client would buffer the publish and send
        // it after this call has answered: refuse at once instead.
        if !self.is_connected() {
            return Err(unavailable("the event"));
        }
        let id = new_id(&self.opts.node);
        let now = SystemTime::now();
        let mut headers = event_headers(&id, &id, target);
        headers.insert(ACCEPTED, unix_ms(now).to_string().as_str());
        // A message the stream stores after this deadline is one this call
        // gave up on (it answers at the latest the skew margin after it):
        // every node drops it unrun.
        headers.insert(SEND_DEADLINE, unix_ms(now + SEND_WAIT).to_string().as_str());
        let sent = async {
            let ack = self
                .js
                .publish_with_headers(format!("fnhost.events.{}", info.name), headers, payload)
                .await?;
            ack.await
        };
        use async_nats::jetstream::context::PublishErrorKind as K;
        match tokio::time::timeout(SEND_WAIT + CLOCK_SKEW, sent).await {
            Ok(Ok(_)) => {}
            // Handed over but unconfirmed (no ack, or the connection broke
            // waiting for it): stored before the deadline (it runs) or not
            // (every node drops it). No one can tell yet.
            Err(_) => return Err(unconfirmed("the event")),
            Ok(Err(e)) if matches!(e.kind(), K::TimedOut | K::BrokenPipe) => {
                return Err(unconfirmed("the event"));
            }
            // JetStream's own refusal (or one before sending): nothing
            // was stored.
            Ok(Err(e)) => {
                return Err(Error::Remote {
                    kind: fnhost::ErrorKind::ShuttingDown,
                    message: format!(
                        "the cluster refused the event ({e}): it was not stored and will not run"
                    ),
                });
            }
        }
        self.stats.events_sent.fetch_add(1, Ordering::Relaxed);
        Ok(id)
    }

    /// The largest body a message may carry here: the server's
    /// `max_payload` less room for fnhost's headers.
    pub(crate) fn max_message(&self) -> usize {
        (self.client.server_info().max_payload).saturating_sub(HEADER_ROOM)
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
        let consumer = events
            .consumer_info(EVENTS_CONSUMER)
            .await
            .map_err(|e| nats_error("consumer info", e))?;
        // What is really outstanding is the consumer's view: events not
        // yet delivered and events delivered without an outcome. The
        // stream's own message count can keep messages below the ack
        // floor after a server restart (nats-server 2.9's file store).
        Ok(json!({
            "pending": consumer.num_pending,
            "in_flight": consumer.num_ack_pending,
            "stream_messages": count(EVENTS_STREAM).await?,
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
    pub(super) async fn run_events(self: Arc<Self>, mut consumer: PullConsumer) {
        let mut stop = self.stopping();
        // The consumer's ack wait is the first node's; "in progress" goes
        // out by that one, whatever this node was started with.
        let ack_wait = match consumer.info().await {
            Ok(i) => i.config.ack_wait,
            Err(_) => self.opts.ack_wait,
        };
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
                    me.run_event(msg, ack_wait).await;
                    drop(permit);
                });
            }
        }
    }

    /// One delivery of one event, to its outcome.
    async fn run_event(&self, msg: jetstream::Message, ack_wait: Duration) {
        let (delivered, published) = match msg.info() {
            Ok(i) => (
                i.delivered,
                SystemTime::UNIX_EPOCH
                    + Duration::from_nanos(i.published.unix_timestamp_nanos().max(0) as u64),
            ),
            Err(_) => (1, SystemTime::now()),
        };
        let headers = msg.headers.as_ref();
        let number = |k: &str| header(headers, k).and_then(|v| v.parse::<u64>().ok());
        // Values that go into headers again must not carry control
        // characters (a foreign message must not stop this node).
        let clean = |s: &str| s.replace(|c: char| c.is_control(), "?");
        let id = clean(
            header(headers, EVENT_ID)
                .or(header(headers, "Nats-Msg-Id"))
                .unwrap_or(""),
        );
        // Failed attempts so far travel with the event (a retry is a new
        // message), so a redelivery after a node died is not an attempt.
        let failures = number(FAILURES).unwrap_or(0).min(u64::from(u32::MAX)) as u32;
        let attempt = failures + 1;
        let accepted = number(ACCEPTED).map_or(published, from_unix_ms);
        let target = header(headers, TARGET).map(clean);
        if number(SEND_DEADLINE).is_some_and(|d| published > from_unix_ms(d)) {
            // Stored after its sender gave up and refused the call (the
            // client sent it late, after an outage): it never runs.
            self.stats.events_expired.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(target: "fnhost::cluster", event = %id, "dropped an event stored after its sender refused it");
            let _ = msg.ack_with(AckKind::Term).await;
            return;
        }
        if delivered > MAX_DELIVERIES {
            // Delivered again and again without an outcome (nodes dying
            // with it, outcomes that cannot be stored): give it up.
            let e = Error::Remote {
                kind: fnhost::ErrorKind::Store,
                message: format!("delivered {delivered} times without reaching an outcome"),
            };
            let target = target.as_deref().unwrap_or("?");
            self.dead_letter(&msg, &id, target, failures, "RedeliveredTooOften", &e)
                .await;
            return;
        }
        if let Some(not_before) = number(NOT_BEFORE).map(from_unix_ms)
            && let Ok(wait) = not_before.duration_since(SystemTime::now())
        {
            // A retry delivered before its delay is up.
            let wait = wait.min(MAX_RETRY_WAIT);
            let _ = msg.ack_with(AckKind::Nak(Some(wait))).await;
            return;
        }
        let Some(target) = target else {
            let e = Error::Remote {
                kind: fnhost::ErrorKind::InvalidConfig,
                message: format!("event on {} has no {TARGET} header", msg.subject),
            };
            self.dead_letter(&msg, &id, "?", failures, "Refused", &e)
                .await;
            return;
        };
        let cfg = self.host.events().config(&target);
        let progress_every = (ack_wait / 3).max(Duration::from_millis(100));
        let mut refreshed = false;
        loop {
            if SystemTime::now() > accepted + cfg.event_age() {
                let e = Error::Remote {
                    kind: fnhost::ErrorKind::Timeout,
                    message: format!(
                        "event is older than the maximum event age of {:?}",
                        cfg.event_age()
                    ),
                };
                self.dead_letter(&msg, &id, &target, failures, "EventAgeExceeded", &e)
                    .await;
                return;
            }
            let run = self
                .host
                .invoke_event_async(&target, msg.payload.clone(), &id, attempt);
            let outcome = in_progress(&msg, progress_every, run).await;
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
                // This node may be behind the cluster's registry.
                Err(Error::NotFound { .. }) if !refreshed => {
                    refreshed = true;
                    let name = function_of(&target);
                    in_progress(&msg, progress_every, self.refresh(name)).await;
                }
                Err(refused) => {
                    self.dead_letter(&msg, &id, &target, failures, "Refused", &refused)
                        .await;
                    return;
                }
                Ok(inv) => match inv.outcome {
                    Ok(output) => {
                        let mut h = event_headers(&id, &id, &target);
                        h.insert(ATTEMPTS, attempt.to_string().as_str());
                        h.insert(NODE, self.opts.node.as_str());
                        h.insert(VERSION, &*inv.report.version);
                        h.insert(OUTPUT_BYTES, output.len().to_string().as_str());
                        h.insert(DELIVERIES, delivered.to_string().as_str());
                        // An output too large for a message is counted,
                        // not kept (the outcome must be storable).
                        let body = if output.len() > self.max_message() {
                            Bytes::new()
                        } else {
                            output
                        };
                        let subject = format!("fnhost.results.{}", inv.report.function);
                        self.settle(&msg, subject, h, body, &self.stats.events_succeeded)
                            .await;
                        return;
                    }
                    Err(e) if attempt <= cfg.retries() => {
                        tracing::info!(target: "fnhost::cluster", event = %id, attempt, error = %e, "event attempt failed; retrying");
                        self.retry(
                            &msg,
                            &id,
                            &target,
                            attempt,
                            accepted,
                            cfg.retry_after(attempt),
                        )
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

    /// Puts the event back for attempt `failed + 1` after `delay`: a new
    /// message carrying the failure count, then the ack of this one (a
    /// node dying in between leaves both: the event may run twice, one
    /// record is kept per id).
    async fn retry(
        &self,
        msg: &jetstream::Message,
        id: &str,
        target: &str,
        failed: u32,
        accepted: SystemTime,
        delay: Duration,
    ) {
        let mut h = event_headers(&format!("{id}#{failed}"), id, target);
        h.insert(FAILURES, failed.to_string().as_str());
        h.insert(ACCEPTED, unix_ms(accepted).to_string().as_str());
        h.insert(
            NOT_BEFORE,
            unix_ms(SystemTime::now() + delay).to_string().as_str(),
        );
        let function = function_of(target);
        let subject = format!("fnhost.events.{function}");
        self.settle(
            msg,
            subject,
            h,
            msg.payload.clone(),
            &self.stats.events_retried,
        )
        .await;
    }

    /// Ends this delivery: stores its outcome (a result, a retry or a dead
    /// letter) on `subject`, then acks the event and counts it. When the
    /// outcome cannot be stored the event is put back (nak) to run again.
    async fn settle(
        &self,
        msg: &jetstream::Message,
        subject: String,
        headers: HeaderMap,
        body: Bytes,
        counter: &std::sync::atomic::AtomicU64,
    ) {
        let stored = async {
            self.js
                .publish_with_headers(subject, headers, body)
                .await?
                .await
                .map(drop)
                .map_err(async_nats::Error::from)
        };
        if let Err(e) = stored.await {
            tracing::warn!(target: "fnhost::cluster", error = %e, "could not store an event outcome; the event runs again");
            let _ = msg
                .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                .await;
            return;
        }
        if msg.double_ack().await.is_ok() {
            counter.fetch_add(1, Ordering::Relaxed);
        }
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
        let mut h = event_headers(id, id, target);
        h.insert(ATTEMPTS, attempts.to_string().as_str());
        h.insert(NODE, self.opts.node.as_str());
        h.insert(REASON, reason);
        let mut error_json = wire::error_to_json(error);
        if let Some(m) = error_json.get_mut("message")
            && m.as_str().is_some_and(|t| t.len() > MAX_ERROR_HEADER)
        {
            let t = m.as_str().unwrap_or_default();
            let cut = (0..=MAX_ERROR_HEADER)
                .rev()
                .find(|i| t.is_char_boundary(*i))
                .unwrap_or(0);
            *m = Value::String(format!("{}…", &t[..cut]));
        }
        let error_text = error_json.to_string();
        let error_text = if error_text.len() > 4 * MAX_ERROR_HEADER {
            wire::error_to_json(&Error::Remote {
                kind: error.kind(),
                message: "(error too long to keep)".into(),
            })
            .to_string()
        } else {
            error_text
        };
        h.insert(ERROR, error_text.as_str());
        let function = function_of(target);
        let function = if function.is_empty() || function == "?" {
            "unknown"
        } else {
            function
        };
        tracing::warn!(target: "fnhost::cluster", event = %id, %target, attempts, reason, error = %error, "event dead-lettered");
        let subject = format!("fnhost.dlq.{function}");
        self.settle(
            msg,
            subject,
            h,
            msg.payload.clone(),
            &self.stats.events_dead_lettered,
        )
        .await;
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
