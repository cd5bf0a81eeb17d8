//! The control API: Lambda's `CreateFunction`, `DeleteFunction`,
//! `CreateAlias`, `UpdateAlias` and `DeleteAlias` on the gateway, so
//! functions can be deployed to a running server (and, in a cluster, to
//! every node at once) with the AWS CLI's shapes.
//!
//! It is off unless the server has an admin token (`--admin-token` or
//! `FNHOST_ADMIN_TOKEN`) or admin keys; requests then need a SigV4
//! signature or `Authorization: Bearer <token>` (see [`super::auth`]).
//! Registering a function means running its code on this machine, so
//! never expose it without one.
//!
//! `Code.ZipFile` (base64 in JSON, as the AWS CLI sends `--zip-file
//! fileb://f.zip`) is a zip archive holding the module, or the `.wasm`
//! module itself (see `package`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fnhost::{Alias, Error, ErrorKind, FunctionConfig, Host};
use serde::Deserialize;
use serde_json::{Value, json};

mod package;
mod read;

pub(crate) use read::{
    account_settings, get_alias, get_function, get_function_configuration, list_aliases,
    list_functions, list_versions,
};

use super::auth::Authed;
use super::aws::{aws_error, qualified_target, refusal};
use super::state::{Gateway, Shared};

fn bad_request(message: &str) -> Response {
    aws_error(
        StatusCode::BAD_REQUEST,
        "InvalidParameterValueException",
        message,
    )
}

/// Runs a registry change here, or through the cluster so every node
/// makes it.
async fn change<T: Send + 'static>(
    gw: &Gateway,
    name: &str,
    module: Option<Bytes>,
    op: impl Fn(&Host) -> fnhost::Result<T> + Clone + Send + 'static,
) -> fnhost::Result<T> {
    match &gw.cluster {
        Some(c) => c.change(name, module, op).await,
        None => {
            let host = gw.host.clone();
            tokio::task::spawn_blocking(move || op(&host))
                .await
                .map_err(|e| Error::Remote {
                    kind: ErrorKind::Instantiate,
                    message: format!("registry change panicked: {e}"),
                })?
        }
    }
}

