//! Who may use the control API: `Authorization: Bearer <admin token>`
//! (for curl), or an AWS SigV4 signature (every SDK and the AWS CLI) made
//! with the admin token as the secret access key (any access key id), or
//! with one of the configured `--admin-key ID=SECRET` pairs.
//!
//! With neither a token nor keys the control API is off: writes are
//! refused, reads (list and get) stay open. With either, every control
//! request must be authorized, reads included.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

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

/// Slots for SigV4 request bodies read before their signature can be
/// checked (the signature covers the body). Any access key id signs with
/// the admin token, so a caller without it can pass the header checks:
/// the slots bound what such callers make the server buffer (`total` ×
/// the body limit), one address holds at most `per_source` of them (past
/// that: 429 at once), and a body must arrive within [`BODY_DEADLINE`]
/// (slot wait included; past it: 408), so slow senders cannot keep the
/// slots from signed callers.
pub(super) struct BodySlots {
    total: tokio::sync::Semaphore,
    per_source: usize,
    held: parking_lot::Mutex<HashMap<IpAddr, usize>>,
}

/// How long a signed request's body may take to arrive, waiting for a
/// slot included.
pub(super) const BODY_DEADLINE: Duration = Duration::from_secs(30);

/// One address' claim on a slot, given back on drop.
struct SourceClaim<'a> {
    slots: &'a BodySlots,
    source: Option<IpAddr>,
}

impl Drop for SourceClaim<'_> {
    fn drop(&mut self) {
        let Some(ip) = self.source else { return };
        let mut held = self.slots.held.lock();
        if let Some(n) = held.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                held.remove(&ip);
            }
        }
    }
}

impl BodySlots {
    pub(super) fn new(total: usize, per_source: usize) -> BodySlots {
        BodySlots {
            total: tokio::sync::Semaphore::new(total),
            per_source,
            held: parking_lot::Mutex::new(HashMap::new()),
        }
    }

    /// A claim for `source`, `None` when it holds its share already.
    fn claim(&self, source: Option<IpAddr>) -> Option<SourceClaim<'_>> {
        if let Some(ip) = source {
            let mut held = self.held.lock();
            let n = held.entry(ip).or_insert(0);
            if *n >= self.per_source {
                return None;
            }
            *n += 1;
        }
        Some(SourceClaim {
            slots: self,
            source,
        })
    }
}

/// The control API's slots: 4 bodies of up to 70 MiB, 2 per address.
static SIGNED_BODY_SLOTS: std::sync::LazyLock<BodySlots> =
    std::sync::LazyLock::new(|| BodySlots::new(4, 2));

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
/// of `slots`, see [`BodySlots`]), then the signature over both. `Ok`: the access key id and the
/// body.
pub(super) async fn verify_signed(
    keys: &AdminKeys,
    parts: &axum::http::request::Parts,
    body: axum::body::Body,
    limit: usize,
    slots: &BodySlots,
) -> Result<(String, Bytes), Response> {
    let checked = sigv4::check_headers(&parts.headers, |id| keys.secret(id), SystemTime::now())
        .map_err(signature_refused)?;
    let source = parts
        .extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip());
    let _claim = slots.claim(source).ok_or_else(|| {
        aws_error(
            StatusCode::TOO_MANY_REQUESTS,
            "TooManyRequestsException",
            "too many signed request bodies pending from this address",
        )
    })?;
    let read = async {
        let _slot = slots.total.acquire().await.map_err(|_| {
            aws_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceException",
                "shutting down",
            )
        })?;
        read_body(body, limit).await
    };
    let bytes = tokio::time::timeout(BODY_DEADLINE, read)
        .await
        .map_err(|_| {
            aws_error(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                &format!(
                    "the request body did not arrive within {} s",
                    BODY_DEADLINE.as_secs()
                ),
            )
        })??;
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
