//! Components (world `fnhost:function/handler`, WASI 0.2): the same
//! quotas, errors and isolation as core modules, with the Rust
//! `component-probe` (wasm32-wasip2).

use std::time::Duration;

use fnhost::capability::{Capability, HostError};
use fnhost::{Error, ErrorKind, FunctionConfig, Host};
use serde_json::{Value, json};

use super::*;

fn probe(host: &Host, name: &str, cfg: impl FnOnce(FunctionConfig) -> FunctionConfig) {
    host.register(cfg(FunctionConfig::from_file(
        name,
        guests::COMPONENT_PROBE,
    )))
    .expect("component registers");
}

#[test]
fn a_component_registers_and_answers_like_a_module() {
    let host = host();
    probe(&host, "c", |c| c);
    let inv = call(&host, "c", json!({"op": "echo", "data": {"hi": [1, 2]}}));
    assert_eq!(
        serde_json::from_slice::<Value>(inv.output().unwrap()).unwrap(),
        json!({"hi": [1, 2]})
    );
    assert_eq!(inv.report.function.as_ref(), "c");
    assert_eq!(inv.report.error, None);
    assert!(inv.report.init_duration.is_some(), "fresh instance");
    assert!(inv.report.max_memory_used > 0);
}

#[test]
fn context_is_the_invocations() {
    let host = host();
    probe(&host, "ctx", |c| {
        c.memory_limit(32 << 20).timeout(Duration::from_secs(3))
    });
    let inv = call(&host, "ctx", json!({"op": "context"}));
    let v: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
    assert_eq!(v["request_id"], json!(inv.report.request_id.to_string()));
    assert_eq!(v["function_name"], json!("ctx"));
    assert_eq!(v["function_version"], json!("$LATEST"));
    assert_eq!(v["memory_limit"], json!(32u64 << 20));
    assert_eq!(v["timeout_ns"], json!(3_000_000_000u64));
    let left = v["remaining_ns"].as_u64().unwrap();
    assert!(left > 0 && left <= 3_000_000_000, "{left}");
    assert_eq!(v["event"], Value::Null);
}

#[test]
fn env_is_the_functions_only() {
    let host = host();
    probe(&host, "a", |c| c.env("A_SECRET", "1").env("SHARED", "a=b"));
    probe(&host, "b", |c| c);
    assert_eq!(
        call_ok(&host, "a", json!({"op": "env"})),
        json!({"A_SECRET": "1", "SHARED": "a=b"})
    );
    assert_eq!(call_ok(&host, "b", json!({"op": "env"})), json!({}));
}

#[test]
fn stdout_and_stderr_are_the_invocations_logs_capped() {
    let host = host();
    probe(&host, "p", |c| c.max_log_bytes(1000));
    let inv = call(
        &host,
        "p",
        json!({"op": "print", "text": "out line", "err_text": "err line"}),
    );
    assert_eq!(inv.logs.bytes(), b"out line\nerr line\n");
    // A flood: 10,000 lines of 100 bytes; the cap keeps 1000 bytes, counts
    // the rest.
    let text = "x".repeat(99);
    let inv = call(
        &host,
        "p",
        json!({"op": "print", "text": text, "times": 10_000}),
    );
    assert_eq!(inv.output().unwrap(), b"\"printed\"");
    assert_eq!(inv.logs.bytes().len(), 1000);
    assert_eq!(inv.logs.dropped(), 10_000 * 100 - 1000);
}

