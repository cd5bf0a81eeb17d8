//! AWS's error shapes and request plumbing shared by every Lambda API
//! handler: one mapping from a host error to status and `x-amzn-ErrorType`,
//! body limits, and function names as paths carry them (names, qualifiers,
//! ARNs).

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use fnhost::{Error, ErrorKind, FunctionRef};
use serde_json::json;

/// An AWS-shaped error: `x-amzn-ErrorType` header, `{"Type","Message"}`.
pub(crate) fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    aws_error_because(status, error_type, message, None)
}

/// [`aws_error`] with Lambda's `Reason` field (throttles say which limit).
fn aws_error_because(
    status: StatusCode,
    error_type: &str,
    message: &str,
    reason: Option<&str>,
) -> Response {
    // Lambda's `Type`: `Service` for the service's own failures.
    let mut body = json!({
        "Type": if status.is_server_error() { "Service" } else { "User" },
        "Message": message,
        "message": message,
    });
    if let Some(reason) = reason {
        body["Reason"] = json!(reason);
    }
    let mut r = (status, axum::Json(body)).into_response();
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}

/// Whether `path` is under a Lambda API version prefix (`/2015-03-31/`,
/// `/2021-11-15/`, …): such a request is answered by the Lambda API
/// (an AWS-shaped error when no operation matches), never by a route.
pub(crate) fn is_api_path(path: &str) -> bool {
    let b = path.as_bytes();
    b.len() >= 12
        && b[0] == b'/'
        && b[5] == b'-'
        && b[8] == b'-'
        && b[11] == b'/'
        && [1, 2, 3, 4, 6, 7, 9, 10]
            .iter()
            .all(|&i| b[i].is_ascii_digit())
}

/// A non-Lambda JSON error (`{"message": ..}`, as API Gateway answers).
pub(crate) fn plain_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

/// A plain (non-Lambda) answer to a request refused before any guest ran:
/// what trigger routes and HTTP components send.
pub(crate) fn plain_refusal(e: &Error) -> Response {
    match e {
        Error::Throttled { .. } => plain_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests"),
        Error::PayloadTooLarge { .. } => {
            plain_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
        }
        Error::ShuttingDown => plain_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable"),
        Error::NotFound { .. } => plain_error(StatusCode::NOT_FOUND, "Not Found"),
        e => plain_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// The Lambda API's status and error type for a host error: the one
/// mapping every handler uses, for invocations that were refused (no guest
/// ran) and for control-plane changes alike.
pub fn status_and_type(e: &Error) -> (StatusCode, &'static str) {
    match e.kind() {
        ErrorKind::NotFound => (StatusCode::NOT_FOUND, "ResourceNotFoundException"),
        ErrorKind::Throttled => (StatusCode::TOO_MANY_REQUESTS, "TooManyRequestsException"),
        ErrorKind::PayloadTooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "RequestTooLargeException"),
        ErrorKind::AlreadyExists | ErrorKind::InUse => {
            (StatusCode::CONFLICT, "ResourceConflictException")
        }
        ErrorKind::InvalidConfig
        | ErrorKind::InvalidModule
        | ErrorKind::UnsupportedImport
        | ErrorKind::BadExport
        | ErrorKind::UnsupportedAbiVersion
        | ErrorKind::ModuleTooLarge => (StatusCode::BAD_REQUEST, "InvalidParameterValueException"),
        ErrorKind::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "ServiceException"),
        // Internal (a host panic) included: 500 ServiceException, which
        // SDKs retry.
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "ServiceException"),
    }
}

/// A host error as the Lambda API answers it (a throttle with
/// `Retry-After: 1`).
pub(crate) fn refusal(e: &Error) -> Response {
    refusal_because(e, None)
}

/// [`refusal`] of an invocation `host` refused: a throttle also says
/// which limit it hit (Lambda's `Reason`): the function's reserved
/// concurrency, or the server-wide limit.
pub(crate) fn invocation_refusal(host: &fnhost::Host, e: &Error) -> Response {
    let reason = match e {
        Error::Throttled { function, limit } => Some(
            if host
                .function_info(function)
                .is_ok_and(|i| i.reserved_concurrency == Some(*limit))
            {
                "ReservedFunctionConcurrentInvocationLimitExceeded"
            } else {
                "ConcurrentInvocationLimitExceeded"
            },
        ),
        _ => None,
    };
    refusal_because(e, reason)
}

fn refusal_because(e: &Error, reason: Option<&str>) -> Response {
    let (status, error_type) = status_and_type(e);
    let mut r = aws_error_because(status, error_type, &e.to_string(), reason);
    if status == StatusCode::TOO_MANY_REQUESTS {
        r.headers_mut()
            .insert("Retry-After", HeaderValue::from_static("1"));
    }
    r
}

/// Splits `name`, `name:qualifier` or a function ARN.
pub(crate) fn function_and_qualifier(raw: &str) -> (String, Option<String>) {
    let rest = raw
        .strip_prefix("arn:")
        .map_or(raw, |arn| arn.split(":function:").nth(1).unwrap_or(arn));
    let target = FunctionRef::parse(rest);
    let qualifier = rest.split_once(':').map(|(_, q)| q.to_string());
    (target.name.to_string(), qualifier)
}

/// The function and qualifier a request names: `raw` is the path's name
/// (`name`, `name:qualifier` or an ARN); `?Qualifier=` wins over the
/// path's.
pub(crate) fn qualified_target(
    raw: &str,
    query: &std::collections::HashMap<String, String>,
) -> (String, Option<String>) {
    let (name, path_qualifier) = function_and_qualifier(raw);
    (name, query.get("Qualifier").cloned().or(path_qualifier))
}

pub(crate) async fn read_body(body: Body, max: usize) -> Result<Bytes, Response> {
    let too_large = || {
        aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!("the request body is over the limit of {max} bytes"),
        )
    };
    // A declared Content-Length over the limit is refused before reading.
    if http_body::Body::size_hint(&body).lower() > max as u64 {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_qualifiers_and_arns() {
        assert_eq!(function_and_qualifier("hello"), ("hello".into(), None));
        assert_eq!(
            function_and_qualifier("hello:prod"),
            ("hello".into(), Some("prod".into()))
        );
        assert_eq!(
            function_and_qualifier("arn:aws:lambda:us-east-1:123:function:hello:$LATEST"),
            ("hello".into(), Some("$LATEST".into()))
        );
    }
}
