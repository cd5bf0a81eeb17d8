//! Function URLs, the control side: `CreateFunctionUrlConfig`,
//! `GetFunctionUrlConfig`, `UpdateFunctionUrlConfig`,
//! `DeleteFunctionUrlConfig` and `ListFunctionUrlConfigs`
//! (`/2021-10-31/functions/{name}/url[s]`).
//!
//! A URL config belongs to the function (unqualified: `$LATEST`) or to
//! one of its aliases (`?Qualifier=alias`), and is kept as a
//! function-level annotation ([`Host::annotate_function`]) under
//! [`key`], so it is persisted and replicated with the function, goes
//! with it, and (removed by `DeleteAlias`) with its alias. Serving the
//! URLs is [`crate::http::function_url`].

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use fnhost::{Error, Host};
use serde::Deserialize;
use serde_json::{Value, json};

use super::read::{arn, lambda_time};
use super::{bad_request, change, json_body};
use crate::http::auth::{Authed, Reader};
use crate::http::aws::{aws_error, function_and_qualifier, qualified_target, refusal};
use crate::http::state::Shared;
use crate::http::url_config::{
    AuthType, Cors, InvokeMode, UrlConfig, fresh_id, key, now_ms, qualifier_of, url_of,
};

fn time_of(ms: u64) -> String {
    lambda_time(std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms))
}

/// The config's JSON answer (`LastModifiedTime` with `modified`).
fn answer(
    name: &str,
    qualifier: Option<&str>,
    c: &UrlConfig,
    headers: &HeaderMap,
    modified: bool,
) -> Value {
    let mut v = json!({
        "FunctionUrl": url_of(&c.id, headers),
        "FunctionArn": arn(name, qualifier),
        "AuthType": c.auth,
        "CreationTime": time_of(c.created_ms),
        "InvokeMode": c.mode,
    });
    if let Some(cors) = &c.cors {
        v["Cors"] = serde_json::to_value(cors).unwrap_or_default();
    }
    if modified {
        v["LastModifiedTime"] = json!(time_of(c.modified_ms));
    }
    v
}

/// The body of a create or update.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Change {
    auth_type: Option<AuthType>,
    cors: Option<Cors>,
    invoke_mode: Option<InvokeMode>,
}

fn parse_change(body: &[u8]) -> Result<Change, Box<Response>> {
    let c: Change = json_body(if body.is_empty() { b"{}" } else { body })?;
    if let Some(cors) = &c.cors {
        cors.check().map_err(|why| Box::new(bad_request(&why)))?;
    }
    Ok(c)
}

/// The function and qualifier a URL request names; a qualifier must be an
/// alias name (Lambda's `FunctionUrlQualifier`: not `$LATEST`, not a
/// version number).
fn target(
    raw: &str,
    query: &HashMap<String, String>,
) -> Result<(String, Option<String>), Box<Response>> {
    let (name, qualifier) = qualified_target(raw, query);
    if let Some(q) = &qualifier
        && (q.is_empty()
            || q.len() > 128
            || q.bytes().all(|b| b.is_ascii_digit())
            || !q
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        return Err(Box::new(bad_request(&format!(
            "Qualifier {q:?}: a function URL belongs to the function or to one of its aliases \
             (an alias name, not $LATEST or a version number)"
        ))));
    }
    Ok((name, qualifier))
}

/// What a create or update names and asks for.
fn target_and_change(
    raw: &str,
    query: &HashMap<String, String>,
    body: &[u8],
) -> Result<(String, Option<String>, Change), Box<Response>> {
    let (name, qualifier) = target(raw, query)?;
    Ok((name, qualifier, parse_change(body)?))
}

/// Keeps `config` as `name`'s URL config of `qualifier`.
fn save(h: &Host, name: &str, qualifier: Option<&str>, config: &UrlConfig) -> fnhost::Result<()> {
    let value = serde_json::to_string(config).unwrap_or_default();
    h.annotate_function(name, &key(qualifier), Some(&value))
        .map(drop)
}

/// `name`'s URL config of `qualifier`, if it has one. `NotFound` when the
/// function (or the alias) does not exist.
fn stored(host: &Host, name: &str, qualifier: Option<&str>) -> fnhost::Result<Option<UrlConfig>> {
    if let Some(a) = qualifier
        && !host.aliases(name)?.contains_key(a)
    {
        return Err(Error::NotFound {
            name: format!("{name}:{a}"),
        });
    }
    let notes = host.function_annotations(name)?;
    Ok(notes
        .get(&key(qualifier))
        .and_then(|v| serde_json::from_str(v).ok()))
}

fn no_url(name: &str, qualifier: Option<&str>) -> Response {
    aws_error(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        &format!(
            "The resource you requested does not exist: no function URL for {}",
            arn(name, qualifier)
        ),
    )
}

/// What a URL config change found.
enum Outcome {
    Done(UrlConfig),
    /// Create: one exists. Update, delete: none exists.
    Refused,
}

