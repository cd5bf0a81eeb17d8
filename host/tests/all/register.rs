//! Registration refuses bad modules with a typed error naming what was
//! wrong, and registers nothing (HOSTILE 1–4).

use fnhost::{Error, FunctionConfig};

use super::*;

fn register_err(host: &Host, bytes: impl Into<bytes::Bytes>) -> Error {
    let err = host
        .register(FunctionConfig::from_bytes("bad", bytes))
        .unwrap_err();
    assert!(
        host.functions().iter().all(|f| f.name != "bad"),
        "nothing registered"
    );
    err
}

fn invalid_reason(e: Error) -> String {
    match e {
        Error::InvalidModule { reason } => reason,
        other => panic!("expected InvalidModule, got {other:?}"),
    }
}

#[test]
fn garbage_truncated_and_wrong_magic_are_invalid_modules() {
    // HOSTILE 1
    let host = host();
    let echo = guests::bytes(guests::ECHO);
    invalid_reason(register_err(&host, &b"\x00\x01\x02garbage"[..]));
    invalid_reason(register_err(&host, echo[..echo.len() / 2].to_vec()));
    let mut wrong_magic = echo.clone();
    wrong_magic[1] = b'X';
    invalid_reason(register_err(&host, wrong_magic));
    invalid_reason(register_err(&host, Vec::new()));
    assert_host_goes_on(&host);
}

#[test]
fn modules_over_the_size_cap_are_refused_before_compiling() {
    // HOSTILE 2
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(2)
        .max_module_size(10_000)
        .build()
        .unwrap();
    match host.register(FunctionConfig::from_file("big", guests::ECHO)) {
        Err(Error::ModuleTooLarge { size, max }) => {
            assert_eq!(size as u64, std::fs::metadata(guests::ECHO).unwrap().len());
            assert_eq!(max, 10_000);
        }
        other => panic!("expected ModuleTooLarge, got {other:?}"),
    }
    match host.register(FunctionConfig::from_bytes("big", vec![0u8; 10_001])) {
        Err(Error::ModuleTooLarge {
            size: 10_001,
            max: 10_000,
        }) => {}
        other => panic!("expected ModuleTooLarge, got {other:?}"),
    }
    assert_eq!(host.stats().compiles, 0, "nothing was compiled");
}

#[test]
fn disabled_features_are_named() {
    // HOSTILE 3
    let host = host();
    let cases = [
        ("(module (memory 1 1 shared))", "threads"),
        ("(module (memory i64 1))", "memory64"),
        ("(module (type (struct)))", "gc"),
    ];
    for (wat, feature) in cases {
        let reason = invalid_reason(register_err(&host, wat));
        assert!(
            reason.to_lowercase().contains(feature),
            "{feature}: {reason}"
        );
    }
}

