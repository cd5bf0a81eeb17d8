//! Host capabilities: functions the embedder exposes to guests, granted
//! per function (what Extism calls host functions, typed on both sides and
//! scoped by grants).
//!
//! - The embedder defines a [`Capability`] ([`Capability::typed`] with
//!   serde types, or [`Capability::raw`] on bytes) and adds it with
//!   [`HostBuilder::capability`](crate::HostBuilder::capability).
//! - A function lists what it may call with
//!   [`FunctionConfig::grant`](crate::FunctionConfig::grant); grants are
//!   resolved at register time (an unknown name fails the register).
//! - The guest calls `fnhost_guest::host::call::<Req, Resp>("kv.get", &req)`;
//!   an ungranted or unknown name, a refused request or a host error come
//!   back as a `Result`, never a trap, and are counted.
//! - Built-ins, each off unless granted: a key-value store with one
//!   namespace per tenant and function ([`kv`], behind [`KvStore`]),
//!   outbound HTTP to an allow-list of hosts ([`http`]), and a clock and
//!   random bytes with a deterministic mode ([`clock`], [`random`]).
//!
//! Time inside a host function counts against the invocation's timeout:
//! when it returns after the deadline, the invocation ends with
//! [`Error::Timeout`](crate::Error::Timeout). A host function stays
//! cancellable by bounding its own work with [`CallContext::remaining`].

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use parking_lot::RwLock;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::report::RequestId;

mod web;

pub use web::{HTTP_CAPABILITY, HttpAllow, http};

/// What a host function knows about the invocation calling it.
#[derive(Debug, Clone, Copy)]
pub struct CallContext<'a> {
    pub(crate) function: &'a str,
    pub(crate) version: &'a str,
    pub(crate) request_id: RequestId,
    pub(crate) tenant: Option<&'a str>,
    pub(crate) deadline: Instant,
    pub(crate) call_index: u32,
}

impl CallContext<'_> {
    /// The calling function's name.
    pub fn function(&self) -> &str {
        self.function
    }

    /// The version invoked (`"3"` or `$LATEST`).
    pub fn version(&self) -> &str {
        self.version
    }

    /// The invocation's request id.
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// The tenant label the embedder gave the function
    /// ([`FunctionConfig::tenant`](crate::FunctionConfig::tenant)).
    pub fn tenant(&self) -> Option<&str> {
        self.tenant
    }

    /// Time left before the invocation's deadline.
    pub fn remaining(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Which host call of this invocation this is, from 0.
    pub fn call_index(&self) -> u32 {
        self.call_index
    }
}

/// An error a host function returns to the guest (as a value).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct HostError {
    /// A short type name, e.g. `NotFound`, `InvalidRequest`.
    pub kind: String,
    /// What went wrong.
    pub message: String,
}

