//! Outbound `wasi:http` for components (`wasi:http/types` and
//! `outgoing-handler`, from wasmtime-wasi-http), held to the function's
//! grants and quotas:
//!
//! - a request is sent only when the function is granted the
//!   [`http`](crate::capability::http) capability and its URL is on that
//!   capability's allow-list; else `HttpRequestDenied`. Each request counts
//!   as a host call (and against `max_host_calls`), a refused one as a
//!   refused host call;
//! - it takes at most the allow-list's timeout and never past the
//!   invocation's deadline (connect, first byte, between bytes and the
//!   response body all end there), and the response body stops at the
//!   allow-list's `max_response`;
//! - what the host holds for the guest is small and bounded: headers of
//!   one `fields` at most [`FIELD_SIZE_LIMIT`], an outgoing body buffers at
//!   most two chunks of [`BODY_CHUNK`], within the instance's resource cap;
//! - a body stream blocks no longer than the deadline of the invocation
//!   that made it (a body written before its request is sent would
//!   otherwise wait for a reader forever): then it reads as closed and
//!   the invocation, if that was its deadline, ends in `Timeout`.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::p2::{
    DynOutputStream, IoError, OutputStream, Pollable, StreamError, StreamResult,
};
use wasmtime_wasi_http::p2::bindings::http::types::{ErrorCode, HostOutgoingBody as _};
use wasmtime_wasi_http::p2::body::HostOutgoingBody;
use wasmtime_wasi_http::{
    Error as HttpError, RequestOptions, WasiBody, WasiHttpCtx, WasiHttpCtxView, WasiHttpHooks,
    WasiHttpView,
};

use super::super::state::State;
use super::proxy::Budget;
use crate::capability::HttpAllow;

/// Largest in-memory size of one `fields` resource (request or response
/// headers, trailers): a proxy's usual 8 KiB of header text, with room
/// for the map it is kept in.
pub(crate) const FIELD_SIZE_LIMIT: usize = 16 << 10;

/// Largest write to an outgoing body (one of at most two buffered).
const BODY_CHUNK: usize = 16 << 10;

/// The `wasi:http/types` instance wasmtime-wasi-http defines (guests
/// importing any other 0.2.x resolve to it).
const TYPES: &str = "wasi:http/types@0.2.12";

/// The HTTP context of a new instance.
pub(crate) fn ctx() -> WasiHttpCtx {
    let mut c = WasiHttpCtx::new();
    c.set_field_size_limit(FIELD_SIZE_LIMIT);
    c
}

