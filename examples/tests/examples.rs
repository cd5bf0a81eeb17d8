//! Runs every host example as a real process and checks what it prints.
//! Cargo builds the example programs before running these tests.

use std::path::PathBuf;
use std::process::Command;

/// The built example program (cargo builds it before the tests).
fn example(name: &str) -> PathBuf {
    match name {
        "quickstart" => PathBuf::from(env!("CARGO_BIN_EXE_quickstart")),
        "plugins" => PathBuf::from(env!("CARGO_BIN_EXE_plugins")),
        "axum-server" => PathBuf::from(env!("CARGO_BIN_EXE_axum-server")),
        other => panic!("unknown example {other}"),
    }
}

fn run(name: &str, cache: &std::path::Path) -> String {
    let out = Command::new(example(name))
        .env("FNHOST_CACHE_DIR", cache)
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        out.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

#[test]
fn quickstart_prints_results_and_reports_and_restarts_without_compiling() {
    let cache = tempfile::tempdir().unwrap();
    let first = run("quickstart", cache.path());
    for line in [
        "result: ping",
        r#"result: {"message":"Hello, Ada!","function":"hello"}"#,
        "error (guest_error): InvalidName: name must not be empty",
        r#"result: source "png" 1024x768 -> 64x48"#,
        r#""category":"politics","scores":{"politics":6}}"#,
        r#"result: top: [{"player":"ann","rank":1,"score":410},{"player":"bob","rank":2,"score":300}]"#,
        "usage leaderboard: 3 requests, ",
        r#"succeeded: {"function":"hello","message":"Hello, Grace!"}"#,
        "dead-lettered (RetriesExhausted): InvalidName: name must not be empty",
        "event stats: accepted 2, succeeded 1, dead-lettered 1, pending 0",
        r#"result: {"message":"Hello, Lin!","language":"javascript"}"#,
        r#"result: {"message":"Hello, Lin!","language":"python"}"#,
        r#"result: {"message":"Hello, Lin!","language":"rust"}"#,
        "usage total: 13 requests, ",
    ] {
        assert!(first.contains(line), "missing {line:?} in:\n{first}");
    }
    assert_eq!(first.matches("\nREPORT RequestId: ").count(), 11, "{first}");
    assert_eq!(first.matches("\nSTART RequestId: ").count(), 11);
    assert!(
        first.contains("(8 compiled, 0 from the artifact cache"),
        "{first}"
    );
    // A new process on the same cache compiles nothing.
    let second = run("quickstart", cache.path());
    assert!(
        second.contains("(0 compiled, 8 from the artifact cache"),
        "{second}"
    );
}

#[test]
fn plugins_see_only_their_grants_and_their_own_namespace() {
    let cache = tempfile::tempdir().unwrap();
    let out = run("plugins", cache.path());
    for line in [
        r#"alice: top [{"player":"ann","rank":1,"score":10}]"#,
        r#"bob: top [{"player":"bo","rank":1,"score":7}]"#,
        r#"alice: top [{"player":"al","rank":1,"score":30},{"player":"ann","rank":2,"score":10}]"#,
        r#"alice-probe app.greet: {"ok":{"greeting":"hello Ada from tenant alice"}}"#,
        r#"alice-probe clock.now: {"ok":{"unix_ms":1767225600000}}"#,
        r#"alice-probe kv.put: {"err":"denied","message":"capability `kv.put` is not granted to this function"}"#,
        r#"alice-probe net.fetch: {"err":"denied","message":"capability `net.fetch` is not granted to this function"}"#,
        "alice-board: 4 host calls, 0 denied",
        "bob-board: 2 host calls, 0 denied",
        "alice-probe: 4 host calls, 2 denied",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

/// One HTTP/1.1 request on its own connection: (status, body).
fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let status = resp[9..12].parse().unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    if status == 200 && path.starts_with("/fn/") {
        assert!(
            head.contains("\r\nx-fnhost-report: REPORT RequestId: "),
            "{head}"
        );
    }
    (status, body.to_string())
}

#[test]
fn axum_server_awaits_invocations_concurrently_and_maps_errors() {
    use std::io::BufRead;
    let cache = tempfile::tempdir().unwrap();
    let mut child = Command::new(example("axum-server"))
        .args(["127.0.0.1:0", "--stdin-stops"])
        .env("FNHOST_CACHE_DIR", cache.path())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let addr = line
        .trim()
        .strip_prefix("listening on http://")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    // 32 requests at once (hello allows 8 at a time; the rest wait).
    let answers: Vec<(u16, String)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..32)
            .map(|i| {
                let addr = &addr;
                s.spawn(move || http(addr, "POST", "/fn/hello", &format!(r#"{{"name":"n{i}"}}"#)))
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (i, a) in answers.iter().enumerate() {
        assert_eq!(
            a,
            &(
                200,
                format!(r#"{{"message":"Hello, n{i}!","function":"hello"}}"#)
            )
        );
    }
    assert_eq!(
        http(&addr, "POST", "/fn/echo", "ping"),
        (200, "ping".into())
    );
    let (status, body) = http(&addr, "POST", "/fn/hello", r#"{"name":""}"#);
    assert_eq!(status, 502);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "guest_error", "{body}");
    let (status, body) = http(&addr, "POST", "/fn/nope", "");
    assert_eq!(status, 404);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["error"], "not_found", "{body}");
    let (status, body) = http(&addr, "GET", "/usage", "");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "echo": {"submitted": 1, "succeeded": 1, "failed": 0, "throttled": 0},
            "hello": {"submitted": 33, "succeeded": 32, "failed": 1, "throttled": 0},
        })
    );
    drop(child.stdin.take());
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!(
        rest,
        "stopped: 0 queued invocations refused, 0 still running\n"
    );
}