impl HostError {
    /// An error of `kind` with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> HostError {
        HostError {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

type HostFn = dyn Fn(&CallContext<'_>, &[u8]) -> Result<Vec<u8>, HostError> + Send + Sync;

/// A named host function a guest may be granted.
#[derive(Clone)]
pub struct Capability {
    name: Arc<str>,
    f: Arc<HostFn>,
    /// Set by [`http`]: the allow-list a component's `wasi:http`
    /// requests are held to when this capability is granted.
    http: Option<Arc<HttpAllow>>,
}

impl fmt::Debug for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Capability")
            .field("name", &self.name)
            .finish()
    }
}

impl Capability {
    /// A host function on raw bytes.
    pub fn raw(
        name: &str,
        f: impl Fn(&CallContext<'_>, &[u8]) -> Result<Vec<u8>, HostError> + Send + Sync + 'static,
    ) -> Capability {
        Capability {
            name: Arc::from(name),
            f: Arc::new(f),
            http: None,
        }
    }

    /// A host function on serde types: the guest's request is JSON
    /// decoded into `Req` (a request that does not decode is an
    /// `InvalidRequest` error for the guest), the response is JSON.
    ///
    /// ```
    /// use fnhost::capability::{Capability, HostError};
    ///
    /// #[derive(serde::Deserialize)]
    /// struct Add { a: i64, b: i64 }
    ///
    /// let add = Capability::typed("math.add", |_ctx, r: Add| {
    ///     r.a.checked_add(r.b).ok_or_else(|| HostError::new("Overflow", "a + b overflows"))
    /// });
    /// assert_eq!(add.name(), "math.add");
    /// ```
    pub fn typed<Req, Resp>(
        name: &str,
        f: impl Fn(&CallContext<'_>, Req) -> Result<Resp, HostError> + Send + Sync + 'static,
    ) -> Capability
    where
        Req: DeserializeOwned,
        Resp: Serialize,
    {
        Capability::raw(name, move |ctx, bytes| {
            let req: Req = serde_json::from_slice(bytes)
                .map_err(|e| HostError::new("InvalidRequest", e.to_string()))?;
            let resp = f(ctx, req)?;
            serde_json::to_vec(&resp).map_err(|e| HostError::new("InvalidResponse", e.to_string()))
        })
    }

    /// The allow-list of an [`http`] capability.
    pub(crate) fn http_allow(&self) -> Option<&Arc<HttpAllow>> {
        self.http.as_ref()
    }

    /// The name guests call it by.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn call(&self, ctx: &CallContext<'_>, req: &[u8]) -> Result<Vec<u8>, HostError> {
        (self.f)(ctx, req)
    }
}

/// The capabilities one function was granted, resolved at register time.
pub(crate) type Grants = HashMap<Box<str>, Capability>;

/// A key-value store behind the `kv.*` capabilities. Every call names a
/// namespace (one per tenant and function), so no guest reaches another's
/// keys whatever key it sends.
pub trait KvStore: Send + Sync + 'static {
    /// The value at `key`.
    fn get(&self, namespace: &str, key: &str) -> Result<Option<Vec<u8>>, HostError>;
    /// Stores `value` at `key`.
    fn put(&self, namespace: &str, key: &str, value: Vec<u8>) -> Result<(), HostError>;
    /// Removes `key`; whether it was there.
    fn delete(&self, namespace: &str, key: &str) -> Result<bool, HostError>;
    /// Keys starting with `prefix`, sorted, at most `limit`.
    fn list(&self, namespace: &str, prefix: &str, limit: usize) -> Result<Vec<String>, HostError>;
}

/// (namespace, key) -> value, and bytes used per namespace.
type KvData = (BTreeMap<(String, String), Vec<u8>>, HashMap<String, usize>);

/// The default [`KvStore`]: in memory, gone when the host is, with a
/// byte quota per namespace (keys + values; default 16 MiB) so a guest
/// cannot fill the host's memory. Other backends must enforce their own.
#[derive(Debug)]
pub struct MemoryKv {
    /// Entries, and bytes used per namespace (one lock: they move together).
    data: RwLock<KvData>,
    quota: usize,
}

impl MemoryKv {
    /// An empty store with the default 16 MiB per namespace.
    pub fn new() -> Arc<MemoryKv> {
        MemoryKv::with_quota(16 << 20)
    }

    /// An empty store with `bytes` per namespace.
    pub fn with_quota(bytes: usize) -> Arc<MemoryKv> {
        Arc::new(MemoryKv {
            data: RwLock::new((BTreeMap::new(), HashMap::new())),
            quota: bytes,
        })
    }
}

impl KvStore for MemoryKv {
    fn get(&self, ns: &str, key: &str) -> Result<Option<Vec<u8>>, HostError> {
        Ok(self
            .data
            .read()
            .0
            .get(&(ns.to_string(), key.to_string()))
            .cloned())
    }

    fn put(&self, ns: &str, key: &str, value: Vec<u8>) -> Result<(), HostError> {
        let mut guard = self.data.write();
        let (data, used) = &mut *guard;
        let k = (ns.to_string(), key.to_string());
        let old = data.get(&k).map_or(0, |v| key.len() + v.len());
        let now = used.get(ns).copied().unwrap_or(0) - old + key.len() + value.len();
        if now > self.quota {
            return Err(HostError::new(
                "QuotaExceeded",
                format!(
                    "the namespace would hold {now} bytes, over its quota of {}",
                    self.quota
                ),
            ));
        }
        used.insert(ns.to_string(), now);
        data.insert(k, value);
        Ok(())
    }

    fn delete(&self, ns: &str, key: &str) -> Result<bool, HostError> {
        let mut guard = self.data.write();
        let (data, used) = &mut *guard;
        let Some(v) = data.remove(&(ns.to_string(), key.to_string())) else {
            return Ok(false);
        };
        if let Some(u) = used.get_mut(ns) {
            *u = u.saturating_sub(key.len() + v.len());
        }
        Ok(true)
    }

