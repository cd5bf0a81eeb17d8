//! The event stream's layout: its three streams, the headers every event
//! message and outcome carries, event ids and time stamps.

use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use async_nats::jetstream::{self, stream};

use super::{DEAD_LETTER_STREAM, EVENTS_STREAM, RESULTS_STREAM};

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
/// `EventAgeExceeded`, `Refused` or `RedeliveredTooOften`.
pub const REASON: &str = "Fnhost-Reason";
/// Header with the failed attempts an event has had (retries carry it).
pub const FAILURES: &str = "Fnhost-Failures";
/// Header with when the event was first accepted (Unix ms): its age.
pub const ACCEPTED: &str = "Fnhost-Accepted";
/// Header with when a retry may run (Unix ms).
pub const NOT_BEFORE: &str = "Fnhost-Not-Before";
/// Header with how often JetStream delivered this attempt's message (more
/// than 1: a node died holding it, or put it back at shutdown).
pub const DELIVERIES: &str = "Fnhost-Deliveries";
/// Header with the output's size on a result (the body is empty when the
/// output does not fit in a message).
pub const OUTPUT_BYTES: &str = "Fnhost-Output-Bytes";

/// Header with the time (Unix ms) after which the stream must not store
/// this event any more: its sender has refused the call by then.
pub const SEND_DEADLINE: &str = "Fnhost-Send-Deadline";
/// How long a send waits for the stream's acknowledgement.
pub(super) const SEND_WAIT: Duration = Duration::from_secs(5);
/// Clock difference between nodes and the NATS server tolerated by the
/// deadlines events and forwarded calls carry (nodes are expected to run
/// NTP).
pub(super) const CLOCK_SKEW: Duration = Duration::from_secs(1);

/// Deliveries of one message without an outcome before it is given up.
pub const MAX_DELIVERIES: i64 = 20;
/// How long JetStream remembers message ids to drop re-sends: longer than
/// an ack wait plus a rerun of most functions.
pub(super) const DUPLICATE_WINDOW: Duration = Duration::from_secs(10 * 60);
/// Longest a retry waits for its delay (whatever its header says).
pub(super) const MAX_RETRY_WAIT: Duration = Duration::from_secs(3600);
/// Room kept for headers below the server's `max_payload`.
pub(super) const HEADER_ROOM: usize = 8 << 10;
/// Longest error text kept in a dead letter's header.
pub(super) const MAX_ERROR_HEADER: usize = 4 << 10;

pub(super) fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// A header's time stamp; one past what the platform's clock can hold
/// (a foreign message) is read as the far future, never a panic.
pub(super) fn from_unix_ms(ms: u64) -> SystemTime {
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(253_402_300_799);
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_millis(ms))
        .map_or(far, |t| t.min(far))
}

/// Creates the three streams (or checks they exist).
pub(super) async fn open_streams(js: &jetstream::Context) -> anyhow::Result<()> {
    let day = Duration::from_secs(24 * 3600);
    const GIB: i64 = 1 << 30;
    for (name, subjects, retention, max_age, max_bytes) in [
        (
            EVENTS_STREAM,
            "fnhost.events.>",
            stream::RetentionPolicy::WorkQueue,
            Duration::ZERO,
            -1,
        ),
        // Results: a day, at most 1 GiB (oldest dropped first).
        (
            RESULTS_STREAM,
            "fnhost.results.>",
            stream::RetentionPolicy::Limits,
            day,
            GIB,
        ),
        // Dead letters: 14 days (SQS's longest retention), at most 1 GiB.
        (
            DEAD_LETTER_STREAM,
            "fnhost.dlq.>",
            stream::RetentionPolicy::Limits,
            14 * day,
            GIB,
        ),
    ] {
        js.get_or_create_stream(stream::Config {
            name: name.into(),
            subjects: vec![subjects.into()],
            retention,
            max_age,
            max_bytes,
            storage: stream::StorageType::File,
            duplicate_window: DUPLICATE_WINDOW,
            ..Default::default()
        })
        .await?;
    }
    Ok(())
}

/// A fresh event id: 128 bits shown as a UUID, unique across nodes and
/// restarts (node name, time and a counter, hashed).
pub(super) fn new_id(node: &str) -> String {
    crate::ids::fresh(node)
}

/// The headers every event message and outcome starts with: the
/// deduplication id, the event id and the target.
pub(super) fn event_headers(msg_id: &str, id: &str, target: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("Nats-Msg-Id", msg_id);
    h.insert(EVENT_ID, id);
    h.insert(TARGET, target);
    h
}

/// The function part of a target (`name`, `name:version`, `name:alias`).
pub(crate) fn function_of(target: &str) -> &str {
    fnhost::FunctionRef::parse(target).name
}

pub(super) fn header<'a>(h: Option<&'a HeaderMap>, name: &str) -> Option<&'a str> {
    h?.get(name).map(|v| v.as_str())
}
