//! Hand-written hostile guests (WAT) for what Rust would not emit:
//! runaway start functions and init, memory bombs, wild pointers, bad
//! status codes (HOSTILE 5, 6, 8, 10, 12).

use std::time::Duration;

use fnhost::{Error, FunctionConfig};

use super::*;

fn short_host() -> Host {
    host()
}

fn abi_reason(inv: &Invocation) -> &str {
    match inv.output() {
        Err(Error::AbiViolation { reason }) => reason,
        other => panic!("expected AbiViolation, got {other:?}"),
    }
}

#[test]
fn start_function_that_loops_forever_times_out() {
    // HOSTILE 5: the deadline covers instantiation.
    let host = short_host();
    let wat = wat_guest(
        "",
        "(func $spin (loop $l (br $l))) (start $spin)",
        "(i32.const 0)",
    );
    host.register(FunctionConfig::from_bytes("start", wat).timeout(Duration::from_millis(50)))
        .unwrap();
    let inv = host.invoke("start", b"").unwrap();
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.output()
    );
    assert_host_goes_on(&host);
}

#[test]
fn init_that_loops_forever_times_out() {
    // HOSTILE 5: the deadline covers the guest's init.
    let host = short_host();
    let wat = wat_guest(
        "",
        r#"(func (export "fnhost_init") (result i32) (loop $l (br $l)) (i32.const 0))"#,
        "(i32.const 0)",
    );
    host.register(FunctionConfig::from_bytes("init", wat).timeout(Duration::from_millis(50)))
        .unwrap();
    let inv = host.invoke("init", b"").unwrap();
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.output()
    );
    assert_host_goes_on(&host);
}

#[test]
fn failing_init_is_the_guest_error() {
    let host = short_host();
    let wat = wat_guest(
        "",
        r#"(data (i32.const 0) "InitFailedno config")
           (func (export "fnhost_init") (result i32)
             (call $error (i32.const 0) (i32.const 10) (i32.const 10) (i32.const 9)) (i32.const 1))"#,
        "(i32.const 0)",
    );
    let inv = run_wat(&host, "badinit", &wat, b"");
    match inv.output() {
        Err(Error::Guest { kind, message }) => assert_eq!(
            (kind.as_str(), message.as_str()),
            ("InitFailed", "no config")
        ),
        other => panic!("expected a guest error, got {other:?}"),
    }
}

#[test]
fn handler_loop_calling_host_functions_still_times_out() {
    // HOSTILE 7 (cheap host calls in a loop)
    let host = short_host();
    let wat = wat_guest(
        r#"(import "fnhost_v1" "context_u64" (func $ctx (param i32) (result i64)))"#,
        "",
        "(loop $l (drop (call $ctx (i32.const 1))) (br $l)) (i32.const 0)",
    );
    host.register(FunctionConfig::from_bytes("hostloop", wat).timeout(Duration::from_millis(50)))
        .unwrap();
    let inv = host.invoke("hostloop", b"").unwrap();
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.output()
    );
    assert_host_goes_on(&host);
}

#[test]
fn memory_grow_bomb_is_out_of_memory() {
    // HOSTILE 8: grow one page at a time until refused, then trap.
    let host = short_host();
    let wat = wat_guest(
        "",
        "",
        "(loop $l (br_if $l (i32.ne (memory.grow (i32.const 1)) (i32.const -1)))) unreachable",
    );
    host.register(FunctionConfig::from_bytes("bomb", wat).memory_limit(8 << 20))
        .unwrap();
    let inv = host.invoke("bomb", b"").unwrap();
    assert!(
        matches!(inv.output(), Err(Error::OutOfMemory { limit }) if *limit == 8 << 20),
        "{:?}",
        inv.output()
    );
    assert_eq!(inv.report.max_memory_used, 8 << 20);
    assert_host_goes_on(&host);
}

#[test]
fn initial_memory_above_the_limit_is_out_of_memory() {
    // HOSTILE 8: 100 pages (6.25 MiB) initial, 1 MiB allowed.
    let host = short_host();
    let wat = wat_guest("", "", "(i32.const 0)").replace(
        r#"(memory (export "memory") 1)"#,
        r#"(memory (export "memory") 100)"#,
    );
    host.register(FunctionConfig::from_bytes("fat", wat).memory_limit(1 << 20))
        .unwrap();
    let inv = host.invoke("fat", b"").unwrap();
    assert!(
        matches!(inv.output(), Err(Error::OutOfMemory { .. })),
        "{:?}",
        inv.output()
    );
    assert_host_goes_on(&host);
}

#[test]
fn wild_output_pointers_are_abi_violations() {
    // HOSTILE 10: out of bounds, wrapping, huge.
    let host = short_host();
    let cases = [
        (
            "oob",
            "(call $output (i32.const 65530) (i32.const 100)) (i32.const 0)",
        ),
        (
            "wrap",
            "(call $output (i32.const -1) (i32.const -1)) (i32.const 0)",
        ),
        (
            "huge",
            "(call $output (i32.const 0) (i32.const 0x7fffffff)) (i32.const 0)",
        ),
        (
            "err_oob",
            "(call $error (i32.const 0) (i32.const 5) (i32.const -16) (i32.const 64)) (i32.const 1)",
        ),
    ];
    for (name, body) in cases {
        let inv = run_wat(&host, name, &wat_guest("", "", body), b"");
        let reason = abi_reason(&inv);
        assert!(
            reason.contains("outside guest memory of 65536 bytes"),
            "{name}: {reason}"
        );
    }
    assert_host_goes_on(&host);
}