/// `POST /2021-10-31/functions/{name}/url`: 201 with the new config; 409
/// when the function (or alias) has one.
pub(crate) async fn create_function_url(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Authed(body): Authed,
) -> Response {
    let (name, qualifier, c) = match target_and_change(&raw, &query, &body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let Some(auth) = c.auth_type else {
        return bad_request("AuthType is required: NONE or AWS_IAM");
    };
    let now = now_ms();
    let config = UrlConfig {
        id: fresh_id(),
        auth,
        cors: c.cors,
        mode: c.invoke_mode.unwrap_or_default(),
        created_ms: now,
        modified_ms: now,
    };
    let (n, q) = (name.clone(), qualifier.clone());
    let made = change(&gw, &name, None, move |h| {
        if stored(h, &n, q.as_deref())?.is_some() {
            return Ok(Outcome::Refused);
        }
        save(h, &n, q.as_deref(), &config)?;
        Ok(Outcome::Done(config.clone()))
    })
    .await;
    match made {
        Ok(Outcome::Done(c)) => (
            StatusCode::CREATED,
            axum::Json(answer(&name, qualifier.as_deref(), &c, &headers, false)),
        )
            .into_response(),
        Ok(Outcome::Refused) => aws_error(
            StatusCode::CONFLICT,
            "ResourceConflictException",
            &format!(
                "Failed to create function url config for [functionArn = {}]. Error message: \
                 FunctionUrlConfig exists for this Lambda function",
                arn(&name, qualifier.as_deref())
            ),
        ),
        Err(e) => refusal(&e),
    }
}

/// `PUT /2021-10-31/functions/{name}/url`: changes the fields given.
pub(crate) async fn update_function_url(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    Authed(body): Authed,
) -> Response {
    let (name, qualifier, c) = match target_and_change(&raw, &query, &body) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let (n, q) = (name.clone(), qualifier.clone());
    let changed = change(&gw, &name, None, move |h| {
        let Some(mut config) = stored(h, &n, q.as_deref())? else {
            return Ok(Outcome::Refused);
        };
        let before = config.clone();
        if let Some(a) = c.auth_type {
            config.auth = a;
        }
        if let Some(cors) = &c.cors {
            config.cors = Some(cors.clone());
        }
        if let Some(m) = c.invoke_mode {
            config.mode = m;
        }
        if config != before {
            config.modified_ms = now_ms();
            save(h, &n, q.as_deref(), &config)?;
        }
        Ok(Outcome::Done(config))
    })
    .await;
    match changed {
        Ok(Outcome::Done(c)) => {
            axum::Json(answer(&name, qualifier.as_deref(), &c, &headers, true)).into_response()
        }
        Ok(Outcome::Refused) => no_url(&name, qualifier.as_deref()),
        Err(e) => refusal(&e),
    }
}

/// `DELETE /2021-10-31/functions/{name}/url`: 204.
pub(crate) async fn delete_function_url(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    _: Authed,
) -> Response {
    let (name, qualifier) = match target(&raw, &query) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    let (n, q) = (name.clone(), qualifier.clone());
    let removed = change(&gw, &name, None, move |h| {
        let Some(config) = stored(h, &n, q.as_deref())? else {
            return Ok(Outcome::Refused);
        };
        h.annotate_function(&n, &key(q.as_deref()), None)?;
        Ok(Outcome::Done(config))
    })
    .await;
    match removed {
        Ok(Outcome::Done(_)) => StatusCode::NO_CONTENT.into_response(),
        Ok(Outcome::Refused) => no_url(&name, qualifier.as_deref()),
        Err(e) => refusal(&e),
    }
}

/// `GET /2021-10-31/functions/{name}/url`.
pub(crate) async fn get_function_url(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    _: Reader,
) -> Response {
    let (name, qualifier) = match target(&raw, &query) {
        Ok(t) => t,
        Err(r) => return *r,
    };
    gw.catch_up(&name).await;
    match stored(&gw.host, &name, qualifier.as_deref()) {
        Ok(Some(c)) => {
            axum::Json(answer(&name, qualifier.as_deref(), &c, &headers, true)).into_response()
        }
        Ok(None) => no_url(&name, qualifier.as_deref()),
        Err(e) => refusal(&e),
    }
}

/// `GET /2021-10-31/functions/{name}/urls`: the function's URL configs,
/// its own first, then its aliases' by name; `MaxItems` (1 to 50) per
/// page, `NextMarker` to go on.
pub(crate) async fn list_function_urls(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    _: Reader,
) -> Response {
    let (name, _) = function_and_qualifier(&raw);
    let page = match query.get("MaxItems").map(|m| m.parse::<usize>()) {
        None => 50,
        Some(Ok(n)) if (1..=50).contains(&n) => n,
        Some(_) => return bad_request("MaxItems must be 1 to 50"),
    };
    gw.catch_up(&name).await;
    let notes = match gw.host.function_annotations(&name) {
        Ok(n) => n,
        Err(e) => return refusal(&e),
    };
    // Keys sort with the function's own ("aws.url") first.
    let all: Vec<(String, Option<&str>, UrlConfig)> = notes
        .iter()
        .filter_map(|(k, v)| {
            let q = qualifier_of(k)?;
            Some((k.clone(), q, serde_json::from_str(v).ok()?))
        })
        .collect();
    let start = match query.get("Marker") {
        Some(m) => all
            .iter()
            .position(|(k, ..)| k == m)
            .map_or(all.len(), |i| i + 1),
        None => 0,
    };
    let shown: Vec<Value> = all
        .iter()
        .skip(start)
        .take(page)
        .map(|(_, q, c)| answer(&name, *q, c, &headers, true))
        .collect();
    let mut out = json!({"FunctionUrlConfigs": shown});
    if start + page < all.len()
        && let Some((k, ..)) = all.get(start + page - 1)
    {
        out["NextMarker"] = json!(k);
    }
    axum::Json(out).into_response()
}
