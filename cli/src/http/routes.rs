//! HTTP trigger routes (API Gateway HTTP API, payload format 2.0): route
//! matching, the event a function gets, and its result mapped to HTTP.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Result, bail};
use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::aws::{plain_error, plain_refusal, read_body};
use super::state::Shared;

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

/// HTTP trigger routes: an API Gateway HTTP API (payload 2.0) event in, the
/// function's response object (or plain result) out.
pub(super) async fn trigger(State(gw): State<Shared>, req: Request) -> Response {
    let source_ip = req
        .extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default();
    let (parts, body) = req.into_parts();
    let path = parts.uri.path().to_string();
    if super::aws::is_api_path(&path) {
        return super::aws::aws_error(
            axum::http::StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!(
                "{} {path} is not a Lambda API operation fnhost serves",
                parts.method
            ),
        );
    }
    let Some((route, params)) = gw
        .routes
        .iter()
        .find_map(|r| r.matches(&parts.method, &path).map(|p| (r, p)))
    else {
        return plain_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if gw
        .host
        .function_info(&route.function)
        .is_ok_and(|i| i.is_http)
    {
        let function = route.function.clone();
        return super::streaming::serve(&gw, &function, Request::from_parts(parts, body)).await;
    }
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
    match gw.run(&route.function, payload, None).await {
        Ok(inv) => match inv.outcome {
            Ok(out) => http_response(&out),
            Err(e) => {
                tracing::warn!(target: "fnhost::http", function = %route.function, error = %e, "function error");
                plain_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
            }
        },
        Err(e) => plain_refusal(&e),
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
}
