//! HTTP components: a component of the `wasi:http/proxy` world (it
//! exports `wasi:http/incoming-handler`), as Spin, wasmCloud and
//! `wasmtime serve` run them. One invocation is one request: it is handed
//! to `incoming-handler.handle` with a response-outparam whose response
//! reaches the embedder as soon as the guest sets it, its body streaming
//! while the guest writes (at most two 16 KiB writes buffered: a slow
//! reader holds the guest back, and never past the deadline).
//!
//! All of an instance's response bodies share the function's
//! `max_output`: the write that would cross it fails, the client's stream
//! ends with an error, and the invocation is `OutputTooLarge`. A response
//! body ends cleanly for the client only when the guest finished it
//! (`outgoing-body.finish`) with no write refused: at that moment, not
//! when the handler returns. A body taken and never finished (a trap, the
//! deadline, a handler that returned without finishing) ends with an
//! error, and the invocation is `IncompleteResponse` (or the failure that
//! cut it); the request body stops at `max_input` and at the deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame};

use http_body_util::BodyExt as _;
use wasmtime::Store;
use wasmtime::StoreContextMut;
use wasmtime::component::types::ComponentItem;
use wasmtime::component::{Component, ComponentExportIndex, Resource, TypedFunc};
use wasmtime_wasi_http::WasiHttpView as _;
use wasmtime_wasi_http::p2::bindings::http::types::{
    ErrorCode, HostOutgoingBody as _, HostOutgoingResponse as _, Scheme, Trailers,
};
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::p2::types::{
    HostIncomingRequest, HostOutgoingResponse, HostResponseOutparam,
};

use super::super::instance::Failure;
use super::super::state::State;
use crate::error::Error;
use crate::exchange::{Exchange, HttpBodyError};

/// The handler's type: `handle: func(request: incoming-request,
/// response-out: response-outparam)`.
pub(crate) type Handle = TypedFunc<
    (
        Resource<HostIncomingRequest>,
        Resource<HostResponseOutparam>,
    ),
    (),
>;

/// Where a component's HTTP handler is: its `handle` in the
/// `wasi:http/incoming-handler@0.2.x` it exports (any 0.2 release:
/// componentize-js's engine exports 0.2.10), checked for its shape.
pub(crate) fn indices(component: &Component) -> Result<ComponentExportIndex, String> {
    let engine = component.engine();
    let ty = component.component_type();
    let (name, item) = ty
        .exports(engine)
        .find(|(n, _)| n.starts_with(INCOMING_HANDLER))
        .ok_or_else(|| format!("no export `{INCOMING_HANDLER}*`"))?;
    let ComponentItem::ComponentInstance(instance) = item.ty else {
        return Err(format!("`{name}` is not an instance"));
    };
    let ok = matches!(instance.get_export(engine, "handle").map(|e| e.ty),
        Some(ComponentItem::ComponentFunc(f)) if f.params().len() == 2 && f.results().len() == 0);
    if !ok {
        return Err(format!(
            "`{name}` must export `handle: func(request: incoming-request, \
             response-out: response-outparam)`"
        ));
    }
    let at = component
        .get_export_index(None, name)
        .and_then(|i| component.get_export_index(Some(&i), "handle"))
        .ok_or_else(|| format!("`{name}` has no `handle`"))?;
    Ok(at)
}

/// The exported interface an HTTP component serves through.
const INCOMING_HANDLER: &str = "wasi:http/incoming-handler@0.2.";

/// The handler of a live instance (type-checked against fnhost's
/// `wasi:http` resources).
pub(crate) fn load(
    store: &mut Store<State>,
    instance: &wasmtime::component::Instance,
    at: &ComponentExportIndex,
) -> wasmtime::Result<Handle> {
    let func = instance
        .get_func(&mut *store, at)
        .ok_or_else(|| wasmtime::format_err!("the HTTP handler export vanished"))?;
    func.typed(&*store)
}

