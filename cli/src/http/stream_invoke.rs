//! `InvokeWithResponseStream`: the Lambda call whose answer is an event
//! stream (`application/vnd.amazon.eventstream`): `PayloadChunk` events
//! as the output is produced, then one `InvokeComplete` (`ErrorCode` and
//! `ErrorDetails` when the function failed, `LogResult` with
//! `X-Amz-Log-Type: Tail`).
//!
//! An HTTP component (`wasi:http/proxy`) gets the payload as the body of
//! `POST /` and its response body streams out chunk by chunk while it
//! runs; any other function's output is sent when the call ends (in
//! chunks of at most 64 KiB).

use std::convert::Infallible;

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fnhost::{Error, Invocation};
use http_body_util::BodyExt as _;
use tokio::sync::mpsc;

use super::aws::{aws_error, invocation_refusal, read_body, refusal};
use super::eventstream::{MAX_CHUNK, invoke_complete, payload_chunk};
use super::invoke::{Call, error_message, error_type, lambda_payload, log_result};
use super::state::Shared;

/// `POST /2021-11-15/functions/{name}/response-streaming-invocations`.
pub(super) async fn invoke_stream(
    State(gw): State<Shared>,
    Path(raw_name): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Call {
        target,
        qualifier,
        tail,
        invocation_type,
        client_context,
    } = match Call::of(&raw_name, &query, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let dry_run = match invocation_type.as_str() {
        "RequestResponse" => false,
        "DryRun" => true,
        other => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("X-Amz-Invocation-Type must be RequestResponse or DryRun, not {other:?}"),
            );
        }
    };
    let payload = match read_body(body, gw.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let info = match gw.host.function_info(&target) {
        Ok(i) => i,
        // Not here: a plain function may still run in the cluster.
        Err(Error::NotFound { .. }) if gw.cluster.is_some() && !dry_run => {
            return buffered(&gw, &target, payload, tail, client_context.as_deref()).await;
        }
        Err(e) => return refusal(&e),
    };
    if dry_run {
        return StatusCode::NO_CONTENT.into_response();
    }
    if !info.is_http {
        return buffered(&gw, &target, payload, tail, client_context.as_deref()).await;
    }
    let version = match &qualifier {
        Some(_) => info.version.to_string(),
        None => fnhost::LATEST.to_string(),
    };
    streamed(&gw, &target, payload, tail, &version).await
}

/// The event-stream response whose events `rx` yields.
fn event_stream(rx: mpsc::Receiver<Bytes>, version: &str) -> Response {
    let stream = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    let mut r = Response::new(Body::from_stream(stream));
    let h = r.headers_mut();
    h.insert(
        "content-type",
        HeaderValue::from_static("application/vnd.amazon.eventstream"),
    );
    if let Ok(v) = HeaderValue::from_str(version) {
        h.insert("x-amz-executed-version", v);
    }
    r
}

/// The closing event of `inv` (and of a body that ended with `cut`).
fn complete(inv: &Invocation, cut: Option<String>, tail: bool) -> Bytes {
    let log = tail.then(|| log_result(inv));
    let error = match (&inv.outcome, cut) {
        (Err(e), _) => Some((error_type(e), error_message(e))),
        (Ok(_), Some(why)) => Some(("Runtime.ResponseStreamError".to_string(), why)),
        (Ok(_), None) => None,
    };
    invoke_complete(
        error.as_ref().map(|(c, d)| (c.as_str(), d.as_str())),
        log.as_deref(),
    )
}

/// A plain function: run (here or in the cluster), then its output.
async fn buffered(
    gw: &Shared,
    target: &str,
    payload: Bytes,
    tail: bool,
    client: Option<&str>,
) -> Response {
    // As for Invoke (an HTTP component takes any body).
    let payload = match lambda_payload(payload) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let inv = match gw.run(target, payload, client).await {
        Ok(inv) => inv,
        Err(e) => return invocation_refusal(&gw.host, &e),
    };
    let (tx, rx) = mpsc::channel(4);
    let r = event_stream(rx, &inv.report.version);
    tokio::spawn(async move {
        if let Ok(out) = &inv.outcome {
            for piece in out.chunks(MAX_CHUNK) {
                if tx.send(payload_chunk(piece)).await.is_err() {
                    return;
                }
            }
        }
        let _ = tx.send(complete(&inv, None, tail)).await;
    });
    r
}

/// An HTTP component: `POST /` with the payload; its body streams out.
async fn streamed(
    gw: &Shared,
    target: &str,
    payload: Bytes,
    tail: bool,
    version: &str,
) -> Response {
    let request = axum::http::Request::post("http://lambda.localhost/")
        .header("content-type", "application/json")
        .body(http_body_util::Full::new(payload));
    let Ok(request) = request else {
        return aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            "bad request",
        );
    };
    let ticket = match gw.host.admit_http(target, request.headers()).await {
        Ok(t) => t,
        Err(e) => return refusal(&e),
    };
    let (respond, response) = tokio::sync::oneshot::channel();
    let running = tokio::task::spawn_blocking(move || ticket.invoke(request, respond));
    // At most two events wait for a slow client: the guest waits too.
    let (tx, rx) = mpsc::channel(2);
    match response.await {
        Ok(Ok(resp)) => {
            let r = event_stream(rx, version);
            tokio::spawn(async move {
                let mut body = resp.into_body();
                let mut cut = None;
                while let Some(frame) = body.frame().await {
                    match frame {
                        Ok(f) => {
                            let Ok(data) = f.into_data() else { continue };
                            for piece in data.chunks(MAX_CHUNK) {
                                if tx.send(payload_chunk(piece)).await.is_err() {
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            cut = Some(e.message);
                            break;
                        }
                    }
                }
                drop(body);
                if let Ok(inv) = running.await {
                    let _ = tx.send(complete(&inv, cut, tail)).await;
                }
            });
            r
        }
        // No response: the invocation says why (or it was refused).
        other => match running.await {
            Ok(inv) => {
                let r = event_stream(rx, version);
                let cut = match other {
                    Ok(Err(code)) => Some(format!("the function answered with an error: {code}")),
                    _ => Some("the function sent no response".to_string()),
                };
                let _ = tx.send(complete(&inv, cut, tail)).await;
                r
            }
            Err(e) => aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &format!("invocation failed: {e}"),
            ),
        },
    }
}
