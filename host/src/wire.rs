//! The wire form of an [`Invocation`] and an [`Error`], for invocations
//! that run on another node of a cluster (`fnhost serve --cluster`).
//!
//! An invocation travels as a one-line JSON *meta* (report, error, sizes;
//! safe for a NATS or HTTP header: no line breaks) and a *body*: the output
//! bytes followed by the log bytes. Errors keep their variant and fields
//! when the variant can happen to an invocation (refusals and guest
//! failures); any other variant arrives as [`Error::Remote`] with its kind
//! and message, so code that matches on [`ErrorKind`] sees no difference.
//!
//! ```
//! use fnhost::{Error, wire};
//! let e = Error::Throttled { function: "f".into(), limit: 2 };
//! let back = wire::error_from_json(&wire::error_to_json(&e));
//! assert!(matches!(back, Error::Throttled { ref function, limit: 2 } if function == "f"));
//! ```

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, ErrorKind};
use crate::invocation::Invocation;
use crate::logs::Logs;
use crate::report::{Report, RequestId};

/// An error on the wire: its kind and message, and the fields of the
/// variants that cross exactly (absent for the others).
#[derive(Debug, Default, Serialize, Deserialize)]
struct WireError {
    kind: String,
    #[serde(default)]
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    function: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    limit: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    timeout_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    trap: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    error_message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// `e` as JSON: `{"kind", "message", ..fields}`.
pub fn error_to_json(e: &Error) -> Value {
    let mut w = WireError {
        kind: e.kind().as_str().to_string(),
        message: e.to_string(),
        ..WireError::default()
    };
    match e {
        Error::NotFound { name } => w.name = Some(name.clone()),
        Error::PayloadTooLarge { size, max } | Error::ModuleTooLarge { size, max } => {
            (w.size, w.max) = (Some(*size as u64), Some(*max as u64));
        }
        Error::Throttled { function, limit } => {
            (w.function, w.limit) = (Some(function.clone()), Some((*limit).into()));
        }
        Error::Timeout { timeout } => w.timeout_ms = Some(timeout.as_millis() as u64),
        Error::OutOfFuel { limit } | Error::OutOfMemory { limit } => w.limit = Some(*limit),
        Error::Trap { message, .. } => w.trap = Some(message.clone()),
        Error::Guest { kind, message } => {
            (w.error_type, w.error_message) = (Some(kind.clone()), Some(message.clone()));
        }
        Error::OutputTooLarge { size, max } => {
            (w.size, w.max) = (Some(*size), Some(*max as u64));
        }
        Error::AbiViolation { reason }
        | Error::Instantiate { reason }
        | Error::Internal { message: reason }
        | Error::InvalidModule { reason }
        | Error::Store { reason } => w.reason = Some(reason.clone()),
        _ => {}
    }
    serde_json::to_value(w).unwrap_or_default()
}

/// The error [`error_to_json`] wrote. Malformed input gives an
/// [`Error::Remote`] of kind `Instantiate` naming what was wrong: a peer's
/// bad answer is an error value, never a panic.
pub fn error_from_json(v: &Value) -> Error {
    let unreadable = || Error::Remote {
        kind: ErrorKind::Instantiate,
        message: format!("a peer sent an unreadable error: {v}"),
    };
    let Ok(w) = WireError::deserialize(v) else {
        return unreadable();
    };
    let Some(kind) = ErrorKind::from_name(&w.kind) else {
        return unreadable();
    };
    let size_max = w.size.zip(w.max);
    let reason = w.reason;
    let exact = match kind {
        ErrorKind::NotFound => w.name.map(|name| Error::NotFound { name }),
        ErrorKind::PayloadTooLarge => size_max.map(|(size, max)| Error::PayloadTooLarge {
            size: size as usize,
            max: max as usize,
        }),
        ErrorKind::ModuleTooLarge => size_max.map(|(size, max)| Error::ModuleTooLarge {
            size: size as usize,
            max: max as usize,
        }),
        ErrorKind::Throttled => w
            .function
            .zip(w.limit)
            .map(|(function, limit)| Error::Throttled {
                function,
                limit: limit.min(u32::MAX.into()) as u32,
            }),
        ErrorKind::ShuttingDown => Some(Error::ShuttingDown),
        ErrorKind::Timeout => w.timeout_ms.map(|ms| Error::Timeout {
            timeout: Duration::from_millis(ms),
        }),
        ErrorKind::OutOfFuel => w.limit.map(|limit| Error::OutOfFuel { limit }),
        ErrorKind::OutOfMemory => w.limit.map(|limit| Error::OutOfMemory { limit }),
        ErrorKind::Trap => w.trap.map(|message| Error::Trap {
            message,
            code: None,
        }),
        ErrorKind::Guest => w
            .error_type
            .zip(w.error_message)
            .map(|(kind, message)| Error::Guest { kind, message }),
        ErrorKind::OutputTooLarge => size_max.map(|(size, max)| Error::OutputTooLarge {
            size,
            max: max as usize,
        }),
        ErrorKind::AbiViolation => reason.map(|reason| Error::AbiViolation { reason }),
        ErrorKind::Instantiate => reason.map(|reason| Error::Instantiate { reason }),
        ErrorKind::Internal => reason.map(|message| Error::Internal { message }),
        ErrorKind::InvalidModule => reason.map(|reason| Error::InvalidModule { reason }),
        ErrorKind::Store => reason.map(|reason| Error::Store { reason }),
        _ => None,
    };
    exact.unwrap_or(Error::Remote {
        kind,
        message: w.message,
    })
}

/// An invocation's meta line: its report, error and sizes.
#[derive(Debug, Serialize, Deserialize)]
struct Meta {
    /// 32 hex digits.
    request_id: String,
    function: String,
    version: String,
    start_us: u64,
    duration_ns: u64,
    #[serde(default)]
    init_ns: Option<u64>,
    memory_limit: u64,
    max_memory_used: u64,
    #[serde(default)]
    fuel_used: Option<u64>,
    /// What [`error_to_json`] wrote (read by [`error_from_json`], so a bad
    /// one is an error value, not a bad meta).
    #[serde(default)]
    error: Option<Value>,
    output_len: usize,
    logs_dropped: u64,
}

/// `inv` as (meta, body): see the module docs.
pub fn encode_invocation(inv: &Invocation) -> (String, Vec<u8>) {
    let r = &inv.report;
    let output: &[u8] = inv.outcome.as_deref().unwrap_or(&[]);
    let since_epoch = r
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let meta = Meta {
        request_id: format!("{:032x}", r.request_id.0),
        function: r.function.to_string(),
        version: r.version.to_string(),
        start_us: since_epoch.as_micros() as u64,
        duration_ns: r.duration.as_nanos() as u64,
        init_ns: r.init_duration.map(|d| d.as_nanos() as u64),
        memory_limit: r.memory_limit,
        max_memory_used: r.max_memory_used,
        fuel_used: r.fuel_used,
        error: inv.outcome.as_ref().err().map(error_to_json),
        output_len: output.len(),
        logs_dropped: inv.logs.dropped(),
    };
    let mut body = Vec::with_capacity(output.len() + inv.logs.bytes().len());
    body.extend_from_slice(output);
    body.extend_from_slice(inv.logs.bytes());
    // A serde_json string escapes every control character: one line.
    (serde_json::to_string(&meta).unwrap_or_default(), body)
}

/// The invocation [`encode_invocation`] wrote, or why `meta`/`body` are
/// not one.
pub fn decode_invocation(meta: &str, body: Bytes) -> Result<Invocation, String> {
    let m: Meta = serde_json::from_str(meta).map_err(|e| format!("invocation meta: {e}"))?;
    let request_id = u128::from_str_radix(&m.request_id, 16)
        .map_err(|_| "invocation meta: bad `request_id`".to_string())?;
    let output_len = m.output_len;
    if output_len > body.len() {
        return Err(format!(
            "invocation body is {} bytes, shorter than its output ({output_len})",
            body.len()
        ));
    }
    let error = m
        .error
        .as_ref()
        .filter(|e| !e.is_null())
        .map(error_from_json);
    let report = Report {
        request_id: RequestId(request_id),
        function: m.function.into(),
        version: m.version.into(),
        start: SystemTime::UNIX_EPOCH + Duration::from_micros(m.start_us),
        duration: Duration::from_nanos(m.duration_ns),
        init_duration: m.init_ns.map(Duration::from_nanos),
        memory_limit: m.memory_limit,
        max_memory_used: m.max_memory_used,
        error: error.as_ref().map(Error::kind),
        fuel_used: m.fuel_used,
    };
    let logs = Logs::from_parts(body[output_len..].to_vec(), m.logs_dropped);
    Ok(Invocation {
        outcome: match error {
            Some(e) => Err(e),
            None => Ok(body.slice(..output_len)),
        },
        logs,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn invocation(outcome: Result<Bytes, Error>) -> Invocation {
        Invocation {
            report: Report {
                request_id: RequestId(0x0123_4567_89ab_cdef_0011_2233_4455_6677),
                function: "f".into(),
                version: "3".into(),
                start: SystemTime::UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456),
                duration: Duration::from_nanos(1_234_567),
                init_duration: Some(Duration::from_nanos(400_000)),
                memory_limit: 128 << 20,
                max_memory_used: 17 << 20,
                error: outcome.as_ref().err().map(Error::kind),
                fuel_used: Some(99),
            },
            outcome,
            logs: Logs::from_parts(b"line one\n\xff two\n".to_vec(), 7),
        }
    }

    #[test]
    fn invocations_round_trip_exactly() {
        for outcome in [
            Ok(Bytes::from_static(b"{\"ok\":true}")),
            Err(Error::Guest {
                kind: "Boom".into(),
                message: "line\nbreak".into(),
            }),
            Err(Error::Timeout {
                timeout: Duration::from_millis(1500),
            }),
        ] {
            let inv = invocation(outcome);
            let (meta, body) = encode_invocation(&inv);
            assert!(!meta.contains('\n') && !meta.contains('\r'));
            let back = decode_invocation(&meta, Bytes::from(body)).unwrap();
            assert_eq!(back.report, inv.report);
            assert_eq!(back.logs, inv.logs);
            match (&back.outcome, &inv.outcome) {
                (Ok(a), Ok(b)) => assert_eq!(a, b),
                (Err(a), Err(b)) => assert_eq!(a.to_string(), b.to_string()),
                other => panic!("outcomes differ: {other:?}"),
            }
        }
    }

    #[test]
    fn every_kind_keeps_its_kind_and_message() {
        let errors = [
            Error::NotFound { name: "f".into() },
            Error::PayloadTooLarge { size: 9, max: 8 },
            Error::Throttled {
                function: "f".into(),
                limit: 3,
            },
            Error::ShuttingDown,
            Error::OutOfFuel { limit: 10 },
            Error::OutOfMemory { limit: 1 << 20 },
            Error::Trap {
                message: "unreachable".into(),
                code: None,
            },
            Error::OutputTooLarge { size: 10, max: 5 },
            Error::AbiViolation { reason: "r".into() },
            Error::Instantiate { reason: "r".into() },
            Error::InvalidConfig {
                field: "memory_limit",
                reason: "too big".into(),
            },
            Error::InUse {
                what: "f:1".into(),
                by: "alias live".into(),
            },
        ];
        for e in errors {
            let back = error_from_json(&error_to_json(&e));
            assert_eq!(back.kind(), e.kind(), "{e}");
            assert_eq!(back.to_string(), e.to_string());
        }
        // Variants that cannot cross field by field arrive as Remote.
        let back = error_from_json(&error_to_json(&Error::config("memory_limit", "x")));
        assert!(matches!(
            back,
            Error::Remote {
                kind: ErrorKind::InvalidConfig,
                ..
            }
        ));
    }

    #[test]
    fn bad_peer_input_is_an_error_value() {
        assert!(decode_invocation("not json", Bytes::new()).is_err());
        let (meta, _) = encode_invocation(&invocation(Ok(Bytes::from_static(b"abc"))));
        assert_eq!(
            decode_invocation(&meta, Bytes::from_static(b"a")).unwrap_err(),
            "invocation body is 1 bytes, shorter than its output (3)"
        );
        let e = error_from_json(&json!({"kind": "no_such_kind"}));
        assert!(matches!(
            e,
            Error::Remote {
                kind: ErrorKind::Instantiate,
                ..
            }
        ));
        let e = error_from_json(&json!({"kind": "throttled", "message": "m"}));
        assert!(
            matches!(e, Error::Remote { kind: ErrorKind::Throttled, ref message } if message == "m")
        );
    }
}
