//! Triggers: the [`EventSource`] trait, what a source runs with, and the
//! signal that wakes every waiter of the event system.

use super::*;

/// Identifies an event source added with [`Events::add_source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub(super) u64);

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
    pub(super) events: Events,
    pub(super) stop: Arc<AtomicBool>,
    pub(super) name: String,
    pub(super) added: SystemTime,
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
    pub(super) fn wait_change(&self, seen: u64, until: Option<SystemTime>) {
        let sh = &self.events.sh;
        sh.signal.wait(&*sh.clock, seen, until, Some(&self.stop));
    }
}

/// Wakes every waiter of the event system: the dispatcher, sources and
/// [`Events::wait_idle`] callers. A generation count makes a wake-up
/// between "look" and "wait" impossible to miss.
pub(crate) struct Signal {
    pub(super) generation: Mutex<u64>,
    pub(super) cv: Condvar,
}

impl Signal {
    pub(super) fn current(&self) -> u64 {
        *self.generation.lock()
    }

    pub(super) fn bump(&self) {
        *self.generation.lock() += 1;
        self.cv.notify_all();
    }

    /// Waits until the generation moves past `seen`, `until` comes on
    /// `clock`, or `stop` is set.
    pub(super) fn wait(
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
pub(super) type Running = (SourceId, Arc<AtomicBool>, JoinHandle<()>);
