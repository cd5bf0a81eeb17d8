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
use serde_json::{Value, json};

use crate::error::{Error, ErrorKind};
use crate::invocation::Invocation;
use crate::logs::Logs;
use crate::report::{Report, RequestId};

/// `e` as JSON: `{"kind", "message", ..fields}`.
pub fn error_to_json(e: &Error) -> Value {
    let mut v = json!({"kind": e.kind().as_str(), "message": e.to_string()});
    let fields = match e {
        Error::NotFound { name } => json!({"name": name}),
        Error::PayloadTooLarge { size, max } | Error::ModuleTooLarge { size, max } => {
            json!({"size": size, "max": max})
        }
        Error::Throttled { function, limit } => json!({"function": function, "limit": limit}),
        Error::Timeout { timeout } => json!({"timeout_ms": timeout.as_millis() as u64}),
        Error::OutOfFuel { limit } | Error::OutOfMemory { limit } => json!({"limit": limit}),
        Error::Trap { message, .. } => json!({"trap": message}),
        Error::Guest { kind, message } => json!({"error_type": kind, "error_message": message}),
        Error::OutputTooLarge { size, max } => json!({"size": size, "max": max}),
        Error::AbiViolation { reason }
        | Error::Instantiate { reason }
        | Error::Internal { message: reason }
        | Error::InvalidModule { reason }
        | Error::Store { reason } => json!({"reason": reason}),
        _ => json!({}),
    };
    if let (Some(out), Value::Object(f)) = (v.as_object_mut(), fields) {
        out.extend(f);
    }
    v
}

/// The error [`error_to_json`] wrote. Malformed input gives an
/// [`Error::Remote`] of kind `Instantiate` naming what was wrong: a peer's
/// bad answer is an error value, never a panic.
pub fn error_from_json(v: &Value) -> Error {
    let s = |k: &str| v.get(k).and_then(Value::as_str).map(str::to_string);
    let u = |k: &str| v.get(k).and_then(Value::as_u64);
    let message = s("message").unwrap_or_default();
    let Some(kind) = s("kind").as_deref().and_then(ErrorKind::from_name) else {
        return Error::Remote {
            kind: ErrorKind::Instantiate,
            message: format!("a peer sent an unreadable error: {v}"),
        };
    };
    let size_max = u("size").zip(u("max"));
    let exact = match kind {
        ErrorKind::NotFound => s("name").map(|name| Error::NotFound { name }),
        ErrorKind::PayloadTooLarge => size_max.map(|(size, max)| Error::PayloadTooLarge {
            size: size as usize,
            max: max as usize,
        }),
        ErrorKind::ModuleTooLarge => size_max.map(|(size, max)| Error::ModuleTooLarge {
            size: size as usize,
            max: max as usize,
        }),
        ErrorKind::Throttled => {
            s("function")
                .zip(u("limit"))
                .map(|(function, limit)| Error::Throttled {
                    function,
                    limit: limit.min(u32::MAX.into()) as u32,
                })
        }
        ErrorKind::ShuttingDown => Some(Error::ShuttingDown),
        ErrorKind::Timeout => u("timeout_ms").map(|ms| Error::Timeout {
            timeout: Duration::from_millis(ms),
        }),
        ErrorKind::OutOfFuel => u("limit").map(|limit| Error::OutOfFuel { limit }),
        ErrorKind::OutOfMemory => u("limit").map(|limit| Error::OutOfMemory { limit }),
        ErrorKind::Trap => s("trap").map(|message| Error::Trap {
            message,
            code: None,
        }),
        ErrorKind::Guest => s("error_type")
            .zip(s("error_message"))
            .map(|(kind, message)| Error::Guest { kind, message }),
        ErrorKind::OutputTooLarge => size_max.map(|(size, max)| Error::OutputTooLarge {
            size,
            max: max as usize,
        }),
        ErrorKind::AbiViolation => s("reason").map(|reason| Error::AbiViolation { reason }),
        ErrorKind::Instantiate => s("reason").map(|reason| Error::Instantiate { reason }),
        ErrorKind::Internal => s("reason").map(|message| Error::Internal { message }),
        ErrorKind::InvalidModule => s("reason").map(|reason| Error::InvalidModule { reason }),
        ErrorKind::Store => s("reason").map(|reason| Error::Store { reason }),
        _ => None,
    };
    exact.unwrap_or(Error::Remote { kind, message })
}

/// `inv` as (meta, body): see the module docs.
pub fn encode_invocation(inv: &Invocation) -> (String, Vec<u8>) {
    let r = &inv.report;
    let output: &[u8] = inv.outcome.as_deref().unwrap_or(&[]);
    let since_epoch = r
        .start
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let meta = json!({
        "request_id": format!("{:032x}", r.request_id.0),
        "function": &*r.function,
        "version": &*r.version,
        "start_us": since_epoch.as_micros() as u64,
        "duration_ns": r.duration.as_nanos() as u64,
        "init_ns": r.init_duration.map(|d| d.as_nanos() as u64),
        "memory_limit": r.memory_limit,
        "max_memory_used": r.max_memory_used,
        "fuel_used": r.fuel_used,
        "error": inv.outcome.as_ref().err().map(error_to_json),
        "output_len": output.len(),
        "logs_dropped": inv.logs.dropped(),
    });
    let mut body = Vec::with_capacity(output.len() + inv.logs.bytes().len());
    body.extend_from_slice(output);
    body.extend_from_slice(inv.logs.bytes());
    (meta.to_string(), body)
}

/// The invocation [`encode_invocation`] wrote, or why `meta`/`body` are
/// not one.
pub fn decode_invocation(meta: &str, body: Bytes) -> Result<Invocation, String> {
    let m: Value = serde_json::from_str(meta).map_err(|e| format!("invocation meta: {e}"))?;
    let u = |k: &str| {
        m.get(k)
            .and_then(Value::as_u64)
            .ok_or_else(|| format!("invocation meta: no `{k}`"))
    };
    let s = |k: &str| {
        m.get(k)
            .and_then(Value::as_str)
            .ok_or_else(|| format!("invocation meta: no `{k}`"))
    };
    let request_id = u128::from_str_radix(s("request_id")?, 16)
        .map_err(|_| "invocation meta: bad `request_id`".to_string())?;
    let output_len = u("output_len")? as usize;
    if output_len > body.len() {
        return Err(format!(
            "invocation body is {} bytes, shorter than its output ({output_len})",
            body.len()
        ));
    }
    let error = m.get("error").filter(|e| !e.is_null()).map(error_from_json);
    let report = Report {
        request_id: RequestId(request_id),
        function: s("function")?.into(),
        version: s("version")?.into(),
        start: SystemTime::UNIX_EPOCH + Duration::from_micros(u("start_us")?),
        duration: Duration::from_nanos(u("duration_ns")?),
        init_duration: m
            .get("init_ns")
            .and_then(Value::as_u64)
            .map(Duration::from_nanos),
        memory_limit: u("memory_limit")?,
        max_memory_used: u("max_memory_used")?,
        error: error.as_ref().map(Error::kind),
        fuel_used: m.get("fuel_used").and_then(Value::as_u64),
    };
    let logs = Logs::from_parts(body[output_len..].to_vec(), u("logs_dropped")?);
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
