//! The HTTP gateway: the AWS Lambda Invoke API (so AWS SDKs and the AWS
//! CLI work with `--endpoint-url`), API Gateway HTTP API-style routes
//! (payload format 2.0), `/metrics` and `/healthz`.
//!
//! With a cluster ([`crate::cluster`]), `Event` invocations go on the
//! shared stream, a sync invocation this node cannot serve is forwarded to
//! another node, and the control API (create/delete functions, aliases;
//! see [`crate::control`]) changes the registry of every node.
//!
//! Every error is JSON. Lambda API errors carry AWS's shapes: the
//! `x-amzn-ErrorType` header and a `{"Type","Message"}` body.

use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use fnhost::events::EventBackend;
use fnhost::{Error, ErrorKind, Host, Invocation};

use crate::cluster::Cluster;
use crate::control;
use serde_json::{Value, json};

/// Most header bytes accepted per request (names + values).
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Bytes of log tail returned by `X-Amz-Log-Type: Tail` (Lambda's 4 KB).
pub const LOG_TAIL: usize = 4096;

/// One HTTP trigger route: `METHOD /path/{param}/{proxy+}` → function.
#[derive(Debug, Clone)]
pub struct Route {
    /// `None` for `ANY`.
    pub method: Option<Method>,
    /// Path segments; `{x}` captures one, a final `{x+}` the rest.
    pub segments: Vec<String>,
    /// The route key as written.
    pub key: String,
    /// Function it invokes.
    pub function: String,
}

impl Route {
    /// Parses `"ANY /hello/{proxy+}"`.
    pub fn parse(spec: &str, function: &str) -> Result<Route> {
        let (m, path) = spec
            .trim()
            .split_once(' ')
            .ok_or_else(|| anyhow::anyhow!("{spec:?}: expected \"METHOD /path\""))?;
        let method = match m {
            "ANY" => None,
            "GET" | "POST" | "PUT" | "DELETE" | "PATCH" | "HEAD" | "OPTIONS" => {
                Some(Method::from_bytes(m.as_bytes())?)
            }
            other => bail!("{spec:?}: unknown method {other:?}"),
        };
        let path = path.trim();
        if !path.starts_with('/') {
            bail!("{spec:?}: the path must start with '/'");
        }
        let segments: Vec<String> = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        for (i, s) in segments.iter().enumerate() {
            if s.ends_with("+}") && i + 1 != segments.len() {
                bail!("{spec:?}: a greedy {s} must be the last segment");
            }
        }
        Ok(Route {
            method,
            segments,
            key: format!("{m} {path}"),
            function: function.to_string(),
        })
    }

    /// Path parameters when `method` and `path` match.
    fn matches(&self, method: &Method, path: &str) -> Option<serde_json::Map<String, Value>> {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return None;
        }
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut params = serde_json::Map::new();
        for (i, seg) in self.segments.iter().enumerate() {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                if i >= parts.len() {
                    return None;
                }
                params.insert(name.into(), Value::String(parts[i..].join("/")));
                return Some(params);
            }
            let part = parts.get(i)?;
            match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => {
                    params.insert(name.into(), Value::String((*part).into()));
                }
                None if seg == part => {}
                None => return None,
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }
}

/// What the gateway shares between requests.
pub struct Gateway {
    /// The host.
    pub host: Host,
    /// HTTP trigger routes.
    pub routes: Vec<Route>,
    /// Largest accepted body.
    pub max_body: usize,
    /// The cluster this node belongs to, if any.
    pub cluster: Option<Arc<Cluster>>,
    /// Bearer token for the control API; `None` turns the control API off.
    pub admin_token: Option<String>,
}

impl Gateway {
    /// A gateway for `host` with no routes, a 6 MB body limit, no cluster
    /// and the control API off.
    pub fn new(host: Host) -> Gateway {
        Gateway {
            host,
            routes: Vec::new(),
            max_body: 6 << 20,
            cluster: None,
            admin_token: None,
        }
    }

    /// Where `Event` invocations go: the cluster's shared stream, else the
    /// host's own event store.
    fn event_backend(&self) -> Arc<dyn EventBackend> {
        match &self.cluster {
            Some(c) => c.clone(),
            None => Arc::new(HostEvents(self.host.clone())),
        }
    }

