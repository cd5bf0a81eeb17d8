//! Outbound `wasi:http` from a component (the Rust `component-probe`,
//! through the `wasip2` bindings): held to the granted `http.request`
//! allow-list, counted as host calls, ended at the deadline, capped at
//! the allow-list's `max_response`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use fnhost::capability::{self, HttpAllow};
use fnhost::{Error, FunctionConfig, Host};
use serde_json::json;

use super::capabilities::echo_server;
use super::*;

fn web_host(allow: HttpAllow) -> Host {
    Host::builder()
        .no_artifact_cache()
        .epoch_tick(Duration::from_millis(2))
        .capability(capability::http(allow))
        .build()
        .unwrap()
}

fn probe(host: &Host, name: &str, cfg: impl FnOnce(FunctionConfig) -> FunctionConfig) {
    host.register(cfg(FunctionConfig::from_file(
        name,
        guests::COMPONENT_PROBE,
    )))
    .expect("component registers");
}

/// A loopback port that accepts connections and never answers.
fn silent_server() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            held.push(stream);
        }
    });
    port
}

#[test]
fn wasi_http_reaches_only_granted_listed_hosts_and_is_counted() {
    let (port, served) = echo_server(200);
    let host = web_host(HttpAllow::new().host(&format!("127.0.0.1:{port}")));
    probe(&host, "web", |c| c.grant("http.request"));
    probe(&host, "offline", |c| c);
    probe(&host, "no-calls", |c| {
        c.grant("http.request").max_host_calls(0)
    });
    let url = |p: u16, path: &str| format!("http://127.0.0.1:{p}{path}");
    let send = |name: &str, cmd: serde_json::Value| {
        let mut cmd = cmd;
        cmd["op"] = json!("http");
        call_ok(&host, name, cmd)
    };

    let out = send("web", json!({"url": url(port, "/hello?x=1")}));
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body"], "GET /hello?x=1  token=");
    assert_eq!(out["headers"]["x-served-by"], "test");
    assert_eq!(out["body_error"], json!(null));
    let out = send(
        "web",
        json!({"url": url(port, "/items"), "method": "POST", "body": "{\"n\":1}"}),
    );
    assert_eq!(out["body"], "POST /items {\"n\":1} token=", "{out}");
    assert_eq!(served.load(Ordering::SeqCst), 2);

    // Off the list, not granted, or no host calls left: refused before
    // any connection is made.
    let denied = json!({"error": "HttpRequestDenied"});
    assert_eq!(send("web", json!({"url": url(port + 1, "/")})), denied);
    assert_eq!(
        send("web", json!({"url": format!("http://localhost:{port}/")})),
        denied
    );
    assert_eq!(send("offline", json!({"url": url(port, "/")})), denied);
    assert_eq!(send("no-calls", json!({"url": url(port, "/")})), denied);
    assert_eq!(served.load(Ordering::SeqCst), 2);

    let web = host.function_metrics("web").unwrap();
    assert_eq!((web.host_calls, web.host_calls_denied), (4, 2));
    let offline = host.function_metrics("offline").unwrap();
    assert_eq!((offline.host_calls, offline.host_calls_denied), (1, 1));
    let none = host.function_metrics("no-calls").unwrap();
    assert_eq!((none.host_calls, none.host_calls_denied), (1, 1));
}

#[test]
fn a_response_over_the_allow_lists_cap_is_cut_with_its_error() {
    let (port, _) = echo_server(200);
    let allow = HttpAllow::new()
        .host(&format!("127.0.0.1:{port}"))
        .max_response(1024);
    let host = web_host(allow);
    probe(&host, "web", |c| c.grant("http.request"));
    let body = "y".repeat(2000);
    let out = call_ok(
        &host,
        "web",
        json!({"op": "http", "method": "POST", "url": format!("http://127.0.0.1:{port}/big"), "body": body}),
    );
    assert_eq!(out["status"], 200, "{out}");
    assert_eq!(out["body_error"], "HttpResponseBodySize(Some(1024))");
    assert!(out["body"].as_str().unwrap().len() <= 1024, "{out}");
    // Within the cap it all arrives.
    let out = call_ok(
        &host,
        "web",
        json!({"op": "http", "method": "POST", "url": format!("http://127.0.0.1:{port}/s"), "body": "small"}),
    );
    assert_eq!(out["body"], "POST /s small token=");
}

