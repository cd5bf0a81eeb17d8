//! HTTP trigger routes (API Gateway HTTP API, payload format 2.0): route
//! matching, the event a function gets, and its result mapped to HTTP.

use anyhow::{Result, bail};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::aws::{plain_error, plain_refusal, read_body};
use super::payload_v2::{CameIn, event_v2, http_response, source_ip};
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

    /// Whether `method` and `path` match (no allocation: every request
    /// is matched against the routes).
    fn matches(&self, method: &Method, path: &str) -> bool {
        if self.method.as_ref().is_some_and(|m| m != method) {
            return false;
        }
        let mut parts = path.split('/').filter(|s| !s.is_empty());
        for seg in &self.segments {
            if seg.starts_with('{') && seg.ends_with("+}") {
                return parts.next().is_some();
            }
            match parts.next() {
                Some(part) if (seg.starts_with('{') && seg.ends_with('}')) || seg == part => {}
                _ => return false,
            }
        }
        parts.next().is_none()
    }

    /// The path parameters of a `path` this route [`matches`](Route::matches).
    fn params(&self, path: &str) -> serde_json::Map<String, Value> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut params = serde_json::Map::new();
        for (i, seg) in self.segments.iter().enumerate() {
            if let Some(name) = seg.strip_prefix('{').and_then(|s| s.strip_suffix("+}")) {
                let rest = parts.get(i..).unwrap_or_default();
                params.insert(name.into(), Value::String(rest.join("/")));
                break;
            }
            if let (Some(name), Some(part)) = (
                seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')),
                parts.get(i),
            ) {
                params.insert(name.into(), Value::String((*part).into()));
            }
        }
        params
    }
}

/// HTTP trigger routes: an API Gateway HTTP API (payload 2.0) event in, the
/// function's response object (or plain result) out.
pub(super) async fn trigger(State(gw): State<Shared>, req: Request) -> Response {
    let path = req.uri().path();
    if super::aws::is_api_path(path) {
        return super::aws::aws_error(
            axum::http::StatusCode::NOT_FOUND,
            "UnknownOperationException",
            &format!(
                "{} {path} is not a Lambda API operation fnhost serves",
                req.method()
            ),
        );
    }
    // A 2xx answer to CONNECT would make the connection a tunnel.
    if req.method() == Method::CONNECT {
        return plain_error(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served");
    }
    let Some(route) = gw.routes.iter().find(|r| r.matches(req.method(), path)) else {
        return plain_error(StatusCode::NOT_FOUND, "Not Found");
    };
    if gw.host.is_http_component(&route.function) {
        return super::streaming::serve(&gw, &route.function, req).await;
    }
    let source_ip = source_ip(&req);
    let (parts, body) = req.into_parts();
    let path = parts.uri.path();
    let params = route.params(path);
    let body = match read_body(body, gw.max_body).await {
        Ok(b) => b,
        Err(_) => return plain_error(StatusCode::PAYLOAD_TOO_LARGE, "Request Entity Too Large"),
    };
    let domain = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let came_in = CameIn {
        route_key: &route.key,
        raw_path: path,
        api_id: "fnhost",
        domain_prefix: domain.split('.').next().unwrap_or(domain),
        source_ip,
        request_id: &crate::ids::fresh(""),
        authorizer: None,
    };
    let event = event_v2(&parts, &came_in, params, &body);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_params_and_greedy_proxies() {
        let r = Route::parse("ANY /hello/{proxy+}", "f").unwrap();
        assert!(r.matches(&Method::GET, "/hello/a/b"));
        assert_eq!(r.params("/hello/a/b")["proxy"], "a/b");
        assert!(!r.matches(&Method::GET, "/hello"));
        assert!(!r.matches(&Method::GET, "/other/a"));
        let r = Route::parse("GET /users/{id}", "f").unwrap();
        assert!(r.matches(&Method::GET, "/users/7"));
        assert_eq!(r.params("/users/7")["id"], "7");
        assert_eq!(r.params("/users/7").len(), 1);
        assert!(!r.matches(&Method::POST, "/users/7"));
        assert!(!r.matches(&Method::GET, "/users/7/x"));
        assert!(!r.matches(&Method::GET, "/users"));
        assert!(!r.matches(&Method::GET, "/people/7"));
        let r = Route::parse("GET /a/{x}/c/{rest+}", "f").unwrap();
        assert!(r.matches(&Method::GET, "//a/1/c/2/3/"));
        let p = r.params("//a/1/c/2/3/");
        assert_eq!(
            (p["x"].as_str(), p["rest"].as_str()),
            (Some("1"), Some("2/3"))
        );
        assert!(!r.matches(&Method::GET, "/a/1/d/2"));
        assert!(!r.matches(&Method::GET, "/a/1/c"));
        assert!(Route::parse("FETCH /x", "f").is_err());
        assert!(Route::parse("GET x", "f").is_err());
        assert!(Route::parse("GET /{a+}/b", "f").is_err());
    }
}