    fn list(&self, ns: &str, prefix: &str, limit: usize) -> Result<Vec<String>, HostError> {
        let guard = self.data.read();
        let data = &guard.0;
        let from = (ns.to_string(), prefix.to_string());
        Ok(data
            .range(from..)
            .take_while(|((n, k), _)| n == ns && k.starts_with(prefix))
            .take(limit)
            .map(|((_, k), _)| k.clone())
            .collect())
    }
}

/// Longest key the `kv.*` capabilities take.
pub const MAX_KV_KEY: usize = 1024;
/// Most keys one `kv.list` returns.
pub const MAX_KV_LIST: usize = 1000;

/// The namespace of the calling function: `<tenant>/<function>`.
fn namespace(ctx: &CallContext<'_>) -> String {
    format!("{}/{}", ctx.tenant.unwrap_or(""), ctx.function)
}

fn key_of(v: &Value) -> Result<&str, HostError> {
    let key = v["key"]
        .as_str()
        .ok_or_else(|| HostError::new("InvalidRequest", "`key` must be a string"))?;
    if key.is_empty() || key.len() > MAX_KV_KEY {
        return Err(HostError::new(
            "InvalidRequest",
            format!("a key is 1 to {MAX_KV_KEY} bytes"),
        ));
    }
    Ok(key)
}

/// The key-value capabilities on `store`, each with JSON in and out:
///
/// | name | request | response |
/// |---|---|---|
/// | `kv.get` | `{"key": "k"}` | `{"value": <JSON> \| null}` |
/// | `kv.put` | `{"key": "k", "value": <JSON>}` | `{}` |
/// | `kv.delete` | `{"key": "k"}` | `{"deleted": bool}` |
/// | `kv.list` | `{"prefix": "p"}` | `{"keys": ["p1", ...]}` (sorted, at most 1000) |
///
/// Keys live in the caller's namespace (tenant + function name), so two
/// functions or two tenants never see each other's keys.
pub fn kv(store: Arc<dyn KvStore>) -> Vec<Capability> {
    let s = store.clone();
    let get = Capability::typed("kv.get", move |ctx, v: Value| {
        let value = match s.get(&namespace(ctx), key_of(&v)?)? {
            Some(bytes) => serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            None => Value::Null,
        };
        Ok(json!({ "value": value }))
    });
    let s = store.clone();
    let put = Capability::typed("kv.put", move |ctx, v: Value| {
        let bytes = serde_json::to_vec(&v["value"]).unwrap_or_default();
        s.put(&namespace(ctx), key_of(&v)?, bytes)?;
        Ok(json!({}))
    });
    let s = store.clone();
    let delete = Capability::typed("kv.delete", move |ctx, v: Value| {
        Ok(json!({ "deleted": s.delete(&namespace(ctx), key_of(&v)?)? }))
    });
    let s = store;
    let list = Capability::typed("kv.list", move |ctx, v: Value| {
        let prefix = v["prefix"].as_str().unwrap_or("");
        Ok(json!({ "keys": s.list(&namespace(ctx), prefix, MAX_KV_LIST)? }))
    });
    vec![get, put, delete, list]
}

/// Real or reproducible values for [`clock`] and [`random`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Determinism {
    /// The system clock; OS-seeded randomness.
    Real,
    /// A fixed time (the clock never moves) and random bytes derived from
    /// the seed, the function name and the host call's index, so the same
    /// input gives the same output on every run.
    Seeded {
        /// Seed for `random.bytes`.
        seed: u64,
        /// What `clock.now` returns, in ms since the Unix epoch.
        unix_ms: u64,
    },
}

/// `clock.now`: `{}` in, `{"unix_ms": n}` out.
pub fn clock(mode: Determinism) -> Capability {
    Capability::typed("clock.now", move |_ctx, _: Value| {
        let unix_ms = match mode {
            Determinism::Real => SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            Determinism::Seeded { unix_ms, .. } => unix_ms,
        };
        Ok(json!({ "unix_ms": unix_ms }))
    })
}

/// Most bytes one `random.bytes` call returns.
pub const MAX_RANDOM_BYTES: usize = 4096;

/// `random.bytes`: `{"len": n}` in (n ≤ 4096), `{"hex": "..."}` out.
pub fn random(mode: Determinism) -> Capability {
    let secret = crate::util::host_secret();
    Capability::typed("random.bytes", move |ctx, v: Value| {
        let len = v["len"].as_u64().unwrap_or(16) as usize;
        if len > MAX_RANDOM_BYTES {
            return Err(HostError::new(
                "InvalidRequest",
                format!("at most {MAX_RANDOM_BYTES} bytes per call"),
            ));
        }
        let mut h = match mode {
            Determinism::Real => {
                let mut h = blake3::Hasher::new_keyed(&secret);
                h.update(&ctx.request_id.0.to_le_bytes());
                h
            }
            Determinism::Seeded { seed, .. } => {
                let mut h = blake3::Hasher::new();
                h.update(&seed.to_le_bytes());
                h.update(ctx.function.as_bytes());
                h
            }
        };
        h.update(&ctx.call_index.to_le_bytes());
        let mut out = vec![0u8; len];
        h.finalize_xof().fill(&mut out);
        Ok(json!({ "hex": out.iter().map(|b| format!("{b:02x}")).collect::<String>() }))
    })
}
