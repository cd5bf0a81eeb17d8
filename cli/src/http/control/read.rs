//! The control API's reads: `GetFunction`, `GetFunctionConfiguration`
//! (both with `Qualifier`), `ListFunctions`, `ListVersionsByFunction`,
//! `GetAlias`, `ListAliases` and `GetAccountSettings`, in AWS's shapes.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fnhost::{Alias, Error, FunctionConfig, FunctionInfo, Host};
use serde_json::{Value, json};

use super::{alias_json, keys};
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
                .map(|a| Some(a.version).filter(|v| *v != Alias::LATEST))
                .ok_or_else(|| Error::NotFound {
                    name: format!("{name}:{q}"),
                }),
        },
    }
}

/// A version as the control plane describes it: what the host says of
/// it, and the configuration it was registered with (its annotations hold
/// Lambda's package digest, handler, role and description).
pub(super) struct Described {
    pub info: FunctionInfo,
    pub config: FunctionConfig,
}

/// [`Described`] of `target` (`name`, `name:N`, `name:alias`).
pub(super) fn describe(host: &Host, target: &str) -> Result<Described, Error> {
    Ok(Described {
        info: host.function_info(target)?,
        config: host.function_config(target)?,
    })
}

/// Lambda's `CodeSha256` (base64 SHA-256 of the uploaded package) and
/// `CodeSize` (its bytes): kept when the package came through the control
/// plane, else those of the module (fnhost.toml registers modules as they
/// are), hashed once per module rather than on every read.
fn code_identity(d: &Described) -> (String, u64) {
    let a = d.config.annotations();
    if let (Some(sha), Some(size)) = (a.get(keys::CODE_SHA256), a.get(keys::CODE_SIZE))
        && let Ok(size) = size.parse()
    {
        return (sha.clone(), size);
    }
    // One entry per distinct module ever registered here (they are
    // content-addressed, so an entry never goes stale).
    static HASHED: std::sync::OnceLock<parking_lot::Mutex<HashMap<String, (String, u64)>>> =
        std::sync::OnceLock::new();
    let hashed = HASHED.get_or_init(Default::default);
    if let Some(known) = hashed.lock().get(&d.info.module_hash) {
        return known.clone();
    }
    // A module file that cannot be read now is not remembered.
    let Ok(module) = d.config.module_bytes() else {
        return (package_sha256(&[]), 0);
    };
    let identity = (package_sha256(&module), module.len() as u64);
    hashed
        .lock()
        .insert(d.info.module_hash.clone(), identity.clone());
    identity
}

/// Lambda's `CodeSha256` of a version (see [`code_identity`]).
pub(super) fn code_sha256(d: &Described) -> String {
    code_identity(d).0
}

/// base64(SHA-256(`package`)), Lambda's `CodeSha256`.
pub(super) fn package_sha256(package: &[u8]) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, package);
    base64::engine::general_purpose::STANDARD.encode(digest.as_ref())
}

/// Lambda's time format (`2026-12-03T17:00:00.000+0000`).
pub(super) fn lambda_time(t: std::time::SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t)
        .format("%Y-%m-%dT%H:%M:%S%.3f%z")
        .to_string()
}

