//! Routes to HTTP components (`wasi:http/proxy`): the client's request
//! goes to the guest as it is (method, path, query, headers, the body as a
//! stream), and the guest's response comes back as it writes it: status
//! and headers first, then the body chunk by chunk, with backpressure.
//!
//! The guest's framing and hop-by-hop headers are dropped
//! ([`guest_may_set`]): the gateway frames the body. A response the guest
//! never set is a 502 (504 when the deadline ended it); a body cut short
//! (deadline, trap, `max_output`) ends the connection's response with an
//! error, never with a clean end. An HTTP/1.0 client, which has no
//! chunked framing to tell a cut body from a whole one, gets the body
//! buffered (at most the gateway's body limit) with a length, or a
//! 502/504 instead of a partial body.

use axum::body::Body;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;
use fnhost::Error;

use super::aws::{plain_error, plain_refusal};
use super::guest_may_set;
use super::state::Gateway;

/// Serves `req` with the HTTP component `function`.
pub(super) async fn serve(gw: &Gateway, function: &str, req: Request) -> Response {
    // wasi:http needs an authority (HTTP/1.0 may send none): refused here,
    // before an instance is made for nothing.
    let host_ok = req.uri().authority().is_some()
        || req
            .headers()
            .get(axum::http::header::HOST)
            .is_some_and(|h| h.to_str().is_ok_and(|s| !s.is_empty()));
    if !host_ok {
        return plain_error(StatusCode::BAD_REQUEST, "a Host header is required");
    }
    // An HTTP/1.0 client has no chunked framing: a body cut short would
    // look complete to it (the connection just closes). Its answer is
    // buffered (at most the gateway's body limit) and sent with a length,
    // or not at all.
    let http10 = req.version() <= axum::http::Version::HTTP_10;
    // Admitted here, without a thread: past the limits the client gets
    // its 429 at once instead of waiting behind busy threads.
    let ticket = match gw.host.admit_http(function, req.headers()).await {
        Ok(t) => t,
        Err(e) => return plain_refusal(&e),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    // The guest runs on a blocking thread for the whole exchange: it
    // waits there while the client reads slowly.
    let running = tokio::task::spawn_blocking(move || ticket.invoke(req, tx));
    match rx.await {
        // An informational status would hand the connection over (101)
        // or confuse a proxy in front: not the guest's to send.
        Ok(Ok(resp)) if resp.status().is_informational() => {
            tokio::spawn(running);
            plain_error(
                StatusCode::BAD_GATEWAY,
                "the function answered with a 1xx status",
            )
        }
        Ok(Ok(resp)) => {
            let (mut parts, body) = resp.into_parts();
            // Rebuilt only when a header must go (rarely: most answers
            // pass as they are).
            if !parts.headers.keys().all(guest_may_set) {
                let headers = std::mem::take(&mut parts.headers);
                for (k, v) in headers.iter() {
                    if guest_may_set(k) {
                        parts.headers.append(k.clone(), v.clone());
                    }
                }
            }
            if http10 {
                // At most the gateway's body limit is held per such
                // answer (as for any buffered answer), whatever the
                // function's `max_output`.
                let limited = http_body_util::Limited::new(body, gw.max_body);
                let whole = http_body_util::BodyExt::collect(limited).await;
                return match (whole, running.await) {
                    (Ok(b), Ok(inv)) if inv.outcome.is_ok() => {
                        Response::from_parts(parts, Body::from(b.to_bytes()))
                    }
                    (_, ended) => failed(function, ended),
                };
            }
            // The invocation's report and metrics are the host's; the
            // task ends when the handler does.
            tokio::spawn(running);
            Response::from_parts(parts, Body::new(body))
        }
        Ok(Err(code)) => {
            tokio::spawn(running);
            plain_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                &format!("the function answered with an error: {code}"),
            )
        }
        Err(_) => failed(function, running.await),
    }
}

/// The answer when the guest set no response, or (HTTP/1.0) did not
/// finish its body: 504 when the deadline ended it, else 502.
fn failed(function: &str, ended: Result<fnhost::Invocation, tokio::task::JoinError>) -> Response {
    match ended {
        Ok(inv) => match inv.outcome {
            Err(Error::Timeout { .. }) => {
                plain_error(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout")
            }
            Err(e) => {
                tracing::warn!(target: "fnhost::http", function, error = %e, "function error");
                plain_error(StatusCode::BAD_GATEWAY, "Bad Gateway")
            }
            Ok(_) => plain_error(
                StatusCode::BAD_GATEWAY,
                "the function sent no complete response",
            ),
        },
        Err(_) => plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error"),
    }
}
