//! Host capabilities (issue: plugin systems): grants, denial as a value,
//! KV namespaces per tenant and function, limits, the deadline over host
//! calls (HOSTILE 7), determinism, and ABI violations in host calls.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use fnhost::capability::{self, Capability, Determinism, HostError, MemoryKv};
use fnhost::{Error, FunctionConfig, Host, HostBuilder};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::{call, call_ok, guests, run_wat, wat_guest};

#[derive(Deserialize)]
struct Add {
    a: i64,
    b: i64,
}

#[derive(Serialize)]
struct Sum {
    sum: i64,
    function: String,
    tenant: Option<String>,
    request_id: String,
}

fn builder() -> HostBuilder {
    Host::builder()
        .no_artifact_cache()
        .concurrency_limit(8)
        .epoch_tick(Duration::from_millis(2))
        .capability(Capability::typed("math.add", |ctx, r: Add| {
            let sum =
                r.a.checked_add(r.b)
                    .ok_or_else(|| HostError::new("Overflow", "a + b overflows"))?;
            Ok(Sum {
                sum,
                function: ctx.function().to_string(),
                tenant: ctx.tenant().map(str::to_string),
                request_id: ctx.request_id().to_string(),
            })
        }))
        .capabilities(capability::kv(MemoryKv::new()))
}

fn probe(host: &Host, name: &str, cfg: impl FnOnce(FunctionConfig) -> FunctionConfig) {
    host.register(cfg(FunctionConfig::from_file(name, guests::PROBE)))
        .expect("probe registers");
}

fn host_call(name: &str, request: Value) -> Value {
    json!({"op": "host_call", "name": name, "request": request})
}

#[test]
fn a_granted_typed_capability_answers_with_the_callers_context() {
    let host = builder().build().unwrap();
    probe(&host, "calc", |c| c.grant("math.add").tenant("acme"));
    let inv = call(
        &host,
        "calc",
        host_call("math.add", json!({"a": 2, "b": 40})),
    );
    let out: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
    assert_eq!(
        out,
        json!({"ok": {"sum": 42, "function": "calc", "tenant": "acme",
                      "request_id": inv.report.request_id.to_string()}})
    );
    // The capability's own error and a request it cannot decode are
    // values in the guest, not traps.
    let out = call_ok(
        &host,
        "calc",
        host_call("math.add", json!({"a": i64::MAX, "b": 1})),
    );
    assert_eq!(
        out,
        json!({"err": "failed", "kind": "Overflow", "message": "a + b overflows"})
    );
    let out = call_ok(&host, "calc", host_call("math.add", json!({"a": "x"})));
    assert_eq!(out["err"], "failed");
    assert_eq!(out["kind"], "InvalidRequest");
    let m = host.function_metrics("calc").unwrap();
    assert_eq!((m.host_calls, m.host_calls_denied, m.succeeded), (3, 0, 3));
}

#[test]
fn ungranted_and_unknown_capabilities_are_denied_as_values_and_counted() {
    let host = builder().build().unwrap();
    probe(&host, "plain", |c| c);
    let out = call_ok(
        &host,
        "plain",
        host_call("math.add", json!({"a": 1, "b": 1})),
    );
    assert_eq!(
        out,
        json!({"err": "denied", "message": "capability `math.add` is not granted to this function"})
    );
    let out = call_ok(&host, "plain", host_call("fs.delete_everything", json!({})));
    assert_eq!(out["err"], "denied");
    let m = host.function_metrics("plain").unwrap();
    assert_eq!((m.host_calls, m.host_calls_denied), (2, 2));
    assert!(
        host.prometheus()
            .contains("fnhost_host_calls_denied_total{function=\"plain\"} 2")
    );
    // A grant the host does not define fails the register, naming it.
    let e = host
        .register(FunctionConfig::from_file("bad", guests::PROBE).grant("net.raw"))
        .unwrap_err();
    match e {
        Error::InvalidConfig { field, reason } => {
            assert_eq!(field, "grants");
            assert_eq!(reason, "no capability `net.raw` is defined on this host");
        }
        other => panic!("expected InvalidConfig, got {other:?}"),
    }
    assert!(host.function_info("bad").is_err(), "nothing was registered");
}

