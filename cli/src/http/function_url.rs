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
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fnhost::Host;
use serde_json::{Value, json};

use super::aws::{plain_error, plain_refusal, read_body};
use super::payload_v2::{CameIn, described_response, event_v2, http_response, source_ip};
use super::state::Gateway;
use super::url_config::{AuthType, Cors, InvokeMode, UrlConfig, is_url_id, qualifier_of};

/// AWS_IAM URL requests whose body is being read before their signature
/// can be checked: 16 of the gateway's `max_body` at once, 4 per address
/// (see [`BodySlots`](super::auth::BodySlots)).
static URL_BODY_SLOTS: std::sync::LazyLock<super::auth::BodySlots> =
    std::sync::LazyLock::new(|| super::auth::BodySlots::new(16, 4));

/// The path prefix that addresses a URL without its host name.
const PREFIX: &str = "/lambda-url/";

/// URL ids → what they serve, rebuilt when the host's table changes
/// ([`Host::registry_generation`]), so finding a URL costs one lookup.
#[derive(Default)]
pub struct Urls {
    index: parking_lot::Mutex<Option<(u64, Index)>>,
}

/// URL id → what it serves.
type Index = Arc<HashMap<String, Arc<Target>>>;

/// What one URL serves.
struct Target {
    /// `name` or `name:alias`.
    function: String,
    config: UrlConfig,
}

impl Urls {
    fn lookup(&self, host: &Host, id: &str) -> Option<Arc<Target>> {
        // One rebuild at a time: requests arriving meanwhile wait for it
        // instead of each building their own. The generation is read
        // before building: a change made while building moves it again,
        // and the next lookup rebuilds.
        let mut index = self.index.lock();
        let generation = host.registry_generation();
        match &*index {
            Some((seen, built)) if *seen == generation => built.get(id).cloned(),
            _ => {
                let built = Arc::new(build_index(host));
                let found = built.get(id).cloned();
                *index = Some((generation, built));
                found
            }
        }
    }
}

fn build_index(host: &Host) -> HashMap<String, Arc<Target>> {
    let mut index = HashMap::new();
    for info in host.functions() {
        let (Ok(notes), Ok(aliases)) = (
            host.function_annotations(&info.name),
            host.aliases(&info.name),
        ) else {
            continue;
        };
        for (key, value) in &notes {
            let (Some(qualifier), Ok(config)) =
                (qualifier_of(key), serde_json::from_str::<UrlConfig>(value))
            else {
                continue;
            };
            let function = match qualifier {
                // A URL left by an alias that is gone serves nothing.
                Some(alias) if !aliases.contains_key(alias) => continue,
                Some(alias) => format!("{}:{alias}", info.name),
                None => info.name.clone(),
            };
            index.insert(config.id.clone(), Arc::new(Target { function, config }));
        }
    }
    index
}

fn bad_request(message: &str) -> Response {
    plain_error(StatusCode::BAD_REQUEST, message)
}

/// The request's host name: the `Host` header, which must agree with the
/// request target's authority when both are given (an absolute-form
/// target or HTTP/2's `:authority`), so what routes a request is what a
/// signature covers. `Ok(None)`: no host name at all.
fn host_name(req: &Request) -> Result<Option<&str>, &'static str> {
    // Every request passes here: nothing is allocated for one that is
    // not a URL's.
    let header = match req.headers().get(header::HOST) {
        Some(h) => Some(
            h.to_str()
                .map_err(|_| "the Host header is not a host name")?,
        ),
        None => None,
    };
    let authority = req.uri().authority().map(|a| a.as_str());
    match (header, authority) {
        (Some(h), Some(a)) if !strip_port(h).eq_ignore_ascii_case(strip_port(a)) => {
            Err("the Host header and the request target name different hosts")
        }
        (Some(h), _) => Ok(Some(strip_port(h))),
        (None, Some(a)) => Ok(Some(strip_port(a))),
        (None, None) => Ok(None),
    }
}

/// `h` without its `:port`.
fn strip_port(h: &str) -> &str {
    match h.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => h,
    }
}

/// The URL id a host name names (`<id>.lambda-url.…`, any case), lower-cased.
fn url_id_of(host: &str) -> Option<String> {
    const MARK: &[u8] = b".lambda-url.";
    let at = host
        .as_bytes()
        .windows(MARK.len())
        .position(|w| w.eq_ignore_ascii_case(MARK))?;
    Some(host[..at].to_ascii_lowercase())
}

/// Whether `path` has a `.` or `..` segment (also percent-encoded) or an
/// empty one before its end: a URL request's path is used as sent, so it
/// must be the one its signature's canonical form (dot segments removed)
/// names.
fn has_dot_or_empty_segment(path: &str) -> bool {
    let segments: Vec<&str> = path.split('/').skip(1).collect();
    segments.iter().enumerate().any(|(i, seg)| {
        let decoded = seg.to_ascii_lowercase().replace("%2e", ".");
        decoded == "." || decoded == ".." || (seg.is_empty() && i + 1 != segments.len())
    })
}

/// The URL id a request is addressed to, and for the path-prefix form the
/// path the function sees; `Ok(None)`: no URL's request.
fn addressed(req: &Request) -> Result<Option<(String, Option<String>)>, &'static str> {
    let by_host = host_name(req)?.and_then(url_id_of).map(|id| (id, None));
    let by_path = || {
        let rest = req.uri().path().strip_prefix(PREFIX)?;
        Some(match rest.split_once('/') {
            Some((id, path)) => (id.to_string(), Some(format!("/{path}"))),
            None => (rest.to_string(), Some("/".to_string())),
        })
    };
    let Some(found) = by_host.or_else(by_path) else {
        return Ok(None);
    };
    if has_dot_or_empty_segment(req.uri().path()) {
        return Err("a function URL's path may not have '.', '..' or empty segments");
    }
    Ok(Some(found))
}