    /// Runs `target` here. With a cluster, a function this node does not
    /// have yet is first fetched from the cluster's registry; an
    /// invocation this node has no slot for (or still cannot find) goes to
    /// another node. `Err` means no guest ran anywhere.
    pub(crate) async fn run(&self, target: &str, payload: Bytes) -> Result<Invocation, Error> {
        let here = self.host.invoke_async(target, payload.clone()).await;
        let Some(c) = &self.cluster else {
            return here;
        };
        let here = match here {
            Err(Error::NotFound { .. }) => {
                c.refresh(crate::cluster::function_of(target)).await;
                self.host.invoke_async(target, payload.clone()).await
            }
            other => other,
        };
        match here {
            // No slot here; or the function is in the cluster but this node
            // could not apply it (another node may have).
            Err(e @ (Error::Throttled { .. } | Error::NotFound { .. })) => {
                c.forward(target, payload, e).await
            }
            other => other,
        }
    }
}

/// The host's own event store as an [`EventBackend`] the gateway can own.
struct HostEvents(Host);

impl EventBackend for HostEvents {
    fn send_event(&self, target: &str, payload: Bytes) -> fnhost::Result<String> {
        self.0.events().send_event(target, payload)
    }

    fn is_durable(&self) -> bool {
        self.0.events().is_durable()
    }
}

pub(crate) type Shared = Arc<Gateway>;

/// The router: Lambda API, health, metrics, then trigger routes.
pub fn router(gw: Gateway) -> Router {
    let gw: Shared = Arc::new(gw);
    Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(invoke),
        )
        .route(
            "/2015-03-31/functions",
            axum::routing::get(list_functions).post(control::create_function),
        )
        .route(
            "/2015-03-31/functions/",
            axum::routing::get(list_functions).post(control::create_function),
        )
        .route(
            "/2015-03-31/functions/{name}",
            axum::routing::get(get_function).delete(control::delete_function),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            axum::routing::post(control::create_alias),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            axum::routing::put(control::update_alias).delete(control::delete_alias),
        )
        .route("/healthz", axum::routing::get(healthz))
        .route("/metrics", axum::routing::get(metrics))
        .fallback(trigger)
        .layer(axum::middleware::from_fn(guard_and_log))
        .with_state(gw)
}

/// Header-size limit and one structured log line per request.
async fn guard_and_log(req: Request, next: axum::middleware::Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let resp = if header_bytes > MAX_HEADER_BYTES {
        plain_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "request headers are {header_bytes} bytes; at most {MAX_HEADER_BYTES} allowed"
            ),
        )
    } else {
        next.run(req).await
    };
    tracing::info!(
        target: "fnhost::http",
        %method,
        path,
        status = resp.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// An AWS-shaped error: `x-amzn-ErrorType` header, `{"Type","Message"}`.
pub(crate) fn aws_error(status: StatusCode, error_type: &str, message: &str) -> Response {
    let mut r = (
        status,
        axum::Json(json!({"Type": "User", "Message": message, "message": message})),
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(error_type) {
        r.headers_mut().insert("x-amzn-ErrorType", v);
    }
    r
}

/// A non-Lambda JSON error (`{"message": ..}`, as API Gateway answers).
fn plain_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({"message": message}))).into_response()
}

/// Maps a refusal (no guest ran) to the Lambda API's error shapes.
pub(crate) fn refusal(e: &Error) -> Response {
    match e {
        Error::NotFound { .. } => aws_error(
            StatusCode::NOT_FOUND,
            "ResourceNotFoundException",
            &e.to_string(),
        ),
        Error::Throttled { .. } => {
            let mut r = aws_error(
                StatusCode::TOO_MANY_REQUESTS,
                "TooManyRequestsException",
                &e.to_string(),
            );
            r.headers_mut()
                .insert("Retry-After", HeaderValue::from_static("1"));
            r
        }
        Error::PayloadTooLarge { .. } => aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &e.to_string(),
        ),
        Error::ShuttingDown => aws_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceException",
            &e.to_string(),
        ),
        other => aws_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "ServiceException",
            &other.to_string(),
        ),
    }
}

