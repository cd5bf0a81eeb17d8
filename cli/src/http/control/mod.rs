//! The control API: Lambda's deploy operations on the gateway
//! (`CreateFunction`, `UpdateFunctionCode`, `UpdateFunctionConfiguration`,
//! `PublishVersion`, `DeleteFunction`, the alias operations and the reads
//! in `read`), so functions can be deployed to a running server (and, in a
//! cluster, to every node at once) with the AWS CLI's shapes.
//!
//! Lambda's mutable `$LATEST` is the host's draft ([`Host::stage`]);
//! publishing is [`Host::publish_version`] or [`Host::register`]. Lambda's
//! per-version fields the host does not interpret (the package's
//! `CodeSha256` and `CodeSize`, `Handler`, `Role`, `Description`,
//! `Runtime`) are version annotations under [`keys`].
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

mod event_config;
mod package;
mod read;
mod update;
mod url;

pub(crate) use event_config::{
    delete_event_invoke_config, get_event_invoke_config, put_event_invoke_config,
    update_event_invoke_config,
};
pub(crate) use read::{
    account_settings, get_alias, get_function, get_function_configuration, list_aliases,
    list_functions, list_versions,
};
pub(crate) use update::{
    delete_function_concurrency, get_function_concurrency, publish_version,
    put_function_concurrency, update_function_code, update_function_configuration,
};
pub(crate) use url::{
    create_function_url, delete_function_url, get_function_url, list_function_urls,
    update_function_url,
};

/// The annotation keys (see [`FunctionConfig::annotate`]) under which a
/// version keeps Lambda's fields.
pub(crate) mod keys {
    /// base64(SHA-256) of the uploaded package.
    pub const CODE_SHA256: &str = "aws.CodeSha256";
    /// The uploaded package's size in bytes.
    pub const CODE_SIZE: &str = "aws.CodeSize";
    /// `Handler` (also picks the package's entry).
    pub const HANDLER: &str = "aws.Handler";
    /// `Role` (not used: fnhost has no IAM).
    pub const ROLE: &str = "aws.Role";
    /// `Description`.
    pub const DESCRIPTION: &str = "aws.Description";
    /// `Runtime` as given.
    pub const RUNTIME: &str = "aws.Runtime";
}

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
    #[serde(default)]
    publish: bool,
    #[serde(flatten)]
    settings: Settings,
}

/// The settings `CreateFunction` and `UpdateFunctionConfiguration` take.
#[derive(Deserialize, Default)]
#[serde(rename_all = "PascalCase")]
struct Settings {
    memory_size: Option<u64>,
    timeout: Option<u64>,
    environment: Option<Environment>,
    ephemeral_storage: Option<Size>,
    handler: Option<String>,
    description: Option<String>,
    role: Option<String>,
    runtime: Option<String>,
}

impl Settings {
    /// `cfg` with these settings: each one given replaces the old (the
    /// environment as a whole, as on Lambda).
    fn apply(&self, mut cfg: FunctionConfig) -> Result<FunctionConfig, String> {
        if let Some(mb) = self.memory_size {
            if !(1..=10_240).contains(&mb) {
                return Err(format!("MemorySize {mb}: must be 1 to 10240 (MB)"));
            }
            cfg = cfg.memory_limit(mb << 20);
        }
        if let Some(s) = self.timeout {
            if !(1..=900).contains(&s) {
                return Err(format!("Timeout {s}: must be 1 to 900 (seconds)"));
            }
            cfg = cfg.timeout(Duration::from_secs(s));
        }
        if let Some(mb) = self.ephemeral_storage.as_ref().map(|s| s.size) {
            if !(1..=10_240).contains(&mb) {
                return Err(format!(
                    "EphemeralStorage.Size {mb}: must be 1 to 10240 (MB)"
                ));
            }
            cfg = cfg.tmp_quota(mb << 20);
        }
        if let Some(env) = &self.environment {
            cfg = cfg.clear_env();
            for (k, v) in &env.variables {
                cfg = cfg.env(k, v);
            }
        }
        for (key, value, max) in [
            (keys::HANDLER, &self.handler, 128),
            (keys::DESCRIPTION, &self.description, 256),
            (keys::ROLE, &self.role, 2048),
            (keys::RUNTIME, &self.runtime, 64),
        ] {
            if let Some(v) = value {
                if v.len() > max {
                    let field = key.trim_start_matches("aws.");
                    return Err(format!("{field}: at most {max} characters"));
                }
                cfg = cfg.annotate(key, v);
            }
        }
        Ok(cfg)
    }
}

