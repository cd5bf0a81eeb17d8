//! Lambda's `Put/Get/Update/DeleteFunctionEventInvokeConfig`: a
//! function's retry policy and destinations for event invocations, as the
//! host's [`EventConfig`]. Destinations are ARNs: a Lambda function, an
//! SQS queue or an SNS topic name the host's function, queue or topic of
//! that name. The config is part of the function's table, so in a cluster
//! every node applies it.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fnhost::Host;
use fnhost::events::{Destination, EventConfig};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{bad_request, change, json_body, read};
use crate::http::auth::{Authed, Reader};
use crate::http::aws::{aws_error, qualified_target, refusal};
use crate::http::state::Shared;

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
struct Body {
    maximum_retry_attempts: Option<u32>,
    maximum_event_age_in_seconds: Option<u64>,
    destination_config: Option<Destinations>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
struct Destinations {
    on_success: Option<Target>,
    on_failure: Option<Target>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(rename_all = "PascalCase")]
struct Target {
    destination: Option<String>,
}

/// The destination an ARN names.
fn destination(arn: &str) -> Result<Destination, String> {
    let parts: Vec<&str> = arn.splitn(7, ':').collect();
    match parts.as_slice() {
        ["arn", _, "lambda", _, _, "function", name] => Ok(Destination::Function(name.to_string())),
        ["arn", _, "sqs", _, _, name] => Ok(Destination::Queue(name.to_string())),
        ["arn", _, "sns", _, _, name] => Ok(Destination::Topic(name.to_string())),
        _ => Err(format!(
            "Destination {arn:?}: use a Lambda function, SQS queue or SNS topic ARN"
        )),
    }
}

/// How a destination is shown (`None`: the default dead letters, or
/// discard, which Lambda has no ARN for).
fn destination_arn(d: &Destination) -> Option<String> {
    match d {
        Destination::Function(f) => Some(read::arn(f, None)),
        Destination::Queue(q) => Some(format!("arn:aws:sqs:local:000000000000:{q}")),
        Destination::Topic(t) => Some(format!("arn:aws:sns:local:000000000000:{t}")),
        Destination::DeadLetters | Destination::Discard => None,
    }
}

/// `base` with what `body` sets.
fn merged(mut c: EventConfig, body: &Body) -> Result<EventConfig, String> {
    if let Some(n) = body.maximum_retry_attempts {
        if n > fnhost::events::MAX_RETRIES {
            return Err(format!("MaximumRetryAttempts {n}: must be 0 to 2"));
        }
        c = c.max_retries(n);
    }
    if let Some(s) = body.maximum_event_age_in_seconds {
        if !(60..=21_600).contains(&s) {
            return Err(format!("MaximumEventAgeInSeconds {s}: must be 60 to 21600"));
        }
        c = c.max_event_age(Duration::from_secs(s));
    }
    let targets = body.destination_config.clone().unwrap_or_default();
    if let Some(arn) = targets.on_success.and_then(|t| t.destination) {
        c = c.on_success(destination(&arn)?);
    }
    if let Some(arn) = targets.on_failure.and_then(|t| t.destination) {
        c = c.on_failure(destination(&arn)?);
    }
    Ok(c)
}

fn config_json(name: &str, c: &EventConfig) -> Value {
    let target = |d: Option<&Destination>| match d.and_then(destination_arn) {
        Some(arn) => json!({"Destination": arn}),
        None => json!({}),
    };
    json!({
        "FunctionArn": read::arn(name, Some(fnhost::LATEST)),
        "MaximumRetryAttempts": c.retries(),
        "MaximumEventAgeInSeconds": c.event_age().as_secs(),
        "DestinationConfig": {
            "OnSuccess": target(c.success_destination()),
            "OnFailure": target(Some(c.failure_destination())),
        },
    })
}

/// The function a request names; a qualifier other than `$LATEST` is
/// refused (fnhost keeps one event config per function).
fn function_of(raw: &str, query: &HashMap<String, String>) -> Result<String, Box<Response>> {
    match qualified_target(raw, query) {
        (name, None) => Ok(name),
        (name, Some(q)) if q == fnhost::LATEST => Ok(name),
        (_, Some(q)) => Err(Box::new(bad_request(&format!(
            "Qualifier {q:?}: fnhost keeps one event invoke config per function (use $LATEST or none)"
        )))),
    }
}

fn no_config(name: &str) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!("The function {name} has no event invoke config"),
    )
}

/// Sets the config: `Put` replaces it (unset fields take Lambda's
/// defaults), `Update` changes only the fields given.
async fn set(
    gw: Shared,
    raw: String,
    query: HashMap<String, String>,
    body: &[u8],
    replace: bool,
) -> Response {
    let name = match function_of(&raw, &query) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let req: Body = match json_body(body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    if let Err(why) = merged(EventConfig::default(), &req) {
        return bad_request(&why);
    }
    let n = name.clone();
    let run = move |h: &Host| {
        let base = match replace {
            true => EventConfig::default(),
            false => h.events().configured(&n).unwrap_or_default(),
        };
        let c = merged(base, &req).map_err(|reason| fnhost::Error::InvalidConfig {
            field: "event_invoke_config",
            reason,
        })?;
        h.events().configure(&n, c.clone())?;
        Ok(c)
    };
    match change(&gw, &name, None, run).await {
        Ok(c) => axum::Json(config_json(&name, &c)).into_response(),
        Err(e) => refusal(&e),
    }
}

/// `PUT /2019-09-25/functions/{name}/event-invoke-config`.
pub(crate) async fn put_event_invoke_config(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Authed(body): Authed,
) -> Response {
    set(gw, raw, query, &body, true).await
}

/// `POST /2019-09-25/functions/{name}/event-invoke-config`.
pub(crate) async fn update_event_invoke_config(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Authed(body): Authed,
) -> Response {
    set(gw, raw, query, &body, false).await
}

/// `GET /2019-09-25/functions/{name}/event-invoke-config`: 404 when none
/// was set.
pub(crate) async fn get_event_invoke_config(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    _: Reader,
) -> Response {
    let name = match function_of(&raw, &query) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    gw.catch_up(&name).await;
    if let Err(e) = gw.host.function_info(&name) {
        return refusal(&e);
    }
    match gw.host.events().configured(&name) {
        Some(c) => axum::Json(config_json(&name, &c)).into_response(),
        None => no_config(&name),
    }
}

/// `DELETE /2019-09-25/functions/{name}/event-invoke-config`.
pub(crate) async fn delete_event_invoke_config(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    _: Authed,
) -> Response {
    let name = match function_of(&raw, &query) {
        Ok(n) => n,
        Err(r) => return *r,
    };
    let n = name.clone();
    let run = move |h: &Host| {
        h.function_info(&n)?;
        h.events().remove_config(&n)
    };
    match change(&gw, &name, None, run).await {
        Ok(true) => StatusCode::NO_CONTENT.into_response(),
        Ok(false) => no_config(&name),
        Err(e) => refusal(&e),
    }
}