#[test]
fn unknown_and_mistyped_imports_are_named() {
    // HOSTILE 4
    let host = host();
    let unknown = wat_guest(r#"(import "env" "steal" (func))"#, "", "(i32.const 0)");
    match register_err(&host, unknown) {
        Error::UnsupportedImport { module, name, .. } => {
            assert_eq!((module.as_str(), name.as_str()), ("env", "steal"))
        }
        other => panic!("expected UnsupportedImport, got {other:?}"),
    }
    let no_such = wat_guest(
        r#"(import "fnhost_v1" "launch_missiles" (func))"#,
        "",
        "(i32.const 0)",
    );
    match register_err(&host, no_such) {
        Error::UnsupportedImport {
            module,
            name,
            reason,
        } => {
            assert_eq!(
                (module.as_str(), name.as_str()),
                ("fnhost_v1", "launch_missiles")
            );
            assert_eq!(reason, "`fnhost_v1` has no function `launch_missiles`");
        }
        other => panic!("expected UnsupportedImport, got {other:?}"),
    }
    let mistyped = wat_guest(
        r#"(import "wasi_snapshot_preview1" "fd_write" (func (param i32) (result i32)))"#,
        "",
        "(i32.const 0)",
    );
    match register_err(&host, mistyped) {
        Error::UnsupportedImport {
            module,
            name,
            reason,
        } => {
            assert_eq!(
                (module.as_str(), name.as_str()),
                ("wasi_snapshot_preview1", "fd_write")
            );
            assert_eq!(
                reason,
                "has type (i32) -> (i32), expected (i32, i32, i32, i32) -> (i32)"
            );
        }
        other => panic!("expected UnsupportedImport, got {other:?}"),
    }
    let memory_import =
        r#"(module (import "env" "memory" (memory 1)) (func (export "fnhost_abi_v1")))"#;
    assert!(matches!(
        register_err(&host, memory_import),
        Error::UnsupportedImport { .. }
    ));
    assert_host_goes_on(&host);
}

#[test]
fn missing_exports_and_wrong_abi_versions_are_named() {
    // HOSTILE 4
    let host = host();
    let no_handle = r#"(module (memory (export "memory") 1) (func (export "fnhost_abi_v1"))
        (func (export "fnhost_alloc") (param i32) (result i32) (i32.const 0)))"#;
    match register_err(&host, no_handle) {
        Error::BadExport { name, .. } => assert_eq!(name, "fnhost_handle"),
        other => panic!("expected BadExport, got {other:?}"),
    }
    let v2 = r#"(module (memory (export "memory") 1) (func (export "fnhost_abi_v2")))"#;
    assert!(matches!(
        register_err(&host, v2),
        Error::UnsupportedAbiVersion {
            found: 2,
            supported: 1
        }
    ));
    let unversioned = r#"(module (memory (export "memory") 1))"#;
    match register_err(&host, unversioned) {
        Error::BadExport { name, .. } => assert_eq!(name, "fnhost_abi_v1"),
        other => panic!("expected BadExport, got {other:?}"),
    }
    let wrong_type = wat_guest(
        "",
        r#"(func (export "fnhost_init") (result i64) (i64.const 0))"#,
        "(i32.const 0)",
    );
    match register_err(&host, wrong_type) {
        Error::BadExport { name, reason } => {
            assert_eq!(name, "fnhost_init");
            assert_eq!(reason, "has type () -> (i64), expected () -> (i32)");
        }
        other => panic!("expected BadExport, got {other:?}"),
    }
    let no_memory = r#"(module (func (export "fnhost_abi_v1")))"#;
    assert!(
        matches!(register_err(&host, no_memory), Error::BadExport { name, .. } if name == "memory")
    );
}

#[test]
fn config_is_validated_and_unregister_removes_everything() {
    let host = host();
    host.register(FunctionConfig::from_file("once", guests::ECHO))
        .unwrap();
    assert!(matches!(
        host.register(FunctionConfig::from_file("bad name!", guests::ECHO)),
        Err(Error::InvalidConfig { field: "name", .. })
    ));
    assert!(matches!(
        host.register(FunctionConfig::from_file("missing", "/no/such/file.wasm")),
        Err(Error::Io { .. })
    ));
    let names: Vec<_> = host.functions().into_iter().map(|f| f.name).collect();
    assert_eq!(names, vec!["once"]);
    host.unregister("once").unwrap();
    assert!(matches!(
        host.invoke("once", b""),
        Err(Error::NotFound { .. })
    ));
    assert!(matches!(
        host.unregister("once"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn host_settings_are_validated() {
    let field = |b: fnhost::HostBuilder| match b.build() {
        Err(Error::InvalidConfig { field, .. }) => field,
        Err(other) => panic!("expected InvalidConfig, got {other:?}"),
        Ok(_) => panic!("expected InvalidConfig, got a host"),
    };
    assert_eq!(
        field(Host::builder().concurrency_limit(0)),
        "concurrency_limit"
    );
    assert_eq!(field(Host::builder().workers(0)), "workers");
    assert_eq!(field(Host::builder().max_memory(5 << 30)), "max_memory");
    assert_eq!(
        field(Host::builder().epoch_tick(Duration::from_secs(5))),
        "epoch_tick"
    );
    assert_eq!(field(Host::builder().max_wasm_stack(1)), "max_wasm_stack");
}
