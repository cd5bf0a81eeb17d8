//! A function URL's config (Lambda's `FunctionUrlConfig`) as the
//! gateway keeps it: one function-level annotation per URL
//! ([`fnhost::Host::annotate_function`]) under [`key`], written by the
//! control operations (`control/url.rs`) and read by the serving side
//! (`function_url.rs`).

use axum::http::{HeaderMap, HeaderValue};
use serde::{Deserialize, Serialize};

/// The annotation prefix of URL configs.
const KEY: &str = "aws.url";

/// The function-level annotation holding the URL config of the function
/// (`None`) or of alias `qualifier`.
pub(crate) fn key(qualifier: Option<&str>) -> String {
    match qualifier {
        None => KEY.to_string(),
        Some(q) => format!("{KEY}:{q}"),
    }
}

/// Which qualifier an annotation key belongs to (`Some(None)`: the
/// function itself); `None` when it is no URL config's key.
pub(crate) fn qualifier_of(key: &str) -> Option<Option<&str>> {
    match key.strip_prefix(KEY)? {
        "" => Some(None),
        rest => rest.strip_prefix(':').map(Some),
    }
}

/// Who may call a URL.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AuthType {
    /// Anyone.
    #[serde(rename = "NONE")]
    None,
    /// Requests signed with SigV4 by the server's admin credentials.
    #[serde(rename = "AWS_IAM")]
    AwsIam,
}

/// How a URL answers.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Default)]
pub(crate) enum InvokeMode {
    /// The function's result, mapped as API Gateway's payload 2.0 does.
    #[default]
    #[serde(rename = "BUFFERED")]
    Buffered,
    /// Lambda's streamed response: an optional JSON prelude (status,
    /// headers, cookies) and 8 NUL bytes, then the body as written.
    #[serde(rename = "RESPONSE_STREAM")]
    ResponseStream,
}

/// Lambda's `Cors` object, as given (bounded by [`Cors::check`]).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub(crate) struct Cors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_methods: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_origins: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expose_headers: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u32>,
}

impl Cors {
    /// Lambda's bounds (botocore's model), and every value usable in a
    /// header, so serving never meets one it cannot send.
    pub(crate) fn check(&self) -> Result<(), String> {
        let lists = [
            ("AllowHeaders", &self.allow_headers, 100, 1024),
            ("AllowMethods", &self.allow_methods, 6, 6),
            ("AllowOrigins", &self.allow_origins, 100, 253),
            ("ExposeHeaders", &self.expose_headers, 100, 1024),
        ];
        for (field, list, most, longest) in lists {
            let list = list.as_deref().unwrap_or_default();
            if list.len() > most {
                return Err(format!("Cors.{field}: at most {most} entries"));
            }
            for v in list {
                if v.is_empty() || v.len() > longest || HeaderValue::from_str(v).is_err() {
                    return Err(format!(
                        "Cors.{field}: {v:?} must be 1 to {longest} visible ASCII characters"
                    ));
                }
                if field == "AllowMethods"
                    && !["GET", "PUT", "HEAD", "POST", "PATCH", "DELETE", "*"].contains(&v.as_str())
                {
                    return Err(format!(
                        "Cors.AllowMethods: {v:?} is not GET, PUT, HEAD, POST, PATCH, DELETE or *"
                    ));
                }
            }
        }
        // Any origin may then read credentialed answers: refused, as API
        // Gateway refuses it.
        if self.allow_credentials == Some(true)
            && self
                .allow_origins
                .as_deref()
                .is_some_and(|o| o.iter().any(|o| o == "*"))
        {
            return Err("Cors: AllowCredentials cannot be true with AllowOrigins \"*\"".into());
        }
        if self.max_age.is_some_and(|a| a > 86_400) {
            return Err("Cors.MaxAge: at most 86400 (seconds)".into());
        }
        Ok(())
    }
}

/// One URL config as kept in the annotation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub(crate) struct UrlConfig {
    /// The URL id: 32 characters `[a-z0-9]`, the host name's first label.
    pub id: String,
    pub auth: AuthType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    #[serde(default)]
    pub mode: InvokeMode,
    pub created_ms: u64,
    pub modified_ms: u64,
}

/// Whether `id` has a URL id's form.
pub(crate) fn is_url_id(id: &str) -> bool {
    id.len() == 32
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// A fresh URL id (32 characters `[a-z0-9]`, from a fresh unique id).
pub(crate) fn fresh_id() -> String {
    const DIGITS: &[u8; 36] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let hash = blake3::hash(crate::ids::fresh("function-url").as_bytes());
    hash.as_bytes()
        .iter()
        .map(|b| DIGITS[*b as usize % 36] as char)
        .collect()
}

pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The URL clients use: `http://<id>.lambda-url.local.localhost[:port]/`,
/// with the port the caller reached this server on (its `Host` header).
pub(crate) fn url_of(id: &str, headers: &HeaderMap) -> String {
    let port = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .and_then(|h| h.rsplit_once(':'))
        .map(|(_, p)| p)
        .filter(|p| p.parse::<u16>().is_ok())
        .map(|p| format!(":{p}"))
        .unwrap_or_default();
    format!("http://{id}.lambda-url.local.localhost{port}/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ids_and_cors_bounds() {
        assert_eq!(qualifier_of(&key(None)), Some(None));
        assert_eq!(qualifier_of(&key(Some("live"))), Some(Some("live")));
        assert_eq!(qualifier_of("aws.urlx"), None);
        assert_eq!(qualifier_of("aws.Handler"), None);
        let id = fresh_id();
        assert!(is_url_id(&id), "{id}");
        assert_ne!(id, fresh_id());
        assert!(!is_url_id("ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"));
        let ok = Cors {
            allow_methods: Some(vec!["GET".into(), "*".into()]),
            allow_origins: Some(vec!["https://a.example".into()]),
            max_age: Some(86_400),
            ..Cors::default()
        };
        assert_eq!(ok.check(), Ok(()));
        for bad in [
            Cors {
                allow_methods: Some(vec!["FETCH".into()]),
                ..Cors::default()
            },
            Cors {
                max_age: Some(86_401),
                ..Cors::default()
            },
            Cors {
                allow_credentials: Some(true),
                allow_origins: Some(vec!["*".into()]),
                ..Cors::default()
            },
            Cors {
                allow_origins: Some(vec!["x".repeat(254)]),
                ..Cors::default()
            },
            Cors {
                allow_headers: Some(vec!["a\nb".into()]),
                ..Cors::default()
            },
            Cors {
                expose_headers: Some(vec!["h".into(); 101]),
                ..Cors::default()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