/// Adds `wasi:http/types` and `wasi:http/outgoing-handler`, with
/// `outgoing-body.write` shadowed by [`write_body`] and `http-error-code`
/// by [`error_code`].
pub(crate) fn add_to_linker(linker: &mut Linker<State>) -> wasmtime::Result<()> {
    wasmtime_wasi_http::p2::add_only_http_to_linker_sync(linker)?;
    linker.allow_shadowing(true);
    let mut types = linker.instance(TYPES)?;
    types.func_wrap("[method]outgoing-body.write", write_body)?;
    types.func_wrap(
        "[method]outgoing-response.body",
        super::proxy::response_body,
    )?;
    types.func_wrap("[static]outgoing-body.finish", super::proxy::finish_body)?;
    types.func_wrap("http-error-code", error_code)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// `http-error-code`: wasmtime-wasi-http's answers only for errors kept as
/// an `error-code`; a response body's stream keeps the crate's own error
/// type (fnhost's cap and deadline among them), mapped here too.
fn error_code(
    mut store: StoreContextMut<'_, State>,
    (err,): (Resource<IoError>,),
) -> wasmtime::Result<(Option<ErrorCode>,)> {
    let e = store.data_mut().p2().table.get(&err)?;
    if let Some(code) = e.downcast_ref::<ErrorCode>() {
        return Ok((Some(code.clone()),));
    }
    Ok((e.downcast_ref::<HttpError>().and_then(body_error_code),))
}

/// The `error-code` of an error a response body can end with.
fn body_error_code(e: &HttpError) -> Option<ErrorCode> {
    Some(match e {
        HttpError::HttpResponseBodySize(n) => ErrorCode::HttpResponseBodySize(*n),
        HttpError::ConnectionReadTimeout => ErrorCode::ConnectionReadTimeout,
        HttpError::ConnectionTerminated => ErrorCode::ConnectionTerminated,
        HttpError::HttpResponseIncomplete => ErrorCode::HttpResponseIncomplete,
        HttpError::HttpResponseTimeout => ErrorCode::HttpResponseTimeout,
        HttpError::HttpProtocolError => ErrorCode::HttpProtocolError,
        HttpError::HttpResponseTransferCoding(c) => {
            ErrorCode::HttpResponseTransferCoding(c.clone())
        }
        HttpError::HttpResponseContentCoding(c) => ErrorCode::HttpResponseContentCoding(c.clone()),
        HttpError::InternalError(m) => ErrorCode::InternalError(m.clone()),
        _ => return None,
    })
}

/// `outgoing-body.write`: wasmtime-wasi-http's stream, ended at the
/// deadline (see [`DeadlineStream`]).
fn write_body(
    mut store: StoreContextMut<'_, State>,
    (body,): (Resource<HostOutgoingBody>,),
) -> wasmtime::Result<(Result<Resource<DynOutputStream>, ()>,)> {
    let parent = Resource::<HostOutgoingBody>::new_borrow(body.rep());
    let st = store.data_mut();
    let deadline = st.call.deadline;
    let p2 = st.p2();
    let hit = p2.deadline_hit.clone();
    // A response's body is charged to the instance's response budget.
    let cap = p2.responses.stream_of(parent.rep());
    let mut view = st.http();
    let stream = match view.write(body)? {
        Ok(stream) => stream,
        Err(()) => return Ok((Err(()),)),
    };
    let inner = view.table.delete(stream)?;
    let wrapped: DynOutputStream = Box::new(DeadlineStream {
        inner,
        deadline,
        hit,
        cap,
    });
    Ok((Ok(view.table.push_child(wrapped, &parent)?),))
}

/// What the hooks need of the invocation, refreshed each time the guest
/// enters `wasi:http` ([`State::sync_http`]), and what they counted.
pub(crate) struct Hooks {
    /// The granted allow-list (`None`: nothing may be sent).
    allow: Option<Arc<HttpAllow>>,
    deadline: Instant,
    /// Host calls the invocation may still make.
    budget: u32,
    /// Requests asked for, and refused, since the last sync.
    sent: u32,
    denied: u32,
    /// The instance's deadline flag (`P2::deadline_hit`).
    hit: Arc<AtomicBool>,
}

impl Hooks {
    pub(crate) fn new(allow: Option<Arc<HttpAllow>>, hit: Arc<AtomicBool>) -> Hooks {
        Hooks {
            allow,
            deadline: Instant::now(),
            budget: 0,
            sent: 0,
            denied: 0,
            hit,
        }
    }

    /// Takes the requests asked for, and refused, since the last sync.
    fn take_counts(&mut self) -> (u32, u32) {
        (
            std::mem::take(&mut self.sent),
            std::mem::take(&mut self.denied),
        )
    }

    /// Whether `req` may be sent: the allow-list's timeout cut to the time
    /// left, and its response cap.
    fn admit(&mut self, req: &http::Request<WasiBody>) -> Result<(Duration, u64), HttpError> {
        self.sent = self.sent.saturating_add(1);
        let verdict = self.allow.as_ref().and_then(|allow| {
            let uri = req.uri();
            let scheme = uri.scheme_str().unwrap_or("");
            let port = uri
                .port_u16()
                .unwrap_or(if scheme == "https" { 443 } else { 80 });
            let host = uri.host()?;
            (self.budget > 0 && allow.allows(scheme, host, port))
                .then(|| (allow.request_timeout(), allow.response_cap()))
        });
        match verdict {
            Some((timeout, cap)) => {
                self.budget -= 1;
                let left = self.deadline.saturating_duration_since(Instant::now());
                Ok((timeout.min(left), cap))
            }
            None => {
                self.denied = self.denied.saturating_add(1);
                Err(HttpError::HttpRequestDenied)
            }
        }
    }
}

type IoFuture = Box<dyn Future<Output = Result<(), HttpError>> + Send>;
type Sent = Result<(http::Response<WasiBody>, IoFuture), HttpError>;

impl WasiHttpHooks for Hooks {
    fn send_request(
        &mut self,
        request: http::Request<WasiBody>,
        options: Option<RequestOptions>,
        _fut: IoFuture,
    ) -> Box<dyn Future<Output = Sent> + Send> {
        let admitted = self.admit(&request);
        let (deadline, hit) = (self.deadline, self.hit.clone());
        Box::new(async move {
            let (time, cap) = admitted?;
            let cut = |t: Option<Duration>| Some(t.map_or(time, |t| t.min(time)));
            let options = options.unwrap_or_default();
            let options = RequestOptions {
                connect_timeout: cut(options.connect_timeout),
                first_byte_timeout: cut(options.first_byte_timeout),
                between_bytes_timeout: cut(options.between_bytes_timeout),
            };
            let sending = wasmtime_wasi_http::default_send_request(request, Some(options));
            let sent = match tokio::time::timeout(time, sending).await {
                Ok(sent) => sent,
                Err(_) => Err(HttpError::ConnectionTimeout),
            };
            // Whichever timer ended it (ours or a phase's, cut to the same
            // time), a failure at the deadline is the invocation's timeout.
            let (resp, io) = sent.inspect_err(|_| {
                if Instant::now() >= deadline {
                    hit.store(true, Ordering::Relaxed);
                }
            })?;
            let resp = resp.map(|body| {
                UnsyncBoxBody::new(Bounded {
                    inner: UnsyncBoxBody::new(body),
                    left: cap,
                    cap,
                    too_large: HttpError::HttpResponseBodySize,
                    deadline,
                    end: None,
                    hit,
                })
            });
            Ok((resp, Box::new(io) as IoFuture))
        })
    }

    fn p2_outgoing_body_buffer_chunks(&mut self) -> usize {
        1
    }

    fn p2_outgoing_body_chunk_size(&mut self) -> usize {
        BODY_CHUNK
    }
}

/// An HTTP component's request body: cut at `cap` bytes
/// (`HttpRequestBodySize`) and ended with `ConnectionReadTimeout` at the
/// invocation's deadline.
pub(crate) fn request_body(
    body: UnsyncBoxBody<Bytes, ErrorCode>,
    cap: u64,
    deadline: Instant,
    hit: Arc<AtomicBool>,
) -> WasiBody {
    UnsyncBoxBody::new(Bounded {
        inner: UnsyncBoxBody::new(http_body_util::BodyExt::map_err(body, HttpError::from)),
        left: cap,
        cap,
        too_large: HttpError::HttpRequestBodySize,
        deadline,
        end: None,
        hit,
    })
}

/// A body cut at the deadline and at a cap (an outbound response's
/// `max_response`, an HTTP component's request's `max_input`).
struct Bounded {
    inner: WasiBody,
    left: u64,
    cap: u64,
    /// The error past the cap.
    too_large: fn(Option<u64>) -> HttpError,
    deadline: Instant,
    /// The deadline's timer, made on first poll (a timer needs the
    /// runtime the body is polled in).
    end: Option<Pin<Box<tokio::time::Sleep>>>,
    hit: Arc<AtomicBool>,
}

impl Body for Bounded {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let this = self.get_mut();
        let deadline = this.deadline;
        let end = this
            .end
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline.into())));
        if end.as_mut().poll(cx).is_ready() {
            this.hit.store(true, Ordering::Relaxed);
            return Poll::Ready(Some(Err(HttpError::ConnectionReadTimeout)));
        }
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        if let Poll::Ready(Some(Ok(frame))) = &polled
            && let Some(data) = frame.data_ref()
        {
            let n = data.len() as u64;
            if n > this.left {
                return Poll::Ready(Some(Err((this.too_large)(Some(this.cap)))));
            }
            this.left -= n;
        }
        polled
    }
}

