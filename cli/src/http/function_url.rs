//! Function URLs, the serving side: a request addressed to a URL reaches
//! its function before any other route is looked at, so nothing the
//! client sends there falls through to the Lambda API or a trigger route.
//!
//! A request is addressed to URL `<id>` by its host name
//! (`<id>.lambda-url.<region>.localhost[:port]`, the form
//! `GetFunctionUrlConfig` answers; every path is the function's) or by the
//! path prefix `/lambda-url/<id>` (for clients that cannot pick a host
//! name; the prefix is not part of the path the function sees).
//!
//! The function gets API Gateway's payload 2.0 event (`routeKey`
//! `$default`, `requestContext.requestId`, `time`, `apiId` and
//! `domainPrefix` the URL id); an HTTP component gets the request itself
//! and streams its answer. `AuthType AWS_IAM` URLs take only requests
//! SigV4-signed with the server's admin credentials (anything else: 403,
//! no function runs). A URL with `Cors` answers preflight requests itself
//! and sets the `Access-Control-*` headers of every answer (the
//! function's own are replaced), as Lambda does.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fnhost::Host;
use serde_json::{Value, json};

use super::aws::{plain_error, plain_refusal, read_body};
use super::payload_v2::{CameIn, described_response, event_v2, http_response, source_ip};
use super::state::{Gateway, Shared};
use super::url_config::{AuthType, Cors, InvokeMode, UrlConfig, is_url_id, qualifier_of};

/// AWS_IAM URL requests whose body is being read before their signature
/// can be checked: bounds what unverified callers make the server buffer
/// to this many of the gateway's `max_body`.
static URL_BODY_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(16);

/// The path prefix that addresses a URL without its host name.
const PREFIX: &str = "/lambda-url/";

/// URL ids → what they serve, rebuilt when the host's table changes
/// ([`Host::registry_generation`]), so finding a URL costs one lookup.
#[derive(Default)]
pub struct Urls {
    index: parking_lot::Mutex<Option<(u64, Index)>>,
}

/// URL id → what it serves.
type Index = Arc<HashMap<String, Target>>;

/// What one URL serves.
#[derive(Clone)]
struct Target {
    /// `name` or `name:alias`.
    function: String,
    config: UrlConfig,
}

impl Urls {
    fn lookup(&self, host: &Host, id: &str) -> Option<Target> {
        // Read before building: a change made while building moves it
        // again, and the next lookup rebuilds.
        let generation = host.registry_generation();
        if let Some((seen, index)) = &*self.index.lock()
            && *seen == generation
        {
            return index.get(id).cloned();
        }
        let index = Arc::new(build_index(host));
        let found = index.get(id).cloned();
        *self.index.lock() = Some((generation, index));
        found
    }
}

fn build_index(host: &Host) -> HashMap<String, Target> {
    let mut index = HashMap::new();
    for info in host.functions() {
        let Ok(notes) = host.function_annotations(&info.name) else {
            continue;
        };
        for (key, value) in &notes {
            let (Some(qualifier), Ok(config)) =
                (qualifier_of(key), serde_json::from_str::<UrlConfig>(value))
            else {
                continue;
            };
            let function = match qualifier {
                Some(alias) => format!("{}:{alias}", info.name),
                None => info.name.clone(),
            };
            index.insert(config.id.clone(), Target { function, config });
        }
    }
    index
}

/// The URL id a request is addressed to, and for the path-prefix form the
/// path the function sees.
fn addressed(req: &Request) -> Option<(String, Option<String>)> {
    let host = req.uri().host().map(str::to_string).or_else(|| {
        let h = req.headers().get(header::HOST)?.to_str().ok()?;
        Some(match h.rsplit_once(':') {
            Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_string(),
            _ => h.to_string(),
        })
    });
    if let Some(host) = host {
        let host = host.to_ascii_lowercase();
        if let Some((id, _)) = host.split_once(".lambda-url.") {
            return Some((id.to_string(), None));
        }
    }
    let rest = req.uri().path().strip_prefix(PREFIX)?;
    let (id, path) = match rest.split_once('/') {
        Some((id, path)) => (id, format!("/{path}")),
        None => (rest, "/".to_string()),
    };
    Some((id.to_string(), Some(path)))
}

/// The middleware: URL requests are served here, the rest go on.
pub(super) async fn dispatch(
    State((gw, urls)): State<(Shared, Arc<Urls>)>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let Some((id, path)) = addressed(&req) else {
        return next.run(req).await;
    };
    let target = if is_url_id(&id) {
        urls.lookup(&gw.host, &id)
    } else {
        None
    };
    match target {
        Some(t) => serve(&gw, t, path, req).await,
        None => plain_error(StatusCode::NOT_FOUND, "no such function URL"),
    }
}

fn forbidden() -> Response {
    plain_error(StatusCode::FORBIDDEN, "Forbidden")
}

