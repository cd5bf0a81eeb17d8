//! # fnhost-guest: write fnhost functions in plain Rust
//!
//! Put `#[fnhost_guest::handler]` on a function and build the crate as a
//! `cdylib` for `wasm32-wasip1`; the result is a module the fnhost host can
//! register (ABI v1, see `docs/abi.md`).
//!
//! ```
//! use fnhost_guest::{Context, Error};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Order { item: String, qty: u32 }
//!
//! #[derive(Serialize)]
//! struct Receipt { line: String }
//!
//! #[fnhost_guest::handler]
//! fn handle(order: Order, ctx: &Context) -> Result<Receipt, Error> {
//!     if order.qty == 0 {
//!         return Err(Error::new("InvalidOrder", "qty must be at least 1"));
//!     }
//!     let _ = ctx.remaining_time();
//!     Ok(Receipt { line: format!("{} x {}", order.qty, order.item) })
//! }
//! # fn main() {}
//! ```
//!
//! - **Typed handlers** take any `serde::de::DeserializeOwned` event (the
//!   payload is JSON) and return `Result<impl Serialize, E>`.
//! - **Raw handlers** take `&[u8]` or `Vec<u8>` and return
//!   `Result<impl AsRef<[u8]>, E>`: no JSON on either side.
//! - `E` is any `Display + 'static` error. The host receives a guest error
//!   whose kind is `E`'s type name (`ParseIntError`, …) and whose message is
//!   its `Display`; use [`Error`] to choose the kind yourself.
//! - A **panic** reaches the host as a guest error of kind `"Panic"`
//!   carrying the panic message and location.
//! - `#[fnhost_guest::init]` on `fn() -> Result<(), E>` runs once per
//!   instance before the first invocation: build indexes, parse config.
//!   With snapshots (`FunctionConfig::snapshot`) it runs once at register
//!   time and every instance starts from its result.
//! - `#[fnhost_guest::restore]` runs on every new instance once its state
//!   is ready (after init, or when starting from a snapshot): re-create
//!   what must differ per instance (random seeds, unique ids).
//! - [`Context`] tells the handler its request id, function name, memory
//!   limit and remaining time, and for an event invocation its event id
//!   and attempt.
//! - [`host::call`] calls a capability the embedder granted this function
//!   (`host::call::<Req, Resp>("kv.get", &req)`); refusals and host
//!   errors are values ([`host::HostCallError`]).
//!
//! Off wasm32 (when a guest crate is compiled natively, for unit tests or
//! native benchmarks) the host imports are replaced by inert stand-ins, so
//! handler functions can be called directly as plain Rust.

#![deny(missing_docs)]

use std::fmt;
use std::time::Duration;

use fnhost_abi::{context_str, context_u64};

pub use fnhost_guest_macros::{handler, init, restore};

pub mod host;

/// A handled error with an explicit kind (Lambda's `errorType`) and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error {
    /// Short machine-readable kind, e.g. `"InvalidOrder"`.
    pub kind: String,
    /// Human-readable message.
    pub message: String,
}

impl Error {
    /// An error of `kind` with `message`.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Error {
        Error {
            kind: kind.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind, self.message)
    }
}

impl std::error::Error for Error {}

/// What a handler may ask about its invocation. Each call asks the host.
#[derive(Debug)]
pub struct Context {
    _private: (),
}

impl Context {
    /// A context for calling a handler directly as plain Rust (unit tests,
    /// native benchmarks). Inside a wasm guest its methods ask the host;
    /// off wasm they return stand-ins (function `"native"`, no deadline).
    pub fn native() -> Context {
        Context { _private: () }
    }

    /// The invocation's request id (a UUID string).
    pub fn request_id(&self) -> String {
        ffi::context_string(context_str::REQUEST_ID)
    }

    /// The function's name as registered.
    pub fn function_name(&self) -> String {
        ffi::context_string(context_str::FUNCTION_NAME)
    }

