//! The built-in outbound HTTP capability ([`http`]) and its allow-list
//! ([`HttpAllow`]), which also governs a component's `wasi:http`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::{Capability, HostError};

/// The name [`http`]'s capability is granted by.
pub const HTTP_CAPABILITY: &str = "http.request";

/// Which outbound requests [`http`] lets a guest make.
///
/// ```
/// use std::time::Duration;
/// use fnhost::capability::HttpAllow;
///
/// let allow = HttpAllow::new()
///     .host("api.example.com")       // any port, http or https
///     .host("*.internal.example")    // any subdomain
///     .host("127.0.0.1:8080")        // this port only
///     .timeout(Duration::from_secs(5));
/// assert!(allow.allows("https", "api.example.com", 443));
/// assert!(allow.allows("http", "db.internal.example", 80));
/// assert!(!allow.allows("http", "127.0.0.1", 9000));
/// assert!(!allow.allows("ftp", "api.example.com", 21));
/// ```
#[derive(Debug, Clone)]
pub struct HttpAllow {
    hosts: Vec<(String, Option<u16>)>,
    timeout: Duration,
    max_response: u64,
}

impl Default for HttpAllow {
    fn default() -> Self {
        HttpAllow::new()
    }
}

impl HttpAllow {
    /// Nothing allowed yet; 10 s timeout; responses up to 1 MiB.
    pub fn new() -> HttpAllow {
        HttpAllow {
            hosts: Vec::new(),
            timeout: Duration::from_secs(10),
            max_response: 1 << 20,
        }
    }

    /// Allows `host` (`name`, `name:port`, `*.domain` for any subdomain,
    /// an IPv6 address bare or as `[addr]:port`). Names compare without
    /// case.
    pub fn host(mut self, host: &str) -> Self {
        let host = host.to_ascii_lowercase();
        let (name, port) = if host.matches(':').count() > 1 && !host.starts_with('[') {
            // A bare IPv6 address: no port; URLs write it in brackets.
            (format!("[{host}]"), None)
        } else {
            match host.rsplit_once(':') {
                Some((n, p)) if p.parse::<u16>().is_ok() => (n.to_string(), p.parse().ok()),
                _ => (host, None),
            }
        };
        self.hosts.push((name, port));
        self
    }

    /// Longest a request may take (it is also cut to the invocation's
    /// time left).
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = t;
        self
    }

    /// Largest response body read.
    pub fn max_response(mut self, bytes: u64) -> Self {
        self.max_response = bytes;
        self
    }

    /// Longest a request may take.
    pub(crate) fn request_timeout(&self) -> Duration {
        self.timeout
    }

    /// Largest response body.
    pub(crate) fn response_cap(&self) -> u64 {
        self.max_response
    }

    /// Whether a request to `scheme://host:port` is allowed.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        if scheme != "http" && scheme != "https" {
            return false;
        }
        let host = host.to_ascii_lowercase();
        self.hosts.iter().any(|(name, p)| {
            let name_ok = match name.strip_prefix("*.") {
                Some(domain) => host
                    .strip_suffix(domain)
                    .is_some_and(|sub| sub.ends_with('.') && sub.len() > 1),
                None => *name == host,
            };
            name_ok && p.is_none_or(|p| p == port)
        })
    }
}

#[derive(serde::Deserialize)]
struct HttpRequest {
    #[serde(default = "get")]
    method: String,
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
}

fn get() -> String {
    "GET".into()
}

/// `http.request`: an outbound HTTP(S) request to a host on the
/// allow-list.
///
/// Request `{"method": "POST", "url": "https://...", "headers": {...},
/// "body": "..."}` (method defaults to GET); response `{"status": 200,
/// "headers": {...}, "body": "..."}` (the body as UTF-8, invalid bytes
/// replaced). Redirects are not followed (a 3xx comes back as is, so a
/// redirect cannot leave the allow-list). Errors: `Forbidden` (not on the
/// list), `InvalidRequest`, `Timeout`, `Network`, `TooLarge`.
///
/// Granted to a component, it also admits the component's own
/// `wasi:http/outgoing-handler` requests to the same hosts, with the same
/// timeout and response cap (see docs/components.md).
pub fn http(allow: HttpAllow) -> Capability {
    let list = Arc::new(allow.clone());
    let mut cap = Capability::typed(HTTP_CAPABILITY, move |ctx, r: HttpRequest| {
        let bad = |m: String| HostError::new("InvalidRequest", m);
        let uri: ureq::http::Uri = r.url.parse().map_err(|e| bad(format!("url: {e}")))?;
        let scheme = uri.scheme_str().unwrap_or("");
        let host = uri.host().ok_or_else(|| bad("url has no host".into()))?;
        let port = uri
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        if !allow.allows(scheme, host, port) {
            return Err(HostError::new(
                "Forbidden",
                format!("{scheme}://{host}:{port} is not on the allow-list"),
            ));
        }
        let time = allow.timeout.min(ctx.remaining());
        if time.is_zero() {
            return Err(HostError::new("Timeout", "no time left in the invocation"));
        }
        let mut req = ureq::http::Request::builder()
            .method(r.method.as_str())
            .uri(uri);
        for k in r.headers.keys() {
            let lower = k.to_ascii_lowercase();
            // The target is the URL's: no virtual host, proxy or framing
            // of the guest's choosing.
            if [
                "host",
                "connection",
                "transfer-encoding",
                "content-length",
                "te",
                "upgrade",
            ]
            .contains(&lower.as_str())
                || lower.starts_with("proxy-")
            {
                return Err(bad(format!("header `{k}` is set by the host")));
            }
        }
        for (k, v) in &r.headers {
            req = req.header(k.as_str(), v.as_str());
        }
        let req = req
            .body(r.body.unwrap_or_default())
            .map_err(|e| bad(e.to_string()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(time))
            .max_redirects(0)
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.run(req).map_err(|e| match e {
            ureq::Error::Timeout(_) => HostError::new("Timeout", e.to_string()),
            other => HostError::new("Network", other.to_string()),
        })?;
        let headers: BTreeMap<String, String> = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let body = resp
            .body_mut()
            .with_config()
            .limit(allow.max_response)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(n) => {
                    HostError::new("TooLarge", format!("response body over {n} bytes"))
                }
                other => HostError::new("Network", other.to_string()),
            })?;
        Ok(json!({
            "status": resp.status().as_u16(),
            "headers": headers,
            "body": String::from_utf8_lossy(&body),
        }))
    });
    cap.http = Some(list);
    cap
}
