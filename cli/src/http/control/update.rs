//! The control API's changes to an existing function: Lambda's
//! `UpdateFunctionCode`, `UpdateFunctionConfiguration` and
//! `PublishVersion`. Each changes `$LATEST` (the host's draft) or
//! publishes it, checks an optional `RevisionId` against the function's
//! current one inside the change (so in a cluster, after catching up with
//! the shared registry), and changes nothing when refused.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use fnhost::{FunctionInfo, Host};
use serde::Deserialize;

use super::{Package, Settings, bad_request, change, changed, json_body, keys, read};
use crate::http::auth::Authed;
use crate::http::aws::{aws_error, function_and_qualifier, refusal};
use crate::http::state::Shared;

/// What a change did: made `$LATEST` or a version, or was refused
/// because the caller's `RevisionId` or `CodeSha256` is not the
/// function's (nothing changed).
enum Outcome {
    Made(FunctionInfo),
    Stale(String),
}

/// 412 `PreconditionFailedException`: the function is not what the caller
/// last read.
fn stale(why: &str) -> Response {
    aws_error(
        StatusCode::PRECONDITION_FAILED,
        "PreconditionFailedException",
        why,
    )
}

/// `Some(why)` when `wanted` is given and is not `name`'s revision now.
fn revision_mismatch(h: &Host, name: &str, wanted: Option<&str>) -> Option<String> {
    let current = read::revision_id(h, name);
    wanted.filter(|w| *w != current).map(|w| {
        format!(
            "RevisionId {w:?} is not the function's current revision ({current}): read it again"
        )
    })
}

/// Runs `op` on `$LATEST`'s configuration through [`change`], after the
/// revision check: what it made, or the refusal to answer.
async fn change_latest(
    gw: &Shared,
    name: &str,
    module: Option<Bytes>,
    revision: Option<String>,
    op: impl Fn(&Host, fnhost::FunctionConfig) -> fnhost::Result<FunctionInfo> + Clone + Send + 'static,
) -> Result<FunctionInfo, Response> {
    let n = name.to_string();
    let run = move |h: &Host| {
        let latest = h.function_config(&n)?;
        if let Some(why) = revision_mismatch(h, &n, revision.as_deref()) {
            return Ok(Outcome::Stale(why));
        }
        op(h, latest).map(Outcome::Made)
    };
    match change(gw, name, module, run).await {
        Ok(Outcome::Made(info)) => Ok(info),
        Ok(Outcome::Stale(why)) => Err(stale(&why)),
        Err(e) => Err(refusal(&e)),
    }
}

