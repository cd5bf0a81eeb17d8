//! Running one admitted invocation: an instance (warm from the pool or
//! fresh), the call, the report, the counters. [`Core::execute`] is the
//! invoke path's unwind boundary.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::Core;
use super::maintenance::Maint;
use crate::error::Error;
use crate::fault;
use crate::function::Function;
use crate::function::pool::WarmPool;
use crate::guest::{self, Call, EventCtx, Input};
use crate::invocation::Invocation;
use crate::limits::Permit;
use crate::logs::Logs;
use crate::report::{Report, RequestId};

thread_local! {
    /// `$LATEST`, shared rather than allocated per report.
    static LATEST_LABEL: Arc<str> = Arc::from(crate::target::LATEST);
}

/// Settles `in_flight` when an invocation ends, however it ends (also
/// when a panic unwinds through [`Core::execute`]).
struct InFlight<'a>(&'a Core);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let core = self.0;
        if core.in_flight.fetch_sub(1, Ordering::Relaxed) == 1
            && core.shutting_down.load(Ordering::Relaxed)
        {
            let _g = core.drained.0.lock();
            core.drained.1.notify_all();
        }
    }
}

/// The function's running-invocations gauge, left however the invocation
/// ends.
struct Running<'a>(&'a Function);

impl<'a> Running<'a> {
    fn enter(f: &'a Function) -> Running<'a> {
        f.metrics.enter();
        Running(f)
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.metrics.leave();
    }
}

/// A live instance taken for an invocation: uncounted from its pool when
/// dropped, unless [`kept`](LiveInstance::kept) (put back for reuse).
struct LiveInstance<'a>(&'a WarmPool);

impl LiveInstance<'_> {
    fn kept(self) {
        std::mem::forget(self);
    }
}

impl Drop for LiveInstance<'_> {
    fn drop(&mut self) {
        self.0.forget_one();
    }
}

impl Core {
    /// Runs one admitted invocation on the calling thread.
    ///
    /// This is the invoke path's unwind boundary (HOSTILE 30): whatever
    /// panics below it costs this invocation alone. Its caller gets an
    /// [`Error::Internal`] outcome (counted like any failure), the slot is
    /// released, `in_flight` settles, and the thread (a worker, the
    /// caller's, an event poller) goes on.
    pub(crate) fn execute(
        &self,
        f: &Arc<Function>,
        version: Option<u32>,
        payload: &[u8],
        permit: Permit,
        event: Option<EventCtx>,
    ) -> Invocation {
        self.execute_input(f, version, Input::Bytes(payload), permit, event)
    }

    /// [`execute`](Core::execute) with any [`Input`]: a payload, or an
    /// HTTP request for an HTTP component.
    pub(crate) fn execute_input(
        &self,
        f: &Arc<Function>,
        version: Option<u32>,
        input: Input<'_>,
        permit: Permit,
        event: Option<EventCtx>,
    ) -> Invocation {
        let _permit = permit;
        let n = self.in_flight.fetch_add(1, Ordering::Relaxed) + 1;
        self.max_in_flight.fetch_max(n, Ordering::Relaxed);
        let _settle = InFlight(self);
        let request_id = self.next_request_id();
        let start = SystemTime::now();
        fault::catch("an invocation", || {
            self.run(f, version, input, event, request_id, start)
        })
        .unwrap_or_else(|message| self.internal_failure(f, version, request_id, start, message))
    }

    /// The outcome of an invocation that a host panic cut short (`run`
    /// counts nothing before its last step, so this is the only count).
    fn internal_failure(
        &self,
        f: &Function,
        version: Option<u32>,
        request_id: RequestId,
        start: SystemTime,
        message: String,
    ) -> Invocation {
        tracing::error!(target: "fnhost::runtime", function = %f.spec.name,
            request_id = %request_id, "invocation ended by a host panic");
        let e = Error::Internal { message };
        let report = Report {
            request_id,
            function: f.spec.name.clone(),
            version: self.version_label(f, version),
            start,
            duration: start.elapsed().unwrap_or_default(),
            init_duration: None,
            memory_limit: f.spec.memory_limit,
            max_memory_used: 0,
            error: Some(e.kind()),
            fuel_used: None,
        };
        if self.settings.metrics {
            self.account(f, &report);
        }
        Invocation {
            outcome: Err(e),
            logs: Logs::default(),
            report,
        }
    }

    fn version_label(&self, f: &Function, version: Option<u32>) -> Arc<str> {
        match version {
            Some(_) => f.version_label.clone(),
            None => LATEST_LABEL.with(Arc::clone),
        }
    }

