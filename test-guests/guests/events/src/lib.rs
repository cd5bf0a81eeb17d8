//! `eventsink`: a test guest for event invocations.
//!
//! - An SQS batch (`Records` from `aws:sqs`): every message whose body
//!   contains `fail` is reported in `batchItemFailures`; if any body is
//!   `crash`, the whole invocation fails.
//! - A payload with `"fail": true` fails with error type `Boom` (or with
//!   `"fail_until": n`, fails while the attempt number is below `n`).
//! - Anything else succeeds.
//!
//! The output always carries what the guest saw: its event id, attempt
//! number and the payload.

use fnhost_guest::{Context, Error};
use serde_json::{Value, json};

/// Handles one event.
#[fnhost_guest::handler]
pub fn eventsink(event: Value, ctx: &Context) -> Result<Value, Error> {
    let attempt = ctx.event_attempt();
    let records = event["Records"].as_array();
    if let Some(records) = records.filter(|r| r.iter().all(|r| r["eventSource"] == "aws:sqs")) {
        let bodies: Vec<&str> = records.iter().filter_map(|r| r["body"].as_str()).collect();
        if bodies.contains(&"crash") {
            return Err(Error::new("Crash", "a message asked the batch to fail"));
        }
        let failures: Vec<Value> = records
            .iter()
            .filter(|r| r["body"].as_str().is_some_and(|b| b.contains("fail")))
            .map(|r| json!({ "itemIdentifier": r["messageId"] }))
            .collect();
        return Ok(json!({ "batchItemFailures": failures, "bodies": bodies }));
    }
    let fail_until = event["fail_until"].as_u64();
    if event["fail"] == true || fail_until.is_some_and(|n| u64::from(attempt.unwrap_or(0)) < n) {
        return Err(Error::new("Boom", format!("failed on attempt {attempt:?}")));
    }
    Ok(json!({
        "event_id": ctx.event_id(),
        "attempt": attempt,
        "version": ctx.function_version(),
        "payload": event,
    }))
}