#[test]
fn a_request_never_answered_or_a_body_never_read_ends_at_the_deadline() {
    let silent = silent_server();
    let (port, served) = echo_server(200);
    let allow = HttpAllow::new()
        .host(&format!("127.0.0.1:{silent}"))
        .host(&format!("127.0.0.1:{port}"))
        .timeout(Duration::from_secs(60));
    let host = web_host(allow);
    let timeout = Duration::from_millis(400);
    probe(&host, "web", |c| c.grant("http.request").timeout(timeout));

    // The server never answers: the allow-list would wait 60 s, the
    // deadline does not.
    let inv = call(
        &host,
        "web",
        json!({"op": "http", "url": format!("http://127.0.0.1:{silent}/")}),
    );
    assert!(
        matches!(inv.output(), Err(Error::Timeout { timeout: t }) if *t == timeout),
        "{:?}",
        inv.output()
    );

    // A body written before the request is handed over has no reader:
    // its stream closes at the deadline instead of blocking forever.
    let inv = call(
        &host,
        "web",
        json!({"op": "http", "url": format!("http://127.0.0.1:{port}/"), "body_first": 1 << 20}),
    );
    assert!(
        matches!(inv.output(), Err(Error::Timeout { timeout: t }) if *t == timeout),
        "{:?}",
        inv.output()
    );
    assert_eq!(served.load(Ordering::SeqCst), 0);

    // A generous deadline: the same kinds of request complete.
    probe(&host, "patient", |c| {
        c.grant("http.request").timeout(Duration::from_secs(20))
    });
    let out = call_ok(
        &host,
        "patient",
        json!({"op": "http", "method": "POST", "url": format!("http://127.0.0.1:{port}/p"), "body": "after"}),
    );
    assert_eq!(out["body"], "POST /p after token=", "{out}");
    crate::assert_host_goes_on(&host);
}

#[test]
fn javascript_fetch_is_wasi_http_under_the_same_grant() {
    let (port, served) = echo_server(200);
    let silent = silent_server();
    let dir = std::path::Path::new(guests::COMPONENTS_DIR).join("artifact-cache");
    let host = Host::builder()
        .cache_dir(dir)
        .epoch_tick(Duration::from_millis(2))
        .capability(capability::http(
            HttpAllow::new()
                .host(&format!("127.0.0.1:{port}"))
                .host(&format!("127.0.0.1:{silent}")),
        ))
        .build()
        .unwrap();
    let js = |name: &str, cfg: fn(FunctionConfig) -> FunctionConfig| {
        host.register(cfg(FunctionConfig::from_file(
            name,
            guests::component("probe-js"),
        )))
        .unwrap()
    };
    js("web", |c| {
        c.grant("http.request").timeout(Duration::from_secs(5))
    });
    js("offline", |c| c);
    js("hasty", |c| {
        c.grant("http.request").timeout(Duration::from_millis(400))
    });
    let fetch = |name: &str, url: String, body: Option<&str>| {
        let mut cmd = json!({"op": "fetch", "url": url});
        if let Some(b) = body {
            cmd["method"] = json!("POST");
            cmd["body"] = json!(b);
        }
        call(&host, name, cmd)
    };
    let out = |inv: fnhost::Invocation| -> serde_json::Value {
        serde_json::from_slice(
            inv.output()
                .unwrap_or_else(|e| panic!("{e}; {:?}", inv.logs)),
        )
        .unwrap()
    };

    assert_eq!(
        out(fetch("web", format!("http://127.0.0.1:{port}/js"), None)),
        json!({"status": 200, "body": "GET /js  token=", "served_by": "test"})
    );
    assert_eq!(
        out(fetch(
            "web",
            format!("http://127.0.0.1:{port}/p"),
            Some("from js")
        )),
        json!({"status": 200, "body": "POST /p from js token=", "served_by": "test"})
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
    // Refused: the fetch rejects as a browser's does (the reason is not
    // told), nothing is sent.
    let refused = out(fetch("offline", format!("http://127.0.0.1:{port}/"), None));
    assert_eq!(
        refused,
        json!({"error": "TypeError: NetworkError when attempting to fetch resource"})
    );
    let refused = out(fetch(
        "web",
        format!("http://127.0.0.1:{}/", port + 1),
        None,
    ));
    assert_eq!(
        refused,
        json!({"error": "TypeError: NetworkError when attempting to fetch resource"})
    );
    assert_eq!(served.load(Ordering::SeqCst), 2);
    let m = host.function_metrics("web").unwrap();
    assert_eq!((m.host_calls, m.host_calls_denied), (3, 1));
    // A server that never answers: the invocation ends at its deadline.
    let inv = fetch("hasty", format!("http://127.0.0.1:{silent}/"), None);
    assert!(
        matches!(inv.output(), Err(Error::Timeout { .. })),
        "{:?}",
        inv.output()
    );
    // A rejected Promise is the handler's error, as a throw is.
    let inv = call(
        &host,
        "web",
        json!({"op": "reject", "kind": "Nope", "message": "async no"}),
    );
    assert!(
        matches!(inv.output(), Err(Error::Guest { kind, message }) if kind == "Nope" && message == "async no"),
        "{:?}",
        inv.output()
    );
}