/// Lambda's `errorType` for a function error.
fn error_type(e: &Error) -> String {
    match e {
        Error::Guest { kind, .. } => kind.clone(),
        other => match other.kind() {
            ErrorKind::Timeout => "Sandbox.Timedout".into(),
            ErrorKind::OutOfMemory => "Runtime.OutOfMemory".into(),
            ErrorKind::OutputTooLarge => "Function.ResponseSizeTooLarge".into(),
            ErrorKind::AbiViolation => "Runtime.AbiViolation".into(),
            ErrorKind::Trap => "Runtime.Trap".into(),
            k => format!("Runtime.{}", k.as_str()),
        },
    }
}

fn error_message(e: &Error) -> String {
    match e {
        Error::Guest { message, .. } => message.clone(),
        other => other.to_string(),
    }
}

/// Splits `name`, `name:qualifier` or a function ARN.
pub(crate) fn function_and_qualifier(raw: &str) -> (String, Option<String>) {
    let rest = raw
        .strip_prefix("arn:")
        .map_or(raw, |arn| arn.split(":function:").nth(1).unwrap_or(arn));
    match rest.split_once(':') {
        Some((n, q)) => (n.to_string(), Some(q.to_string())),
        None => (rest.to_string(), None),
    }
}

pub(crate) async fn read_body(body: Body, max: usize) -> Result<Bytes, Response> {
    let too_large = || {
        aws_error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestTooLargeException",
            &format!("the request body is over the limit of {max} bytes"),
        )
    };
    // A declared Content-Length over the limit is refused before reading.
    if http_body::Body::size_hint(&body).lower() > max as u64 {
        return Err(too_large());
    }
    axum::body::to_bytes(body, max)
        .await
        .map_err(|_| too_large())
}

/// `POST /2015-03-31/functions/{name}/invocations`.
async fn invoke(
    State(gw): State<Shared>,
    Path(raw_name): Path<String>,
    Query(query): Query<std::collections::HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let (name, path_qualifier) = function_and_qualifier(&raw_name);
    let qualifier = query.get("Qualifier").cloned().or(path_qualifier);
    // `name`, `name:version` or `name:alias`, resolved by the host.
    let target = match &qualifier {
        Some(q) => format!("{name}:{q}"),
        None => name.clone(),
    };
    let header = |h: &str| headers.get(h).map(|v| v.to_str().unwrap_or("\u{fffd}"));
    let invocation_type = header("x-amz-invocation-type")
        .unwrap_or("RequestResponse")
        .to_string();
    let tail = match header("x-amz-log-type") {
        None | Some("None") => false,
        Some("Tail") => true,
        Some(other) => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!("X-Amz-Log-Type must be None or Tail, not {other:?}"),
            );
        }
    };
    let payload = match read_body(body, gw.max_body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !payload.is_empty() && serde_json::from_slice::<serde::de::IgnoredAny>(&payload).is_err() {
        return aws_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequestContentException",
            "Could not parse request body into json: the payload must be JSON",
        );
    }
    match invocation_type.as_str() {
        "RequestResponse" => {}
        "DryRun" => {
            return match gw.host.function_info(&target) {
                Ok(_) => StatusCode::NO_CONTENT.into_response(),
                Err(e) => refusal(&e),
            };
        }
        "Event" => {
            // Committed to the event store (the host's, or the cluster's
            // stream) before the 202: retried and dead-lettered there.
            let events = gw.event_backend();
            let sent = tokio::task::spawn_blocking(move || events.send_event(&target, payload));
            return match sent.await {
                Ok(Ok(id)) => {
                    let mut r = StatusCode::ACCEPTED.into_response();
                    if let Ok(v) = HeaderValue::from_str(&id) {
                        r.headers_mut().insert("x-amzn-RequestId", v);
                    }
                    r
                }
                Ok(Err(e)) => refusal(&e),
                Err(e) => aws_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "ServiceException",
                    &format!("event invocation failed: {e}"),
                ),
            };
        }
        other => {
            return aws_error(
                StatusCode::BAD_REQUEST,
                "InvalidParameterValueException",
                &format!(
                    "X-Amz-Invocation-Type must be RequestResponse, Event or DryRun, not {other:?}"
                ),
            );
        }
    }
    let inv = match gw.run(&target, payload).await {
        Ok(inv) => inv,
        Err(e) => return refusal(&e),
    };
    lambda_response(inv, tail)
}

