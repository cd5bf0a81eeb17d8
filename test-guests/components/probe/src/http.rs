//! The probe's outbound `wasi:http` request.

use serde_json::{Value, json};
use wasip2::http::outgoing_handler;
use wasip2::http::types::{
    ErrorCode, Fields, IncomingResponse, Method, OutgoingBody, OutgoingRequest, Scheme,
};
use wasip2::io::streams::{OutputStream, StreamError};

/// Sends the request; `Err` is the first failure, as text.
pub fn send(
    url: &str,
    method: Option<&str>,
    body: Option<&str>,
    body_first: usize,
) -> Result<Value, String> {
    let (scheme, rest) = url.split_once("://").ok_or("url without a scheme")?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let req = OutgoingRequest::new(Fields::new());
    let method = match method.unwrap_or("GET") {
        "GET" => Method::Get,
        "POST" => Method::Post,
        "PUT" => Method::Put,
        other => Method::Other(other.into()),
    };
    req.set_method(&method).map_err(|()| "bad method")?;
    let scheme = match scheme {
        "http" => Scheme::Http,
        "https" => Scheme::Https,
        other => Scheme::Other(other.into()),
    };
    req.set_scheme(Some(&scheme)).map_err(|()| "bad scheme")?;
    req.set_authority(Some(authority))
        .map_err(|()| "bad authority")?;
    req.set_path_with_query(Some(path))
        .map_err(|()| "bad path")?;
    let out = req.body().map_err(|()| "no body")?;
    let stream = out.write().map_err(|()| "no body stream")?;
    if body_first > 0 {
        write_all(&stream, &vec![b'b'; body_first]).map_err(|e| format!("body_first: {e}"))?;
    }
    let pending = outgoing_handler::handle(req, None).map_err(|e| code(&e))?;
    if let Some(body) = body {
        write_all(&stream, body.as_bytes()).map_err(|e| format!("body: {e}"))?;
    }
    drop(stream);
    OutgoingBody::finish(out, None).map_err(|e| code(&e))?;
    pending.subscribe().block();
    let resp = match pending.get() {
        Some(Ok(Ok(resp))) => resp,
        Some(Ok(Err(e))) => return Err(code(&e)),
        Some(Err(())) => return Err("response taken twice".into()),
        None => return Err("response not ready after block".into()),
    };
    read(resp)
}

/// Status, headers (lower-case names, text values) and body (text).
fn read(resp: IncomingResponse) -> Result<Value, String> {
    let status = resp.status();
    let headers: serde_json::Map<String, Value> = resp
        .headers()
        .entries()
        .into_iter()
        .map(|(k, v)| (k, json!(String::from_utf8_lossy(&v))))
        .collect();
    let incoming = resp.consume().map_err(|()| "body taken twice")?;
    let stream = incoming.stream().map_err(|()| "no body stream")?;
    let mut body = Vec::new();
    let end = loop {
        match stream.blocking_read(64 << 10) {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(StreamError::Closed) => break None,
            Err(StreamError::LastOperationFailed(e)) => {
                break Some(
                    wasip2::http::types::http_error_code(&e)
                        .map(|c| code(&c))
                        .unwrap_or_else(|| e.to_debug_string()),
                );
            }
        }
    };
    Ok(json!({
        "status": status,
        "headers": headers,
        "body": String::from_utf8_lossy(&body),
        "body_error": end,
    }))
}

/// Writes `bytes` in the 4096-byte pieces `blocking-write-and-flush` takes.
fn write_all(stream: &OutputStream, bytes: &[u8]) -> Result<(), String> {
    for piece in bytes.chunks(4096) {
        stream
            .blocking_write_and_flush(piece)
            .map_err(|e| match e {
                StreamError::Closed => "closed".to_string(),
                StreamError::LastOperationFailed(e) => e.to_debug_string(),
            })?;
    }
    Ok(())
}

/// An error code's name (and payload), e.g. `HttpRequestDenied`.
fn code(e: &ErrorCode) -> String {
    let text = format!("{e:?}");
    text.strip_prefix("ErrorCode::")
        .unwrap_or(&text)
        .to_string()
}