#[test]
fn each_tenant_and_function_sees_only_its_own_kv_namespace() {
    let host = builder().build().unwrap();
    let kv = |c: FunctionConfig| c.grant("kv.get").grant("kv.put").grant("kv.list");
    probe(&host, "plugin-a", |c| kv(c).tenant("alice"));
    probe(&host, "plugin-b", |c| kv(c).tenant("bob"));
    probe(&host, "other", |c| kv(c).tenant("alice"));
    let put = |f: &str, k: &str, v: Value| {
        let out = call_ok(&host, f, host_call("kv.put", json!({"key": k, "value": v})));
        assert_eq!(out, json!({"ok": {}}), "{f}");
    };
    let get = |f: &str, k: &str| call_ok(&host, f, host_call("kv.get", json!({"key": k})));
    put("plugin-a", "best", json!({"score": 10}));
    put("plugin-b", "best", json!({"score": 99}));
    put("plugin-a", "bests", json!(1));
    assert_eq!(
        get("plugin-a", "best"),
        json!({"ok": {"value": {"score": 10}}})
    );
    assert_eq!(
        get("plugin-b", "best"),
        json!({"ok": {"value": {"score": 99}}})
    );
    // Same tenant, other function: its own namespace too.
    assert_eq!(get("other", "best"), json!({"ok": {"value": null}}));
    let keys = call_ok(
        &host,
        "plugin-a",
        host_call("kv.list", json!({"prefix": "be"})),
    );
    assert_eq!(keys, json!({"ok": {"keys": ["best", "bests"]}}));
    let keys = call_ok(
        &host,
        "plugin-b",
        host_call("kv.list", json!({"prefix": ""})),
    );
    assert_eq!(keys, json!({"ok": {"keys": ["best"]}}));
    // kv.delete was not granted.
    let out = call_ok(
        &host,
        "plugin-a",
        host_call("kv.delete", json!({"key": "best"})),
    );
    assert_eq!(out["err"], "denied");
    let out = call_ok(&host, "plugin-a", host_call("kv.get", json!({"key": ""})));
    assert_eq!(out["kind"], "InvalidRequest");
}

#[test]
fn host_call_counts_and_sizes_are_bounded() {
    let host = builder().build().unwrap();
    probe(&host, "chatty", |c| {
        c.grant("math.add")
            .max_host_calls(5)
            .max_host_call_bytes(256)
    });
    let add = json!({"a": 1, "b": 2});
    let out = call_ok(
        &host,
        "chatty",
        json!({"op": "host_call", "name": "math.add", "request": add, "times": 5}),
    );
    assert_eq!(out["ok"]["sum"], 3);
    let out = call_ok(
        &host,
        "chatty",
        json!({"op": "host_call", "name": "math.add", "request": add, "times": 6}),
    );
    assert_eq!(
        out,
        json!({"err": "limit", "message": "more than 5 host calls in one invocation"})
    );
    // The limit is per invocation: the next starts from zero.
    let out = call_ok(&host, "chatty", host_call("math.add", add.clone()));
    assert_eq!(out["ok"]["sum"], 3);
    let big = json!({"a": 1, "b": 2, "pad": "x".repeat(300)});
    let out = call_ok(&host, "chatty", host_call("math.add", big));
    assert_eq!(out["err"], "limit");
    assert!(
        out["message"]
            .as_str()
            .unwrap()
            .ends_with("over the limit of 256")
    );
    let m = host.function_metrics("chatty").unwrap();
    assert_eq!((m.host_calls, m.host_calls_denied), (5 + 6 + 1 + 1, 2));
    // The function's config must be sane.
    let e = host
        .register(FunctionConfig::from_file("x", guests::PROBE).max_host_call_bytes(0))
        .unwrap_err();
    assert!(matches!(
        e,
        Error::InvalidConfig {
            field: "max_host_call_bytes",
            ..
        }
    ));
}

