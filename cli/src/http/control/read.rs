//! The control API's reads: `GetFunction`, `GetFunctionConfiguration`
//! (both with `Qualifier`), `ListFunctions`, `ListVersionsByFunction`,
//! `GetAlias`, `ListAliases` and `GetAccountSettings`, in AWS's shapes.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use fnhost::{Error, FunctionInfo, Host};
use serde_json::{Value, json};

use super::alias_json;
use crate::http::auth::Reader;
use crate::http::aws::{function_and_qualifier, qualified_target, refusal};
use crate::http::state::Shared;

const ARN_PREFIX: &str = "arn:aws:lambda:local:000000000000:function:";

/// The function's ARN, with `qualifier` when given.
pub(super) fn arn(name: &str, qualifier: Option<&str>) -> String {
    match qualifier {
        Some(q) => format!("{ARN_PREFIX}{name}:{q}"),
        None => format!("{ARN_PREFIX}{name}"),
    }
}

/// The function's revision: a digest of its whole table (every version,
/// alias and setting), so it is the same on every node of a cluster and
/// changes with any change.
pub(super) fn revision_id(host: &Host, name: &str) -> String {
    let table = host.export_function(name).unwrap_or(Value::Null);
    crate::ids::uuid_of(&blake3::hash(table.to_string().as_bytes()))
}

/// The version a configuration read of `name` with `qualifier` shows:
/// `None` for `$LATEST`; an alias shows its primary version (a weighted
/// alias' reads are stable, unlike its invocations).
fn version_of(host: &Host, name: &str, qualifier: Option<&str>) -> Result<Option<u32>, Error> {
    match qualifier {
        None | Some(fnhost::LATEST) => Ok(None),
        Some(q) => match q.parse::<u32>() {
            Ok(v) => Ok(Some(v)),
            Err(_) => host
                .aliases(name)?
                .get(q)
                .map(|a| Some(a.version))
                .ok_or_else(|| Error::NotFound {
                    name: format!("{name}:{q}"),
                }),
        },
    }
}

/// Lambda's `FunctionConfiguration` of `info`, shown as `version`
/// (`None`: `$LATEST`); `revision` is the function's [`revision_id`]
/// (one per request: it digests the whole table).
pub(super) fn configuration(info: &FunctionInfo, version: Option<u32>, revision: &str) -> Value {
    let label = version.map_or_else(|| fnhost::LATEST.to_string(), |v| v.to_string());
    json!({
        "FunctionName": info.name,
        "FunctionArn": arn(&info.name, version.is_some().then_some(label.as_str())),
        "Runtime": if info.is_http { "provided.wasi-http" } else { "provided.wasm32-wasip1" },
        "Handler": "fnhost_handle",
        "CodeSha256": info.module_hash,
        "MemorySize": info.memory_limit >> 20,
        "Timeout": info.timeout.as_secs_f64().ceil() as u64,
        "Version": label,
        "PackageType": "Zip",
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "RevisionId": revision,
        "Architectures": ["wasm32"],
        "EphemeralStorage": {"Size": info.tmp_quota >> 20},
    })
}

/// The configuration `GetFunction[Configuration]` answers for `raw`
/// (a name, `name:qualifier` or ARN) and `?Qualifier=`.
fn configuration_of(
    host: &Host,
    raw: &str,
    query: &HashMap<String, String>,
) -> Result<(Value, FunctionInfo), Error> {
    let (name, qualifier) = qualified_target(raw, query);
    let version = version_of(host, &name, qualifier.as_deref())?;
    let target = match version {
        Some(v) => format!("{name}:{v}"),
        None => name.clone(),
    };
    let info = host.function_info(&target)?;
    let mut c = configuration(&info, version, &revision_id(host, &name));
    if let Some(q) = qualifier.filter(|q| q != fnhost::LATEST) {
        c["FunctionArn"] = json!(arn(&name, Some(&q)));
    }
    Ok((c, info))
}

/// `GET /2015-03-31/functions/`.
pub(crate) async fn list_functions(State(gw): State<Shared>, _: Reader) -> Response {
    let functions: Vec<Value> = gw
        .host
        .functions()
        .iter()
        .map(|f| configuration(f, None, &revision_id(&gw.host, &f.name)))
        .collect();
    axum::Json(json!({"Functions": functions})).into_response()
}

