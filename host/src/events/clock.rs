//! Wall-clock time for events and triggers, replaceable by a clock tests
//! control ([`ManualClock`]).
//!
//! Only the event machinery reads this clock (schedules, retry backoff,
//! event age, queue visibility). Invocation deadlines always use the real
//! monotonic clock.

use std::fmt;
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use parking_lot::Mutex;

/// A source of wall-clock time.
pub trait Clock: Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> SystemTime;

    /// How long, in real time, a waiter for `until` may sleep before it
    /// looks again; `None`: only a [`Clock::on_change`] wake-up can bring
    /// `until` closer (a manual clock).
    fn sleep_hint(&self, until: SystemTime) -> Option<Duration>;

    /// Registers `wake`, called whenever the time is changed by hand. The
    /// system clock never calls it.
    fn on_change(&self, wake: Weak<dyn Wake>);
}

/// Something a [`Clock`] wakes when its time changes.
pub trait Wake: Send + Sync {
    /// The clock's time changed.
    fn wake(&self);
}

/// The operating system's clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    fn sleep_hint(&self, until: SystemTime) -> Option<Duration> {
        Some(until.duration_since(SystemTime::now()).unwrap_or_default())
    }

    fn on_change(&self, _wake: Weak<dyn Wake>) {}
}

/// A clock that moves only when told to: schedules fire, retries come due
/// and events age exactly as a test says.
///
/// ```
/// use std::time::{Duration, SystemTime};
/// use fnhost::events::{Clock, ManualClock};
///
/// let clock = ManualClock::new(SystemTime::UNIX_EPOCH);
/// clock.advance(Duration::from_secs(300));
/// assert_eq!(clock.now(), SystemTime::UNIX_EPOCH + Duration::from_secs(300));
/// ```
pub struct ManualClock {
    now: Mutex<SystemTime>,
    watchers: Mutex<Vec<Weak<dyn Wake>>>,
}

impl fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ManualClock")
            .field("now", &*self.now.lock())
            .finish()
    }
}

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: SystemTime) -> Arc<ManualClock> {
        Arc::new(ManualClock {
            now: Mutex::new(start),
            watchers: Mutex::new(Vec::new()),
        })
    }

    /// Moves the clock forward by `by` and wakes every waiter.
    pub fn advance(&self, by: Duration) {
        let t = *self.now.lock() + by;
        self.set(t);
    }

    /// Sets the clock to `t` (which may be earlier) and wakes every waiter.
    pub fn set(&self, t: SystemTime) {
        *self.now.lock() = t;
        let live: Vec<Arc<dyn Wake>> = {
            let mut w = self.watchers.lock();
            w.retain(|w| w.strong_count() > 0);
            w.iter().filter_map(Weak::upgrade).collect()
        };
        for w in live {
            w.wake();
        }
    }
}

impl Clock for ManualClock {
    fn now(&self) -> SystemTime {
        *self.now.lock()
    }

    fn sleep_hint(&self, _until: SystemTime) -> Option<Duration> {
        None
    }

    fn on_change(&self, wake: Weak<dyn Wake>) {
        self.watchers.lock().push(wake);
    }
}

/// Milliseconds since the Unix epoch (0 before it).
pub(crate) fn ms(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The time `ms` milliseconds after the Unix epoch.
pub(crate) fn from_ms(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(ms)
}

/// RFC 3339 with milliseconds, UTC (`2026-11-27T21:00:00.000Z`), as AWS
/// event payloads write times.
pub(crate) fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