#[test]
fn the_deadline_fires_in_a_guest_looping_over_cheap_host_calls() {
    // HOSTILE 7 with host calls: the loop ends by the timeout.
    let host = builder().build().unwrap();
    probe(&host, "loop", |c| {
        c.grant("math.add")
            .max_host_calls(u32::MAX)
            .timeout(Duration::from_millis(100))
    });
    let inv = call(
        &host,
        "loop",
        json!({"op": "host_call", "name": "math.add", "request": {"a": 1, "b": 1}, "times": 0}),
    );
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.outcome
    );
    assert!(host.function_metrics("loop").unwrap().host_calls > 10);
    crate::assert_host_goes_on(&host);
}

#[test]
fn time_inside_a_host_function_counts_against_the_timeout() {
    let calls = Arc::new(AtomicU32::new(0));
    let seen = calls.clone();
    let host = builder()
        .capability(Capability::raw("slow.op", move |ctx, _| {
            seen.fetch_add(1, Ordering::Relaxed);
            // A well-behaved host function bounds its work by the time left.
            std::thread::sleep(ctx.remaining() + Duration::from_millis(5));
            Ok(b"{}".to_vec())
        }))
        .build()
        .unwrap();
    probe(&host, "waits", |c| {
        c.grant("slow.op").timeout(Duration::from_millis(50))
    });
    let inv = call(&host, "waits", host_call("slow.op", json!({})));
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.outcome
    );
    assert_eq!(calls.load(Ordering::Relaxed), 1);
    assert!(inv.report.duration >= Duration::from_millis(50));
}

#[test]
fn seeded_clock_and_random_are_reproducible_and_real_ones_are_not() {
    let seeded = Determinism::Seeded {
        seed: 7,
        unix_ms: 1_767_225_600_000,
    };
    let host = Host::builder()
        .no_artifact_cache()
        .capability(capability::clock(seeded))
        .capability(capability::random(seeded))
        .build()
        .unwrap();
    probe(&host, "det", |c| c.grant("clock.now").grant("random.bytes"));
    let rnd = || call_ok(&host, "det", host_call("random.bytes", json!({"len": 8})));
    let first = rnd();
    assert_eq!(first["ok"]["hex"].as_str().unwrap().len(), 16);
    assert_eq!(rnd(), first);
    assert_eq!(
        call_ok(&host, "det", host_call("clock.now", json!({}))),
        json!({"ok": {"unix_ms": 1_767_225_600_000u64}})
    );
    let out = call_ok(
        &host,
        "det",
        host_call("random.bytes", json!({"len": 5000})),
    );
    assert_eq!(out["kind"], "InvalidRequest");

    let real = Host::builder()
        .no_artifact_cache()
        .capability(capability::random(Determinism::Real))
        .build()
        .unwrap();
    probe(&real, "rnd", |c| c.grant("random.bytes"));
    let a = call_ok(&real, "rnd", host_call("random.bytes", json!({"len": 16})));
    let b = call_ok(&real, "rnd", host_call("random.bytes", json!({"len": 16})));
    assert_ne!(a, b);
}

