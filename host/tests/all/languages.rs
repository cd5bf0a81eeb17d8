//! JavaScript (componentize-js) and Python (componentize-py) components,
//! built from `test-guests/components/probe-{js,py}` by `cargo xtask`:
//! the same results, errors and quotas as every function, and the example
//! components' exact outputs.
//!
//! Compiling one of these takes ~11 s, so the hosts here share an
//! artifact cache under the target directory: each is compiled once per
//! machine, not once per test.

use std::time::Duration;

use fnhost::{Error, FunctionConfig, Host};
use serde_json::{Value, json};

use super::*;

/// A host whose artifact cache persists across tests and runs.
fn cached_host() -> Host {
    let dir = std::path::Path::new(guests::COMPONENTS_DIR).join("artifact-cache");
    Host::builder()
        .cache_dir(dir)
        .concurrency_limit(8)
        .epoch_tick(Duration::from_millis(2))
        .build()
        .expect("host builds")
}

fn register(
    host: &Host,
    name: &str,
    component: &str,
    cfg: impl FnOnce(FunctionConfig) -> FunctionConfig,
) {
    host.register(cfg(FunctionConfig::from_file(
        name,
        guests::component(component),
    )))
    .unwrap_or_else(|e| panic!("{component} registers: {e}"));
}

fn guest_error(inv: &fnhost::Invocation) -> (String, String) {
    match inv.output() {
        Err(Error::Guest { kind, message }) => (kind.clone(), message.clone()),
        other => panic!(
            "expected a guest error, got {other:?}; logs: {:?}",
            inv.logs
        ),
    }
}

#[test]
fn javascript_answers_logs_throws_and_is_bounded() {
    let host = cached_host();
    register(&host, "js", "probe-js", |c| {
        c.timeout(Duration::from_millis(500)).memory_limit(64 << 20)
    });
    let inv = call(&host, "js", json!({"op": "hello", "name": "Ada"}));
    assert_eq!(
        serde_json::from_slice::<Value>(inv.output().unwrap()).unwrap(),
        json!({"greeting": "Hello, Ada!"})
    );
    assert_eq!(inv.logs.bytes(), b"hello, Ada\n");
    // A JS `throw` arrives as the exception's type and message.
    let inv = call(&host, "js", json!({"op": "throw", "message": "bad input"}));
    assert_eq!(guest_error(&inv), ("TypeError".into(), "bad input".into()));
    let inv = call(
        &host,
        "js",
        json!({"op": "fail", "kind": "Conflict", "message": "taken"}),
    );
    assert_eq!(guest_error(&inv), ("Conflict".into(), "taken".into()));
    // Not JSON: the helper says so.
    let inv = host.invoke("js", b"{not json").unwrap();
    assert_eq!(guest_error(&inv).0, "InvalidJson");
    // An infinite loop is a timeout; a memory bomb is out of memory.
    let inv = call(&host, "js", json!({"op": "spin"}));
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.output()
    );
    let inv = call(&host, "js", json!({"op": "alloc", "mib": 200}));
    assert!(
        matches!(inv.output(), Err(Error::OutOfMemory { limit }) if *limit == 64 << 20),
        "{:?}",
        inv.output()
    );
    assert!(inv.report.max_memory_used <= 64 << 20);
    // Fresh instances: no state carries over, and the host is unharmed.
    assert_eq!(
        call_ok(&host, "js", json!({"op": "state"})),
        json!({"counter": 1})
    );
    assert_eq!(
        call_ok(&host, "js", json!({"op": "state"})),
        json!({"counter": 1})
    );
}

#[test]
fn javascript_context_output_cap_and_warm_reuse() {
    let host = cached_host();
    register(&host, "jsctx", "probe-js", |c| {
        c.max_output(200).memory_limit(96 << 20)
    });
    let inv = call(&host, "jsctx", json!({"op": "context"}));
    let v: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
    assert_eq!(v["request_id"], json!(inv.report.request_id.to_string()));
    assert_eq!(v["function_name"], json!("jsctx"));
    assert_eq!(v["function_version"], json!("$LATEST"));
    assert_eq!(v["memory_limit"], json!(96u64 << 20));
    // JSON of 198 x's plus quotes: 200 bytes fit, 201 do not.
    assert_eq!(
        call(&host, "jsctx", json!({"op": "output", "bytes": 198}))
            .output()
            .unwrap()
            .len(),
        200
    );
    let inv = call(&host, "jsctx", json!({"op": "output", "bytes": 199}));
    assert!(
        matches!(
            inv.output(),
            Err(Error::OutputTooLarge {
                size: 201,
                max: 200
            })
        ),
        "{:?}",
        inv.output()
    );
    register(&host, "jswarm", "probe-js", |c| {
        c.reuse(100, Duration::from_secs(60))
    });
    for n in 1..=3 {
        assert_eq!(
            call_ok(&host, "jswarm", json!({"op": "state"})),
            json!({"counter": n})
        );
    }
}

