//! The data a guest's store carries: quotas and what the guest used
//! ([`Limiter`]), the invocation's context ([`Call`]), the WASI state, and
//! the two accessors host functions use to reach guest memory.

use std::sync::Arc;
use std::time::Instant;

use wasmtime::{Caller, Memory, ResourceLimiter};

use super::component::P2;
use super::spec::Spec;
use super::wasi::{View, Wasi, WasiView, memory_of};
use crate::error::Error;
use crate::logs::LogBuffer;
use crate::report::RequestId;

/// Most table elements an instance may grow to.
const MAX_TABLE_ELEMENTS: usize = 100_000;

/// Memory and table quotas, and what the guest actually used. The limit
/// covers all of an instance's memories together (a component has
/// several).
pub(crate) struct Limiter {
    pub memory_limit: usize,
    /// Linear memory of all memories now, in bytes.
    pub used: usize,
    /// Peak of `used`.
    pub peak: usize,
    /// A grow was refused because of the limit.
    pub hit: bool,
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // A new memory is announced as a grow from 0.
        let total = self.used - current.min(self.used) + desired;
        if total > self.memory_limit {
            self.hit = true;
            return Ok(false);
        }
        self.used = total;
        self.peak = self.peak.max(total);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Per-invocation context: what the guest can ask about, and what it set.
pub(crate) struct Call {
    pub request_id: RequestId,
    pub started: Instant,
    pub deadline: Instant,
    pub output: Option<Vec<u8>>,
    pub error: Option<(String, String)>,
    /// An error the host raised while the guest was running (ABI
    /// violation, output too large, deadline hit during a host call...).
    pub fault: Option<Error>,
    pub logs: LogBuffer,
    /// The version invoked (`None`: `$LATEST`).
    pub version: Option<Arc<str>>,
    /// Set when this is an event invocation or carries a client context.
    pub event: Option<EventCtx>,
    /// Host calls made, and how many were refused (not granted, over a
    /// limit).
    pub host_calls: u32,
    pub host_calls_denied: u32,
    /// The last host call's response (or error), for `host_result`.
    pub host_result: Vec<u8>,
}

/// What an invocation tells the guest beyond the common context: its
/// event (event invocations) and the caller's client context.
#[derive(Debug, Clone)]
pub(crate) struct EventCtx {
    /// For an event invocation: the event's stable id (the same on every
    /// attempt) and the attempt (1 on the first).
    pub event: Option<(Arc<str>, u32)>,
    /// Lambda's client context (JSON text), if the caller sent one.
    pub client_context: Option<Arc<str>>,
}

impl EventCtx {
    /// An event invocation's context.
    pub(crate) fn of_event(id: &str, attempt: u32) -> EventCtx {
        EventCtx {
            event: Some((Arc::from(id), attempt)),
            client_context: None,
        }
    }

    /// The event's id and attempt, for an event invocation.
    pub(crate) fn event(&self) -> Option<(&str, u32)> {
        self.event.as_ref().map(|(id, attempt)| (&**id, *attempt))
    }
}

impl Call {
    pub(crate) fn new(spec: &Spec, request_id: RequestId, started: Instant) -> Call {
        Call {
            request_id,
            started,
            deadline: started + spec.timeout,
            output: None,
            error: None,
            fault: None,
            logs: LogBuffer::new(spec.max_log_bytes),
            version: None,
            event: None,
            host_calls: 0,
            host_calls_denied: 0,
            host_result: Vec::new(),
        }
    }
}

/// The data a store carries.
pub(crate) struct State {
    pub spec: Arc<Spec>,
    pub limiter: Limiter,
    pub memory: Option<Memory>,
    pub call: Call,
    pub wasi: Wasi,
    /// WASI 0.2 state, for a component instance.
    pub p2: Option<Box<P2>>,
}

impl State {
    /// Records a host-raised error and returns the wasmtime error that
    /// unwinds the guest.
    pub(crate) fn fault(&mut self, e: Error) -> wasmtime::Error {
        let msg = e.to_string();
        self.call.fault.get_or_insert(e);
        wasmtime::Error::msg(msg)
    }
}

impl State {
    /// Ends the store's life as an invocation's: its context, with every
    /// log line the guest wrote (a component's go through WASI 0.2 pipes).
    pub(crate) fn into_call(mut self) -> Call {
        self.settle();
        self.call
    }

    /// The component's WASI 0.2 state, made on first use (keyed by the
    /// request id the instance started with).
    pub(crate) fn p2(&mut self) -> &mut P2 {
        let (spec, nonce) = (&self.spec, self.call.request_id.0);
        self.p2
            .get_or_insert_with(|| Box::new(P2::new(spec, nonce)))
    }

    /// Settles what a component's WASI 0.2 side kept for the invocation:
    /// the HTTP requests it counted, and what it wrote to stdout/stderr
    /// (into the invocation's logs).
    pub(crate) fn settle(&mut self) {
        self.sync_http();
        if let Some(p2) = &self.p2 {
            self.call.logs = p2.take_logs(self.spec.max_log_bytes);
        }
    }
}

impl wasmtime_wasi::WasiView for State {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        let (spec, nonce) = (&self.spec, self.call.request_id.0);
        let p2 = self
            .p2
            .get_or_insert_with(|| Box::new(P2::new(spec, nonce)));
        wasmtime_wasi::WasiCtxView {
            ctx: &mut p2.ctx,
            table: &mut p2.table,
        }
    }
}

impl WasiView for State {
    fn wasi_view(&mut self) -> View<'_> {
        View {
            wasi: &mut self.wasi,
            logs: &mut self.call.logs,
            program: &self.spec.name,
            env: &self.spec.env,
            tmp_quota: self.spec.tmp_quota,
            timeout: self.spec.timeout,
            started: self.call.started,
            deadline: self.call.deadline,
            secret: &self.spec.secret,
            nonce: self.call.request_id.0,
        }
    }

    fn memory(&self) -> Option<Memory> {
        self.memory
    }

    fn fault(&mut self, e: Error) -> wasmtime::Error {
        State::fault(self, e)
    }
}

/// The guest's memory and the store state, as disjoint borrows, for a
/// host function that must not run without them (`what` names it in the
/// ABI violation otherwise).
pub(crate) fn memory_and_state<'a>(
    caller: &'a mut Caller<'_, State>,
    what: &str,
) -> wasmtime::Result<(&'a mut [u8], &'a mut State)> {
    match memory_of(caller) {
        Some(m) => Ok(m.data_and_store_mut(caller)),
        None => Err(caller.data_mut().fault(Error::abi(format!(
            "{what} called before the guest's memory exists"
        )))),
    }
}