/// Serves `req` when it is a function URL's (`None`: it is not, and goes
/// on to the API and the trigger routes). A request whose host name cannot
/// be read, or disagrees with its target, is refused here whatever it is
/// addressed to.
pub(super) async fn dispatch(gw: &Gateway, urls: &Urls, req: Request) -> Result<Response, Request> {
    let (id, path) = match addressed(&req) {
        Ok(Some(found)) => found,
        Ok(None) => return Err(req),
        Err(why) => return Ok(bad_request(why)),
    };
    if req.method() == Method::CONNECT {
        return Ok(plain_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "CONNECT is not served",
        ));
    }
    let target = if is_url_id(&id) {
        urls.lookup(&gw.host, &id)
    } else {
        None
    };
    Ok(match target {
        Some(t) => serve(gw, &t, path, req).await,
        None => plain_error(StatusCode::NOT_FOUND, "no such function URL"),
    })
}

fn forbidden() -> Response {
    plain_error(StatusCode::FORBIDDEN, "Forbidden")
}

async fn serve(gw: &Gateway, t: &Target, path: Option<String>, req: Request) -> Response {
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
    if let Some(cors) = cors {
        decorate(cors, origin.as_ref(), resp.headers_mut());
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

/// Sets an answer's CORS headers from `cors` for a request from `origin`
/// (none: not a cross-origin request). The function's own
/// `Access-Control-*` headers are dropped either way, and the answer
/// varies by `Origin` (so a cache does not hand one origin's to another).
fn decorate(cors: &Cors, origin: Option<&HeaderValue>, h: &mut HeaderMap) {
    let theirs: Vec<_> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for k in theirs {
        h.remove(k);
    }
    h.append(header::VARY, HeaderValue::from_static("Origin"));
    let Some(allowed) = origin.and_then(|o| allowed_origin(cors, o)) else {
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
        let found = |r: &Request| addressed(r).ok().flatten();
        let by_host = req(&format!("{id}.lambda-url.local.localhost:9000"), "/x/y?q=1");
        assert_eq!(found(&by_host), Some((id.to_string(), None)));
        let upper = req(
            &format!("{}.LAMBDA-URL.local.localhost", id.to_uppercase()),
            "/",
        );
        assert_eq!(found(&upper), Some((id.to_string(), None)));
        let by_path = req("127.0.0.1:9000", &format!("/lambda-url/{id}/x/y?q=1"));
        assert_eq!(
            found(&by_path),
            Some((id.to_string(), Some("/x/y".to_string())))
        );
        let bare = req("127.0.0.1:9000", &format!("/lambda-url/{id}"));
        assert_eq!(found(&bare), Some((id.to_string(), Some("/".into()))));
        let trailing = req("127.0.0.1:9000", &format!("/lambda-url/{id}/a/"));
        assert_eq!(found(&trailing), Some((id.to_string(), Some("/a/".into()))));
        assert!(matches!(
            addressed(&req("127.0.0.1:9000", "/hello")),
            Ok(None)
        ));
        assert!(matches!(
            addressed(&req("[::1]:9000", "/lambda-urlx/a")),
            Ok(None)
        ));
    }

    #[test]
    fn ambiguous_requests_are_refused_before_any_route() {
        let id = "abcdefghijklmnopqrstuvwxyz012345";
        let status = |r: Request| {
            addressed(&r)
                .err()
                .map(|e| bad_request(e).status().as_u16())
        };
        // Dot and empty segments: the signed (canonical) path would name
        // another URL or route than the one served.
        for path in [
            format!("/lambda-url/{id}/../other/x"),
            format!("/lambda-url/{id}/%2E%2e/x"),
            format!("/lambda-url/{id}/./x"),
            format!("/lambda-url/{id}//x"),
        ] {
            assert_eq!(status(req("127.0.0.1:9000", &path)), Some(400), "{path}");
        }
        let host = format!("{id}.lambda-url.local.localhost");
        assert_eq!(status(req(&host, "/a/../b")), Some(400));
        // The target's authority must be the Host header's.
        let absolute = Request::builder()
            .uri("http://127.0.0.1:9000/2015-03-31/functions")
            .header("host", &host)
            .body(Body::empty())
            .unwrap();
        assert_eq!(status(absolute), Some(400));
        let agreeing = Request::builder()
            .uri(format!("http://{host}:9000/p"))
            .header("host", format!("{host}:9000"))
            .body(Body::empty())
            .unwrap();
        assert_eq!(
            addressed(&agreeing).ok().flatten(),
            Some((id.to_string(), None))
        );
        // A Host that is not text is refused, not passed on.
        let mut bytes = host.into_bytes();
        bytes.push(0xff);
        let odd = Request::builder()
            .uri("/2015-03-31/functions")
            .header("host", HeaderValue::from_bytes(&bytes).unwrap())
            .body(Body::empty())
            .unwrap();
        assert_eq!(status(odd), Some(400));
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
        decorate(&cors, Some(&b), &mut h);
        assert!(
            !h.contains_key("access-control-allow-origin"),
            "the function's own is dropped"
        );
        h.insert("access-control-allow-origin", HeaderValue::from_static("*"));
        decorate(&cors, None, &mut h);
        assert!(
            !h.contains_key("access-control-allow-origin"),
            "also without an Origin"
        );
        assert_eq!(h["vary"], "Origin");
        decorate(&cors, Some(&a), &mut h);
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
