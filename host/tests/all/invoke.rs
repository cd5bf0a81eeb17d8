//! The example guests give exact answers; errors are typed.

use fnhost::{Error, FunctionConfig};
use serde_json::json;

use super::*;

#[test]
fn echo_returns_payload_exactly() {
    let host = host();
    host.register(FunctionConfig::from_file("echo", guests::ECHO))
        .unwrap();
    for payload in [
        &b""[..],
        b"x",
        &[0u8, 255, 1, 2][..],
        &vec![42u8; 1 << 20][..],
    ] {
        let inv = host.invoke("echo", payload).unwrap();
        assert_eq!(inv.output().unwrap(), payload);
        assert_eq!(inv.report.error, None);
    }
}

#[test]
fn hello_greets_with_env_and_context() {
    let host = host();
    host.register(FunctionConfig::from_file("hello", guests::HELLO).env("GREETING", "Hej"))
        .unwrap();
    let inv = host.invoke("hello", br#"{"name":"Ada"}"#).unwrap();
    let v: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
    assert_eq!(v, json!({"message": "Hej, Ada!", "function": "hello"}));
    let logs = String::from_utf8(inv.logs.bytes().to_vec()).unwrap();
    assert_eq!(
        logs,
        format!("greeting Ada (request {})\n", inv.report.request_id)
    );
}

#[test]
fn handled_guest_error_keeps_kind_and_message() {
    let host = host();
    host.register(FunctionConfig::from_file("hello", guests::HELLO))
        .unwrap();
    let inv = host.invoke("hello", br#"{"name":"  "}"#).unwrap();
    match inv.output() {
        Err(Error::Guest { kind, message }) => {
            assert_eq!(kind, "InvalidName");
            assert_eq!(message, "name must not be empty");
        }
        other => panic!("expected a guest error, got {other:?}"),
    }
    assert_eq!(inv.report.error, Some(fnhost::ErrorKind::Guest));
    // Bad JSON for a typed handler is the guest's InvalidEvent error.
    let inv = host.invoke("hello", b"not json").unwrap();
    assert!(matches!(inv.output(), Err(Error::Guest { kind, .. }) if kind == "InvalidEvent"));
}

#[test]
fn leaderboard_applies_events() {
    let host = host();
    host.register(FunctionConfig::from_file(
        "leaderboard",
        guests::LEADERBOARD,
    ))
    .unwrap();
    let mut board = json!({"best": {}, "events": 0});
    for (player, score) in [("ann", 50), ("bob", 70), ("cat", 50), ("ann", 90)] {
        let out = call_ok(
            &host,
            "leaderboard",
            json!({"board": board, "event": {"player": player, "score": score}}),
        );
        board = out["board"].clone();
        if player == "ann" && score == 90 {
            assert_eq!(out["personal_best"], json!(true));
            assert_eq!(
                out["top"],
                json!([
                    {"rank": 1, "player": "ann", "score": 90},
                    {"rank": 2, "player": "bob", "score": 70},
                    {"rank": 3, "player": "cat", "score": 50}
                ])
            );
        }
    }
    assert_eq!(board["events"], json!(4));
}

#[test]
fn news_categorises_articles() {
    let host = host();
    host.register(FunctionConfig::from_file("news", guests::NEWS))
        .unwrap();
    let article = json!({"html": "<h1>Chip startup raises money</h1><p>The software company said its cloud \
        server chip beat the market. <a href=\"https://example.com/x\">more</a></p>"});
    let out = call_ok(&host, "news", article);
    assert_eq!(out["title"], json!("Chip startup raises money"));
    assert_eq!(out["links"], json!(["https://example.com/x"]));
    assert_eq!(out["category"], json!("technology"));
    assert_eq!(out["scores"], json!({"business": 2, "technology": 6}));
    assert_eq!(out["word_count"], json!(16));
}

#[test]
fn thumbnail_resizes_a_png() {
    let host = host();
    host.register(
        FunctionConfig::from_file("thumbnail", guests::THUMBNAIL).memory_limit(256 << 20),
    )
    .unwrap();
    let png = guests::sample_png(200, 100);
    let inv = host.invoke("thumbnail", &png).unwrap();
    let out: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
    assert_eq!(
        out["source"],
        json!({"format": "png", "width": 200, "height": 100})
    );
    let sizes: Vec<(u64, u64, u64)> = out["thumbnails"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["max"].as_u64().unwrap(),
                t["width"].as_u64().unwrap(),
                t["height"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(sizes, vec![(64, 64, 32), (128, 128, 64)]);
    // Garbage is the guest's typed error, not a trap.
    let inv = host
        .invoke("thumbnail", b"definitely not an image")
        .unwrap();
    assert!(matches!(inv.output(), Err(Error::Guest { kind, .. }) if kind == "UnsupportedImage"));
}

#[test]
fn unknown_function_is_not_found_naming_it() {
    let host = host();
    match host.invoke("ghost", b"{}") {
        Err(Error::NotFound { name }) => assert_eq!(name, "ghost"),
        other => panic!("expected NotFound, got {other:?}"),
    }
}

#[test]
fn payload_over_max_input_is_refused_before_any_guest_runs() {
    let host = host();
    with_probe(&host, "p", |c| c.max_input(16));
    match host.invoke("p", &[b' '; 17]) {
        Err(Error::PayloadTooLarge { size: 17, max: 16 }) => {}
        other => panic!("expected PayloadTooLarge, got {other:?}"),
    }
    assert_host_goes_on(&host);
}

#[test]
fn context_reports_request_function_and_limits() {
    let host = host();
    with_probe(&host, "ctx", |c| {
        c.memory_limit(64 << 20)
            .timeout(std::time::Duration::from_secs(7))
    });
    let inv = call(&host, "ctx", json!({"op": "context"}));
    let v: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
    assert_eq!(v["request_id"], json!(inv.report.request_id.to_string()));
    assert_eq!(v["function"], json!("ctx"));
    assert_eq!(v["version"], json!("$LATEST"));
    assert_eq!(v["memory_limit"], json!(64u64 << 20));
    assert_eq!(v["timeout_ms"], json!(7000));
    let remaining = v["remaining_ms"].as_u64().unwrap();
    assert!(remaining <= 7000 && remaining > 0, "remaining {remaining}");
    assert_eq!(v["client_context"], Value::Null);
    // A client context reaches the guest as sent.
    let sent = r#"{"client":{"app_title":"probe"},"custom":{"k":"v"}}"#;
    let inv = futures::executor::block_on(host.invoke_async_with_client_context(
        "ctx",
        br#"{"op":"context"}"#.to_vec(),
        sent,
    ))
    .unwrap();
    let v: Value = serde_json::from_slice(inv.output().unwrap()).unwrap();
    assert_eq!(v["client_context"], json!(sent));
}

#[test]
fn reports_say_what_ran() {
    let host = host();
    with_probe(&host, "r", |c| c.memory_limit(32 << 20));
    let a = call(&host, "r", json!({"op": "alloc", "bytes": 4 << 20}));
    let b = call(&host, "r", json!({"op": "echo", "data": 1}));
    assert_ne!(a.report.request_id, b.report.request_id);
    assert_eq!(&*a.report.function, "r");
    assert_eq!(a.report.memory_limit, 32 << 20);
    assert!(a.report.is_cold(), "fresh instances are cold starts");
    // The 4 MiB allocation shows in peak memory.
    assert!(
        a.report.max_memory_used >= 4 << 20,
        "{}",
        a.report.max_memory_used
    );
    assert!(b.report.max_memory_used < a.report.max_memory_used);
    let line = a.report.report_line();
    assert!(
        line.starts_with(&format!(
            "REPORT RequestId: {} Duration: ",
            a.report.request_id
        )),
        "{line}"
    );
    assert!(line.contains(" Memory Size: 32 MB "), "{line}");
}

#[test]
fn logs_are_captured_bounded_and_escaped() {
    let host = host();
    with_probe(&host, "log", |c| c.max_log_bytes(32));
    let inv = call(
        &host,
        "log",
        json!({"op": "print", "text": "out\u{1b}[31m;", "err_text": "err"}),
    );
    assert_eq!(inv.logs.bytes(), b"out\x1b[31m;err");
    assert_eq!(inv.logs.to_display_string(), "out\\x1b[31m;err");
    let inv = call(
        &host,
        "log",
        json!({"op": "print", "text": "a".repeat(100)}),
    );
    assert_eq!(inv.logs.bytes(), "a".repeat(32).as_bytes());
    assert_eq!(inv.logs.dropped(), 68);
    assert!(
        inv.logs
            .to_display_string()
            .ends_with("[fnhost: log truncated, 68 bytes dropped]\n")
    );
    assert_eq!(inv.output().unwrap(), b"\"printed\"");
}