/// Lambda's `FunctionConfiguration` of `d`, shown as `version` (`None`:
/// `$LATEST`); `revision` is the function's [`revision_id`] (one per
/// request: it digests the whole table). The environment is shown only
/// to a caller with credentials (`secrets`).
pub(super) fn configuration(
    d: &Described,
    version: Option<u32>,
    revision: &str,
    secrets: bool,
) -> Value {
    let info = &d.info;
    let label = version.map_or_else(|| fnhost::LATEST.to_string(), |v| v.to_string());
    let (sha, size) = code_identity(d);
    let note = |key: &str| d.config.annotations().get(key).cloned();
    let runtime = if info.is_http {
        "provided.wasi-http"
    } else {
        "provided.wasm32-wasip1"
    };
    let mut c = json!({
        "FunctionName": info.name,
        "FunctionArn": arn(&info.name, version.is_some().then_some(label.as_str())),
        "Runtime": note(keys::RUNTIME).unwrap_or_else(|| runtime.into()),
        "Role": note(keys::ROLE).unwrap_or_else(|| "arn:aws:iam::000000000000:role/fnhost".into()),
        "Handler": note(keys::HANDLER).unwrap_or_else(|| "fnhost_handle".into()),
        "CodeSha256": sha,
        "CodeSize": size,
        "Description": note(keys::DESCRIPTION).unwrap_or_default(),
        "MemorySize": info.memory_limit >> 20,
        "Timeout": info.timeout.as_secs_f64().ceil() as u64,
        "LastModified": lambda_time(info.last_modified),
        "Version": label,
        "PackageType": "Zip",
        "State": "Active",
        "LastUpdateStatus": "Successful",
        "RevisionId": revision,
        "Architectures": ["wasm32"],
        "EphemeralStorage": {"Size": info.tmp_quota >> 20},
    });
    if secrets && !d.config.env_vars().is_empty() {
        let vars: serde_json::Map<String, Value> = d
            .config
            .env_vars()
            .iter()
            .map(|(k, v)| (k.clone(), json!(v)))
            .collect();
        c["Environment"] = json!({"Variables": vars});
    }
    c
}

/// The configuration `GetFunction[Configuration]` answers for `raw`
/// (a name, `name:qualifier` or ARN) and `?Qualifier=`.
fn configuration_of(
    host: &Host,
    raw: &str,
    query: &HashMap<String, String>,
    secrets: bool,
) -> Result<(Value, FunctionInfo), Error> {
    let (name, qualifier) = qualified_target(raw, query);
    let version = version_of(host, &name, qualifier.as_deref())?;
    let target = match version {
        Some(v) => format!("{name}:{v}"),
        None => name.clone(),
    };
    let d = describe(host, &target)?;
    let mut c = configuration(&d, version, &revision_id(host, &name), secrets);
    if let Some(q) = qualifier.filter(|q| q != fnhost::LATEST) {
        c["FunctionArn"] = json!(arn(&name, Some(&q)));
    }
    Ok((c, d.info))
}

/// `GET /2015-03-31/functions/`.
pub(crate) async fn list_functions(State(gw): State<Shared>, Reader(secrets): Reader) -> Response {
    let functions: Vec<Value> = gw
        .host
        .functions()
        .iter()
        .filter_map(|f| describe(&gw.host, &f.name).ok())
        .map(|d| configuration(&d, None, &revision_id(&gw.host, &d.info.name), secrets))
        .collect();
    axum::Json(json!({"Functions": functions})).into_response()
}

/// `GET /2015-03-31/functions/{name}` (`?Qualifier=`).
pub(crate) async fn get_function(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    Reader(secrets): Reader,
) -> Response {
    gw.catch_up(&function_and_qualifier(&raw).0).await;
    match configuration_of(&gw.host, &raw, &query, secrets) {
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
    Reader(secrets): Reader,
) -> Response {
    gw.catch_up(&function_and_qualifier(&raw).0).await;
    match configuration_of(&gw.host, &raw, &query, secrets) {
        Ok((c, _)) => axum::Json(c).into_response(),
        Err(e) => refusal(&e),
    }
}

/// `GET /2015-03-31/functions/{name}/versions`: `$LATEST`, then every
/// version, oldest first.
pub(crate) async fn list_versions(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Reader(secrets): Reader,
) -> Response {
    let (name, _) = function_and_qualifier(&raw);
    gw.catch_up(&name).await;
    let listed = (|| -> Result<Vec<Value>, Error> {
        let latest = describe(&gw.host, &name)?;
        let revision = revision_id(&gw.host, &name);
        let mut out = vec![configuration(&latest, None, &revision, secrets)];
        for v in gw.host.versions(&name)? {
            let d = describe(&gw.host, &format!("{name}:{v}"))?;
            out.push(configuration(&d, Some(v), &revision, secrets));
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
    gw.catch_up(&name).await;
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
    gw.catch_up(&name).await;
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