/// The answer to a change of `$LATEST`: its configuration.
fn answer(gw: &Shared, made: Result<FunctionInfo, Response>) -> Response {
    match made {
        Ok(info) => changed(&gw.host, StatusCode::OK, &info),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CodeUpdate {
    zip_file: Option<String>,
    #[serde(default)]
    publish: bool,
    #[serde(default)]
    dry_run: bool,
    revision_id: Option<String>,
}

/// `PUT /2015-03-31/functions/{name}/code`: new code for `$LATEST` (kept
/// settings), published as the next version with `Publish`. `DryRun`
/// checks the package and answers what `$LATEST` would be, changing
/// nothing.
pub(crate) async fn update_function_code(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Authed(body): Authed,
) -> Response {
    let req: CodeUpdate = match json_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let (name, _) = function_and_qualifier(&raw);
    let Some(zip) = req.zip_file else {
        return bad_request("ZipFile (a zip archive or .wasm module, base64) is required");
    };
    // The entry `Handler` names, as `$LATEST` is once this node caught
    // up; the rest of the configuration is read inside the change.
    gw.catch_up(&name).await;
    let latest = match gw.host.function_config(&name) {
        Ok(c) => c,
        Err(e) => return refusal(&e),
    };
    let handler = latest.annotations().get(keys::HANDLER).cloned();
    let package = match Package::decode(&zip, handler.as_deref()) {
        Ok(p) => p,
        Err(why) => return bad_request(&why),
    };
    if req.dry_run {
        return dry_run(
            &gw,
            &name,
            package.install(latest),
            req.revision_id.as_deref(),
        );
    }
    let module = package.module.clone();
    let publish = req.publish;
    let replace = move |h: &Host, latest| {
        let cfg = package.install(latest);
        match publish {
            true => h.register(cfg),
            false => h.stage(cfg),
        }
    };
    answer(
        &gw,
        change_latest(&gw, &name, Some(module), req.revision_id, replace).await,
    )
}

/// What `UpdateFunctionCode` with `DryRun` answers: `$LATEST` as it is,
/// with the new package's digest and size (nothing is compiled or
/// changed).
fn dry_run(
    gw: &Shared,
    name: &str,
    cfg: fnhost::FunctionConfig,
    revision: Option<&str>,
) -> Response {
    if let Some(why) = revision_mismatch(&gw.host, name, revision) {
        return stale(&why);
    }
    let d = match read::describe(&gw.host, name) {
        Ok(d) => d,
        Err(e) => return refusal(&e),
    };
    let d = read::Described {
        info: d.info,
        config: cfg,
    };
    let c = read::configuration(&d, None, &read::revision_id(&gw.host, name), true);
    (StatusCode::OK, axum::Json(c)).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ConfigurationUpdate {
    #[serde(flatten)]
    settings: Settings,
    revision_id: Option<String>,
}

/// `PUT /2015-03-31/functions/{name}/configuration`: new settings for
/// `$LATEST` (its code kept); each field given replaces the old one.
pub(crate) async fn update_function_configuration(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Authed(body): Authed,
) -> Response {
    let req: ConfigurationUpdate = match json_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let (name, _) = function_and_qualifier(&raw);
    // Checked once before the change so a bad field is a 400 naming it.
    if let Err(why) = req
        .settings
        .apply(fnhost::FunctionConfig::from_bytes("f", Bytes::new()))
    {
        return bad_request(&why);
    }
    let settings = std::sync::Arc::new(req.settings);
    let reconfigure = move |h: &Host, latest| {
        let cfg = settings
            .apply(latest)
            .map_err(|reason| fnhost::Error::InvalidConfig {
                field: "configuration",
                reason,
            })?;
        h.stage(cfg)
    };
    answer(
        &gw,
        change_latest(&gw, &name, None, req.revision_id, reconfigure).await,
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Publish {
    code_sha256: Option<String>,
    revision_id: Option<String>,
}

/// `POST /2015-03-31/functions/{name}/versions`: publishes `$LATEST` as
/// the next version; when `$LATEST` is the newest version already, that
/// one (nothing new, as on Lambda). `CodeSha256`, when given, must be
/// `$LATEST`'s.
pub(crate) async fn publish_version(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Authed(body): Authed,
) -> Response {
    let req: Publish = if body.is_empty() {
        Publish {
            code_sha256: None,
            revision_id: None,
        }
    } else {
        match json_body(&body) {
            Ok(r) => r,
            Err(r) => return *r,
        }
    };
    let (name, _) = function_and_qualifier(&raw);
    let n = name.clone();
    let run = move |h: &Host| {
        if let Some(why) = revision_mismatch(h, &n, req.revision_id.as_deref()) {
            return Ok(Outcome::Stale(why));
        }
        if let Some(want) = &req.code_sha256 {
            let d = read::describe(h, &n)?;
            let have = read::code_sha256(&d);
            if *want != have {
                return Ok(Outcome::Stale(format!(
                    "CodeSha256 {want:?} is not $LATEST's ({have})"
                )));
            }
        }
        h.publish_version(&n).map(Outcome::Made)
    };
    match change(&gw, &name, None, run).await {
        Ok(Outcome::Made(info)) => changed(&gw.host, StatusCode::CREATED, &info),
        Ok(Outcome::Stale(why)) => stale(&why),
        Err(e) => refusal(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Concurrency {
    reserved_concurrent_executions: u32,
}

/// `PUT /2017-10-31/functions/{name}/concurrency`: reserves concurrency
/// for `$LATEST` (0 stops every invocation, as on Lambda). fnhost's
/// reservation is a version setting: published versions keep theirs.
pub(crate) async fn put_function_concurrency(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Authed(body): Authed,
) -> Response {
    let req: Concurrency = match json_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let (name, _) = function_and_qualifier(&raw);
    let n = req.reserved_concurrent_executions;
    let reserve =
        move |h: &Host, latest: fnhost::FunctionConfig| h.stage(latest.reserved_concurrency(n));
    match change_latest(&gw, &name, None, None, reserve).await {
        Ok(info) => axum::Json(concurrency_json(info.reserved_concurrency)).into_response(),
        Err(r) => r,
    }
}

/// `DELETE /2017-10-31/functions/{name}/concurrency`: `$LATEST` shares
/// the unreserved pool again.
pub(crate) async fn delete_function_concurrency(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    _: Authed,
) -> Response {
    let (name, _) = function_and_qualifier(&raw);
    let release = |h: &Host, latest: fnhost::FunctionConfig| h.stage(latest.unreserved());
    match change_latest(&gw, &name, None, None, release).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(r) => r,
    }
}

/// `GET /2019-09-30/functions/{name}/concurrency`: `$LATEST`'s
/// reservation (`{}` without one).
pub(crate) async fn get_function_concurrency(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    _: crate::http::auth::Reader,
) -> Response {
    let (name, _) = function_and_qualifier(&raw);
    gw.catch_up(&name).await;
    match gw.host.function_info(&name) {
        Ok(info) => axum::Json(concurrency_json(info.reserved_concurrency)).into_response(),
        Err(e) => refusal(&e),
    }
}

fn concurrency_json(reserved: Option<u32>) -> serde_json::Value {
    match reserved {
        Some(n) => serde_json::json!({"ReservedConcurrentExecutions": n}),
        None => serde_json::json!({}),
    }
}
