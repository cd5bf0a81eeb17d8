//! Sync invocations across nodes: a node that cannot serve an invocation
//! (throttled: no free slot within the function's `max_wait`; or it does
//! not have the function yet) asks the other nodes over NATS
//! request-reply. Every node serves `fnhost.invoke.<function>` in the
//! queue group `fnhost-invoke`, so NATS hands each request to one member.
//!
//! A member that cannot serve it either (it is the asker, or it is
//! throttled too) answers `retry`, and the asker tries again (up to
//! [`TRIES`] times, so with several nodes another member is very likely
//! reached); an answer is the invocation in [`fnhost::wire`] form, so the
//! caller gets the same report, logs and typed errors as from a local
//! run. The request's timeout is the function's own (plus its
//! `max_wait` and a margin for the hop); a node that times out gives
//! [`Error::Timeout`].

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_nats::HeaderMap;
use bytes::Bytes;
use fnhost::{Error, Invocation, wire};
use futures::StreamExt as _;

use super::{Cluster, INVOKE_GROUP};
use crate::cluster::stream::{CLOCK_SKEW, TARGET, from_unix_ms, function_of, unix_ms};

/// Header: the node that asked.
pub const ORIGIN: &str = "Fnhost-Origin";
/// Header: `ok` (an invocation), `refused` (an error, final), `retry`
/// (ask another node) or `self` (the asker reached itself: ask again).
pub const STATUS: &str = "Fnhost-Status";
/// Header: the invocation's meta (`ok`) or the error's JSON (`refused`,
/// `retry`).
pub const META: &str = "Fnhost-Meta";
/// Header: the caller's client context (`X-Amz-Client-Context`, base64
/// of the JSON text, as the caller sent it).
pub const CLIENT_CONTEXT: &str = "Fnhost-Client-Context";
/// Header: when the asker sent the request (Unix ms).
pub const SENT: &str = "Fnhost-Sent";
/// Header: when the asker stops waiting for the answer (Unix ms).
pub const DEADLINE: &str = "Fnhost-Deadline";
/// Other nodes one forwarded invocation asks at most.
pub const TRIES: usize = 6;

/// The part of a forwarded call's timeout that covers the hop itself.
const HOP_MARGIN: Duration = Duration::from_secs(2);