#[test]
fn bad_pointers_and_lengths_in_host_calls_are_abi_violations() {
    let host = builder().build().unwrap();
    let imports = r#"(import "fnhost_v1" "host_call" (func $host_call (param i32 i32 i32 i32) (result i64)))
  (import "fnhost_v1" "host_result" (func $host_result (param i32 i32) (result i32)))"#;
    let cases = [
        // name past the end of memory
        (
            "name-oob",
            "(drop (call $host_call (i32.const 65530) (i32.const 100) (i32.const 0) (i32.const 0))) (i32.const 0)",
        ),
        // request length that wraps
        (
            "req-oob",
            "(drop (call $host_call (i32.const 0) (i32.const 4) (i32.const 16) (i32.const -1))) (i32.const 0)",
        ),
        // result buffer out of bounds
        (
            "result-oob",
            "(drop (call $host_call (i32.const 0) (i32.const 4) (i32.const 0) (i32.const 0))) (drop (call $host_result (i32.const 65535) (i32.const 1000))) (i32.const 0)",
        ),
    ];
    for (name, body) in cases {
        let inv = run_wat(&host, name, &wat_guest(imports, "", body), b"");
        assert!(
            matches!(inv.output(), Err(Error::AbiViolation { .. })),
            "{name}: {:?}",
            inv.outcome
        );
    }
    // A well-formed call from WAT: status and length in one i64.
    let body = r#"(call $output (i32.const 0)
        (i32.wrap_i64 (i64.shr_u (call $host_call (i32.const 100) (i32.const 8) (i32.const 0) (i32.const 0)) (i64.const 32))))
      (i32.const 0)"#;
    let items = r#"(data (i32.const 100) "math.add")"#;
    let inv = run_wat(&host, "wat-denied", &wat_guest(imports, items, body), b"");
    // Status 2 (denied) as the output length: two bytes of memory.
    assert_eq!(inv.output().unwrap().len(), 2);
    crate::assert_host_goes_on(&host);
}

/// A one-thread HTTP/1.1 server on a free loopback port: answers each
/// request with `status` and a body echoing the method, path and body
/// (sized or chunked; and `Location` for 3xx). Returns its port and a request counter.
pub(super) fn echo_server(status: u16) -> (u16, Arc<AtomicU32>) {
    use std::io::{BufRead, BufReader, Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = Arc::new(AtomicU32::new(0));
    let count = served.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut parts = line.split_whitespace();
            let (method, path) = (
                parts.next().unwrap_or("").to_string(),
                parts.next().unwrap_or("").to_string(),
            );
            let mut len = 0;
            let mut chunked = false;
            let mut auth = String::new();
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                let lower = h.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
                if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                    chunked = true;
                }
                if let Some(v) = lower.strip_prefix("x-token:") {
                    auth = v.trim().to_string();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            while chunked {
                let mut size = String::new();
                reader.read_line(&mut size).unwrap();
                let n = usize::from_str_radix(size.trim(), 16).unwrap();
                let mut chunk = vec![0; n + 2];
                reader.read_exact(&mut chunk).unwrap();
                body.extend_from_slice(&chunk[..n]);
                chunked = n > 0;
            }
            count.fetch_add(1, Ordering::SeqCst);
            let text = format!(
                "{method} {path} {} token={auth}",
                String::from_utf8_lossy(&body)
            );
            let location = if (300..400).contains(&status) {
                "Location: http://elsewhere.invalid/\r\n"
            } else {
                ""
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\nX-Served-By: test\r\n{location}\r\n{text}",
                text.len()
            );
        }
    });
    (port, served)
}