    /// The version invoked: a number such as `"3"`, or `$LATEST`.
    pub fn function_version(&self) -> String {
        ffi::context_string(context_str::FUNCTION_VERSION)
    }

    /// For an event invocation, the event's id: stable across retries and
    /// redeliveries, so a handler can make its effects idempotent (event
    /// delivery is at-least-once). `None` for a synchronous invocation.
    pub fn event_id(&self) -> Option<String> {
        ffi::context_opt_string(context_str::EVENT_ID)
    }

    /// The caller's client context, if it sent one: the JSON text an AWS
    /// SDK sends base64-encoded in `X-Amz-Client-Context` (Lambda's
    /// `context.client_context`).
    pub fn client_context(&self) -> Option<String> {
        ffi::context_opt_string(context_str::CLIENT_CONTEXT)
    }

    /// For an event invocation, which delivery attempt this is (from 1).
    pub fn event_attempt(&self) -> Option<u32> {
        ffi::context_opt_i64(context_u64::EVENT_ATTEMPT).map(|n| n as u32)
    }

    /// The function's linear-memory limit in bytes.
    pub fn memory_limit(&self) -> u64 {
        ffi::context_u64(context_u64::MEMORY_LIMIT)
    }

    /// Time left before the deadline.
    pub fn remaining_time(&self) -> Duration {
        Duration::from_nanos(ffi::context_u64(context_u64::REMAINING_NS))
    }

    /// The function's configured timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_nanos(ffi::context_u64(context_u64::TIMEOUT_NS))
    }
}

/// The error kind the host will see for `e`.
fn kind_of<E: fmt::Display + 'static>(e: &E) -> String {
    let any: &dyn std::any::Any = e;
    if let Some(err) = any.downcast_ref::<Error>() {
        return err.kind.clone();
    }
    if any.is::<String>() || any.is::<&'static str>() {
        return "Error".into();
    }
    let full = std::any::type_name::<E>();
    // `core::num::error::ParseIntError` -> `ParseIntError`; keep generics.
    let base = full.split('<').next().unwrap_or(full);
    let short = base.rsplit("::").next().unwrap_or(base);
    format!("{short}{}", &full[base.len()..])
}

fn message_of<E: fmt::Display + 'static>(e: &E) -> String {
    let any: &dyn std::any::Any = e;
    match any.downcast_ref::<Error>() {
        Some(err) => err.message.clone(),
        None => e.to_string(),
    }
}