/// What an instance's response bodies may hold together: its function's
/// `max_output`, charged by every write to any of them (a guest may make
/// several responses; only one reaches the client, none escapes the cap).
pub(crate) struct Budget {
    left: AtomicU64,
    max: u64,
    /// The total the guest tried to write when it crossed the cap (0: no).
    over: AtomicU64,
}

impl Budget {
    /// Takes `n` bytes, or records the overrun.
    pub(crate) fn take(&self, n: usize) -> Result<(), ErrorCode> {
        let n = n as u64;
        let taken = self
            .left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(n)
            });
        match taken {
            Ok(_) => Ok(()),
            Err(left) => {
                self.over.store(self.max - left + n, Ordering::Relaxed);
                Err(ErrorCode::HttpResponseBodySize(Some(self.max)))
            }
        }
    }
}

/// The response bodies of an instance: its budget, and the bodies not
/// finished yet (a response whose body was taken and never finished is
/// incomplete, whatever the handler returns).
pub(crate) struct Responses {
    pub budget: Arc<Budget>,
    /// `outgoing-body` resources of responses: (rep, stream taken, set
    /// when the guest finishes it).
    open: Vec<(u32, bool, Arc<AtomicBool>)>,
}

impl Responses {
    pub(crate) fn new(max_output: usize) -> Responses {
        let max = max_output as u64;
        Responses {
            budget: Arc::new(Budget {
                left: AtomicU64::new(max),
                max,
                over: AtomicU64::new(0),
            }),
            open: Vec::new(),
        }
    }

    /// The cap for the stream of body `rep`, when it is a response's
    /// (each body's stream is taken once).
    pub(crate) fn stream_of(&mut self, rep: u32) -> Option<Arc<Budget>> {
        let entry = self
            .open
            .iter_mut()
            .find(|(r, taken, _)| *r == rep && !*taken)?;
        entry.1 = true;
        Some(self.budget.clone())
    }

    /// Marks body `rep` as finished (`true`, ahead of the end its reader
    /// sees) or not (`false`: its finish failed).
    fn mark(&self, rep: u32, finished: bool) {
        if let Some((_, _, done)) = self.open.iter().find(|(r, _, _)| *r == rep) {
            done.store(finished, Ordering::Release);
        }
    }

    fn finished(&mut self, rep: u32) {
        self.open.retain(|(r, _, _)| *r != rep);
    }

    /// Whether every response body taken was finished.
    fn complete(&self) -> bool {
        self.open.is_empty()
    }
}

/// Most response bodies an instance may take and leave unfinished.
const MAX_OPEN_BODIES: usize = 4096;

/// `outgoing-response.body`: wasmtime-wasi-http's, noting the body as a
/// response's (its writes are charged to the [`Budget`]).
pub(crate) fn response_body(
    mut store: StoreContextMut<'_, State>,
    (resp,): (Resource<HostOutgoingResponse>,),
) -> wasmtime::Result<(Result<Resource<HostOutgoingBody>, ()>,)> {
    let st = store.data_mut();
    // Live resources are capped; entries of bodies dropped unfinished
    // stay, so the list is capped too (a guest making and dropping
    // responses in a loop gets an error, not host memory).
    if st.p2().responses.open.len() >= MAX_OPEN_BODIES {
        return Ok((Err(()),));
    }
    let rep = resp.rep();
    let body = st.http().body(resp)?;
    if let Ok(body) = &body {
        let done = Arc::new(AtomicBool::new(false));
        let p2 = st.p2();
        let budget = p2.responses.budget.clone();
        p2.responses.open.push((body.rep(), false, done.clone()));
        // The response's body as its reader will see it: its end tells
        // whether the guest finished it.
        let response = Resource::<HostOutgoingResponse>::new_borrow(rep);
        let out = p2.table.get_mut(&response)?;
        if let Some(inner) = out.body.take() {
            let ended = Finished {
                inner,
                done,
                budget,
            };
            out.body = Some(ended.boxed_unsync());
        }
    }
    Ok((body,))
}