/// `GET /2015-03-31/functions/{name}` (`?Qualifier=`).
pub(crate) async fn get_function(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    _: Reader,
) -> Response {
    match configuration_of(&gw.host, &raw, &query) {
        Ok((c, info)) => {
            let mut r = json!({
                "Configuration": c,
                "Code": {"RepositoryType": "fnhost", "Location": ""},
            });
            if let Some(c) = info.reserved_concurrency {
                r["Concurrency"] = json!({"ReservedConcurrentExecutions": c});
            }
            axum::Json(r).into_response()
        }
        Err(e) => refusal(&e),
    }
}

/// `GET /2015-03-31/functions/{name}/configuration` (`?Qualifier=`).
pub(crate) async fn get_function_configuration(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    _: Reader,
) -> Response {
    match configuration_of(&gw.host, &raw, &query) {
        Ok((c, _)) => axum::Json(c).into_response(),
        Err(e) => refusal(&e),
    }
}

/// `GET /2015-03-31/functions/{name}/versions`: `$LATEST`, then every
/// version, oldest first.
pub(crate) async fn list_versions(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    _: Reader,
) -> Response {
    let (name, _) = function_and_qualifier(&raw);
    let listed = (|| -> Result<Vec<Value>, Error> {
        let latest = gw.host.function_info(&name)?;
        let revision = revision_id(&gw.host, &name);
        let mut out = vec![configuration(&latest, None, &revision)];
        for v in gw.host.versions(&name)? {
            let info = gw.host.function_info(&format!("{name}:{v}"))?;
            out.push(configuration(&info, Some(v), &revision));
        }
        Ok(out)
    })();
    match listed {
        Ok(versions) => axum::Json(json!({"Versions": versions})).into_response(),
        Err(e) => refusal(&e),
    }
}

/// `GET /2015-03-31/functions/{name}/aliases`.
pub(crate) async fn list_aliases(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    _: Reader,
) -> Response {
    let (name, _) = function_and_qualifier(&raw);
    match gw.host.aliases(&name) {
        Ok(aliases) => {
            let revision = revision_id(&gw.host, &name);
            let list: Vec<Value> = aliases
                .iter()
                .map(|(a, t)| alias_json(&name, a, t, &revision))
                .collect();
            axum::Json(json!({"Aliases": list})).into_response()
        }
        Err(e) => refusal(&e),
    }
}

/// `GET /2015-03-31/functions/{name}/aliases/{alias}`.
pub(crate) async fn get_alias(
    State(gw): State<Shared>,
    Path((raw, alias)): Path<(String, String)>,
    _: Reader,
) -> Response {
    let (name, _) = function_and_qualifier(&raw);
    let found = gw.host.aliases(&name).and_then(|a| {
        a.get(&alias).copied().ok_or_else(|| Error::NotFound {
            name: format!("{name}:{alias}"),
        })
    });
    match found {
        Ok(t) => {
            axum::Json(alias_json(&name, &alias, &t, &revision_id(&gw.host, &name))).into_response()
        }
        Err(e) => refusal(&e),
    }
}

/// `GET /2016-08-19/account-settings/`: this server's limits in Lambda's
/// shape. Code size limits are Lambda's (what a deploy script checks
/// against); fnhost keeps no code-storage total, so it reports 0.
pub(crate) async fn account_settings(State(gw): State<Shared>, _: Reader) -> Response {
    let functions = gw.host.functions();
    let limit = gw.host.concurrency_limit();
    let reserved: u32 = functions
        .iter()
        .filter_map(|f| f.reserved_concurrency)
        .sum();
    axum::Json(json!({
        "AccountLimit": {
            "ConcurrentExecutions": limit,
            "UnreservedConcurrentExecutions": limit.saturating_sub(reserved),
            "CodeSizeUnzipped": 262_144_000u64,
            "CodeSizeZipped": 52_428_800u64,
            "TotalCodeSize": 0,
        },
        "AccountUsage": {
            "FunctionCount": functions.len(),
            "TotalCodeSize": 0,
        },
    }))
    .into_response()
}