/// An uploaded package: the module it holds and Lambda's digest and size
/// of the package itself.
#[derive(Clone)]
struct Package {
    module: Bytes,
    sha256: String,
    size: usize,
}

impl Package {
    /// The package a base64 `ZipFile` holds (see `package`).
    fn decode(zip_file: &str, handler: Option<&str>) -> Result<Package, String> {
        let package = base64::engine::general_purpose::STANDARD
            .decode(zip_file.trim())
            .map_err(|e| format!("ZipFile is not base64: {e}"))?;
        Ok(Package {
            module: Bytes::from(package::module_of(&package, handler)?),
            sha256: read::package_sha256(&package),
            size: package.len(),
        })
    }

    /// `cfg` with this package's code.
    fn install(&self, cfg: FunctionConfig) -> FunctionConfig {
        cfg.with_source(fnhost::ModuleSource::Bytes(self.module.clone()))
            .annotate(keys::CODE_SHA256, &self.sha256)
            .annotate(keys::CODE_SIZE, self.size.to_string())
    }
}

/// The answer to a change that made `info`: its configuration as
/// `$LATEST` (a draft) or as its published number.
fn changed(host: &Host, status: StatusCode, info: &fnhost::FunctionInfo) -> Response {
    let target = match info.draft {
        true => info.name.clone(),
        false => format!("{}:{}", info.name, info.version),
    };
    match read::describe(host, &target) {
        Ok(d) => {
            let version = (!info.draft).then_some(info.version);
            let revision = read::revision_id(host, &info.name);
            let c = read::configuration(&d, version, &revision, true);
            (status, axum::Json(c)).into_response()
        }
        Err(e) => refusal(&e),
    }
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

/// `POST /2015-03-31/functions`: a new function, its `$LATEST` a draft
/// (or published as version 1 with `Publish`).
pub(crate) async fn create_function(State(gw): State<Shared>, Authed(body): Authed) -> Response {
    let req: CreateFunction = match json_body(&body) {
        Ok(r) => r,
        Err(r) => return *r,
    };
    let Some(zip) = req.code.zip_file else {
        return bad_request("Code.ZipFile (the .wasm module, base64) is required");
    };
    let name = req.function_name;
    let cfg = match req
        .settings
        .apply(FunctionConfig::from_bytes(name.clone(), Bytes::new()))
    {
        Ok(c) => c,
        Err(why) => return bad_request(&why),
    };
    let package = match Package::decode(&zip, req.settings.handler.as_deref()) {
        Ok(p) => p,
        Err(why) => return bad_request(&format!("Code.{why}")),
    };
    let (cfg, module) = (package.install(cfg), package.module);
    // The existence check runs inside the change, after this node has
    // caught up with the cluster's registry.
    let (n, publish) = (name.clone(), req.publish);
    let create = move |h: &Host| {
        if h.function_info(&n).is_ok() {
            return Err(Error::AlreadyExists { name: n.clone() });
        }
        match publish {
            true => h.register(cfg.clone()),
            false => h.stage(cfg.clone()),
        }
    };
    match change(&gw, &name, Some(module), create).await {
        Ok(info) => changed(&gw.host, StatusCode::CREATED, &info),
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

/// A version an alias may name: a number, or `$LATEST` as
/// [`Alias::LATEST`].
fn version_number(s: &str) -> Result<u32, String> {
    if s == fnhost::LATEST {
        return Ok(Alias::LATEST);
    }
    s.parse()
        .ok()
        .filter(|v| *v != Alias::LATEST)
        .ok_or_else(|| format!("FunctionVersion {s:?} is neither a version number nor $LATEST"))
}

/// How an alias names `version`.
fn version_label(version: u32) -> String {
    match version {
        Alias::LATEST => fnhost::LATEST.to_string(),
        v => v.to_string(),
    }
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
        .map(|(v, w)| (version_label(*v), json!(w)))
        .collect();
    json!({
        "AliasArn": read::arn(function, Some(alias)),
        "Name": alias,
        "FunctionVersion": version_label(a.version),
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
        if creating {
            // A new alias starts without a URL, whatever a raced delete
            // may have left under its name.
            h.annotate_function(&n, &crate::http::url_config::key(Some(&a)), None)?;
        }
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
    // The alias' function URL goes with it (as on Lambda).
    let removed = move |h: &Host| {
        h.remove_alias(&n, &a)?;
        h.annotate_function(&n, &crate::http::url_config::key(Some(&a)), None)
            .map(drop)
    };
    match change(&gw, &name, None, removed).await {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => refusal(&e),
    }
}
