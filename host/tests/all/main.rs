//! Integration tests of the `fnhost` crate: one binary, one module per
//! area. Where each HOSTILE.md row lives:
//! - 1–4: `register`; 5–8, 10, 12: `hostile` (WAT guests) and `quotas`;
//! - 9, 11, 13, 14, 16: `quotas`, `invoke`; 15, 17, 18 (fresh): `isolation`;
//! - 18 (reuse), 19, 20, 23: `engine`; 21, 22: `invoke`; 27: `invoke`,
//!   `observe` and `logs.rs` unit tests;
//! - 24–25: `events`; 28: `hostile/tests/soak.rs`; 26: the gateway's
//!   tests in `cli`.

mod cache;
mod capabilities;
mod component_http;
mod component_runtime;
mod components;
mod drafts;
mod engine;
mod events;
mod hostile;
mod http_components;
mod invoke;
mod isolation;
mod languages;
mod observe;
mod quotas;
mod register;
mod replica;
mod snapshots;
mod versions;

use std::time::Duration;

use fnhost::{FunctionConfig, Host, Invocation};
use serde_json::{Value, json};

pub use fnhost_test_guests as guests;

/// A host with a small pool and no artifact cache, for hermetic tests.
pub fn host() -> Host {
    Host::builder()
        .no_artifact_cache()
        .concurrency_limit(8)
        .epoch_tick(Duration::from_millis(2))
        .build()
        .expect("host builds")
}

/// Registers the probe guest as `name` with `cfg` applied.
pub fn with_probe(host: &Host, name: &str, cfg: impl FnOnce(FunctionConfig) -> FunctionConfig) {
    host.register(cfg(FunctionConfig::from_file(name, guests::PROBE)))
        .expect("probe registers");
}

/// Invokes `name` with a JSON command.
pub fn call(host: &Host, name: &str, cmd: Value) -> Invocation {
    host.invoke(name, cmd.to_string().as_bytes())
        .expect("invocation accepted")
}

/// Invokes and parses a successful JSON output.
pub fn call_ok(host: &Host, name: &str, cmd: Value) -> Value {
    let inv = call(host, name, cmd);
    let out = inv
        .output()
        .unwrap_or_else(|e| panic!("invocation failed: {e}; logs: {:?}", inv.logs));
    serde_json::from_slice(out).expect("JSON output")
}

/// "The host goes on": after whatever happened, a normal invocation on
/// the same host returns the exact expected output.
pub fn assert_host_goes_on(host: &Host) {
    if host.function_info("healthy").is_err() {
        with_probe(host, "healthy", |c| c);
    }
    let v = call_ok(
        host,
        "healthy",
        json!({"op": "echo", "data": {"still": "alive"}}),
    );
    assert_eq!(v, json!({"still": "alive"}));
}

/// A hand-written ABI v1 guest: `imports` and `items` are spliced into a
/// module that already has memory, the version marker and an
/// `fnhost_alloc` returning 1024; `handle` is the body of `fnhost_handle`
/// (params `$ptr`, `$len`; must leave an i32 status).
pub fn wat_guest(imports: &str, items: &str, handle: &str) -> String {
    format!(
        r#"(module
  (import "fnhost_v1" "output" (func $output (param i32 i32)))
  (import "fnhost_v1" "error" (func $error (param i32 i32 i32 i32)))
  {imports}
  (memory (export "memory") 1)
  (func (export "fnhost_abi_v1"))
  (func (export "fnhost_alloc") (param i32) (result i32) (i32.const 1024))
  (func (export "fnhost_handle") (param $ptr i32) (param $len i32) (result i32)
    {handle})
  {items})"#
    )
}

/// Registers WAT text under `name` on a fresh host and invokes it once
/// with `payload`.
pub fn run_wat(host: &Host, name: &str, wat: &str, payload: &[u8]) -> Invocation {
    host.register(FunctionConfig::from_bytes(
        name.to_string(),
        wat.to_string(),
    ))
    .unwrap_or_else(|e| panic!("{name} registers: {e}"));
    host.invoke(name, payload).expect("accepted")
}