fn lambda_response(inv: Invocation, tail: bool) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        "x-amz-executed-version",
        HeaderValue::from_str(&inv.report.version).unwrap_or(HeaderValue::from_static("$LATEST")),
    );
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_str(&inv.report.request_id.to_string())
            .unwrap_or(HeaderValue::from_static("-")),
    );
    if tail {
        let mut text = inv.logs.to_display_string();
        text.push_str(&format!(
            "{}\n{}\n",
            inv.report.end_line(),
            inv.report.report_line()
        ));
        let start = text.len().saturating_sub(LOG_TAIL);
        let start = (start..text.len())
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(text.len());
        let b64 = base64::engine::general_purpose::STANDARD.encode(&text.as_bytes()[start..]);
        if let Ok(v) = HeaderValue::from_str(&b64) {
            headers.insert("x-amz-log-result", v);
        }
    }
    match inv.outcome {
        Ok(out) => {
            headers.insert("content-type", HeaderValue::from_static("application/json"));
            (StatusCode::OK, headers, out).into_response()
        }
        // A host bug is the service's failure, not the function's (Lambda's
        // ServiceException), so SDKs retry it.
        Err(e @ Error::Internal { .. }) => {
            let mut r = aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                &e.to_string(),
            );
            r.headers_mut().extend(headers);
            r
        }
        Err(e) => {
            headers.insert(
                "x-amz-function-error",
                HeaderValue::from_static("Unhandled"),
            );
            let body = json!({"errorMessage": error_message(&e), "errorType": error_type(&e)});
            (StatusCode::OK, headers, axum::Json(body)).into_response()
        }
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
        "Version": "$LATEST",
        "PackageType": "Zip",
        "State": "Active",
        "Architectures": ["wasm32"],
        "EphemeralStorage": {"Size": info.tmp_quota >> 20},
    })
}

/// `GET /2015-03-31/functions/`.
async fn list_functions(State(gw): State<Shared>) -> Response {
    let functions: Vec<Value> = gw.host.functions().iter().map(configuration).collect();
    axum::Json(json!({"Functions": functions})).into_response()
}