#[test]
fn a_handled_error_is_a_guest_error_and_a_panic_a_trap() {
    let host = host();
    probe(&host, "e", |c| c);
    let inv = call(
        &host,
        "e",
        json!({"op": "fail", "kind": "NotFound", "message": "no such user"}),
    );
    match inv.output() {
        Err(Error::Guest { kind, message }) => {
            assert_eq!(
                (kind.as_str(), message.as_str()),
                ("NotFound", "no such user")
            );
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
    assert_eq!(inv.report.error, Some(ErrorKind::Guest));
    let inv = call(&host, "e", json!({"op": "panic", "message": "boom"}));
    assert!(
        matches!(inv.output(), Err(Error::Trap { .. })),
        "{:?}",
        inv.output()
    );
    // The panic message went to stderr.
    let logs = String::from_utf8_lossy(inv.logs.bytes()).into_owned();
    assert!(logs.contains("boom"), "{logs}");
}

#[test]
fn a_loop_times_out_and_a_memory_bomb_is_out_of_memory() {
    let host = host();
    probe(&host, "q", |c| {
        c.timeout(Duration::from_millis(200)).memory_limit(16 << 20)
    });
    let inv = call(&host, "q", json!({"op": "spin"}));
    assert!(
        matches!(inv.output(), Err(Error::Timeout { timeout }) if *timeout == Duration::from_millis(200)),
        "{:?}",
        inv.output()
    );
    let inv = call(&host, "q", json!({"op": "alloc", "bytes": 64 << 20}));
    assert!(
        matches!(inv.output(), Err(Error::OutOfMemory { limit }) if *limit == 16 << 20),
        "{:?}",
        inv.output()
    );
    assert!(inv.report.max_memory_used <= 16 << 20);
    // Within the limit works, and the host is fine afterwards.
    assert_eq!(
        call_ok(&host, "q", json!({"op": "alloc", "bytes": 4 << 20})),
        json!({"touched": 4 << 20})
    );
}

#[test]
fn a_sleep_ends_at_the_deadline_not_when_the_guest_asked() {
    // Epoch interruption cannot stop a host-side poll: the clock bounds
    // its subscriptions by the deadline instead.
    let host = host();
    probe(&host, "zz", |c| c.timeout(Duration::from_millis(200)));
    assert_eq!(
        call_ok(&host, "zz", json!({"op": "sleep", "ms": 5})),
        json!("slept")
    );
    let inv = call(&host, "zz", json!({"op": "sleep", "ms": 3_600_000}));
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.output()
    );
    // Not an hour: the deadline plus scheduling slack.
    assert!(
        inv.report.duration < Duration::from_secs(30),
        "{:?}",
        inv.report.duration
    );
}

#[test]
fn output_over_the_cap_is_refused() {
    let host = host();
    probe(&host, "o", |c| c.max_output(1000));
    let inv = call(&host, "o", json!({"op": "output", "bytes": 1000}));
    assert_eq!(inv.output().unwrap().len(), 1000);
    let inv = call(&host, "o", json!({"op": "output", "bytes": 1001}));
    assert!(
        matches!(
            inv.output(),
            Err(Error::OutputTooLarge {
                size: 1001,
                max: 1000
            })
        ),
        "{:?}",
        inv.output()
    );
}

#[test]
fn fresh_instances_share_nothing_and_reuse_keeps_state() {
    let host = host();
    probe(&host, "fresh", |c| c);
    for _ in 0..3 {
        assert_eq!(
            call_ok(&host, "fresh", json!({"op": "state"})),
            json!({"counter": 1, "init_runs": 1})
        );
    }
    let r1 = call_ok(&host, "fresh", json!({"op": "random"}));
    let r2 = call_ok(&host, "fresh", json!({"op": "random"}));
    assert_ne!(r1, r2, "each instance has its own random stream");
    probe(&host, "warm", |c| c.reuse(10, Duration::from_secs(60)));
    for n in 1..=3 {
        assert_eq!(
            call_ok(&host, "warm", json!({"op": "state"})),
            json!({"counter": n, "init_runs": 1})
        );
    }
}

#[test]
fn a_failing_init_fails_the_invocation_with_its_error_and_logs() {
    let host = host();
    probe(&host, "i", |c| c.env("PROBE_INIT_FAIL", "on purpose"));
    let inv = call(&host, "i", json!({"op": "state"}));
    match inv.output() {
        Err(Error::Guest { kind, message }) => {
            assert_eq!(
                (kind.as_str(), message.as_str()),
                ("InitFailed", "on purpose")
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(inv.logs.bytes(), b"init is failing on purpose\n");
}

#[test]
fn no_host_files_and_no_network() {
    let host = host();
    probe(&host, "n", |c| c);
    let v = call_ok(&host, "n", json!({"op": "files", "path": "/etc/passwd"}));
    assert!(v["read"].as_str().unwrap().starts_with("Err("), "{v}");
    assert!(v["root"].as_str().unwrap().starts_with("Err("), "{v}");
    let v = call_ok(&host, "n", json!({"op": "connect", "addr": "127.0.0.1:22"}));
    assert!(v["connect"].as_str().unwrap().starts_with("Err("), "{v}");
}

#[test]
fn tmp_is_the_functions_own_memory_charged_to_its_quota() {
    let host = host();
    probe(&host, "fs", |c| {
        c.tmp_quota(1 << 20).reuse(10, Duration::from_secs(60))
    });
    let w = |path: &str, bytes: usize| {
        call_ok(
            &host,
            "fs",
            json!({"op": "write", "path": path, "bytes": bytes}),
        )
    };
    assert_eq!(
        w("/tmp/a", 200_000),
        json!({"written": 200_000, "ok": true, "error": null})
    );
    assert_eq!(
        call_ok(&host, "fs", json!({"op": "read", "path": "/tmp/a"})),
        json!({"len": 200_000, "all_w": true})
    );
    // Over the quota: the write fails, the host holds no more than 1 MiB.
    let v = w("/tmp/big", 2 << 20);
    assert_eq!(v["ok"], json!(false), "{v}");
    assert!(v["written"].as_u64().unwrap() < 1 << 20, "{v}");
    // Directories, rename, remove, listing.
    assert_eq!(
        call_ok(
            &host,
            "fs",
            json!({"op": "shuffle", "mkdir": "/tmp/d", "from": "/tmp/a", "to": "/tmp/d/b", "remove": "/tmp/big"})
        ),
        json!({"mkdir": null, "rename": null, "remove": null})
    );
    assert_eq!(
        call_ok(&host, "fs", json!({"op": "list", "path": "/tmp"})),
        json!({"names": ["d"]})
    );
    assert_eq!(
        call_ok(&host, "fs", json!({"op": "list", "path": "/tmp/d"})),
        json!({"names": ["b"]})
    );
    // No way out: the host's files are not there, `..` stops at /tmp.
    for path in [
        "/etc/passwd",
        "/tmp/../etc/passwd",
        "/tmp/d/../../etc/passwd",
    ] {
        let v = call_ok(&host, "fs", json!({"op": "read", "path": path}));
        assert!(v["error"].is_string(), "{path}: {v}");
    }
    assert!(call_ok(&host, "fs", json!({"op": "list", "path": "/"}))["error"].is_string());
    // A fresh instance starts with an empty /tmp.
    probe(&host, "fresh-fs", |c| c);
    call_ok(
        &host,
        "fresh-fs",
        json!({"op": "write", "path": "/tmp/x", "bytes": 10}),
    );
    assert_eq!(
        call_ok(&host, "fresh-fs", json!({"op": "read", "path": "/tmp/x"})),
        json!({"error": "entity not found"})
    );
}

#[test]
fn capabilities_answer_a_component_as_host_call_does() {
    let host = Host::builder()
        .no_artifact_cache()
        .epoch_tick(Duration::from_millis(2))
        .capability(Capability::raw("echo.upper", |_, req| {
            Ok(String::from_utf8_lossy(req).to_uppercase().into_bytes())
        }))
        .capability(Capability::raw("always.fails", |_, _| {
            Err(HostError::new("Nope", "it never works"))
        }))
        .build()
        .unwrap();
    probe(&host, "h", |c| {
        c.grant("echo.upper")
            .grant("always.fails")
            .max_host_calls(3)
    });
    let call_cap = |name: &str, times: u64| {
        call_ok(
            &host,
            "h",
            json!({"op": "host_call", "name": name, "request": "abc", "times": times}),
        )
    };
    assert_eq!(call_cap("echo.upper", 1), json!({"ok": "ABC"}));
    assert_eq!(
        call_cap("always.fails", 1),
        json!({"err": "failed", "kind": "Nope", "message": "it never works"})
    );
    assert_eq!(
        call_cap("kv.get", 1),
        json!({"err": "denied", "message": "capability `kv.get` is not granted to this function"})
    );
    assert_eq!(
        call_cap("echo.upper", 4),
        json!({"err": "limit", "message": "more than 3 host calls in one invocation"})
    );
    let m = host.function_metrics("h").unwrap();
    assert_eq!(m.host_calls, 1 + 1 + 1 + 4);
    assert_eq!(m.host_calls_denied, 1 + 1);
}

#[test]
fn a_component_importing_what_fnhost_lacks_is_refused_naming_it() {
    let host = host();
    let wat = r#"(component
        (import "acme:secret/door@1.0.0" (instance (export "open" (func))))
    )"#;
    let err = host
        .register(FunctionConfig::from_bytes(
            "x",
            wat::parse_str(wat).unwrap(),
        ))
        .unwrap_err();
    match &err {
        Error::UnsupportedImport { module, .. } => assert_eq!(module, "acme:secret/door@1.0.0"),
        other => panic!("{other:?}"),
    }
    // wasi:http is linked (outbound, held to the allow-list), but an
    // import of it that does not match it is refused, naming the instance.
    let wat = r#"(component
        (import "wasi:http/types@0.2.10" (instance (export "x" (func))))
    )"#;
    match host.register(FunctionConfig::from_bytes(
        "h",
        wat::parse_str(wat).unwrap(),
    )) {
        Err(Error::UnsupportedImport { module, reason, .. }) => {
            assert_eq!(module, "wasi:http/types@0.2.10");
            assert!(reason.contains("`x`"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // Without `handle`: named too.
    let err = host
        .register(FunctionConfig::from_bytes(
            "y",
            wat::parse_str("(component)").unwrap(),
        ))
        .unwrap_err();
    match &err {
        Error::BadExport { name, .. } => assert_eq!(name, "handle"),
        other => panic!("{other:?}"),
    }
    assert!(host.function_metrics("x").is_err());
}

#[test]
fn snapshots_of_components_are_refused_with_the_reason() {
    let host = host();
    let err = host
        .register(FunctionConfig::from_file("s", guests::COMPONENT_PROBE).snapshot(true))
        .unwrap_err();
    match &err {
        Error::InvalidConfig { field, reason } => {
            assert_eq!(*field, "snapshot");
            assert!(reason.contains("component"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn component_events_retry_then_dead_letter_and_see_their_id() {
    use fnhost::events::{Destination, EventConfig, ManualClock, QueueConfig};
    let clock =
        ManualClock::new(std::time::SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_600));
    let host = Host::builder()
        .no_artifact_cache()
        .clock(clock.clone())
        .build()
        .unwrap();
    probe(&host, "ev", |c| c);
    let ev = host.events();
    ev.create_queue("done", QueueConfig::default()).unwrap();
    ev.configure(
        "ev",
        EventConfig::default().on_success(Destination::Queue("done".into())),
    )
    .unwrap();
    let ok = ev.send("ev", json!({"op": "context"}).to_string()).unwrap();
    let bad = ev
        .send(
            "ev",
            json!({"op": "fail", "kind": "Boom", "message": "no"}).to_string(),
        )
        .unwrap();
    let settle = || assert!(ev.wait_idle(Duration::from_secs(20)), "{:?}", ev.stats());
    settle();
    for _ in 0..2 {
        clock.advance(Duration::from_secs(120));
        settle();
    }
    let s = ev.stats().unwrap();
    assert_eq!(
        (
            s.accepted,
            s.succeeded,
            s.retried,
            s.dead_lettered,
            s.pending
        ),
        (2, 1, 2, 1, 0)
    );
    let done = ev.queue_messages("done").unwrap();
    assert_eq!(done.len(), 1);
    let record: Value = serde_json::from_str(&done[0].body).unwrap();
    assert_eq!(
        record["responsePayload"]["event"],
        json!({"id": ok, "attempt": 1})
    );
    let dead = ev.dead_letters().unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.as_str(), dead[0].attempts), (bad.as_str(), 3));
    let err = dead[0].error.as_ref().unwrap();
    assert_eq!((err.kind.as_str(), err.message.as_str()), ("Boom", "no"));
}

#[test]
fn component_versions_aliases_and_async_invoke() {
    use fnhost::Alias;
    let host = host();
    probe(&host, "v", |c| c.env("V", "1"));
    probe(&host, "v", |c| c.env("V", "2"));
    assert_eq!(host.versions("v").unwrap(), vec![1, 2]);
    host.set_alias("v", "prod", Alias::to(1)).unwrap();
    assert_eq!(
        call_ok(&host, "v:prod", json!({"op": "env"})),
        json!({"V": "1"})
    );
    assert_eq!(call_ok(&host, "v", json!({"op": "env"})), json!({"V": "2"}));
    assert_eq!(
        call_ok(&host, "v:prod", json!({"op": "context"}))["function_version"],
        json!("1")
    );
    let futures: Vec<_> = (0..8)
        .map(|i| host.invoke_async("v:1", json!({"op": "echo", "data": i}).to_string()))
        .collect();
    let outs: Vec<Value> = futures::executor::block_on(futures::future::join_all(futures))
        .into_iter()
        .map(|r| serde_json::from_slice(r.unwrap().output().unwrap()).unwrap())
        .collect();
    assert_eq!(outs, (0..8).map(|i| json!(i)).collect::<Vec<_>>());
    let m = host.function_metrics("v").unwrap();
    assert_eq!(m.succeeded, 3 + 8);
    assert_eq!(m.cold_starts, 3 + 8);
}

/// wasmtime-wasi's blocking calls need a thread outside any tokio runtime;
/// an embedder calling `invoke` from async code gets the same answer.
#[tokio::test(flavor = "current_thread")]
async fn invoke_from_inside_a_tokio_runtime_works_for_components() {
    let host = host();
    probe(&host, "rt", |c| c);
    let inv = call(&host, "rt", json!({"op": "print", "text": "from async"}));
    assert_eq!(inv.output().unwrap(), b"\"printed\"");
    assert_eq!(inv.logs.bytes(), b"from async\n");
}

/// The same from a multi-thread runtime's worker (the call blocks in
/// place: its other tasks move to another worker).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_from_a_multi_thread_runtime_worker_works_for_components() {
    let host = host();
    probe(&host, "rt", |c| c.timeout(Duration::from_secs(2)));
    let inv = call(&host, "rt", json!({"op": "sleep", "ms": 20}));
    assert_eq!(inv.output().unwrap(), b"\"slept\"");
    let inv = call(&host, "rt", json!({"op": "print", "text": "from a worker"}));
    assert_eq!(inv.logs.bytes(), b"from a worker\n");
}
