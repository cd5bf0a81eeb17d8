//! `Invoke`: the Lambda API's invocation call (`RequestResponse`, `Event`,
//! `DryRun`) and the Lambda-shaped response.

use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fnhost::{Error, ErrorKind, Invocation};
use serde_json::json;

use super::LOG_TAIL;
use super::aws::{aws_error, invocation_refusal, qualified_target, read_body, refusal};
use super::state::Shared;

/// `POST /2015-03-31/functions/{name}/invocations`.
pub(super) async fn invoke(
    State(gw): State<Shared>,
    Path(raw_name): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Call {
        target,
        tail,
        invocation_type,
        client_context,
        ..
    } = match Call::of(&raw_name, &query, &headers) {
        Ok(c) => c,
        Err(r) => return *r,
    };
    let payload = match read_body(body, gw.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let payload = match lambda_payload(payload) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    match invocation_type.as_str() {
        "RequestResponse" => {}
        "DryRun" => {
            return match gw.host.function_info(&target) {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => refusal(&e),
            };
        }
        "Event" => {
            // Committed to the event store (the host's, or the cluster's
            // stream) before the 202: retried and dead-lettered there.
            let events = gw.event_backend();
            let sent = tokio::task::spawn_blocking(move || events.send_event(&target, payload));
            return match sent.await {
                Ok(Ok(id)) => {
                    let mut r = StatusCode::ACCEPTED.into_response();
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        r.headers_mut().insert("x-amzn-RequestId", v);
                    }
                    r
                }
                Ok(Err(e)) => refusal(&e),
                Err(e) => aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    &format!("event invocation failed: {e}"),
                ),
            };
        }
        other => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!(
                    "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, not {other:?}"
                ),
            );
        }
    }
    let inv = match gw.run(&target, payload, client_context.as_deref()).await {
        Ok(inv) => inv,
        Err(e) => return invocation_refusal(&gw.host, &e),
    };
    lambda_response(inv, tail)
}

/// What both Invoke calls read off the request: the target
/// (`name`, `name:version` or `name:alias`, resolved by the host), the
/// qualifier, `X-Amz-Log-Type: Tail`, `X-Amz-Invocation-Type`.
pub(super) struct Call {
    pub target: String,
    pub qualifier: Option<String>,
    pub tail: bool,
    pub invocation_type: String,
    /// `X-Amz-Client-Context`, decoded (JSON text).
    pub client_context: Option<String>,
}

impl Call {
    /// The call's parameters, or the AWS error for a bad log type.
    pub(super) fn of(
        raw_name: &str,
        query: &std::collections::HashMap<String, String>,
        headers: &HeaderMap,
    ) -> Result<Call, Box<Response>> {
        let (name, qualifier) = qualified_target(raw_name, query);
        let target = match &qualifier {
            Some(q) => format!("{name}:{q}"),
            None => name,
        };
        let header = |h: &str| headers.get(h).map(|v| v.to_str().unwrap_or("\u{fffd}"));
        let tail = match header("x-amz-log-type") {
            None | Some("None") => false,
            Some("Tail") => true,
            Some(other) => {
                return Err(Box::new(aws_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidParameterValueException",
                    &format!("X-Amz-Log-Type must be None or Tail, not {other:?}"),
                )));
            }
        };
        let invocation_type = header("x-amz-invocation-type")
            .unwrap_or("RequestResponse")
            .to_string();
        let client_context = match headers.get("x-amz-client-context") {
            None => None,
            Some(v) => Some(crate::client_context::decode(v.as_bytes()).map_err(|why| {
                Box::new(aws_error(
                    StatusCode::BAD_REQUEST,
                    "InvalidRequestContentException",
                    &why,
                ))
            })?),
        };
        Ok(Call {
            target,
            qualifier,
            tail,
            invocation_type,
            client_context,
        })
    }
}

fn lambda_response(inv: Invocation, tail: bool) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amz-executed-version",
        HeaderValue::from_str(&inv.report.version)
            .unwrap_or(HeaderValue::from_static(fnhost::LATEST)),
    );
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_str(&inv.report.request_id.to_string())
            .unwrap_or(HeaderValue::from_static("-")),
    );
    if tail && let Ok(v) = HeaderValue::from_str(&log_result(&inv)) {
        headers.insert("x-amz-log-result", v);
    }
    match inv.outcome {
        Ok(out) => {
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            (StatusCode::OK, headers, out).into_response()
        }
        // A host bug is the service's failure, not the function's (Lambda's
        // ServiceException), so SDKs retry it.
        Err(e @ Error::Internal { .. }) => {
            let mut r = aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &e.to_string(),
            );
            r.headers_mut().extend(headers);
            r
        }
        Err(e) => {
            headers.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            let body = json!({"errorMessage": error_message(&e), "errorType": error_type(&e)});
            (StatusCode::OK, headers, axum::Json(body)).into_response()
        }
    }
}

/// The payload a handler gets: an empty body becomes `{}` (as on AWS);
/// one that is not JSON is Lambda's refusal.
pub(super) fn lambda_payload(payload: Bytes) -> Result<Bytes, Box<Response>> {
    if payload.is_empty() {
        return Ok(Bytes::from_static(b"{}"));
    }
    if serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_ok() {
        return Ok(payload);
    }
    Err(Box::new(aws_error(
        StatusCode::BAD_REQUEST,
        "InvalidRequestContentException",
        "Could not parse request body into json: the payload must be JSON",
    )))
}

/// Lambda's `LogResult`: the last 4 KB of the logs with the END and
/// REPORT lines, base64.
pub(super) fn log_result(inv: &Invocation) -> String {
    let mut text = inv.logs.to_display_string();
    text.push_str(&format!(
        "{}\n{}\n",
        inv.report.end_line(),
        inv.report.report_line()
    ));
    let start = text.len().saturating_sub(LOG_TAIL);
    let start = (start..text.len())
        .find(|i| text.is_char_boundary(*i))
        .unwrap_or(text.len());
    base64::engine::general_purpose::STANDARD.encode(&text.as_bytes()[start..])
}

/// Lambda's `errorType` for a function error.
pub(super) fn error_type(e: &Error) -> String {
    match e {
        Error::Guest { kind, .. } => kind.clone(),
        other => match other.kind() {
            ErrorKind::Timeout => "Sandbox.Timedout".into(),
            ErrorKind::OutOfMemory => "Runtime.OutOfMemory".into(),
            ErrorKind::OutputTooLarge => "Function.ResponseSizeTooLarge".into(),
            ErrorKind::AbiViolation => "Runtime.AbiViolation".into(),
            ErrorKind::Trap => "Runtime.Trap".into(),
            k => format!("Runtime.{}", k.as_str()),
        },
    }
}

/// Lambda's `errorMessage` for a function error.
pub(super) fn error_message(e: &Error) -> String {
    match e {
        Error::Guest { message, .. } => message.clone(),
        other => other.to_string(),
    }
}
