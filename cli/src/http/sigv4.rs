//! AWS Signature Version 4 (`AWS4-HMAC-SHA256`) verification: how every
//! AWS SDK and the AWS CLI sign a request, checked against the server's
//! secret keys (the admin token, or configured access-key pairs).
//!
//! What is checked, as AWS does for Lambda (a non-S3 service):
//! the canonical request is the method, the path with each segment
//! URI-encoded once more than it arrived (SDKs sign `hello%253A1` for a
//! path they send as `hello%3A1`), dot segments removed; the query's
//! pairs decoded, re-encoded and sorted; the headers `SignedHeaders`
//! names (which must include `host`), trimmed with inner runs of spaces
//! collapsed; and the payload's SHA-256 (`x-amz-content-sha256` when
//! sent, which must then match the body: an unsigned payload is refused).
//! `x-amz-date` must be within 15 minutes of the server's clock and agree
//! with the credential scope's date; `x-amz-security-token`, when sent,
//! is one more signed header. The signature is compared in constant time.

use std::time::{Duration, SystemTime};

use axum::http::HeaderMap;
use ring::{digest, hmac};

/// The algorithm this module verifies.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// How far a request's `x-amz-date` may be from the server's clock.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// A request as it arrived, for verification.
pub struct Signed<'a> {
    /// The HTTP method.
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The raw query string (without `?`), empty when none.
    pub query: &'a str,
    /// Every header.
    pub headers: &'a HeaderMap,
    /// The whole body.
    pub body: &'a [u8],
}

/// Whether `headers` carry a SigV4 `Authorization` header.
pub fn is_sigv4(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with(ALGORITHM))
}

/// The parts of an `Authorization: AWS4-HMAC-SHA256 …` header.
#[derive(Debug, PartialEq, Eq)]
struct Authorization<'a> {
    access_key: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: Vec<u8>,
}

fn parse_authorization(value: &str) -> Result<Authorization<'_>, String> {
    let rest = value
        .strip_prefix(ALGORITHM)
        .filter(|r| r.starts_with(' '))
        .ok_or("the Authorization header is not AWS4-HMAC-SHA256")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let (k, v) = part
            .trim()
            .split_once('=')
            .ok_or_else(|| format!("malformed Authorization component {:?}", part.trim()))?;
        let slot = match k {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut signature,
            other => return Err(format!("unknown Authorization component {other:?}")),
        };
        if slot.replace(v).is_some() {
            return Err(format!("Authorization names {k} twice"));
        }
    }
    let credential = credential.ok_or("Authorization lacks Credential")?;
    let signed = signed.ok_or("Authorization lacks SignedHeaders")?;
    let signature = signature.ok_or("Authorization lacks Signature")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key, date, region, service, "aws4_request"] = scope[..] else {
        return Err("Credential must be <key>/<yyyymmdd>/<region>/<service>/aws4_request".into());
    };
    if access_key.is_empty() || date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return Err("Credential has an empty key or a malformed date".into());
    }
    let signed_headers: Vec<&str> = signed.split(';').collect();
    if signed_headers.iter().any(|h| {
        h.is_empty()
            || h.bytes()
                .any(|b| b.is_ascii_uppercase() || b.is_ascii_whitespace())
    }) {
        return Err("SignedHeaders must be lower-case names separated by ';'".into());
    }
    if !signed_headers.contains(&"host") {
        return Err("SignedHeaders must include host".into());
    }
    Ok(Authorization {
        access_key,
        date,
        region,
        service,
        signed_headers,
        signature: hex_decode(signature).ok_or("Signature is not 64 hex digits")?,
    })
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if s.len() != 64 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// RFC 3986 percent-encoding of everything but the unreserved characters
/// (`A-Z a-z 0-9 - . _ ~`), upper-case hex: SigV4's `UriEncode`.
fn uri_encode(bytes: &[u8], out: &mut String) {
    for &b in bytes {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn percent_decode(s: &str) -> Vec<u8> {
    percent_encoding::percent_decode_str(s).collect()
}

/// The canonical URI: dot segments removed, each segment encoded again.
fn canonical_uri(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    let trailing = path.ends_with('/') && path.len() > 1;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        match seg {
            "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::new();
    for seg in &segments {
        out.push('/');
        uri_encode(seg.as_bytes(), &mut out);
    }
    if out.is_empty() || trailing {
        out.push('/');
    }
    out
}

/// The canonical query: pairs decoded, encoded, sorted by key then value.
fn canonical_query(query: &str) -> String {
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&percent_decode(k), &mut ek);
            uri_encode(&percent_decode(v), &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// A header value as SigV4 canonicalizes it: trimmed, inner runs of
/// spaces collapsed to one.
fn canonical_value(v: &[u8]) -> String {
    String::from_utf8_lossy(v)
        .split_ascii_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `x-amz-date` time as seconds since the epoch.
fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let (y, mo) = if mo <= 2 {
        (y - 1, mo + 9)
    } else {
        (y, mo - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + mi * 60 + se)
}

fn sha256_hex(data: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, data).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// Why a request's signature was refused: the AWS error type and a
/// message (never the expected signature).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `IncompleteSignatureException` (malformed), `UnrecognizedClientException`
    /// (unknown key) or `InvalidSignatureException` (wrong, expired).
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
}

fn incomplete(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: "IncompleteSignatureException",
        message: message.into(),
    }
}

fn invalid(message: impl Into<String>) -> Refusal {
    Refusal {
        kind: "InvalidSignatureException",
        message: message.into(),
    }
}

/// A request whose SigV4 headers passed every check that needs no body:
/// well-formed, in the clock window, by a known key.
pub struct Checked<'a> {
    auth: Authorization<'a>,
    amz_date: &'a str,
    secret: String,
}

/// The checks of `headers` that need no body, so a request that cannot
/// verify is refused before its body is read. `secret` gives the secret
/// key of an access key id (`None`: unknown).
pub fn check_headers<'a>(
    headers: &'a HeaderMap,
    secret: impl Fn(&str) -> Option<String>,
    now: SystemTime,
) -> Result<Checked<'a>, Refusal> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let auth = parse_authorization(header("authorization").unwrap_or("")).map_err(incomplete)?;
    // Lambda's scope: a signature made for another service (one a guest
    // saw, say) is not one for this API.
    if auth.service != "lambda" {
        return Err(invalid(format!(
            "Credential should be scoped to correct service: 'lambda', not {:?}",
            auth.service
        )));
    }
    let amz_date =
        header("x-amz-date").ok_or_else(|| incomplete("the request has no X-Amz-Date"))?;
    let at =
        parse_amz_date(amz_date).ok_or_else(|| incomplete("X-Amz-Date is not yyyymmddThhmmssZ"))?;
    if !amz_date.starts_with(auth.date) {
        return Err(invalid("X-Amz-Date and the Credential's date differ"));
    }
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    if at.abs_diff(now) > MAX_SKEW.as_secs() {
        return Err(invalid(format!(
            "Signature expired: X-Amz-Date {amz_date} is more than 15 minutes from the server's time"
        )));
    }
    if !auth.signed_headers.contains(&"x-amz-date") {
        return Err(incomplete("SignedHeaders must include x-amz-date"));
    }
    match header("x-amz-content-sha256") {
        Some("UNSIGNED-PAYLOAD") => return Err(invalid("unsigned payloads are not accepted")),
        Some(h) if h.len() != 64 || !h.bytes().all(|b| b.is_ascii_hexdigit()) => {
            return Err(invalid("X-Amz-Content-Sha256 does not match the body"));
        }
        _ => {}
    }
    for name in &auth.signed_headers {
        if headers.get(*name).is_none() {
            return Err(incomplete(format!(
                "signed header {name} is not in the request"
            )));
        }
    }
    let Some(secret) = secret(auth.access_key) else {
        return Err(Refusal {
            kind: "UnrecognizedClientException",
            message: format!(
                "The security token included in the request is invalid: unknown access key {:?}",
                auth.access_key
            ),
        });
    };
    Ok(Checked {
        auth,
        amz_date,
        secret,
    })
}