async fn serve(gw: &Gateway, t: Target, path: Option<String>, req: Request) -> Response {
    let source_ip = source_ip(&req);
    let (mut parts, body) = req.into_parts();
    let origin = parts.headers.get(header::ORIGIN).cloned();
    let cors = t.config.cors.as_ref();
    if let (Some(cors), Some(origin)) = (cors, &origin)
        && parts.method == Method::OPTIONS
        && parts
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    {
        return preflight(cors, origin);
    }
    let (caller, body) = match t.config.auth {
        AuthType::None => (None, body),
        AuthType::AwsIam => {
            if !gw.admin.is_on() || !super::sigv4::is_sigv4(&parts.headers) {
                return forbidden();
            }
            match super::auth::verify_signed(&gw.admin, &parts, body, gw.max_body, &URL_BODY_SLOTS)
                .await
            {
                Ok((key, bytes)) => (Some(key), Body::from(bytes)),
                Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return plain_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
                }
                Err(_) => return forbidden(),
            }
        }
    };
    // The signature (above) covers the path as sent; the function sees it
    // without the prefix.
    if let Some(path) = path {
        let pq = match parts.uri.query() {
            Some(q) => format!("{path}?{q}"),
            None => path,
        };
        let mut uri = axum::http::uri::Parts::from(parts.uri.clone());
        uri.path_and_query = pq.parse().ok();
        match axum::http::Uri::from_parts(uri) {
            Ok(u) => parts.uri = u,
            Err(_) => return plain_error(StatusCode::BAD_REQUEST, "invalid path"),
        }
    }
    let request_id = crate::ids::fresh("");
    let mut resp = if gw.host.function_info(&t.function).is_ok_and(|i| i.is_http) {
        super::streaming::serve(gw, &t.function, Request::from_parts(parts, body)).await
    } else {
        let body = match read_body(body, gw.max_body).await {
            Ok(b) => b,
            Err(_) => {
                return plain_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large");
            }
        };
        let came_in = CameIn {
            route_key: "$default",
            raw_path: parts.uri.path(),
            api_id: &t.config.id,
            domain_prefix: &t.config.id,
            source_ip,
            request_id: &request_id,
            authorizer: caller.as_deref().map(iam_authorizer),
        };
        let event = event_v2(&parts, &came_in, serde_json::Map::new(), &body);
        match gw
            .run(&t.function, Bytes::from(event.to_string()), None)
            .await
        {
            Ok(inv) => match inv.outcome {
                Ok(out) => match t.config.mode {
                    InvokeMode::Buffered => http_response(&out),
                    InvokeMode::ResponseStream => streamed_response(&out),
                },
                Err(e) => {
                    tracing::warn!(target: "fnhost::http", function = %t.function, error = %e, "function error");
                    plain_error(StatusCode::BAD_GATEWAY, "Internal Server Error")
                }
            },
            Err(e) => plain_refusal(&e),
        }
    };
    if let (Some(cors), Some(origin)) = (cors, &origin) {
        decorate(cors, origin, resp.headers_mut());
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    resp
}

/// `requestContext.authorizer` of a request signed with `access_key`.
fn iam_authorizer(access_key: &str) -> Value {
    json!({"iam": {
        "accessKey": access_key,
        "accountId": "000000000000",
        "callerId": access_key,
        "cognitoIdentity": null,
        "principalOrgId": null,
        "userArn": format!("arn:aws:iam::000000000000:user/{access_key}"),
        "userId": access_key,
    }})
}

/// A `RESPONSE_STREAM` URL's answer from a function's output: Lambda's
/// HTTP response stream (a JSON prelude with `statusCode`, `headers`,
/// `cookies`, then 8 NUL bytes, then the body), or, without a prelude,
/// the output as an `application/octet-stream` body.
fn streamed_response(out: &[u8]) -> Response {
    const DELIMITER: [u8; 8] = [0; 8];
    if out.first() == Some(&b'{')
        && let Some(at) = out.windows(8).position(|w| w == DELIMITER)
        && let Ok(Value::Object(prelude)) = serde_json::from_slice::<Value>(&out[..at])
    {
        let status = prelude
            .get("statusCode")
            .and_then(Value::as_u64)
            .unwrap_or(200);
        return described_response(&prelude, status, out[at + 8..].to_vec());
    }
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        out.to_vec(),
    )
        .into_response()
}

/// The `Access-Control-Allow-Origin` value for `origin`, if `cors` allows
/// it: the origin itself, or `*` when any is allowed without credentials.
fn allowed_origin(cors: &Cors, origin: &HeaderValue) -> Option<HeaderValue> {
    let origins = cors.allow_origins.as_deref()?;
    let given = origin.to_str().ok()?;
    if origins.iter().any(|o| o == given) {
        return Some(origin.clone());
    }
    if origins.iter().any(|o| o == "*") {
        return Some(if cors.allow_credentials == Some(true) {
            origin.clone()
        } else {
            HeaderValue::from_static("*")
        });
    }
    None
}

fn joined(list: &Option<Vec<String>>) -> Option<HeaderValue> {
    let list = list.as_deref().filter(|l| !l.is_empty())?;
    HeaderValue::from_str(&list.join(",")).ok()
}

