//! `component-http-probe`: a `wasi:http/proxy` component built with the
//! plain `wasip2` bindings (nothing fnhost-specific). Its paths:
//!
//! - `/hello`: 200, `x-fn: probe`, body `hello from rust`;
//! - `/echo`: the request's method, path and `x-test` header, then its
//!   body as it was read (streamed);
//! - `/stream?n=N&ms=M`: `N` chunks `chunk I\n`, each flushed, `M` ms apart;
//! - `/big?bytes=N`: `N` bytes of `x`, written as fast as the stream takes them;
//! - `/spin`: writes `start\n`, then loops forever;
//! - `/status?code=C`: an empty response with status `C`;
//! - `/two-responses?bytes=N`: two responses with bodies taken, `N` bytes
//!   written to the one sent;
//! - `/unfinished`: part of a body, then a return without `finish` (the
//!   body left open);
//! - `/finish-then-trap`: a whole body `complete`, finished, then a trap;
//! - `/error-code?bytes=N`: the response is an `internal-error` whose text
//!   is `N` bytes;
//! - `/` (how Lambda's Invoke APIs send a payload: as the body): a JSON
//!   string naming one of these paths runs it, anything else is echoed as
//!   `payload=<body>`;
//! - `/headers`: a response that tries to set framing and hop-by-hop
//!   headers (`x-refused` names those wasi:http refused itself).

use wasip2::exports::http::incoming_handler::Guest;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::{OutputStream, StreamError};

struct Probe;

impl Guest for Probe {
    fn handle(req: IncomingRequest, out: ResponseOutparam) {
        let target = req.path_with_query().unwrap_or_default();
        if target == "/" {
            // As Lambda's Invoke APIs send it: the payload is the body. A
            // JSON string naming a path runs that path; anything else is
            // echoed.
            let body = String::from_utf8_lossy(&read_body(req)).into_owned();
            let inner = body.trim_matches('"');
            if inner.starts_with('/') && inner != "/" {
                return dispatch(inner, None, out);
            }
            let echoed = format!("payload={body}");
            return respond(out, 200, &[], |s| write(s, echoed.as_bytes()));
        }
        dispatch(&target, Some(req), out)
    }
}

/// The request body, read to its end (or its first error).
fn read_body(req: IncomingRequest) -> Vec<u8> {
    let mut body = Vec::new();
    if let Ok(incoming) = req.consume()
        && let Ok(stream) = incoming.stream()
    {
        while let Ok(chunk) = stream.blocking_read(64 << 10) {
            body.extend_from_slice(&chunk);
        }
    }
    body
}