#[test]
fn outbound_http_reaches_only_allowed_hosts_and_follows_no_redirects() {
    let (port, served) = echo_server(200);
    let (redirect_port, _) = echo_server(302);
    let allow = capability::HttpAllow::new()
        .host(&format!("127.0.0.1:{port}"))
        .host(&format!("127.0.0.1:{redirect_port}"));
    let host = builder()
        .capability(capability::http(allow))
        .build()
        .unwrap();
    probe(&host, "web", |c| c.grant("http.request"));
    probe(&host, "offline", |c| c);
    let url = |p: u16, path: &str| format!("http://127.0.0.1:{p}{path}");

    let out = call_ok(
        &host,
        "web",
        host_call("http.request", json!({"url": url(port, "/hello")})),
    );
    assert_eq!(out["ok"]["status"], 200);
    assert_eq!(out["ok"]["body"], "GET /hello  token=");
    assert_eq!(out["ok"]["headers"]["x-served-by"], "test");
    let out = call_ok(
        &host,
        "web",
        host_call(
            "http.request",
            json!({"method": "POST", "url": url(port, "/items"), "headers": {"x-token": "t1"}, "body": "{\"n\":1}"}),
        ),
    );
    assert_eq!(out["ok"]["body"], "POST /items {\"n\":1} token=t1");
    // A redirect comes back as it is: it cannot lead off the list.
    let out = call_ok(
        &host,
        "web",
        host_call("http.request", json!({"url": url(redirect_port, "/r")})),
    );
    assert_eq!(out["ok"]["status"], 302);
    assert_eq!(
        out["ok"]["headers"]["location"],
        "http://elsewhere.invalid/"
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // The guest cannot choose the virtual host or the framing.
    let out = call_ok(
        &host,
        "web",
        host_call(
            "http.request",
            json!({"url": url(port, "/"), "headers": {"Host": "admin.internal"}}),
        ),
    );
    assert_eq!(
        out,
        json!({"err": "failed", "kind": "InvalidRequest", "message": "header `Host` is set by the host"})
    );
    // Off the list: refused before any connection is made.
    for target in [
        url(port + 1, "/"),
        format!("http://localhost:{port}/"),
        "ftp://127.0.0.1/".into(),
    ] {
        let out = call_ok(
            &host,
            "web",
            host_call("http.request", json!({"url": target})),
        );
        assert_eq!(out["kind"], "Forbidden", "{target}: {out}");
    }
    let out = call_ok(
        &host,
        "web",
        host_call("http.request", json!({"url": "not a url"})),
    );
    assert_eq!(out["kind"], "InvalidRequest");
    assert_eq!(served.load(Ordering::SeqCst), 2);
    // Not granted at all.
    let out = call_ok(
        &host,
        "offline",
        host_call("http.request", json!({"url": url(port, "/")})),
    );
    assert_eq!(out["err"], "denied");
    assert_eq!(served.load(Ordering::SeqCst), 2);
}

#[test]
fn fuel_metering_counts_deterministically_and_stops_at_the_budget() {
    // Without metering, a fuel budget is a configuration error.
    let plain = builder().build().unwrap();
    let e = plain
        .register(FunctionConfig::from_file("f", guests::PROBE).max_fuel(1000))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::InvalidConfig {
                field: "max_fuel",
                ..
            }
        ),
        "{e}"
    );
    probe(&plain, "unmetered", |c| c);
    let inv = call(&plain, "unmetered", json!({"op": "echo", "data": 1}));
    assert_eq!(inv.report.fuel_used, None);

    let host = builder().fuel_metering(true).build().unwrap();
    probe(&host, "metered", |c| c.max_fuel(50_000_000));
    let echo = json!({"op": "echo", "data": {"n": [1, 2, 3]}});
    let a = call(&host, "metered", echo.clone());
    let b = call(&host, "metered", echo);
    assert!(a.output().is_ok() && b.output().is_ok());
    let used = a.report.fuel_used.expect("metered");
    assert!(used > 1000, "{used}");
    // The same input on a fresh instance costs exactly the same.
    assert_eq!(b.report.fuel_used, Some(used));
    assert!(
        a.report
            .report_line()
            .contains(&format!(" Fuel Used: {used}"))
    );
    // A spinning guest stops at its budget, deterministically.
    let inv = call(&host, "metered", json!({"op": "spin"}));
    assert!(
        matches!(inv.output(), Err(Error::OutOfFuel { limit: 50_000_000 })),
        "{:?}",
        inv.outcome
    );
    assert_eq!(inv.report.fuel_used, Some(50_000_000));
    assert_eq!(inv.report.error, Some(fnhost::ErrorKind::OutOfFuel));
    crate::assert_host_goes_on(&host);

    // A reused instance gets a fresh budget each invocation.
    probe(&host, "warm", |c| {
        c.max_fuel(50_000_000).reuse(10, Duration::from_secs(60))
    });
    let first = call(&host, "warm", json!({"op": "echo", "data": 1}));
    let second = call(&host, "warm", json!({"op": "echo", "data": 1}));
    assert!(first.report.is_cold() && !second.report.is_cold());
    assert!(second.output().is_ok());
    // Init is not charged to the handler: cold costs no more than warm
    // beyond one-time lazy setup inside the handler itself.
    assert!(second.report.fuel_used.unwrap() <= first.report.fuel_used.unwrap());
    // The warm instance's budget was refilled in full: a spin uses exactly
    // all of it.
    let spin = call(&host, "warm", json!({"op": "spin"}));
    assert!(!spin.report.is_cold());
    assert_eq!(spin.report.fuel_used, Some(50_000_000));
    assert!(matches!(spin.output(), Err(Error::OutOfFuel { .. })));
}