impl Cluster {
    /// Subscribes to forwarded invocations and serves them on a task.
    pub(super) async fn start_responder(
        self: Arc<Self>,
    ) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let mut requests = self
            .client
            .queue_subscribe("fnhost.invoke.*", INVOKE_GROUP.to_string())
            .await?;
        let mut stop = self.stopping();
        Ok(tokio::spawn(async move {
            loop {
                let next = tokio::select! {
                    n = requests.next() => n,
                    _ = stop.changed() => {
                        let _ = requests.unsubscribe().await;
                        return;
                    }
                };
                let Some(req) = next else { return };
                let me = self.clone();
                tokio::spawn(async move { me.serve_forwarded(req).await });
            }
        }))
    }

    async fn serve_forwarded(&self, req: async_nats::Message) {
        let Some(reply) = req.reply.clone() else {
            return;
        };
        let headers = req.headers.as_ref();
        let get = |k: &str| {
            headers
                .and_then(|h| h.get(k))
                .map(|v| v.as_str().to_string())
        };
        let mut out = HeaderMap::new();
        let body = match (get(TARGET), get(ORIGIN)) {
            (_, Some(origin)) if origin == self.opts.node => {
                out.insert(STATUS, "self");
                Bytes::new()
            }
            (Some(target), _) if self.too_late(&target, &get) => {
                // Its asker has answered (or will before this could
                // finish): it never runs.
                self.stats.forwards_expired.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(target: "fnhost::cluster", function = %target, "dropped a forwarded invocation that arrived too late");
                return;
            }
            (Some(target), _) => match self
                .run_here(&target, req.payload.clone(), client_context(&get))
                .await
            {
                Ok(inv) => {
                    self.stats.forwarded_in.fetch_add(1, Ordering::Relaxed);
                    let (meta, body) = self.encode_answer(inv);
                    out.insert(STATUS, "ok");
                    out.insert(META, meta.as_str());
                    Bytes::from(body)
                }
                Err(e) => {
                    // Another node may have a slot (or the function).
                    let again = matches!(
                        e,
                        Error::Throttled { .. } | Error::NotFound { .. } | Error::ShuttingDown
                    );
                    out.insert(STATUS, if again { "retry" } else { "refused" });
                    out.insert(META, wire::error_to_json(&e).to_string().as_str());
                    Bytes::new()
                }
            },
            (None, _) => {
                let e = Error::Remote {
                    kind: fnhost::ErrorKind::InvalidConfig,
                    message: format!("forwarded invocation without a {TARGET} header"),
                };
                out.insert(STATUS, "refused");
                out.insert(META, wire::error_to_json(&e).to_string().as_str());
                Bytes::new()
            }
        };
        if let Err(e) = self.client.publish_with_headers(reply, out, body).await {
            tracing::warn!(target: "fnhost::cluster", error = %e, "could not answer a forwarded invocation");
        }
    }

    /// Whether a forwarded request arrived too late to run: more than the
    /// clock skew after it was sent (it waited in a buffer through an
    /// outage), or with too little time left before its asker gives up
    /// for this node's timeout and queue wait. Requests without the
    /// headers (older nodes) run.
    fn too_late(&self, target: &str, get: &impl Fn(&str) -> Option<String>) -> bool {
        let at = |k: &str| get(k).and_then(|v| v.parse::<u64>().ok()).map(from_unix_ms);
        let now = SystemTime::now();
        if at(SENT).is_some_and(|sent| now > sent + CLOCK_SKEW) {
            return true;
        }
        let needs = self
            .host
            .function_info(target)
            .map_or(Duration::ZERO, |i| i.timeout + i.max_wait);
        at(DEADLINE).is_some_and(|deadline| now + needs > deadline)
    }

    /// The invocation in wire form, fitted to a message: an output that
    /// cannot travel becomes the function error a too-large output is
    /// (`OutputTooLarge`, as the host reports one over `max_output`), and
    /// logs that still do not fit are dropped (counted as dropped).
    fn encode_answer(&self, mut inv: Invocation) -> (String, Vec<u8>) {
        let max = self.max_message();
        let (meta, body) = wire::encode_invocation(&inv);
        if meta.len() + body.len() <= max {
            return (meta, body);
        }
        if let Ok(out) = &inv.outcome {
            inv.outcome = Err(Error::OutputTooLarge {
                size: out.len() as u64,
                max,
            });
            inv.report.error = Some(fnhost::ErrorKind::OutputTooLarge);
        }
        let (meta, body) = wire::encode_invocation(&inv);
        if meta.len() + body.len() <= max {
            return (meta, body);
        }
        let logs = inv.logs.bytes().len() as u64 + inv.logs.dropped();
        inv.logs = fnhost::Logs::dropped_all(logs);
        wire::encode_invocation(&inv)
    }

    /// Runs a forwarded invocation on this node, first catching up with
    /// the registry if the function is not here yet.
    async fn run_here(
        &self,
        target: &str,
        payload: Bytes,
        client: Option<String>,
    ) -> fnhost::Result<Invocation> {
        let client = client.as_deref();
        match crate::client_context::start(&self.host, target, payload.clone(), client).await {
            Err(Error::NotFound { .. }) => {
                self.refresh(function_of(target)).await;
                crate::client_context::start(&self.host, target, payload, client).await
            }
            other => other,
        }
    }

    /// Runs `target` on another node. `local` is why this node did not
    /// run it; it is what the caller gets when no other node can either.
    pub async fn forward(
        &self,
        target: &str,
        payload: Bytes,
        client: Option<&str>,
        local: Error,
    ) -> fnhost::Result<Invocation> {
        let function = function_of(target);
        // Only names the host accepts travel (they are header values and
        // subject tokens), and only payloads a message can carry.
        let plain = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'$'))
        };
        // While NATS is away a request would wait in the client's buffer
        // and reach a peer after the caller was answered: this node's own
        // refusal goes back at once instead.
        if !plain(target) || payload.len() > self.max_message() || !self.is_connected() {
            return Err(local);
        }
        let timeout = match self.host.function_info(target) {
            Ok(i) => i.timeout + i.max_wait + HOP_MARGIN,
            Err(_) => Duration::from_secs(60),
        };
        let sent = SystemTime::now();
        let mut headers = HeaderMap::new();
        headers.insert(TARGET, target);
        headers.insert(ORIGIN, self.opts.node.as_str());
        headers.insert(SENT, unix_ms(sent).to_string().as_str());
        headers.insert(DEADLINE, unix_ms(sent + timeout).to_string().as_str());
        if let Some(c) = client {
            use base64::Engine as _;
            let encoded = base64::engine::general_purpose::STANDARD.encode(c);
            headers.insert(CLIENT_CONTEXT, encoded.as_str());
        }
        let epoch = self.connection_epoch();
        let mut last = local;
        // Answers from this node itself (NATS may hand the request to its
        // own queue member) do not count as tries; the cap on requests
        // bounds the loop all the same.
        let (mut tries, mut requests) = (0, 0);
        while tries < TRIES && requests < 4 * TRIES {
            requests += 1;
            let request = async_nats::Request::new()
                .headers(headers.clone())
                .payload(payload.clone())
                .timeout(Some(timeout));
            let answer = match self
                .client
                .send_request(format!("fnhost.invoke.{function}"), request)
                .await
            {
                Ok(a) => a,
                Err(e) => {
                    use async_nats::RequestErrorKind as K;
                    match e.kind() {
                        K::TimedOut => {
                            self.stats.forward_failures.fetch_add(1, Ordering::Relaxed);
                            // The connection failed under the request: a
                            // peer may have run it and its answer be lost.
                            if !self.is_connected() || self.connection_epoch() != epoch {
                                return Err(super::unconfirmed("the forwarded invocation"));
                            }
                            return Err(Error::Timeout { timeout });
                        }
                        // No node is listening (this one is stopping).
                        K::NoResponders => break,
                        _ => {
                            tracing::warn!(target: "fnhost::cluster", error = %e, "forwarding failed");
                            break;
                        }
                    }
                }
            };
            let h = answer.headers.as_ref();
            let get = |k: &str| h.and_then(|h| h.get(k)).map(|v| v.as_str().to_string());
            let meta = get(META);
            match get(STATUS).as_deref() {
                Some("ok") => {
                    return match wire::decode_invocation(
                        meta.as_deref().unwrap_or(""),
                        answer.payload,
                    ) {
                        Ok(inv) => {
                            self.stats.forwarded_out.fetch_add(1, Ordering::Relaxed);
                            Ok(inv)
                        }
                        Err(why) => Err(Error::Remote {
                            kind: fnhost::ErrorKind::Instantiate,
                            message: format!("a peer's answer was unreadable: {why}"),
                        }),
                    };
                }
                Some("refused") => {
                    return Err(parse_error(meta.as_deref()));
                }
                Some("self") => {}
                _ => {
                    tries += 1;
                    if let Some(m) = meta {
                        last = parse_error(Some(&m));
                    }
                }
            }
        }
        self.stats.forward_failures.fetch_add(1, Ordering::Relaxed);
        Err(last)
    }
}

fn parse_error(meta: Option<&str>) -> Error {
    match meta.and_then(|m| serde_json::from_str(m).ok()) {
        Some(v) => wire::error_from_json(&v),
        None => Error::Remote {
            kind: fnhost::ErrorKind::Instantiate,
            message: "a peer refused without saying why".into(),
        },
    }
}

/// The client context a forwarded request carries (`None`: none, or not
/// base64 of UTF-8: a peer of this build never sends that).
fn client_context(get: &dyn Fn(&str) -> Option<String>) -> Option<String> {
    use base64::Engine as _;
    let encoded = get(CLIENT_CONTEXT)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    String::from_utf8(bytes).ok()
}
