//! Retry policy, destinations, dead letters and counters: the event
//! system's public vocabulary.

use super::*;

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
    pub(super) max_retries: u32,
    pub(super) max_event_age: Duration,
    pub(super) retry_delay: Duration,
    pub(super) on_success: Option<Destination>,
    pub(super) on_failure: Destination,
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
pub(super) const MAX_WAIT_BACKOFF: Duration = Duration::from_secs(300);

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

    pub(super) fn validate(&self) -> Result<()> {
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
    pub(super) fn expiry(&self, accepted_ms: u64) -> u64 {
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

    /// The on-success destination, if any.
    pub fn success_destination(&self) -> Option<&Destination> {
        self.on_success.as_ref()
    }

    /// The on-failure destination.
    pub fn failure_destination(&self) -> &Destination {
        &self.on_failure
    }

    /// The delay before the retry that follows failed attempt `attempts`
    /// (1 for the first): the retry delay, doubled for each later retry.
    pub fn retry_after(&self, attempts: u32) -> Duration {
        self.retry_delay * 2u32.saturating_pow(attempts.saturating_sub(1).min(16))
    }

    pub(super) fn wait_after(&self, waits: u32) -> Duration {
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
