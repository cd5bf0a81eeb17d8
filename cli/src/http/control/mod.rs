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

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fnhost::{Alias, Error, ErrorKind, FunctionConfig, Host};
use serde::Deserialize;
use serde_json::{Value, json};

mod package;

use super::auth::{Authed, Reader};
use super::aws::{aws_error, function_and_qualifier, refusal};
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
            let mut c = configuration(&info);
            c["Version"] = json!(info.version.to_string());
            (StatusCode::CREATED, axum::Json(c)).into_response()
        }
        Err(e) => refusal(&e),
    }
}

/// `DELETE /2015-03-31/functions/{name}`.
pub(crate) async fn delete_function(
    State(gw): State<Shared>,
    Path(name): Path<String>,
    _: Authed,
) -> Response {
    let n = name.clone();
    match change(&gw, &name, None, move |h| h.unregister(&n)).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refusal(&e),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct AliasBody {
    name: Option<String>,
    function_version: String,
    routing_config: Option<Routing>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Routing {
    #[serde(default)]
    additional_version_weights: BTreeMap<String, f64>,
}

fn version_number(s: &str) -> Result<u32, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a version number"))
}

/// The alias a body describes, or what is wrong with it.
fn alias_of(body: &AliasBody) -> Result<Alias, String> {
    let version = version_number(&body.function_version)?;
    let weights = body
        .routing_config
        .as_ref()
        .map(|r| &r.additional_version_weights);
    match weights.map(|w| w.iter().collect::<Vec<_>>()).as_deref() {
        None | Some([]) => Ok(Alias::to(version)),
        Some([(other, weight)]) => Ok(Alias::weighted(version, version_number(other)?, **weight)),
        Some(_) => {
            Err("RoutingConfig.AdditionalVersionWeights: at most one additional version".into())
        }
    }
}

fn alias_json(function: &str, alias: &str, a: &Alias) -> serde_json::Value {
    let weights: serde_json::Map<String, serde_json::Value> = a
        .additional
        .iter()
        .map(|(v, w)| (v.to_string(), json!(w)))
        .collect();
    json!({
        "AliasArn": format!("arn:aws:lambda:local:000000000000:function:{function}:{alias}"),
        "Name": alias,
        "FunctionVersion": a.version.to_string(),
        "RoutingConfig": {"AdditionalVersionWeights": weights},
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
    let target = match alias_of(&req) {
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
        let exists = h.aliases(&n)?.contains_key(&a);
        if creating && exists {
            return Err(Error::AlreadyExists {
                name: format!("{n}:{a}"),
            });
        }
        if !creating && !exists {
            return Err(Error::NotFound {
                name: format!("{n}:{a}"),
            });
        }
        h.set_alias(&n, &a, target)
    };
    match change(&gw, &name, None, set).await {
        Ok(()) => {
            let status = if creating {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, axum::Json(alias_json(&name, &alias, &target))).into_response()
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

pub(crate) fn configuration(info: &fnhost::FunctionInfo) -> Value {
    json!({
        "FunctionName": info.name,
        "FunctionArn": format!("arn:aws:lambda:local:000000000000:function:{}", info.name),
        "Runtime": "provided.wasm32-wasip1",
        "Handler": "fnhost_handle",
        "CodeSha256": info.module_hash,
        "MemorySize": info.memory_limit >> 20,
        "Timeout": info.timeout.as_secs_f64().ceil() as u64,
        "Version": fnhost::LATEST,
        "PackageType": "Zip",
        "State": "Active",
        "Architectures": ["wasm32"],
        "EphemeralStorage": {"Size": info.tmp_quota >> 20},
    })
}

/// `GET /2015-03-31/functions/`.
pub(super) async fn list_functions(State(gw): State<Shared>, _: Reader) -> Response {
    let functions: Vec<Value> = gw.host.functions().iter().map(configuration).collect();
    axum::Json(json!({"Functions": functions})).into_response()
}

/// `GET /2015-03-31/functions/{name}`.
pub(super) async fn get_function(
    State(gw): State<Shared>,
    Path(raw): Path<String>,
    _: Reader,
) -> Response {
    let (name, _) = function_and_qualifier(&raw);
    match gw.host.function_info(&name) {
        Ok(info) => {
            let mut r = json!({
                "Configuration": configuration(&info),
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
