//! Fuzz oracles: each takes fuzzer bytes, drives fnhost, and panics only
//! if fnhost broke a rule.

use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use fnhost::{Error, ErrorKind, FunctionConfig, Host};
use fnhost_test_guests as guests;

/// A host sized for fuzzing: small pool, short timeouts, no disk cache,
/// no log sink. `healthy` (echo) and `hello` (typed JSON) are registered.
pub fn fuzz_host() -> Host {
    let host = Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .concurrency_limit(8)
        .workers(1)
        .max_module_size(1 << 20)
        .build()
        .expect("host builds");
    host.register(FunctionConfig::from_file("healthy", guests::ECHO))
        .expect("echo registers");
    host.register(
        FunctionConfig::from_file("hello", guests::HELLO).timeout(Duration::from_secs(2)),
    )
    .expect("hello registers");
    host
}

/// The host goes on: echo still answers exactly.
pub fn assert_host_goes_on(host: &Host) {
    let out = host
        .invoke("healthy", b"ping")
        .expect("accepted")
        .into_output();
    assert_eq!(out.expect("echo works").as_ref(), b"ping");
}

fn is_registration_error(e: &Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::InvalidModule
            | ErrorKind::ModuleTooLarge
            | ErrorKind::UnsupportedImport
            | ErrorKind::BadExport
            | ErrorKind::UnsupportedAbiVersion
    )
}

/// (a) Any bytes as a module: registration either succeeds or fails with a
/// registration error; a registered module's invocation ends in a typed
/// outcome; the host goes on.
pub fn register_bytes(host: &Host, bytes: &[u8]) {
    const NAME: &str = "fuzzed";
    match host.register(
        FunctionConfig::from_bytes(NAME, bytes.to_vec()).timeout(Duration::from_millis(200)),
    ) {
        Ok(_) => {
            let inv = host.invoke(NAME, b"{}").expect("admitted");
            if let Err(e) = inv.output() {
                let _ = e.kind(); // any typed outcome is acceptable
            }
            host.unregister(NAME).expect("unregisters");
        }
        Err(e) => assert!(
            is_registration_error(&e),
            "unexpected register error kind: {e:?}"
        ),
    }
    assert_host_goes_on(host);
}

/// (a) A wasm-smith module built from the fuzzer's bytes.
pub fn register_smith(host: &Host, data: &[u8]) {
    let mut u = Unstructured::new(data);
    let mut cfg = match wasm_smith::Config::arbitrary(&mut u) {
        Ok(c) => c,
        Err(_) => return,
    };
    cfg.max_memory32_bytes = 1 << 24;
    cfg.max_imports = 4;
    if let Ok(module) = wasm_smith::Module::new(cfg, &mut u) {
        register_bytes(host, &module.to_bytes());
    }
}

/// The numbers an ABI-boundary case is made of.
#[derive(Debug, Arbitrary)]
pub struct AbiCase {
    /// What `fnhost_alloc` returns.
    pub alloc: i32,
    /// `fnhost_v1.output(ptr, len)` arguments, if called.
    pub output: Option<(i32, i32)>,
    /// `fnhost_v1.error(kind_ptr, kind_len, msg_ptr, msg_len)`, if called.
    pub error: Option<(i32, i32, i32, i32)>,
    /// The status `fnhost_handle` returns.
    pub status: i32,
    /// Payload length.
    pub payload: u16,
    /// Memory pages the guest grows by first.
    pub grow: u8,
}

/// (b) A generated guest returning arbitrary pointers, lengths and status
/// codes: the outcome is exactly what the ABI says, never a host panic.
pub fn abi_boundary(host: &Host, case: &AbiCase) {
    const NAME: &str = "abi";
    let mut handle = format!("(drop (memory.grow (i32.const {})))", case.grow % 8);
    if let Some((p, l)) = case.output {
        handle += &format!("(call $output (i32.const {p}) (i32.const {l}))");
    }
    if let Some((a, b, c, d)) = case.error {
        handle += &format!(
            "(call $error (i32.const {a}) (i32.const {b}) (i32.const {c}) (i32.const {d}))"
        );
    }
    handle += &format!("(i32.const {})", case.status);
    let wat = crate::wat_guest("", "", &format!("(i32.const {})", case.alloc), &handle);
    host.register(FunctionConfig::from_bytes(NAME, wat).max_output(1 << 16))
        .expect("generated guest registers");
    let payload = vec![b'x'; case.payload as usize];
    let inv = host.invoke(NAME, &payload).expect("admitted");
    match inv.output() {
        Ok(_) => assert_eq!(case.status, 0, "success needs status 0"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                ErrorKind::AbiViolation | ErrorKind::OutputTooLarge | ErrorKind::Guest
            ),
            "unexpected outcome {e:?} for {case:?}"
        ),
    }
    host.unregister(NAME).expect("unregisters");
    assert_host_goes_on(host);
}

/// (c) Arbitrary payload bytes through the typed JSON guest path: either a
/// greeting or the guest's own typed error, nothing else.
pub fn json_payload(host: &Host, payload: &[u8]) {
    match host.invoke("hello", payload) {
        Ok(inv) => match inv.output() {
            Ok(out) => {
                let v: serde_json::Value = serde_json::from_slice(out).expect("hello answers JSON");
                assert!(
                    v["message"].as_str().is_some_and(|m| m.ends_with('!')),
                    "{v}"
                );
            }
            Err(Error::Guest { kind, .. }) => {
                assert!(
                    kind == "InvalidEvent" || kind == "InvalidName",
                    "unexpected guest error {kind}"
                )
            }
            Err(e) => panic!("unexpected outcome {e:?}"),
        },
        Err(Error::PayloadTooLarge { .. }) => assert!(payload.len() > 6 << 20),
        Err(e) => panic!("unexpected refusal {e:?}"),
    }
}