/// Reads and parses a JSON control body.
fn json_body<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, Box<Response>> {
    serde_json::from_slice(bytes).map_err(|e| Box::new(bad_request(&format!("request body: {e}"))))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateFunction {
    function_name: String,
    code: Code,
    memory_size: Option<u64>,
    timeout: Option<u64>,
    environment: Option<Environment>,
    ephemeral_storage: Option<Size>,
    handler: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Code {
    zip_file: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Environment {
    #[serde(default)]
    variables: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Size {
    size: u64,
}

/// `POST /2015-03-31/functions`: registers a new function (version 1).
pub(crate) async fn create_function(State(gw): State<Shared>, Authed(body): Authed) -> Response {
    let req: CreateFunction = match json_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(zip) = req.code.zip_file else {
        return bad_request("Code.ZipFile (the .wasm module, base64) is required");
    };
    let package = match base64::engine::general_purpose::STANDARD.decode(zip.trim()) {
        Ok(m) => m,
        Err(e) => return bad_request(&format!("Code.ZipFile is not base64: {e}")),
    };
    let module = match package::module_of(&package, req.handler.as_deref()) {
        Ok(m) => Bytes::from(m),
        Err(why) => return bad_request(&why),
    };
    let name = req.function_name;
    let mut cfg = FunctionConfig::from_bytes(name.clone(), module.clone());
    if let Some(mb) = req.memory_size {
        cfg = cfg.memory_limit(mb.saturating_mul(1 << 20));
    }
    if let Some(s) = req.timeout {
        cfg = cfg.timeout(Duration::from_secs(s));
    }
    if let Some(mb) = req.ephemeral_storage.map(|s| s.size) {
        cfg = cfg.tmp_quota(mb.saturating_mul(1 << 20));
    }
    for (k, v) in req.environment.map(|e| e.variables).unwrap_or_default() {
        cfg = cfg.env(k, v);
    }
    // The existence check runs inside the change, after this node has
    // caught up with the cluster's registry.
    let n = name.clone();
    let create = move |h: &Host| {
        if h.function_info(&n).is_ok() {
            return Err(Error::AlreadyExists { name: n.clone() });
        }
        h.register(cfg.clone())
    };
    match change(&gw, &name, Some(module), create).await {
        Ok(info) => {
            let revision = read::revision_id(&gw.host, &info.name);
            let c = read::configuration(&info, Some(info.version), &revision);
            (StatusCode::CREATED, axum::Json(c)).into_response()
        }
        Err(e) => refusal(&e),
    }
}

/// `DELETE /2015-03-31/functions/{name}`: the whole function, or with a
/// `Qualifier` (or `name:N`) that version only (409 while an alias points
/// to it).
pub(crate) async fn delete_function(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    _: Authed,
) -> Response {
    let (name, qualifier) = qualified_target(&raw, &query);
    let n = name.clone();
    let deleted = match qualifier.as_deref() {
        None => change(&gw, &name, None, move |h| h.unregister(&n)).await,
        Some(fnhost::LATEST) => {
            return bad_request(
                "$LATEST cannot be deleted on its own: delete the function (no Qualifier)",
            );
        }
        Some(q) => match q.parse::<u32>() {
            Ok(v) => change(&gw, &name, None, move |h| h.remove_version(&n, v)).await,
            Err(_) => {
                return bad_request(&format!(
                    "Qualifier {q:?} is an alias: delete it with DeleteAlias"
                ));
            }
        },
    };
    match deleted {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refusal(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasBody {
    name: Option<String>,
    function_version: Option<String>,
    routing_config: Option<Routing>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Routing {
    #[serde(default)]
    additional_version_weights: BTreeMap<String, f64>,
}

fn version_number(s: &str) -> Result<u32, String> {
    s.parse().map_err(|_| {
        format!(
            "FunctionVersion {s:?} is not a version number (aliases to $LATEST are not supported)"
        )
    })
}

/// What a body asks of an alias: its version (if given) and its routing
/// (if given: `Some(None)` clears the weights).
type AliasChange = (Option<u32>, Option<Option<(u32, f64)>>);

/// The change a body describes, or what is wrong with it.
fn alias_change(body: &AliasBody) -> Result<AliasChange, String> {
    let version = body
        .function_version
        .as_deref()
        .map(version_number)
        .transpose()?;
    let weights = body
        .routing_config
        .as_ref()
        .map(|r| &r.additional_version_weights);
    let routing = match weights.map(|w| w.iter().collect::<Vec<_>>()).as_deref() {
        None => None,
        Some([]) => Some(None),
        Some([(other, weight)]) => Some(Some((version_number(other)?, **weight))),
        Some(_) => {
            return Err(
                "RoutingConfig.AdditionalVersionWeights: at most one additional version".into(),
            );
        }
    };
    Ok((version, routing))
}

/// The alias `change` makes of `current` (`None`: a new alias).
fn merged(current: Option<Alias>, (version, routing): AliasChange) -> Result<Alias, Error> {
    let version = version
        .or(current.map(|a| a.version))
        .ok_or_else(|| Error::InvalidConfig {
            field: "FunctionVersion",
            reason: "required for a new alias".into(),
        })?;
    let additional = routing.unwrap_or(current.and_then(|a| a.additional));
    Ok(Alias {
        version,
        additional,
    })
}

pub(super) fn alias_json(function: &str, alias: &str, a: &Alias, revision: &str) -> Value {
    let weights: serde_json::Map<String, Value> = a
        .additional
        .iter()
        .map(|(v, w)| (v.to_string(), json!(w)))
        .collect();
    json!({
        "AliasArn": read::arn(function, Some(alias)),
        "Name": alias,
        "FunctionVersion": a.version.to_string(),
        "RoutingConfig": {"AdditionalVersionWeights": weights},
        "RevisionId": revision,
    })
}

/// `POST /2015-03-31/functions/{name}/aliases`.
pub(crate) async fn create_alias(
    State(gw): State<Shared>,
    Path(name): Path<String>,
    Authed(body): Authed,
) -> Response {
    set_alias(gw, name, None, &body).await
}

/// `PUT /2015-03-31/functions/{name}/aliases/{alias}`.
pub(crate) async fn update_alias(
    State(gw): State<Shared>,
    Path((name, alias)): Path<(String, String)>,
    Authed(body): Authed,
) -> Response {
    set_alias(gw, name, Some(alias), &body).await
}

async fn set_alias(gw: Shared, name: String, existing: Option<String>, body: &[u8]) -> Response {
    let req: AliasBody = match json_body(body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let asked = match alias_change(&req) {
        Ok(a) => a,
        Err(why) => return bad_request(&why),
    };
    let creating = existing.is_none();
    let Some(alias) = existing.or(req.name) else {
        return bad_request("Name is required");
    };
    // The existence checks run inside the change, after this node has
    // caught up with the cluster's registry.
    let (n, a) = (name.clone(), alias.clone());
    let set = move |h: &Host| {
        let current = h.aliases(&n)?.get(&a).copied();
        if creating && current.is_some() {
            return Err(Error::AlreadyExists {
                name: format!("{n}:{a}"),
            });
        }
        if !creating && current.is_none() {
            return Err(Error::NotFound {
                name: format!("{n}:{a}"),
            });
        }
        let target = merged(current, asked)?;
        h.set_alias(&n, &a, target)?;
        Ok(target)
    };
    match change(&gw, &name, None, set).await {
        Ok(target) => {
            let status = if creating {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let revision = read::revision_id(&gw.host, &name);
            (
                status,
                axum::Json(alias_json(&name, &alias, &target, &revision)),
            )
                .into_response()
        }
        Err(e) => refusal(&e),
    }
}

/// `DELETE /2015-03-31/functions/{name}/aliases/{alias}`.
pub(crate) async fn delete_alias(
    State(gw): State<Shared>,
    Path((name, alias)): Path<(String, String)>,
    _: Authed,
) -> Response {
    let (n, a) = (name.clone(), alias.clone());
    match change(&gw, &name, None, move |h| h.remove_alias(&n, &a)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refusal(&e),
    }
}