#[test]
fn bad_alloc_results_are_abi_violations() {
    let host = short_host();
    let base = wat_guest("", "", "(i32.const 0)");
    let with_alloc = |ret: &str| base.replace("(i32.const 1024))", &format!("({ret}))"));
    let inv = run_wat(&host, "null", &with_alloc("i32.const 0"), b"payload");
    assert_eq!(abi_reason(&inv), "fnhost_alloc(7) returned a null pointer");
    let inv = run_wat(&host, "wild", &with_alloc("i32.const 65535"), b"payload");
    assert!(abi_reason(&inv).starts_with("fnhost_alloc(7) returned range 0xffff+7 is outside"));
    assert_host_goes_on(&host);
}

#[test]
fn unknown_status_and_error_without_record_are_abi_violations() {
    let host = short_host();
    let inv = run_wat(&host, "st7", &wat_guest("", "", "(i32.const 7)"), b"");
    assert_eq!(abi_reason(&inv), "fnhost_handle returned unknown status 7");
    let inv = run_wat(&host, "st1", &wat_guest("", "", "(i32.const 1)"), b"");
    assert_eq!(
        abi_reason(&inv),
        "fnhost_handle returned status 1 (error) without calling fnhost_v1.error"
    );
}

#[test]
fn wasi_calls_with_wild_pointers_get_efault() {
    // HOSTILE 12: the host function returns EFAULT (21) to the guest; the
    // guest reports the errno as its output.
    let host = short_host();
    let imports = r#"(import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "random_get" (func $random (param i32 i32) (result i32)))
        (import "wasi_snapshot_preview1" "path_open" (func $open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))"#;
    let report = |call: &str| {
        format!(
            "(i32.store (i32.const 0) {call}) (call $output (i32.const 0) (i32.const 4)) (i32.const 0)"
        )
    };
    let cases = [
        (
            "iovs_oob",
            "(call $fd_write (i32.const 1) (i32.const 65532) (i32.const 100) (i32.const 0))",
            21u32,
        ),
        (
            "iov_target_oob",
            "(i32.store (i32.const 16) (i32.const 65000)) (i32.store (i32.const 20) (i32.const 0x7fffffff)) (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 8))",
            21,
        ),
        (
            "too_many_iovs",
            "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 100000) (i32.const 0))",
            28,
        ),
        (
            "random_huge",
            "(call $random (i32.const 0) (i32.const -1))",
            21,
        ),
        (
            "open_path_huge",
            "(call $open (i32.const 3) (i32.const 0) (i32.const 0) (i32.const -1) (i32.const 0) (i64.const 0) (i64.const 0) (i32.const 0) (i32.const 0))",
            37,
        ),
        (
            "bad_fd",
            "(call $fd_write (i32.const 99) (i32.const 0) (i32.const 0) (i32.const 0))",
            8,
        ),
    ];
    for (name, call, errno) in cases {
        let inv = run_wat(&host, name, &wat_guest(imports, "", &report(call)), b"");
        assert_eq!(inv.output().unwrap(), errno.to_le_bytes(), "{name}");
    }
    // A host import with an out-of-bounds buffer in fnhost_v1 traps as an
    // ABI violation rather than writing anywhere.
    let ctx = r#"(import "fnhost_v1" "context_str" (func $cs (param i32 i32 i32) (result i32)))"#;
    let inv = run_wat(
        &host,
        "ctx_oob",
        &wat_guest(
            ctx,
            "",
            "(drop (call $cs (i32.const 0) (i32.const 65535) (i32.const 64))) (i32.const 0)",
        ),
        b"",
    );
    assert!(abi_reason(&inv).starts_with("fnhost_v1.context_str: range 0xffff+36"));
    assert_host_goes_on(&host);
}

#[test]
fn a_survived_refused_grow_does_not_taint_later_traps_in_a_reused_instance() {
    // The guest asks for more memory than allowed, handles the refusal
    // (memory.grow returns -1) and succeeds; then, in the same warm
    // instance, it traps: that trap is a trap, not OutOfMemory.
    let host = short_host();
    let wat = wat_guest(
        "",
        "",
        "(if (i32.eq (local.get $len) (i32.const 0))
            (then (drop (memory.grow (i32.const 1000))) (return (i32.const 0))))
         unreachable",
    );
    host.register(
        FunctionConfig::from_bytes("w", wat)
            .memory_limit(1 << 20)
            .reuse(10, Duration::from_secs(60)),
    )
    .unwrap();
    assert!(host.invoke("w", b"").unwrap().output().is_ok());
    let inv = host.invoke("w", b"x").unwrap();
    assert!(!inv.report.is_cold(), "same warm instance");
    assert!(
        matches!(
            inv.output(),
            Err(Error::Trap {
                code: Some(fnhost::Trap::UnreachableCodeReached),
                ..
            })
        ),
        "{:?}",
        inv.output()
    );
}