mod ffi {
    // The attribute needs literals: these are fnhost_abi::IMPORT_MODULE and
    // fnhost_abi::imports::* (a test below checks they agree).
    #[cfg(target_arch = "wasm32")]
    #[link(wasm_import_module = "fnhost_v1")]
    unsafe extern "C" {
        #[link_name = "output"]
        fn raw_output(ptr: *const u8, len: usize);
        #[link_name = "error"]
        fn raw_error(kind_ptr: *const u8, kind_len: usize, msg_ptr: *const u8, msg_len: usize);
        #[link_name = "context_str"]
        fn raw_context_str(key: i32, buf: *mut u8, cap: usize) -> i32;
        #[link_name = "context_u64"]
        fn raw_context_u64(key: i32) -> i64;
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn output(bytes: &[u8]) {
        // SAFETY: the host copies `len` bytes from `ptr` during the call.
        unsafe { raw_output(bytes.as_ptr(), bytes.len()) }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn error(kind: &str, message: &str) {
        // SAFETY: as for `output`.
        unsafe { raw_error(kind.as_ptr(), kind.len(), message.as_ptr(), message.len()) }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn context_string(key: i32) -> String {
        context_opt_string(key).unwrap_or_default()
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn context_opt_string(key: i32) -> Option<String> {
        let mut buf = vec![0u8; 64];
        loop {
            // SAFETY: the host writes at most `cap` bytes into `buf`.
            let n = unsafe { raw_context_str(key, buf.as_mut_ptr(), buf.len()) };
            if n < 0 {
                return None;
            }
            if n as usize <= buf.len() {
                buf.truncate(n as usize);
                return Some(String::from_utf8_lossy(&buf).into_owned());
            }
            buf.resize(n as usize, 0);
        }
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn context_opt_i64(key: i32) -> Option<i64> {
        // SAFETY: no pointers involved.
        let n = unsafe { raw_context_u64(key) };
        (n >= 0).then_some(n)
    }

    #[cfg(target_arch = "wasm32")]
    pub(crate) fn context_u64(key: i32) -> u64 {
        // SAFETY: no pointers involved.
        unsafe { raw_context_u64(key) as u64 }
    }

    // Native stand-ins: a guest crate compiled for the host (tests, native
    // benchmarks) keeps building, and its handlers can be called directly.
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn output(_bytes: &[u8]) {}
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn error(_kind: &str, _message: &str) {}
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn context_string(key: i32) -> String {
        use fnhost_abi::context_str::*;
        match key {
            REQUEST_ID => "00000000-0000-0000-0000-000000000000".into(),
            FUNCTION_NAME => "native".into(),
            FUNCTION_VERSION => fnhost_abi::LATEST.into(),
            _ => String::new(),
        }
    }
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn context_opt_string(_key: i32) -> Option<String> {
        None
    }
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn context_opt_i64(_key: i32) -> Option<i64> {
        None
    }
    #[cfg(not(target_arch = "wasm32"))]
    pub(crate) fn context_u64(key: i32) -> u64 {
        use fnhost_abi::context_u64::*;
        match key {
            MEMORY_LIMIT => 4 << 30,
            REMAINING_NS | TIMEOUT_NS => u64::MAX,
            _ => 0,
        }
    }
}

/// Used by the code `#[handler]` and `#[init]` generate. Not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    use fnhost_abi::{STATUS_ERROR, STATUS_OK};

    /// `fnhost_alloc`: a buffer of `len` bytes the host fills with the
    /// payload; ownership passes to `fnhost_handle`.
    pub fn alloc(len: i32) -> i32 {
        let v: Vec<u8> = Vec::with_capacity(len.max(0) as usize);
        let mut v = std::mem::ManuallyDrop::new(v);
        v.as_mut_ptr() as usize as i32
    }

    /// Takes back the payload buffer given out by [`alloc`].
    fn take_input(ptr: i32, len: i32) -> Vec<u8> {
        if len <= 0 {
            return Vec::new();
        }
        // SAFETY: the host called `alloc(len)`, which returned `ptr` with
        // capacity `len`, and wrote `len` bytes there; we own it now.
        unsafe { Vec::from_raw_parts(ptr as usize as *mut u8, len as usize, len as usize) }
    }

    fn install_panic_hook() {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            std::panic::set_hook(Box::new(|info| {
                let msg = match info.payload().downcast_ref::<&str>() {
                    Some(s) => (*s).to_string(),
                    None => match info.payload().downcast_ref::<String>() {
                        Some(s) => s.clone(),
                        None => "Box<dyn Any>".into(),
                    },
                };
                let text = match info.location() {
                    Some(l) => format!("{msg} (at {}:{}:{})", l.file(), l.line(), l.column()),
                    None => msg,
                };
                flush_stdout();
                eprintln!("panicked: {text}");
                ffi::error("Panic", &text);
            }));
        });
    }

    /// `print!` output sits in std's line buffer until a newline; a reactor
    /// never exits, so flush it before returning to the host.
    fn flush_stdout() {
        use std::io::Write;
        let _ = std::io::stdout().flush();
    }

    fn fail<E: fmt::Display + 'static>(e: &E) -> i32 {
        ffi::error(&kind_of(e), &message_of(e));
        STATUS_ERROR
    }

    /// Runs a typed JSON handler.
    pub fn run_json<Ev, Out, E, F>(ptr: i32, len: i32, f: F) -> i32
    where
        Ev: serde::de::DeserializeOwned,
        Out: serde::Serialize,
        E: fmt::Display + 'static,
        F: FnOnce(Ev, &Context) -> Result<Out, E>,
    {
        install_panic_hook();
        let input = take_input(ptr, len);
        let event: Ev = match serde_json::from_slice(&input) {
            Ok(ev) => ev,
            Err(e) => {
                ffi::error(
                    "InvalidEvent",
                    &format!("the payload is not the JSON this handler expects: {e}"),
                );
                return STATUS_ERROR;
            }
        };
        drop(input);
        let result = f(event, &Context { _private: () });
        flush_stdout();
        match result {
            Ok(out) => match serde_json::to_vec(&out) {
                Ok(bytes) => {
                    ffi::output(&bytes);
                    STATUS_OK
                }
                Err(e) => fail(&Error::new("SerializationError", e.to_string())),
            },
            Err(e) => fail(&e),
        }
    }

    /// Runs a raw-bytes handler.
    pub fn run_raw<O, E, F>(ptr: i32, len: i32, f: F) -> i32
    where
        O: AsRef<[u8]>,
        E: fmt::Display + 'static,
        F: FnOnce(Vec<u8>, &Context) -> Result<O, E>,
    {
        install_panic_hook();
        let result = f(take_input(ptr, len), &Context { _private: () });
        flush_stdout();
        match result {
            Ok(out) => {
                ffi::output(out.as_ref());
                STATUS_OK
            }
            Err(e) => fail(&e),
        }
    }

    /// Runs an `#[init]` function.
    pub fn run_init<E, F>(f: F) -> i32
    where
        E: fmt::Display + 'static,
        F: FnOnce() -> Result<(), E>,
    {
        install_panic_hook();
        let result = f();
        flush_stdout();
        match result {
            Ok(()) => STATUS_OK,
            Err(e) => fail(&e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn import_literals_are_the_abi_crates_names() {
        // `#[link]` attributes need literals; every one of them must be a
        // name fnhost-abi defines (so the host's checks and the SDK agree).
        let known = [
            fnhost_abi::imports::OUTPUT,
            fnhost_abi::imports::ERROR,
            fnhost_abi::imports::CONTEXT_STR,
            fnhost_abi::imports::CONTEXT_U64,
            fnhost_abi::imports::HOST_CALL,
            fnhost_abi::imports::HOST_RESULT,
        ];
        let mut seen = Vec::new();
        for src in [include_str!("lib.rs"), include_str!("host.rs")] {
            for (attr, want) in [
                ("wasm_import_module = \"", None),
                ("link_name = \"", Some(&known)),
            ] {
                for part in src.split(attr).skip(1) {
                    let lit = &part[..part.find('"').unwrap()];
                    match want {
                        None => assert_eq!(lit, fnhost_abi::IMPORT_MODULE),
                        Some(k) => assert!(k.contains(&lit), "{lit} is not an fnhost_abi import"),
                    }
                    seen.push(lit.to_string());
                }
            }
        }
        // Both extern blocks and all six imports were found.
        assert_eq!(
            seen.iter()
                .filter(|l| *l == fnhost_abi::IMPORT_MODULE)
                .count(),
            2,
            "{seen:?}"
        );
        for k in known {
            assert!(seen.iter().any(|l| l == k), "{k} never imported");
        }
    }

    #[test]
    fn error_kinds() {
        assert_eq!(kind_of(&Error::new("Custom", "m")), "Custom");
        assert_eq!(message_of(&Error::new("Custom", "m")), "m");
        assert_eq!(kind_of(&"x".parse::<u32>().unwrap_err()), "ParseIntError");
        assert_eq!(kind_of(&String::from("oops")), "Error");
        assert_eq!(kind_of(&"oops"), "Error");
    }
}