#[test]
fn allow_lists_match_names_ports_wildcards_and_ipv6() {
    let allow = capability::HttpAllow::new()
        .host("API.example.com")
        .host("*.svc.example")
        .host("::1")
        .host("[fe80::1]:8443");
    assert!(allow.allows("https", "api.example.com", 443));
    assert!(allow.allows("http", "API.EXAMPLE.COM", 8080));
    assert!(allow.allows("https", "a.b.svc.example", 443));
    assert!(!allow.allows("https", "svc.example", 443));
    assert!(!allow.allows("https", "evilsvc.example", 443));
    assert!(allow.allows("http", "[::1]", 80));
    assert!(allow.allows("https", "[fe80::1]", 8443));
    assert!(!allow.allows("https", "[fe80::1]", 443));
    assert!(!allow.allows("file", "api.example.com", 0));
}

#[test]
fn a_panicking_host_function_is_an_error_value_and_kv_has_a_quota() {
    let host = builder()
        .capability(Capability::raw("boom", |_, _| panic!("embedder bug")))
        .capability(Capability::raw("huge", |_, _| Ok(vec![b'x'; 2 << 20])))
        .capabilities(capability::kv(MemoryKv::with_quota(100)))
        .build()
        .unwrap();
    probe(&host, "p", |c| {
        c.grant("boom").grant("huge").grant("kv.put")
    });
    let out = call_ok(&host, "p", host_call("boom", json!({})));
    assert_eq!(
        out,
        json!({"err": "failed", "kind": "HostPanic", "message": "capability `boom` failed"})
    );
    let out = call_ok(&host, "p", host_call("huge", json!({})));
    assert_eq!(
        out,
        json!({"err": "limit", "message": "response of 2097152 bytes is over the limit of 1048576"})
    );
    let put = |k: &str, n: usize| {
        call_ok(
            &host,
            "p",
            host_call("kv.put", json!({"key": k, "value": "y".repeat(n)})),
        )
    };
    assert_eq!(put("a", 40), json!({"ok": {}}));
    // 1 + 42 bytes used; another 1 + 62 would pass 100.
    let out = put("b", 60);
    assert_eq!(out["kind"], "QuotaExceeded");
    assert_eq!(
        out["message"],
        "the namespace would hold 106 bytes, over its quota of 100"
    );
    // Overwriting frees the old value first.
    assert_eq!(put("a", 90), json!({"ok": {}}));
    crate::assert_host_goes_on(&host);
    // Names are checked when the host is built.
    let e = Host::builder()
        .no_artifact_cache()
        .capability(Capability::raw(&"n".repeat(257), |_, _| Ok(vec![])))
        .build()
        .err()
        .expect("a 257-byte name is refused");
    assert!(
        matches!(
            e,
            Error::InvalidConfig {
                field: "capability",
                ..
            }
        ),
        "{e}"
    );
}
