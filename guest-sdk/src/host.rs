//! Calling the host's capabilities (functions the embedder granted this
//! function). Every failure comes back as a [`HostCallError`] value.
//!
//! ```no_run
//! use serde_json::{Value, json};
//!
//! let r: Value = fnhost_guest::host::call("kv.get", &json!({"key": "best"}))?;
//! # Ok::<(), fnhost_guest::host::HostCallError>(())
//! ```

use std::fmt;

use fnhost_abi::host_call;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Why a host call did not return a response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostCallError {
    /// The capability is not granted to this function, or does not exist.
    Denied(String),
    /// Over a limit: calls per invocation, request or response size.
    Limit(String),
    /// The capability ran and returned an error.
    Failed {
        /// Its error type, e.g. `InvalidRequest`.
        kind: String,
        /// Its message.
        message: String,
    },
    /// The request could not be encoded or the response decoded.
    Codec(String),
}

impl fmt::Display for HostCallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostCallError::Denied(m) => write!(f, "host call denied: {m}"),
            HostCallError::Limit(m) => write!(f, "host call limit: {m}"),
            HostCallError::Failed { kind, message } => write!(f, "{kind}: {message}"),
            HostCallError::Codec(m) => write!(f, "host call encoding: {m}"),
        }
    }
}

impl std::error::Error for HostCallError {}

/// Calls capability `name` with JSON-encoded `request` and decodes its
/// JSON response.
pub fn call<Req: Serialize + ?Sized, Resp: DeserializeOwned>(
    name: &str,
    request: &Req,
) -> Result<Resp, HostCallError> {
    let req = serde_json::to_vec(request).map_err(|e| HostCallError::Codec(e.to_string()))?;
    let resp = call_raw(name, &req)?;
    serde_json::from_slice(&resp).map_err(|e| HostCallError::Codec(e.to_string()))
}

/// Calls capability `name` with raw bytes.
pub fn call_raw(name: &str, request: &[u8]) -> Result<Vec<u8>, HostCallError> {
    let (status, result) = ffi::host_call(name, request);
    let text = || String::from_utf8_lossy(&result).into_owned();
    match status {
        host_call::OK => Ok(result),
        host_call::ERROR => {
            let v: serde_json::Value = serde_json::from_slice(&result).unwrap_or_default();
            Err(HostCallError::Failed {
                kind: v["kind"].as_str().unwrap_or("Error").to_string(),
                message: v["message"].as_str().unwrap_or_default().to_string(),
            })
        }
        host_call::LIMIT => Err(HostCallError::Limit(text())),
        _ => Err(HostCallError::Denied(text())),
    }
}

mod ffi {
    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "fnhost_v1")]
    unsafe extern "C" {
        #[link_name = "host_call"]
        fn raw_host_call(name: *const u8, name_len: usize, req: *const u8, req_len: usize) -> i64;
        #[link_name = "host_result"]
        fn raw_host_result(buf: *mut u8, cap: usize) -> i32;
    }

    /// (status, result bytes).
    #[cfg(target_arch = "wasm32")]
    pub(super) fn host_call(name: &str, req: &[u8]) -> (i64, Vec<u8>) {
        // SAFETY: the host reads `name_len`/`req_len` bytes during the call.
        let r = unsafe { raw_host_call(name.as_ptr(), name.len(), req.as_ptr(), req.len()) };
        let (status, len) = fnhost_abi::host_call::unpack(r);
        let len = len as usize;
        let mut buf = vec![0u8; len];
        if len > 0 {
            // SAFETY: the host writes at most `len` bytes into `buf`.
            unsafe { raw_host_result(buf.as_mut_ptr(), len) };
        }
        (status, buf)
    }

    /// Off wasm there is no host: every call is denied.
    #[cfg(not(target_arch = "wasm32"))]
    pub(super) fn host_call(name: &str, _req: &[u8]) -> (i64, Vec<u8>) {
        (
            fnhost_abi::host_call::DENIED,
            format!("no host to call `{name}` outside wasm").into_bytes(),
        )
    }
}