#[test]
fn python_answers_logs_raises_and_is_bounded() {
    let host = cached_host();
    register(&host, "py", "probe-py", |c| {
        c.timeout(Duration::from_millis(1000))
            .memory_limit(64 << 20)
            .env("GREETING", "hi")
    });
    let inv = call(&host, "py", json!({"op": "hello", "name": "Guido"}));
    assert_eq!(
        serde_json::from_slice::<Value>(inv.output().unwrap()).unwrap(),
        json!({"greeting": "Hello, Guido!"})
    );
    assert_eq!(inv.logs.bytes(), b"hello, Guido\n");
    // A Python exception arrives as its type and message.
    let inv = call(&host, "py", json!({"op": "raise", "message": "user"}));
    assert_eq!(guest_error(&inv), ("KeyError".into(), "'user'".into()));
    let inv = call(
        &host,
        "py",
        json!({"op": "fail", "kind": "Conflict", "message": "taken"}),
    );
    assert_eq!(guest_error(&inv), ("Conflict".into(), "taken".into()));
    // env: the function's only.
    assert_eq!(
        call_ok(&host, "py", json!({"op": "env"})),
        json!({"GREETING": "hi"})
    );
    // No host files.
    assert_eq!(
        call_ok(&host, "py", json!({"op": "files", "path": "/etc/passwd"})),
        json!({"error": "FileNotFoundError"})
    );
    let inv = call(&host, "py", json!({"op": "spin"}));
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.output()
    );
    let inv = call(&host, "py", json!({"op": "alloc", "mib": 200}));
    assert!(
        matches!(inv.output(), Err(Error::OutOfMemory { .. })),
        "{:?}",
        inv.output()
    );
    assert_eq!(
        call_ok(&host, "py", json!({"op": "state"})),
        json!({"counter": 1})
    );
    assert_eq!(
        call_ok(&host, "py", json!({"op": "state"})),
        json!({"counter": 1})
    );
}

#[test]
fn python_tmp_is_memory_charged_to_the_quota_and_closed_to_the_host() {
    let host = cached_host();
    register(&host, "pytmp", "probe-py", |c| c.tmp_quota(256 << 10));
    assert_eq!(
        call_ok(
            &host,
            "pytmp",
            json!({"op": "tmp", "bytes": 1000, "over": 1 << 20})
        ),
        json!({"read": 1000, "list": ["a.txt"], "over": "OSError", "escape": "PermissionError"})
    );
    // A fresh instance: an empty /tmp again.
    assert_eq!(
        call_ok(&host, "pytmp", json!({"op": "files", "path": "/tmp/a.txt"})),
        json!({"error": "FileNotFoundError"})
    );
}

#[test]
fn python_random_differs_per_instance_and_logs_are_capped() {
    let host = cached_host();
    register(&host, "pyr", "probe-py", |c| c.max_log_bytes(100));
    let a = call_ok(&host, "pyr", json!({"op": "random"}));
    let b = call_ok(&host, "pyr", json!({"op": "random"}));
    assert_ne!(a, b);
    let inv = call(
        &host,
        "pyr",
        json!({"op": "print", "text": "0123456789", "times": 50}),
    );
    assert_eq!(inv.output().unwrap(), b"\"printed\"");
    assert_eq!(inv.logs.bytes().len(), 100);
    assert_eq!(inv.logs.dropped(), 50 * 11 - 100);
}

#[test]
fn the_example_components_give_their_exact_answers() {
    let host = cached_host();
    register(&host, "hello-js", "hello-js", |c| c);
    register(&host, "hello-python", "hello-python", |c| c);
    host.register(FunctionConfig::from_file("hello-rust", guests::HELLO_RUST))
        .unwrap();
    for (f, lang) in [
        ("hello-js", "javascript"),
        ("hello-python", "python"),
        ("hello-rust", "rust"),
    ] {
        assert_eq!(
            call_ok(&host, f, json!({"name": "you"})),
            json!({"message": "Hello, you!", "language": lang}),
            "{f}"
        );
        let inv = call(&host, f, json!({"name": ""}));
        assert_eq!(guest_error(&inv).0, "InvalidRequest", "{f}");
    }
    register(&host, "slugs", "slugs-js", |c| c);
    assert_eq!(
        call_ok(
            &host,
            "slugs",
            json!({"posts": [{"title": "Hello, World! 2026", "body": "the cat and the hat sat on the cat mat"}]})
        ),
        json!({
            "posts": [{
                "slug": "hello-world-2026",
                "words": 10,
                "reading_minutes": 1,
                "top": [
                    {"word": "cat", "count": 2},
                    {"word": "hat", "count": 1},
                    {"word": "mat", "count": 1},
                    {"word": "sat", "count": 1}
                ]
            }],
            "total_words": 10
        })
    );
    register(&host, "csv", "csv-python", |c| c);
    let csv = "region,product,units,price\neu,tea,3,2.50\neu,cake,1,4.00\nus,tea,2,3.00\n";
    assert_eq!(
        call_ok(&host, "csv", json!({ "csv": csv })),
        json!({
            "regions": {
                "eu": {"units": 4, "revenue": "11.50"},
                "us": {"units": 2, "revenue": "6.00"}
            },
            "median_price": {"cake": "4.00", "tea": "2.75"}
        })
    );
    host.register(FunctionConfig::from_file("logs", guests::LOGS_RUST))
        .unwrap();
    let lines = [
        r#"1.2.3.4 - - [01/Dec/2026:10:00:00 +0000] "GET /a HTTP/1.1" 200 512"#,
        r#"1.2.3.4 - - [01/Dec/2026:10:00:01 +0000] "GET /b HTTP/1.1" 404 -"#,
        r#"1.2.3.4 - - [01/Dec/2026:10:00:02 +0000] "POST /a HTTP/1.1" 201 10"#,
        "garbage",
    ];
    assert_eq!(
        call_ok(&host, "logs", json!({ "lines": lines })),
        json!({
            "by_status": {"2xx": {"requests": 2, "bytes": 522}, "4xx": {"requests": 1, "bytes": 0}},
            "top_paths": [["/a", 2], ["/b", 1]],
            "unparsed": [3]
        })
    );
}
