//! The [`Host`]: a thin facade. Each method delegates to the layer that
//! owns its concern: [`invoke`](Host::invoke) and friends to the runtime,
//! registration and the table to deployment (`register.rs`), counters to
//! the function layer (`observe.rs`), events to `events/`.

mod builder;
mod observe;
mod register;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use builder::HostBuilder;

use crate::deploy::Deployer;
use crate::engine::Ticker;
use crate::error::Result;
use crate::events::Events;
use crate::guest::EventCtx;
use crate::invocation::Invocation;
use crate::runtime::{Batch, Core, InvokeFuture, Job, Reply, ShutdownReport, Threads};

/// Runs registered functions, each invocation in its own sandbox.
///
/// Cloning a `Host` is cheap and shares everything.
#[derive(Clone)]
pub struct Host {
    inner: Arc<Inner>,
}

// Field order is drop order: the ticker stops first, then the workers
// and maintenance thread (graceful shutdown), then the shared core.
struct Inner {
    _ticker: Ticker,
    events: Events,
    _threads: Threads,
    deploy: Deployer,
    core: Arc<Core>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Sources and the dispatcher stop before the workers do; the
        // dispatcher records what finished.
        self.events.begin_stop();
        self.core.shutdown(Duration::from_secs(30));
        self.events.finish_stop();
    }
}

/// Registry counters (see [`Host::stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HostStats {
    /// Modules compiled by this host (0 when every register hit the cache).
    pub compiles: u64,
    /// Registers served from the artifact cache.
    pub cache_hits: u64,
    /// Cache entries found corrupt or stale, removed and recompiled.
    pub cache_rejected: u64,
    /// Snapshots made at register time (the guest's init ran).
    pub snapshots_created: u64,
    /// Snapshots loaded from the cache (init did not run).
    pub snapshots_reused: u64,
}

impl Host {
    /// A builder with default settings.
    pub fn builder() -> HostBuilder {
        HostBuilder::default()
    }

    /// Invokes `name` with `payload` on the calling thread, after the same
    /// admission control as every path (concurrency limits, payload cap).
    ///
    /// `Err` means no guest code ran (unknown function, payload too large,
    /// throttled, shutting down); otherwise the [`Invocation`] carries the
    /// outcome, logs and report.
    pub fn invoke(&self, name: &str, payload: &[u8]) -> Result<Invocation> {
        let (f, version) = self.inner.core.registry.resolve(name)?;
        let permit = self.inner.core.admit(&f, payload.len())?;
        Ok(self.inner.core.execute(&f, version, payload, permit, None))
    }

    /// Sends `request` to the HTTP component `name` (a `wasi:http/proxy`
    /// component, exporting `wasi:http/incoming-handler`) on the calling
    /// thread, after the same admission control as [`invoke`](Host::invoke)
    /// (the request's `content-length`, when it has one, against
    /// `max_input`; a longer body ends with `HttpRequestBodySize` at that
    /// many bytes).
    ///
    /// `respond` gets the response as soon as the guest sets it; its body
    /// streams while this call runs, so read it from another thread or
    /// task (the guest waits for a reader once two writes are buffered,
    /// never past its deadline). The call returns when the handler does:
    /// the [`Invocation`]'s outcome is an empty `Ok` or the typed error
    /// (`Timeout` covers the whole exchange; a body over `max_output` is
    /// `OutputTooLarge`), with its logs and report.
    ///
    /// `Err` means no guest code ran, as for `invoke`; a function that is
    /// not an HTTP component is `BadExport` naming the missing export.
    pub fn invoke_http<B>(
        &self,
        name: &str,
        request: http::Request<B>,
        respond: crate::exchange::Respond,
    ) -> Result<Invocation>
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: std::fmt::Display,
    {
        let (f, version) = self.inner.core.registry.resolve(name)?;
        if !f.linked.is_http() {
            return Err(crate::guest::component::not_http());
        }
        let declared = crate::exchange::declared_len(request.headers());
        let permit = self.inner.core.admit(&f, declared)?;
        let exchange = crate::exchange::Exchange::new(request, f.policy.max_input, respond);
        let input = crate::guest::Input::Http(Box::new(exchange));
        Ok(self
            .inner
            .core
            .execute_input(&f, version, input, permit, None))
    }

    /// Whether `name` (`function[:qualifier]`) is an HTTP component (a
    /// `wasi:http/proxy` component, served with
    /// [`invoke_http`](Host::invoke_http)): a lookup, cheaper than
    /// [`function_info`](Host::function_info) for a server deciding how to
    /// serve each request. `false` when nothing has that name.
    pub fn is_http_component(&self, name: &str) -> bool {
        self.inner
            .core
            .registry
            .resolve_primary(name)
            .is_ok_and(|f| f.linked.is_http())
    }