/// `outgoing-body.finish`: wasmtime-wasi-http's, noting a response body
/// as complete.
pub(crate) fn finish_body(
    mut store: StoreContextMut<'_, State>,
    (body, trailers): (Resource<HostOutgoingBody>, Option<Resource<Trailers>>),
) -> wasmtime::Result<(Result<(), ErrorCode>,)> {
    let rep = body.rep();
    let st = store.data_mut();
    // Marked before the end is sent: the reader that sees the end sees
    // the mark. A finish that fails sends an error end instead.
    st.p2().responses.mark(rep, true);
    let finished = st.http().finish(body, trailers);
    let responses = &mut st.p2().responses;
    match finished {
        Ok(()) => {
            responses.finished(rep);
            Ok((Ok(()),))
        }
        Err(e) => {
            // Unmarked before a trap drops the body (its reader would see
            // a clean end otherwise).
            responses.mark(rep, false);
            Ok((Err(e.downcast()?),))
        }
    }
}

/// One request through `proxy`'s handler; the response goes to the
/// exchange's `respond` as soon as the guest sets it.
pub(crate) fn serve(
    store: &mut Store<State>,
    proxy: &Handle,
    exchange: Exchange,
) -> Result<(), Failure> {
    let Exchange {
        request,
        respond,
        max_body,
    } = exchange;
    serve_here(store, proxy, (request, max_body), respond)
}

fn serve_here(
    store: &mut Store<State>,
    proxy: &Handle,
    (request, max_body): (
        http::Request<http_body_util::combinators::UnsyncBoxBody<Bytes, ErrorCode>>,
        u64,
    ),
    respond: crate::exchange::Respond,
) -> Result<(), Failure> {
    let st = store.data_mut();
    let budget = st.p2().responses.budget.clone();
    // The request body stops at `max_input`, and at the deadline (a
    // client that stops sending must not hold the instance past it).
    let (deadline, hit) = (st.call.deadline, st.p2().deadline_hit.clone());
    let request = request.map(|body| super::http::request_body(body, max_body, deadline, hit));
    let mut view = store.data_mut().http();
    let req = view.new_incoming_request(Scheme::Http, request)?;
    let out = view.new_response_outparam_from_callback(move |resp| {
        let resp = resp
            .map(|r| {
                r.map(|body| {
                    body.map_err(|e| HttpBodyError::from_body(&e))
                        .boxed_unsync()
                })
            })
            .map_err(|e| HttpBodyError::from_code(&e));
        // The embedder may have given up on the response: nothing to do.
        let _ = respond.send(resp);
    })?;
    let called = proxy.call(&mut *store, (req, out));
    super::timed_out(store)?;
    called?;
    match budget.over.load(Ordering::Relaxed) {
        0 if store.data_mut().p2().responses.complete() => Ok(()),
        0 => Err(Error::Guest {
            kind: "IncompleteResponse".into(),
            message: "the handler returned without finishing its response body".into(),
        }
        .into()),
        size => Err(Error::OutputTooLarge {
            size,
            max: budget.max as usize,
        }
        .into()),
    }
}

/// A response body as its reader sees it: it ends cleanly only when the
/// guest finished it and no write was refused (wasmtime-wasi-http's body
/// also ends without an error when its resource is dropped unfinished: a
/// trap, the deadline, a handler that returned without finishing).
struct Finished {
    inner: wasmtime_wasi_http::p2::body::HyperOutgoingBody,
    /// Set by `outgoing-body.finish` before it sends the end.
    done: Arc<AtomicBool>,
    budget: Arc<Budget>,
}

impl Body for Finished {
    type Data = Bytes;
    type Error = wasmtime_wasi_http::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, wasmtime_wasi_http::Error>>> {
        match Pin::new(&mut self.inner).poll_frame(cx) {
            Poll::Ready(None) => {}
            other => return other,
        }
        if !self.done.load(Ordering::Acquire) {
            return Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseIncomplete)));
        }
        match self.budget.over.load(Ordering::Relaxed) {
            0 => Poll::Ready(None),
            _ => Poll::Ready(Some(Err(wasmtime_wasi_http::Error::HttpResponseBodySize(
                Some(self.budget.max),
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        false
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}