/// `GET /2015-03-31/functions/{name}`.
async fn get_function(State(gw): State<Shared>, Path(raw): Path<String>) -> Response {
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

/// `GET /healthz`: 200 `{"status": "ok"}`; with a cluster, 503
/// `{"status": "degraded"}` while NATS or JetStream cannot be reached.
async fn healthz(State(gw): State<Shared>) -> Response {
    let stats = gw.host.stats();
    let mut body = json!({
        "status": "ok",
        "functions": gw.host.functions().len(),
        "compiles": stats.compiles,
        "cache_hits": stats.cache_hits,
    });
    let mut status = StatusCode::OK;
    if let Some(c) = &gw.cluster {
        let (ok, cluster) = c.health().await;
        body["cluster"] = cluster;
        if !ok {
            body["status"] = json!("degraded");
            status = StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(gw): State<Shared>) -> Response {
    let mut text = gw.host.prometheus();
    if let Some(c) = &gw.cluster {
        text.push_str(&c.prometheus());
    }
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}

/// HTTP trigger routes: an API Gateway HTTP API (payload 2.0) event in, the
/// function's response object (or plain result) out.
async fn trigger(State(gw): State<Shared>, req: Request) -> Response {
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    let Some((route, params)) = gw
        .routes
        .iter()
        .find_map(|r| r.matches(&parts.method, &path).map(|p| (r, p)))
    else {
        return plain_error(StatusCode::NOT_FOUND, "Not Found");
    };
    let body = match read_body(body, gw.max_body).await {
        Ok(b) => b,
        Err(_) => return plain_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let mut headers = serde_json::Map::new();
    let mut cookies = Vec::new();
    for (k, v) in &parts.headers {
        let v = String::from_utf8_lossy(v.as_bytes()).into_owned();
        if k == "cookie" {
            cookies.extend(v.split(';').map(|c| Value::String(c.trim().to_string())));
            continue;
        }
        match headers.get_mut(k.as_str()) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(&v);
            }
            _ => {
                headers.insert(k.as_str().to_string(), Value::String(v));
            }
        }
    }
    let raw_query = parts.uri.query().unwrap_or("").to_string();
    let mut query = serde_json::Map::new();
    for pair in raw_query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        match query.get_mut(k) {
            Some(Value::String(prev)) => {
                prev.push(',');
                prev.push_str(v);
            }
            _ => {
                query.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
    }
    let (body_field, is_b64) = match std::str::from_utf8(&body) {
        Ok(s) => (Value::String(s.to_string()), false),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(&body)),
            true,
        ),
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut event = json!({
        "version": "2.0",
        "routeKey": route.key,
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "fnhost",
            "domainName": parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost"),
            "http": {
                "method": parts.method.as_str(),
                "path": path,
                "protocol": format!("{:?}", parts.version),
                "sourceIp": source_ip,
                "userAgent": parts.headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or(""),
            },
            "routeKey": route.key,
            "stage": "$default",
            "timeEpoch": now.as_millis() as u64,
        },
        "isBase64Encoded": is_b64,
    });
    if !cookies.is_empty() {
        event["cookies"] = Value::Array(cookies);
    }
    if !query.is_empty() {
        event["queryStringParameters"] = Value::Object(query);
    }
    if !params.is_empty() {
        event["pathParameters"] = Value::Object(params);
    }
    if !body.is_empty() {
        event["body"] = body_field;
    }
    let payload = Bytes::from(event.to_string());
    match gw.run(&route.function, payload).await {
        Ok(inv) => match inv.outcome {
            Ok(out) => http_response(&out),
            Err(e) => {
                tracing::warn!(target: "fnhost::http", function = %route.function, error = %e, "function error");
                plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        },
        Err(Error::Throttled { .. }) => {
            plain_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests")
        }
        Err(Error::PayloadTooLarge { .. }) => {
            plain_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large")
        }
        Err(Error::ShuttingDown) => {
            plain_error(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable")
        }
        Err(e) => plain_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// Whether a guest may set response header `name`. Framing and hop-by-hop
/// headers belong to the connection, not to the function: a guest that set
/// `content-length` could cut its body short and have the rest read as the
/// client's next response (a forged answer for another route on a
/// pipelined connection). The gateway alone frames the body (HOSTILE 34).
pub fn guest_may_set(name: &HeaderName) -> bool {
    const CONNECTION_HEADERS: [&str; 7] = [
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
    ];
    let n = name.as_str();
    !(CONNECTION_HEADERS.contains(&n) || n.starts_with("proxy-") || n == "http2-settings")
}

/// Maps a function's result to HTTP as API Gateway (payload 2.0) does: an
/// object with `statusCode` is a response description; anything else is a
/// 200 JSON body.
fn http_response(out: &[u8]) -> Response {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(out) else {
        return ([("content-type", "application/json")], out.to_vec()).into_response();
    };
    let Some(status) = obj.get("statusCode").and_then(Value::as_u64) else {
        return ([("content-type", "application/json")], out.to_vec()).into_response();
    };
    let Ok(status) = StatusCode::from_u16(status as u16) else {
        return plain_error(
            StatusCode::BAD_GATEWAY,
            "function returned an invalid statusCode",
        );
    };
    let mut resp = Response::builder().status(status);
    if let Some(Value::Object(h)) = obj.get("headers") {
        for (k, v) in h {
            let v = match v {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            if let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(&v),
            ) && guest_may_set(&k)
            {
                resp = resp.header(k, v);
            }
        }
    }
    if let Some(Value::Array(cookies)) = obj.get("cookies") {
        for c in cookies.iter().filter_map(Value::as_str) {
            if let Ok(v) = HeaderValue::from_str(c) {
                resp = resp.header("set-cookie", v);
            }
        }
    }
    let body = match obj.get("body") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(s)) if obj.get("isBase64Encoded") == Some(&Value::Bool(true)) => {
            match base64::engine::general_purpose::STANDARD.decode(s) {
                Ok(b) => b,
                Err(_) => {
                    return plain_error(
                        StatusCode::BAD_GATEWAY,
                        "function returned invalid base64 body",
                    );
                }
            }
        }
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(other) => other.to_string().into_bytes(),
    };
    resp.body(Body::from(body))
        .unwrap_or_else(|_| plain_error(StatusCode::BAD_GATEWAY, "invalid response"))
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains the
/// host (running invocations finish within `grace`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> Result<()> {
    let host = gateway.host.clone();
    let cluster = gateway.cluster.clone();
    let stopping = cluster.clone();
    let app = router(gateway);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // Stop taking events and forwarded calls as soon as draining
        // starts; what runs finishes below.
        if let Some(c) = stopping {
            c.begin_shutdown();
        }
    })
    .await?;
    let report = tokio::task::spawn_blocking(move || host.shutdown(grace)).await?;
    // Running invocations are done (or cut off): acknowledge their events
    // and flush the answers of forwarded calls.
    if let Some(c) = cluster {
        c.finish_shutdown(std::time::Duration::from_secs(5)).await;
    }
    tracing::info!(target: "fnhost::http", rejected_queued = report.rejected_queued, still_running = report.still_running, "shut down");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_params_and_greedy_proxies() {
        let r = Route::parse("ANY /hello/{proxy+}", "f").unwrap();
        assert_eq!(
            r.matches(&Method::GET, "/hello/a/b").unwrap()["proxy"],
            "a/b"
        );
        assert!(r.matches(&Method::GET, "/hello").is_none());
        let r = Route::parse("GET /users/{id}", "f").unwrap();
        assert_eq!(r.matches(&Method::GET, "/users/7").unwrap()["id"], "7");
        assert!(r.matches(&Method::POST, "/users/7").is_none());
        assert!(r.matches(&Method::GET, "/users/7/x").is_none());
        assert!(Route::parse("FETCH /x", "f").is_err());
        assert!(Route::parse("GET x", "f").is_err());
        assert!(Route::parse("GET /{a+}/b", "f").is_err());
    }

    async fn parts(r: Response) -> (u16, Vec<(String, String)>, Vec<u8>) {
        let status = r.status().as_u16();
        let headers = r
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_string()))
            .collect();
        let body = axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec();
        (status, headers, body)
    }

    #[tokio::test]
    async fn function_results_map_to_http_as_api_gateway_does() {
        // A response object.
        let out =
            br#"{"statusCode":201,"headers":{"x-a":"1","x-n":2},"cookies":["s=1"],"body":"made"}"#;
        let (status, headers, body) = parts(http_response(out)).await;
        assert_eq!((status, body.as_slice()), (201, &b"made"[..]));
        for h in [("x-a", "1"), ("x-n", "2"), ("set-cookie", "s=1")] {
            assert!(
                headers.contains(&(h.0.to_string(), h.1.to_string())),
                "{headers:?}"
            );
        }
        // Base64 bodies are decoded.
        let (status, _, body) = parts(http_response(
            br#"{"statusCode":200,"body":"/wD+","isBase64Encoded":true}"#,
        ))
        .await;
        assert_eq!((status, body), (200, vec![0xff, 0x00, 0xfe]));
        // Plain JSON without statusCode: a 200 JSON body, as is.
        let (status, headers, body) = parts(http_response(br#"{"message":"hi"}"#)).await;
        assert_eq!(
            (status, body.as_slice()),
            (200, &br#"{"message":"hi"}"#[..])
        );
        assert!(headers.contains(&("content-type".into(), "application/json".into())));
        // An invalid status code or base64 body is a gateway error.
        assert_eq!(parts(http_response(br#"{"statusCode":7}"#)).await.0, 502);
        assert_eq!(
            parts(http_response(
                br#"{"statusCode":200,"body":"!!","isBase64Encoded":true}"#
            ))
            .await
            .0,
            502
        );
    }

    #[test]
    fn names_qualifiers_and_arns() {
        assert_eq!(function_and_qualifier("hello"), ("hello".into(), None));
        assert_eq!(
            function_and_qualifier("hello:prod"),
            ("hello".into(), Some("prod".into()))
        );
        assert_eq!(
            function_and_qualifier("arn:aws:lambda:us-east-1:123:function:hello:$LATEST"),
            ("hello".into(), Some("$LATEST".into()))
        );
    }
}