    /// One invocation, start to report (what [`execute`](Core::execute)
    /// guards).
    fn run(
        &self,
        f: &Arc<Function>,
        version: Option<u32>,
        input: Input<'_>,
        event: Option<EventCtx>,
        request_id: RequestId,
        start: SystemTime,
    ) -> Invocation {
        let counting = self.settings.metrics;
        let _running = counting.then(|| Running::enter(f));
        let span =
            tracing::debug_span!("invoke", function = %f.spec.name, request_id = %request_id);
        let _enter = span.enter();
        let t0 = Instant::now();
        let mut call = Call::new(&f.spec, request_id, t0);
        call.version = version.map(|_| f.version_label.clone());
        call.event = event;
        let tick = self.settings.epoch_tick;
        // From the moment an instance is live for this invocation until it
        // is put back or ended, `LiveInstance` holds its count: a panic in
        // between still uncounts it.
        let (warm, cold) = match f.pool.take(&self.idle_budget) {
            Some(mut inst) => {
                let live = LiveInstance(&f.pool);
                inst.begin(call, tick);
                if f.policy.reuse.is_none() && f.policy.provisioned > 0 {
                    // The prepared instance is used up: refill off this path.
                    let _ = self.maint.0.try_send(Maint::Refill(f.clone()));
                }
                (Ok((inst, live)), false)
            }
            None => {
                let span = tracing::debug_span!("instantiate");
                let _e = span.enter();
                let started = guest::start(&f.linked, &f.spec, call, tick).map(|inst| {
                    f.pool.created();
                    (inst, LiveInstance(&f.pool))
                });
                (started, true)
            }
        };
        let (outcome, call, init, duration, peak, fuel_used) = match warm {
            Ok((mut inst, live)) => {
                fault::hit(fault::Point::Execute, &f.spec.name);
                let t1 = Instant::now();
                if cold {
                    inst.init_duration = t1 - t0;
                }
                let outcome = inst.invoke(input);
                let t2 = Instant::now();
                let duration = t2 - t1;
                let peak = inst.peak_memory();
                let fuel_used = inst.fuel_used();
                let init = cold.then_some(inst.init_duration);
                let keep = f
                    .policy
                    .reuse
                    .is_some_and(|r| !inst.poisoned && inst.uses < r.max_uses)
                    && !self.is_shutting_down();
                let call = if keep {
                    inst.last_used = t2;
                    let call = inst.take_call();
                    live.kept();
                    f.pool.put(inst, &self.idle_budget);
                    call
                } else {
                    drop(live);
                    inst.into_call()
                };
                (outcome, call, init, duration, peak, fuel_used)
            }
            Err((e, store)) => {
                let fuel_used = guest::fuel_used(&store);
                let st = store.into_data();
                let peak = st.limiter.peak as u64;
                (
                    Err(e),
                    st.into_call(),
                    Some(t0.elapsed()),
                    Duration::ZERO,
                    peak,
                    fuel_used,
                )
            }
        };
        let report = Report {
            request_id,
            function: f.spec.name.clone(),
            version: self.version_label(f, version),
            start,
            duration,
            init_duration: init,
            memory_limit: f.spec.memory_limit,
            max_memory_used: peak,
            error: outcome.as_ref().err().map(Error::kind),
            fuel_used,
        };
        if call.host_calls > 0 {
            let m = &f.metrics;
            m.host_calls
                .fetch_add(call.host_calls.into(), Ordering::Relaxed);
            m.host_calls_denied
                .fetch_add(call.host_calls_denied.into(), Ordering::Relaxed);
        }
        let logs = call.logs.finish();
        if let Some(sink) = &self.settings.log_sink {
            // The embedder's code: a panic in it costs these log lines, not
            // the invocation's outcome.
            let _ = fault::catch("the log sink", || sink.record(&report, &logs));
        }
        // Last, so that a panic anywhere above is counted once, as Internal.
        if counting {
            self.account(f, &report);
        }
        Invocation {
            outcome: outcome.map(Bytes::from),
            logs,
            report,
        }
    }

    fn account(&self, f: &Function, r: &Report) {
        let m = &f.metrics;
        match r.error {
            None => m.succeeded.fetch_add(1, Ordering::Relaxed),
            Some(kind) => {
                m.error(kind);
                m.failed.fetch_add(1, Ordering::Relaxed)
            }
        };
        if r.is_cold() {
            m.cold_starts.fetch_add(1, Ordering::Relaxed);
        }
        m.duration.record(r.duration);
        let billed = r.billed_ms();
        m.billed_ms.fetch_add(billed, Ordering::Relaxed);
        m.mib_ms
            .fetch_add((r.memory_limit >> 20) * billed, Ordering::Relaxed);
    }
}
