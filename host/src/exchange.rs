//! HTTP exchanges with HTTP components (`wasi:http/proxy`, exporting
//! `wasi:http/incoming-handler`): the request an embedder hands
//! [`Host::invoke_http`](crate::Host::invoke_http), and the response it
//! gets back while the guest is still writing the body.

use std::fmt;

use bytes::Bytes;
use http_body::Body;
use http_body_util::BodyExt as _;
use http_body_util::combinators::UnsyncBoxBody;
use wasmtime_wasi_http::p2::bindings::http::types::ErrorCode;

/// Why a body stream ended early: the guest's `error-code` (e.g.
/// `HttpResponseBodySize(Some(6291456))`), a cap, or the deadline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpBodyError {
    /// What happened, as text.
    pub message: String,
}

impl fmt::Display for HttpBodyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for HttpBodyError {}

impl HttpBodyError {
    /// A body stream's error, as wasmtime-wasi-http words it.
    pub(crate) fn from_body(e: &wasmtime_wasi_http::Error) -> HttpBodyError {
        HttpBodyError {
            message: truncated(format_args!("{e}")),
        }
    }

    /// A guest's `error-code`, by name (`HttpRequestDenied`, …), at most
    /// [`MAX_ERROR_TEXT`] bytes: the guest chooses its payload's size, so
    /// the text is cut while it is formatted, never made whole first.
    pub(crate) fn from_code(e: &ErrorCode) -> HttpBodyError {
        let text = truncated(format_args!("{e:?}"));
        HttpBodyError {
            message: text.trim_start_matches("ErrorCode::").to_string(),
        }
    }
}

/// Longest text of an error a guest's `error-code` becomes.
pub const MAX_ERROR_TEXT: usize = 1024;

/// `args` formatted, at most [`MAX_ERROR_TEXT`] bytes of it.
fn truncated(args: fmt::Arguments<'_>) -> String {
    let mut out = Truncating(String::new());
    let _ = fmt::Write::write_fmt(&mut out, args);
    out.0
}

/// A string that stops taking text at [`MAX_ERROR_TEXT`] bytes (the
/// formatting then ends).
struct Truncating(String);

impl fmt::Write for Truncating {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let room = MAX_ERROR_TEXT - self.0.len();
        if s.len() <= room {
            self.0.push_str(s);
            return Ok(());
        }
        let cut = (0..=room)
            .rev()
            .find(|i| s.is_char_boundary(*i))
            .unwrap_or(0);
        self.0.push_str(&s[..cut]);
        Err(fmt::Error)
    }
}

/// A response body: it yields the guest's writes as it makes them.
pub type HttpBody = UnsyncBoxBody<Bytes, HttpBodyError>;

/// An HTTP component's response: status and headers as the guest set
/// them, the body streaming.
pub type HttpResponse = http::Response<HttpBody>;

/// Where [`Host::invoke_http`](crate::Host::invoke_http) sends the
/// response, as soon as the guest sets it: `Err` when the guest answered
/// with an `error-code` instead. Dropped unanswered when the guest never
/// set a response (it failed first: the invocation says why).
pub type Respond = tokio::sync::oneshot::Sender<Result<HttpResponse, HttpBodyError>>;

/// The body length a request declares (`content-length`; 0 without one).
pub(crate) fn declared_len(headers: &http::HeaderMap) -> usize {
    headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok())
        .unwrap_or(0)
}

/// A request on its way into an instance, and where its response goes.
pub(crate) struct Exchange {
    pub request: http::Request<UnsyncBoxBody<Bytes, ErrorCode>>,
    pub respond: Respond,
    /// The request body's cap (the function's `max_input`).
    pub max_body: u64,
}

impl Exchange {
    /// `request` with its body's errors turned into `error-code`s; the
    /// instance cuts the body at `max_body` bytes (`HttpRequestBodySize`).
    pub(crate) fn new<B>(request: http::Request<B>, max_body: usize, respond: Respond) -> Exchange
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: fmt::Display,
    {
        let request = request.map(|body| {
            body.map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
                .boxed_unsync()
        });
        Exchange {
            request,
            respond,
            max_body: max_body as u64,
        }
    }
}