/// The answer to a CORS preflight (`OPTIONS` with
/// `Access-Control-Request-Method`): the function does not run.
fn preflight(cors: &Cors, origin: &HeaderValue) -> Response {
    let mut resp = StatusCode::OK.into_response();
    let h = resp.headers_mut();
    h.insert(header::VARY, HeaderValue::from_static("Origin"));
    let Some(allowed) = allowed_origin(cors, origin) else {
        return resp;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    if let Some(v) = joined(&cors.allow_methods) {
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
    }
    if let Some(v) = joined(&cors.allow_headers) {
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
    }
    if let Some(age) = cors.max_age {
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from(age));
    }
    if cors.allow_credentials == Some(true) {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
    resp
}

/// Sets an answer's CORS headers from `cors` (the function's own
/// `Access-Control-*` headers are dropped).
fn decorate(cors: &Cors, origin: &HeaderValue, h: &mut HeaderMap) {
    let theirs: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for k in theirs {
        h.remove(k);
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(allowed) = allowed_origin(cors, origin) else {
        return;
    };
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, allowed);
    if let Some(v) = joined(&cors.expose_headers) {
        h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
    }
    if cors.allow_credentials == Some(true) {
        h.insert(
            header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
            HeaderValue::from_static("true"),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, path: &str) -> Request {
        Request::builder()
            .uri(path)
            .header("host", host)
            .body(Body::empty())
            .unwrap()
    }

    #[test]
    fn requests_are_addressed_by_host_name_or_path_prefix() {
        let id = "abcdefghijklmnopqrstuvwxyz012345";
        let by_host = req(&format!("{id}.lambda-url.local.localhost:9000"), "/x/y?q=1");
        assert_eq!(addressed(&by_host), Some((id.to_string(), None)));
        let upper = req(
            &format!("{}.LAMBDA-URL.local.localhost", id.to_uppercase()),
            "/",
        );
        assert_eq!(addressed(&upper), Some((id.to_string(), None)));
        let by_path = req("127.0.0.1:9000", &format!("/lambda-url/{id}/x/y?q=1"));
        assert_eq!(
            addressed(&by_path),
            Some((id.to_string(), Some("/x/y".to_string())))
        );
        let bare = req("127.0.0.1:9000", &format!("/lambda-url/{id}"));
        assert_eq!(addressed(&bare), Some((id.to_string(), Some("/".into()))));
        assert_eq!(addressed(&req("127.0.0.1:9000", "/hello")), None);
        assert_eq!(addressed(&req("127.0.0.1:9000", "/lambda-urlx/a")), None);
    }

    async fn body_of(r: Response) -> Vec<u8> {
        axum::body::to_bytes(r.into_body(), 1 << 20)
            .await
            .unwrap()
            .to_vec()
    }

    #[tokio::test]
    async fn streamed_outputs_with_and_without_a_prelude() {
        let out = b"{\"statusCode\":201,\"headers\":{\"x-a\":\"1\",\"content-length\":\"1\"}}\0\0\0\0\0\0\0\0body\0bytes";
        let r = streamed_response(out);
        assert_eq!(r.status(), 201);
        assert_eq!(r.headers()["x-a"], "1");
        assert!(
            !r.headers().contains_key("content-length"),
            "framing is the gateway's"
        );
        assert_eq!(body_of(r).await, b"body\0bytes");
        let r = streamed_response(b"plain");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/octet-stream");
        assert_eq!(body_of(r).await, b"plain");
        // A prelude that is not JSON is body.
        let out = b"{nope\0\0\0\0\0\0\0\0x";
        let r = streamed_response(out);
        assert_eq!(r.status(), 200);
        assert_eq!(body_of(r).await, out);
    }

    #[test]
    fn cors_allows_listed_origins_only() {
        let cors = Cors {
            allow_origins: Some(vec!["https://a.example".into()]),
            allow_methods: Some(vec!["GET".into(), "POST".into()]),
            expose_headers: Some(vec!["x-a".into()]),
            max_age: Some(60),
            ..Cors::default()
        };
        let a = HeaderValue::from_static("https://a.example");
        let p = preflight(&cors, &a);
        assert_eq!(
            p.headers()["access-control-allow-origin"],
            "https://a.example"
        );
        assert_eq!(p.headers()["access-control-allow-methods"], "GET,POST");
        assert_eq!(p.headers()["access-control-max-age"], "60");
        let b = HeaderValue::from_static("https://b.example");
        assert!(
            !preflight(&cors, &b)
                .headers()
                .contains_key("access-control-allow-origin")
        );
        let mut h = HeaderMap::new();
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        decorate(&cors, &b, &mut h);
        assert!(
            !h.contains_key("access-control-allow-origin"),
            "the function's own is dropped"
        );
        decorate(&cors, &a, &mut h);
        assert_eq!(h["access-control-expose-headers"], "x-a");
        let any = Cors {
            allow_origins: Some(vec!["*".into()]),
            ..Cors::default()
        };
        assert_eq!(allowed_origin(&any, &b).unwrap(), "*");
        let with_credentials = Cors {
            allow_credentials: Some(true),
            ..any
        };
        assert_eq!(allowed_origin(&with_credentials, &b).unwrap(), b);
    }
}
