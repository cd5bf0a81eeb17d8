//! Every quota ends the invocation with its typed error, and the host
//! goes on.

use std::time::Duration;

use fnhost::{Error, FunctionConfig};
use serde_json::json;

use super::*;

#[test]
fn handler_that_loops_forever_times_out() {
    // HOSTILE 6
    let host = host();
    let timeout = Duration::from_millis(100);
    with_probe(&host, "spin", |c| c.timeout(timeout));
    let inv = call(&host, "spin", json!({"op": "spin"}));
    match inv.output() {
        Err(Error::Timeout { timeout: t }) => assert_eq!(*t, timeout),
        other => panic!("expected Timeout, got {other:?}"),
    }
    // The deadline never fires early.
    let total = inv.report.duration + inv.report.init_duration.unwrap();
    assert!(total >= timeout, "{total:?}");
    assert_eq!(inv.report.error, Some(fnhost::ErrorKind::Timeout));
    assert_host_goes_on(&host);
}

#[test]
fn sleeping_past_the_deadline_times_out_and_short_sleeps_finish() {
    let host = host();
    with_probe(&host, "sleepy", |c| c.timeout(Duration::from_millis(200)));
    assert_eq!(
        call_ok(&host, "sleepy", json!({"op": "sleep", "ms": 5})),
        json!("slept")
    );
    let inv = call(&host, "sleepy", json!({"op": "sleep", "ms": 60_000}));
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.output()
    );
    assert_host_goes_on(&host);
}

#[test]
fn allocating_past_the_memory_limit_is_out_of_memory() {
    // HOSTILE 8 (Rust guest: the allocator's grow fails, the guest aborts)
    let host = host();
    with_probe(&host, "hog", |c| c.memory_limit(16 << 20));
    assert_eq!(
        call_ok(&host, "hog", json!({"op": "alloc", "bytes": 1 << 20})),
        json!(1u64 << 20)
    );
    let inv = call(&host, "hog", json!({"op": "alloc", "bytes": 64 << 20}));
    match inv.output() {
        Err(Error::OutOfMemory { limit }) => assert_eq!(*limit, 16 << 20),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    assert!(inv.report.max_memory_used <= 16 << 20);
    assert_host_goes_on(&host);
}

#[test]
fn tmp_writes_past_the_quota_fail_inside_the_guest_and_tmp_is_wiped() {
    // HOSTILE 16
    let host = host();
    with_probe(&host, "disk", |c| c.tmp_quota(1 << 20));
    let v = call_ok(
        &host,
        "disk",
        json!({"op": "write", "path": "/tmp/q", "bytes": 2 << 20}),
    );
    // 15 chunks of 64 KiB fit beside the file's 64 + 1 bytes of metadata;
    // the 16th would cross 1 MiB and fails whole with ENOSPC (51).
    assert_eq!(v["written"], json!(15 * 65536));
    assert_eq!(v["result"]["raw"], json!(51));
    // Within the quota, writes succeed.
    let v = call_ok(
        &host,
        "disk",
        json!({"op": "write", "path": "/tmp/q", "bytes": 100_000}),
    );
    assert_eq!(v["result"], json!({"ok": 100_000}));
    // The next invocation starts with an empty /tmp.
    let v = call_ok(&host, "disk", json!({"op": "read", "path": "/tmp/q"}));
    assert_eq!(v["raw"], json!(44), "{v}"); // ENOENT
    assert_host_goes_on(&host);
}

#[test]
fn output_over_max_output_is_refused() {
    // HOSTILE 11 (output half)
    let host = host();
    with_probe(&host, "big", |c| c.max_output(1000));
    assert_eq!(
        call_ok(&host, "big", json!({"op": "output", "bytes": 10})),
        json!("x".repeat(10))
    );
    let inv = call(&host, "big", json!({"op": "output", "bytes": 2000}));
    match inv.output() {
        Err(Error::OutputTooLarge { size, max }) => assert_eq!((*size, *max), (2002, 1000)),
        other => panic!("expected OutputTooLarge, got {other:?}"),
    }
    assert_host_goes_on(&host);
}

#[test]
fn deep_recursion_traps_without_harming_the_host() {
    // HOSTILE 9. A Rust guest keeps its frames on a shadow stack at the
    // bottom of linear memory: running off it is an out-of-bounds trap.
    let host = host();
    with_probe(&host, "deep", |c| c);
    assert_eq!(
        call_ok(&host, "deep", json!({"op": "recurse", "depth": 100})),
        json!(100)
    );
    let inv = call(&host, "deep", json!({"op": "recurse", "depth": 1u64 << 40}));
    match inv.output() {
        Err(Error::Trap { code, .. }) => assert_eq!(*code, Some(fnhost::Trap::MemoryOutOfBounds)),
        other => panic!("expected a trap, got {other:?}"),
    }
    // Recursion on the wasm stack itself hits wasmtime's stack limit.
    let wat = wat_guest(
        "",
        "(func $down (call $down))",
        "(call $down) (i32.const 0)",
    );
    let inv = run_wat(&host, "wasm_stack", &wat, b"");
    match inv.output() {
        Err(Error::Trap { code, .. }) => assert_eq!(*code, Some(fnhost::Trap::StackOverflow)),
        other => panic!("expected a stack-overflow trap, got {other:?}"),
    }
    assert_host_goes_on(&host);
}

#[test]
fn panics_and_handled_errors_reach_the_host_typed() {
    // HOSTILE 13, 14
    let host = host();
    with_probe(&host, "err", |c| c);
    let inv = call(&host, "err", json!({"op": "panic", "message": "boom"}));
    match inv.output() {
        Err(Error::Guest { kind, message }) => {
            assert_eq!(kind, "Panic");
            assert!(message.starts_with("boom (at "), "{message}");
        }
        other => panic!("expected a Panic guest error, got {other:?}"),
    }
    assert!(String::from_utf8_lossy(inv.logs.bytes()).starts_with("panicked: boom"));
    let inv = call(
        &host,
        "err",
        json!({"op": "fail", "kind": "Declined", "message": "card declined"}),
    );
    match inv.output() {
        Err(Error::Guest { kind, message }) => assert_eq!(
            (kind.as_str(), message.as_str()),
            ("Declined", "card declined")
        ),
        other => panic!("expected a guest error, got {other:?}"),
    }
    assert_host_goes_on(&host);
}

#[test]
fn memory_limit_above_host_max_names_the_wasm32_cap() {
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(2)
        .max_memory(1 << 30)
        .build()
        .unwrap();
    let err = host
        .register(FunctionConfig::from_file("m", guests::PROBE).memory_limit(2 << 30))
        .unwrap_err();
    match err {
        Error::InvalidConfig { field, reason } => {
            assert_eq!(field, "memory_limit");
            assert!(reason.contains("4 GiB"), "{reason}");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
}
