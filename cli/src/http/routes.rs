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
    let source_ip = source_ip(&req);
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
    // A 2xx answer to CONNECT would make the connection a tunnel.
    if parts.method == Method::CONNECT {
        return plain_error(StatusCode::METHOD_NOT_ALLOWED, "CONNECT is not served");
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
    let domain = parts
        .headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let came_in = CameIn {
        route_key: &route.key,
        raw_path: &path,
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
}
