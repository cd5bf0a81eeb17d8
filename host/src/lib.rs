//! # fnhost: serverless functions as a Rust crate
//!
//! A [`Host`] holds registered WebAssembly functions and invokes them by
//! name. Every invocation runs in a fresh, isolated instance under the
//! function's quotas, and yields an [`Invocation`]: the output (or a typed
//! [`Error`]), the guest's captured logs, and a Lambda-style [`Report`].
//!
//! ## Concepts
//! - **Function**: a `wasm32-wasip1` module implementing ABI v1
//!   (`docs/abi.md`), plus a [`FunctionConfig`]: memory limit, timeout,
//!   environment variables, `/tmp` quota, input/output caps.
//! - **Register** ([`Host::register`]): the module is size-checked, loaded
//!   from the on-disk artifact cache or compiled (then cached), checked
//!   against the ABI (version, exports, imports) and pre-linked.
//! - **Invoke** ([`Host::invoke`]): a fresh instance from the pooling
//!   allocator (copy-on-write memory), the guest's init, one copy of the
//!   payload in, the handler, one copy of the output out. The deadline
//!   covers all of it.
//! - **Quotas**: linear memory (grows past the limit fail, ending in
//!   [`Error::OutOfMemory`]), wall-clock timeout ([`Error::Timeout`]), a
//!   private in-memory `/tmp` whose writes past the quota fail with `ENOSPC`
//!   inside the guest, bounded output and logs.
//! - **Events** ([`Host::events`], [`events`]): Lambda's `Event`
//!   invocation type — accepted into a durable store, run asynchronously,
//!   retried, dead-lettered — and triggers (schedules, queues, topics,
//!   watched directories).
//!
//! ## Example
//! A guest written by hand in WAT that answers `hello, <payload>`:
//!
//! ```
//! use fnhost::{FunctionConfig, Host};
//!
//! let guest = r#"(module
//!   (import "fnhost_v1" "output" (func $output (param i32 i32)))
//!   (memory (export "memory") 1)
//!   (data (i32.const 0) "hello, ")
//!   (func (export "fnhost_abi_v1"))
//!   ;; The payload is written at offset 7, right after "hello, ".
//!   (func (export "fnhost_alloc") (param i32) (result i32) (i32.const 7))
//!   (func (export "fnhost_handle") (param $ptr i32) (param $len i32) (result i32)
//!     (call $output (i32.const 0) (i32.add (local.get $len) (i32.const 7)))
//!     (i32.const 0)))"#;
//!
//! let host = Host::builder().no_artifact_cache().concurrency_limit(4).build()?;
//! host.register(FunctionConfig::from_bytes("hello", guest))?;
//!
//! let inv = host.invoke("hello", b"world")?;
//! assert!(inv.report.is_cold());
//! println!("{}", inv.report.report_line());
//! assert_eq!(inv.into_output()?, "hello, world");
//!
//! // Errors are typed: match on them, never on strings.
//! assert!(matches!(host.invoke("nope", b""), Err(fnhost::Error::NotFound { .. })));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! An event invocation of the same guest, retried and dead-lettered by the
//! host if it failed (with a data dir it would survive a crash):
//!
//! ```
//! # use fnhost::{FunctionConfig, Host};
//! # let guest = r#"(module (import "fnhost_v1" "output" (func $output (param i32 i32)))
//! #   (memory (export "memory") 1) (func (export "fnhost_abi_v1"))
//! #   (func (export "fnhost_alloc") (param i32) (result i32) (i32.const 1024))
//! #   (func (export "fnhost_handle") (param $p i32) (param $l i32) (result i32)
//! #     (call $output (local.get $p) (local.get $l)) (i32.const 0)))"#;
//! # let host = Host::builder().no_artifact_cache().concurrency_limit(4).build()?;
//! # host.register(FunctionConfig::from_bytes("hello", guest))?;
//! let id = host.events().send("hello", "world")?;
//! assert!(host.events().wait_idle(std::time::Duration::from_secs(10)));
//! let stats = host.events().stats()?;
//! assert_eq!((stats.accepted, stats.succeeded, stats.pending), (1, 1, 0));
//! # let _ = id;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Guests are usually written in Rust with the `fnhost-guest` SDK:
//! `#[fnhost_guest::handler]` on a plain function, built for
//! `wasm32-wasip1`.
//!
//! ## Modules
//! The crate is layered (ARCHITECTURE.md): the vocabulary below, then the
//! guest layer (one instance and its imports), functions and the registry,
//! the runtime (admission, workers), deployment and events side by side,
//! and [`Host`] on top as a thin facade.
//! - [`abi`]: ABI v1 constants (from the `fnhost-abi` crate) and
//!   register-time checks.
//! - [`FunctionRef`]: how `name:qualifier` is read everywhere.
//! - [`events`]: event invocations, retries, dead letters and triggers.
//! - [`Error`], [`ErrorKind`]: every failure, typed.
//! - [`Report`], [`Logs`]: what an invocation reports.

#![deny(missing_docs)]

// Layers, bottom up (ARCHITECTURE.md has the rules): the vocabulary
// (error .. util), guest/, function/, runtime/, then deploy/ and events/
// side by side, and host/ on top.
pub mod capability;
mod engine;
mod error;
pub mod exchange;
#[doc(hidden)]
pub mod fault;
mod guest_mem;
mod invocation;
mod limits;
mod logs;
mod metering;
mod metrics;
mod report;
mod target;
#[cfg(test)]
mod test_alloc;
mod util;
pub mod wire;

mod guest;

mod function;

mod runtime;

mod deploy;
pub mod events;

mod host;

pub use guest::abi;

#[cfg(test)]
#[global_allocator]
static ALLOC: test_alloc::Counting = test_alloc::Counting;

pub use deploy::cache::default_cache_dir;
pub use engine::wasmtime_config;
#[doc(hidden)]
pub use engine::wasmtime_config_with_decommit_batch;
pub use error::{Error, ErrorKind, Result};
pub use exchange::{HttpBody, HttpBodyError, HttpResponse};
pub use function::registry::Alias;
pub use function::{
    FunctionConfig, FunctionInfo, MAX_ANNOTATIONS, MAX_ENV_BYTES, MAX_FUNCTION_ANNOTATIONS,
    MAX_TIMEOUT, ModuleSource, Reuse, WASM32_MAX_MEMORY,
};
pub use host::{Host, HostBuilder, HostStats};
pub use invocation::Invocation;
pub use logs::{LogSink, Logs, TracingLogSink, escape_control};
pub use metering::{Cost, Money, PriceModel, Usage, UsageSummary};
pub use metrics::{MetricsSnapshot, Percentiles};
pub use report::{Report, RequestId};
pub use runtime::{HttpAdmission, HttpTicket, InvokeFuture, ShutdownReport};
pub use target::{FunctionRef, LATEST, MAX_NAME_LEN, Qualifier, valid_name};
pub use wasmtime::Trap;

/// The README's code blocks compile as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
