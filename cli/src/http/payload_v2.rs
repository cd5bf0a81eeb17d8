//! API Gateway's payload format 2.0, shared by trigger routes and
//! function URLs: the event a request becomes ([`event_v2`]) and a
//! function's result mapped back to HTTP ([`http_response`]), with the
//! one rule for which response headers a guest may set
//! ([`guest_may_set`]).

use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde_json::{Value, json};

use super::aws::plain_error;

/// The client's address, as the 2.0 event's `sourceIp` gives it.
pub(super) fn source_ip(req: &Request) -> String {
    req.extensions()
        .get::<ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_default()
}

/// Where a request came in, as a payload 2.0 event says it.
pub(super) struct CameIn<'a> {
    /// `routeKey` (`$default` for a function URL).
    pub route_key: &'a str,
    /// `rawPath`: the path the function sees.
    pub raw_path: &'a str,
    /// `requestContext.apiId`.
    pub api_id: &'a str,
    /// `requestContext.domainPrefix`.
    pub domain_prefix: &'a str,
    /// `requestContext.http.sourceIp`.
    pub source_ip: String,
    /// `requestContext.requestId`.
    pub request_id: &'a str,
    /// `requestContext.authorizer`, when the request was authorized.
    pub authorizer: Option<Value>,
}

/// The API Gateway HTTP API / function URL event (payload format 2.0) of
/// a request.
pub(super) fn event_v2(
    parts: &axum::http::request::Parts,
    came_in: &CameIn<'_>,
    params: serde_json::Map<String, Value>,
    body: &[u8],
) -> Value {
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
    let (body_field, is_b64) = match std::str::from_utf8(body) {
        Ok(s) => (Value::String(s.to_string()), false),
        Err(_) => (
            Value::String(base64::engine::general_purpose::STANDARD.encode(body)),
            true,
        ),
    };
    let now = chrono::Utc::now();
    let mut event = json!({
        "version": "2.0",
        "routeKey": came_in.route_key,
        "rawPath": came_in.raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": came_in.api_id,
            "domainName": parts.headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost"),
            "domainPrefix": came_in.domain_prefix,
            "http": {
                "method": parts.method.as_str(),
                "path": came_in.raw_path,
                "protocol": format!("{:?}", parts.version),
                "sourceIp": came_in.source_ip,
                "userAgent": parts.headers.get("user-agent").and_then(|h| h.to_str().ok()).unwrap_or(""),
            },
            "requestId": came_in.request_id,
            "routeKey": came_in.route_key,
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis(),
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
    if let Some(a) = &came_in.authorizer {
        event["requestContext"]["authorizer"] = a.clone();
    }
    if !body.is_empty() {
        event["body"] = body_field;
    }
    event
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
pub(super) fn http_response(out: &[u8]) -> Response {
    let Ok(Value::Object(obj)) = serde_json::from_slice::<Value>(out) else {
        return ([("content-type", "application/json")], out.to_vec()).into_response();
    };
    let Some(status) = obj.get("statusCode").and_then(Value::as_u64) else {
        return ([("content-type", "application/json")], out.to_vec()).into_response();
    };
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
    described_response(&obj, status, body)
}

/// The response `obj` describes (`headers`, `cookies`; guest framing
/// headers dropped) with status `status` and `body`.
pub(super) fn described_response(
    obj: &serde_json::Map<String, Value>,
    status: u64,
    body: Vec<u8>,
) -> Response {
    // An informational status would hand the connection over (101) or
    // leave the client waiting for the real answer: not the guest's.
    let Some(status) = u16::try_from(status)
        .ok()
        .and_then(|s| StatusCode::from_u16(s).ok())
        .filter(|s| !s.is_informational())
    else {
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
    resp.body(Body::from(body))
        .unwrap_or_else(|_| plain_error(StatusCode::BAD_GATEWAY, "invalid response"))
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // An invalid or informational status code, or a bad base64
        // body, is a gateway error.
        for status in ["7", "101", "65736"] {
            let out = format!(r#"{{"statusCode":{status}}}"#);
            assert_eq!(
                parts(http_response(out.as_bytes())).await.0,
                502,
                "{status}"
            );
        }
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