/// Serves `target`; `req` is the request when its body is still unread.
fn dispatch(target: &str, req: Option<IncomingRequest>, out: ResponseOutparam) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let arg = |name: &str| -> u64 {
        query
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    };
    match path {
        "/hello" => respond(out, 200, &[("x-fn", "probe")], |s| {
            write(s, b"hello from rust")
        }),
        "/echo" => {
            let Some(req) = req else {
                return respond(out, 400, &[], |s| write(s, b"no request to echo"));
            };
            let method = match req.method() {
                Method::Get => "GET".to_string(),
                Method::Post => "POST".to_string(),
                Method::Put => "PUT".to_string(),
                other => format!("{other:?}"),
            };
            let test = req
                .headers()
                .get("x-test")
                .first()
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default();
            let body = read_body(req);
            let head = format!("{method} {target} x-test={test} body=");
            respond(out, 200, &[], |s| {
                write(s, head.as_bytes())?;
                write(s, &body)
            })
        }
        "/stream" => {
            let (n, ms) = (arg("n"), arg("ms"));
            respond(out, 200, &[("content-type", "text/plain")], |s| {
                for i in 0..n {
                    if i > 0 {
                        std::thread::sleep(std::time::Duration::from_millis(ms));
                    }
                    write(s, format!("chunk {i}\n").as_bytes())?;
                }
                Ok(())
            })
        }
        "/big" => {
            let n = arg("bytes") as usize;
            respond(out, 200, &[], |s| write(s, &vec![b'x'; n]))
        }
        "/spin" => respond(out, 200, &[], |s| {
            write(s, b"start\n")?;
            let mut n = 0u64;
            loop {
                n = std::hint::black_box(n.wrapping_add(1));
            }
        }),
        "/status" => respond(out, arg("code") as u16, &[], |_| Ok(())),
        "/two-responses" => {
            // Two responses, both bodies taken; the second's is the one
            // written, the first is sent: the cap covers them all.
            let n = arg("bytes") as usize;
            let (Ok(a), Ok(b)) = (Fields::from_list(&[]), Fields::from_list(&[])) else {
                return;
            };
            let (first, second) = (OutgoingResponse::new(a), OutgoingResponse::new(b));
            let (Ok(first_body), Ok(second_body)) = (first.body(), second.body()) else {
                return;
            };
            ResponseOutparam::set(out, Ok(first));
            let Ok(stream) = first_body.write() else {
                return;
            };
            let written = write(&stream, &vec![b'x'; n]);
            drop(stream);
            if written.is_ok() {
                let _ = OutgoingBody::finish(first_body, None);
            }
            let _ = OutgoingBody::finish(second_body, None);
        }
        "/unfinished" => {
            // Part of a body, then return without finishing it.
            let Ok(fields) = Fields::from_list(&[]) else {
                return;
            };
            let resp = OutgoingResponse::new(fields);
            let Ok(body) = resp.body() else { return };
            ResponseOutparam::set(out, Ok(resp));
            if let Ok(stream) = body.write() {
                let _ = write(&stream, b"partial");
            }
            // Neither finished nor dropped (a dropped body is aborted):
            // the instance ends with it still open.
            std::mem::forget(body);
        }
        "/finish-then-trap" => {
            respond(out, 200, &[], |s| write(s, b"complete"));
            // The response is whole; the handler fails after it.
            std::process::abort();
        }
        "/error-code" => {
            // An error-code with a payload as long as the guest likes.
            let text = "e".repeat(arg("bytes") as usize);
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(text))));
        }
        "/headers" => {
            // Each header on its own: wasi:http refuses some outright
            // (named in `x-refused`); the host drops the rest of the
            // framing and hop-by-hop ones.
            let fields = Fields::new();
            let mut refused = Vec::new();
            for (k, v) in [
                ("x-kept", "yes"),
                ("content-length", "18"),
                ("keep-alive", "timeout=1"),
                ("proxy-authenticate", "Basic"),
                ("connection", "close"),
                ("transfer-encoding", "chunked"),
                ("trailer", "x-t"),
            ] {
                if fields.append(k, v.as_bytes()).is_err() {
                    refused.push(k);
                }
            }
            let _ = fields.append("x-refused", refused.join(",").as_bytes());
            respond_with(out, 200, fields, |s| write(s, b"framed by the host"))
        }
        _ => respond(out, 404, &[], |s| write(s, b"no such path")),
    }
}

/// Sends the head, then the body `fill` writes, then finishes it.
fn respond(
    out: ResponseOutparam,
    status: u16,
    headers: &[(&str, &str)],
    fill: impl FnOnce(&OutputStream) -> Result<(), StreamError>,
) {
    let fields: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(k, v)| (k.to_string(), v.as_bytes().to_vec()))
        .collect();
    let Ok(fields) = Fields::from_list(&fields) else {
        return;
    };
    respond_with(out, status, fields, fill)
}

/// [`respond`] with the headers already made.
fn respond_with(
    out: ResponseOutparam,
    status: u16,
    fields: Fields,
    fill: impl FnOnce(&OutputStream) -> Result<(), StreamError>,
) {
    let resp = OutgoingResponse::new(fields);
    let _ = resp.set_status_code(status);
    let Ok(body) = resp.body() else { return };
    ResponseOutparam::set(out, Ok(resp));
    let Ok(stream) = body.write() else { return };
    let written = fill(&stream);
    drop(stream);
    if written.is_ok() {
        let _ = OutgoingBody::finish(body, None);
    }
}

/// Writes `bytes` in the pieces `blocking-write-and-flush` takes (each
/// flushed: a chunk reaches the client as soon as it is written).
fn write(stream: &OutputStream, bytes: &[u8]) -> Result<(), StreamError> {
    for piece in bytes.chunks(4096) {
        stream.blocking_write_and_flush(piece)?;
    }
    Ok(())
}

wasip2::http::proxy::export!(Probe);