/// An outgoing body's stream that blocks no longer than `deadline` and
/// reads as closed after it; a response body's also stops at its cap.
struct DeadlineStream {
    inner: DynOutputStream,
    deadline: Instant,
    hit: Arc<AtomicBool>,
    cap: Option<Arc<Budget>>,
}

impl DeadlineStream {
    fn open(&self) -> StreamResult<()> {
        if Instant::now() >= self.deadline {
            self.hit.store(true, Ordering::Relaxed);
            return Err(StreamError::Closed);
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl OutputStream for DeadlineStream {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.open()?;
        if let Some(cap) = &mut self.cap {
            cap.take(bytes.len())
                .map_err(|code| StreamError::LastOperationFailed(code.into()))?;
        }
        self.inner.write(bytes)
    }

    fn flush(&mut self) -> StreamResult<()> {
        self.open()?;
        self.inner.flush()
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        self.open()?;
        self.inner.check_write()
    }

    async fn cancel(&mut self) {
        self.inner.cancel().await
    }
}

#[async_trait::async_trait]
impl Pollable for DeadlineStream {
    async fn ready(&mut self) {
        let until = tokio::time::Instant::from_std(self.deadline);
        let _ = tokio::time::timeout_at(until, self.inner.ready()).await;
    }
}

impl WasiHttpView for State {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        self.sync_http();
        let p2 = self.p2();
        WasiHttpCtxView {
            ctx: &mut p2.http_ctx,
            table: &mut p2.table,
            hooks: &mut p2.http,
        }
    }
}

impl State {
    /// Moves the HTTP requests counted since the last sync into the
    /// invocation's host-call counts; gives the hooks this invocation's
    /// deadline and remaining budget.
    pub(crate) fn sync_http(&mut self) {
        let Some(p2) = self.p2.as_mut() else { return };
        let (sent, denied) = p2.http.take_counts();
        let call = &mut self.call;
        call.host_calls = call.host_calls.saturating_add(sent);
        call.host_calls_denied = call.host_calls_denied.saturating_add(denied);
        p2.http.deadline = call.deadline;
        p2.http.budget = self.spec.max_host_calls.saturating_sub(call.host_calls);
    }
}
