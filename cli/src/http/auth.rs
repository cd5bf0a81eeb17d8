//! Who may use the control API: `Authorization: Bearer <admin token>`
//! (for curl), or an AWS SigV4 signature (every SDK and the AWS CLI) made
//! with the admin token as the secret access key (any access key id), or
//! with one of the configured `--admin-key ID=SECRET` pairs.
//!
//! With neither a token nor keys the control API is off: writes are
//! refused, reads (list and get) stay open. With either, every control
//! request must be authorized, reads included.

use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::response::Response;

use super::aws::{aws_error, read_body};
use super::sigv4;
use super::state::Shared;

/// Largest control request (a base64 module in JSON: Lambda's 50 MB zip
/// upload, base64-encoded).
pub const MAX_CONTROL_BODY: usize = 70 << 20;

/// The server's control-API credentials.
#[derive(Clone, Default)]
pub struct AdminKeys {
    /// The admin token: the Bearer token, and the SigV4 secret of any
    /// access key id.
    pub token: Option<String>,
    /// Access key id → secret pairs SigV4 requests may also be signed with.
    pub keys: Vec<(String, String)>,
}

impl AdminKeys {
    /// Whether the control API is on.
    pub fn is_on(&self) -> bool {
        self.token.as_ref().is_some_and(|t| !t.is_empty()) || !self.keys.is_empty()
    }

    /// The SigV4 secret for `access_key`: its configured pair, else the
    /// admin token.
    fn secret(&self, access_key: &str) -> Option<String> {
        self.keys
            .iter()
            .find(|(id, _)| id == access_key)
            .map(|(_, s)| s.clone())
            .or_else(|| self.token.clone().filter(|t| !t.is_empty()))
    }

    /// Whether `given` is the admin token. Hashes are compared so the time
    /// taken says nothing about the token (`blake3::Hash` compares in
    /// constant time).
    fn is_token(&self, given: &str) -> bool {
        self.token
            .as_ref()
            .filter(|t| !t.is_empty())
            .is_some_and(|t| blake3::hash(given.as_bytes()) == blake3::hash(t.as_bytes()))
    }
}

fn denied(message: &str) -> Response {
    aws_error(StatusCode::FORBIDDEN, "AccessDeniedException", message)
}

/// SigV4 requests whose body is being read before their signature can be
/// checked (the signature covers the body). Any access key id signs with
/// the admin token, so a caller without it can pass the header checks:
/// this bounds what such callers make the server buffer to
/// `SIGNED_BODIES × MAX_CONTROL_BODY`.
const SIGNED_BODIES: usize = 2;
static SIGNED_BODY_SLOTS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(SIGNED_BODIES);

fn signature_refused(r: sigv4::Refusal) -> Response {
    aws_error(StatusCode::FORBIDDEN, r.kind, &r.message)
}

/// A control-API write (or an authorized read): the body, read whole
/// (bounded) and verified with the request's credentials. Everything that
/// can be checked without the body is checked before it is read.
pub struct Authed(pub Bytes);

impl FromRequest<Shared> for Authed {
    type Rejection = Response;

    async fn from_request(req: Request, gw: &Shared) -> Result<Self, Self::Rejection> {
        let keys = &gw.admin;
        if !keys.is_on() {
            return Err(denied(
                "the control API is off: start `fnhost serve` with --admin-token (or FNHOST_ADMIN_TOKEN) or --admin-key",
            ));
        }
        let (parts, body) = req.into_parts();
        if !sigv4::is_sigv4(&parts.headers) {
            let bearer = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "));
            if !bearer.is_some_and(|t| keys.is_token(t)) {
                return Err(denied(
                    "missing or wrong credentials: sign the request with SigV4 (the admin token as the secret access key) or send Authorization: Bearer <admin token>",
                ));
            }
            return Ok(Authed(read_body(body, MAX_CONTROL_BODY).await?));
        }
        let (_, bytes) =
            verify_signed(keys, &parts, body, MAX_CONTROL_BODY, &SIGNED_BODY_SLOTS).await?;
        Ok(Authed(bytes))
    }
}

/// Verifies a SigV4-signed request (`is_sigv4`): every check that needs
/// no body first, then the body (at most `limit` bytes, read holding one
/// of `slots`, which bounds what unverified callers make the server
/// buffer), then the signature over both. `Ok`: the access key id and the
/// body.
pub(super) async fn verify_signed(
    keys: &AdminKeys,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
    limit: usize,
    slots: &tokio::sync::Semaphore,
) -> Result<(String, Bytes), Response> {
    let checked = sigv4::check_headers(&parts.headers, |id| keys.secret(id), SystemTime::now())
        .map_err(signature_refused)?;
    let bytes = {
        let _slot = slots.acquire().await.map_err(|_| {
            aws_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceException",
                "shutting down",
            )
        })?;
        read_body(body, limit).await?
    };
    let signed = sigv4::Signed {
        method: parts.method.as_str(),
        path: parts.uri.path(),
        query: parts.uri.query().unwrap_or(""),
        headers: &parts.headers,
        body: &bytes,
    };
    let access_key = checked.verify(&signed).map_err(signature_refused)?;
    Ok((access_key, bytes))
}

/// A control-API read: open while the control API is off, else
/// authorized like a write. `Reader(true)`: the caller presented admin
/// credentials, so secrets (a function's environment) may be shown.
pub struct Reader(pub bool);

impl FromRequest<Shared> for Reader {
    type Rejection = Response;

    async fn from_request(req: Request, gw: &Shared) -> Result<Self, Self::Rejection> {
        if !gw.admin.is_on() {
            return Ok(Reader(false));
        }
        Authed::from_request(req, gw).await.map(|_| Reader(true))
    }
}