impl Checked<'_> {
    /// Verifies the signature over `req` (whose headers are the checked
    /// ones). `Ok` is the access key id.
    pub fn verify(&self, req: &Signed<'_>) -> Result<String, Refusal> {
        let auth = &self.auth;
        let body_hash = sha256_hex(req.body);
        if let Some(h) = req.headers.get("x-amz-content-sha256")
            && h.as_bytes() != body_hash.as_bytes()
        {
            return Err(invalid("X-Amz-Content-Sha256 does not match the body"));
        }
        let mut canonical = format!(
            "{}\n{}\n{}\n",
            req.method,
            canonical_uri(req.path),
            canonical_query(req.query)
        );
        for name in &auth.signed_headers {
            let values: Vec<String> = req
                .headers
                .get_all(*name)
                .iter()
                .map(|v| canonical_value(v.as_bytes()))
                .collect();
            canonical.push_str(&format!("{name}:{}\n", values.join(",")));
        }
        canonical.push_str(&format!("\n{}\n{body_hash}", auth.signed_headers.join(";")));
        let scope = format!(
            "{}/{}/{}/aws4_request",
            auth.date, auth.region, auth.service
        );
        let to_sign = format!(
            "{ALGORITHM}\n{}\n{scope}\n{}",
            self.amz_date,
            sha256_hex(canonical.as_bytes())
        );
        let mut key = hmac_sha256(
            format!("AWS4{}", self.secret).as_bytes(),
            auth.date.as_bytes(),
        );
        for part in [auth.region, auth.service, "aws4_request"] {
            key = hmac_sha256(&key, part.as_bytes());
        }
        // `ring::hmac::verify` compares in constant time.
        hmac::verify(
            &hmac::Key::new(hmac::HMAC_SHA256, &key),
            to_sign.as_bytes(),
            &auth.signature,
        )
        .map_err(|_| {
            invalid("The request signature we calculated does not match the signature you provided")
        })?;
        Ok(auth.access_key.to_string())
    }
}

#[cfg(test)]
#[path = "sigv4_tests.rs"]
mod tests;