    /// [`invoke_http`](Host::invoke_http)'s admission alone, for an async
    /// caller: the future gets a concurrency slot (waiting up to the
    /// function's `max_wait` without blocking a thread) or the refusal
    /// (throttled, too large, not an HTTP component, …); the
    /// [`HttpTicket`](crate::HttpTicket) then runs the exchange on the
    /// thread that calls [`invoke`](crate::HttpTicket::invoke), typically a
    /// blocking one. A server thus answers 429 at once instead of queueing
    /// work behind busy threads.
    pub fn admit_http(&self, name: &str, headers: &http::HeaderMap) -> crate::HttpAdmission {
        let core = &self.inner.core;
        let resolved = core.registry.resolve(name).and_then(|(f, v)| {
            if f.linked.is_http() {
                Ok((f, v))
            } else {
                Err(crate::guest::component::not_http())
            }
        });
        core.admit_http(resolved, crate::exchange::declared_len(headers))
    }

    /// Invokes `name` on the host's worker pool through the lock-free
    /// queue. The future works on any executor; admission happens when it
    /// is first polled, and waiting for a slot (up to the function's
    /// `max_wait`) never blocks the executor.
    pub fn invoke_async(&self, name: &str, payload: impl Into<Bytes>) -> InvokeFuture {
        self.inner.core.future(name, payload.into(), None)
    }

    /// [`invoke_async`](Host::invoke_async) for an event that a queue
    /// outside this host delivers (a cluster's shared event stream): the
    /// guest sees `event_id` and `attempt` (1 on the first) in its context,
    /// as it does for the host's own event invocations. Retries, ages and
    /// dead letters are the caller's.
    pub fn invoke_event_async(
        &self,
        name: &str,
        payload: impl Into<Bytes>,
        event_id: &str,
        attempt: u32,
    ) -> InvokeFuture {
        let ctx = EventCtx::of_event(event_id, attempt);
        self.inner.core.future(name, payload.into(), Some(ctx))
    }

    /// [`invoke_async`](Host::invoke_async) with Lambda's client context:
    /// `client_context` (JSON text, as an AWS SDK sends it base64-encoded
    /// in `X-Amz-Client-Context`) is what the guest reads as its context's
    /// client context (docs/abi.md).
    pub fn invoke_async_with_client_context(
        &self,
        name: &str,
        payload: impl Into<Bytes>,
        client_context: &str,
    ) -> InvokeFuture {
        let ctx = EventCtx {
            event: None,
            client_context: Some(Arc::from(client_context)),
        };
        self.inner.core.future(name, payload.into(), Some(ctx))
    }

    /// Invokes `name` once per payload on the worker pool and blocks until
    /// all are done: the queue path with many invocations in flight and a
    /// single wake-up of the caller. Each payload passes admission on its
    /// own; one that is refused (throttled, too large, shutting down) gets
    /// its error in its slot. Results are in payload order.
    pub fn invoke_batch(
        &self,
        name: &str,
        payloads: Vec<Bytes>,
    ) -> Result<Vec<Result<Invocation>>> {
        let core = &self.inner.core;
        let (f, version) = core.registry.resolve(name)?;
        let batch = Batch::new(payloads.len());
        for (i, payload) in payloads.into_iter().enumerate() {
            match core.admit(&f, payload.len()) {
                Ok(permit) => core.enqueue(Job {
                    function: f.clone(),
                    version,
                    payload,
                    permit,
                    event: None,
                    reply: Reply::Batch(batch.clone(), i),
                }),
                Err(e) => batch.fill(i, Err(e)),
            }
        }
        Ok(batch.wait())
    }

    /// Graceful shutdown: stop admitting (new invocations get
    /// [`Error::ShuttingDown`]), answer every queued invocation with
    /// `ShuttingDown`, and wait up to `grace` for running ones to finish.
    /// Dropping the last `Host` handle does the same with 30 s of grace.
    pub fn shutdown(&self, grace: Duration) -> ShutdownReport {
        self.inner.events.begin_stop();
        let report = self.inner.core.shutdown(grace);
        self.inner.events.finish_stop();
        report
    }

    /// The event system: event invocations, retries, dead letters,
    /// queues, topics, schedules and file triggers (see [`events`](crate::events)).
    pub fn events(&self) -> &Events {
        &self.inner.events
    }
}
