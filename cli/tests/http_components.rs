//! HTTP components (`wasi:http/proxy`) behind `fnhost serve`'s routes,
//! driven by a real HTTP client over loopback: the guest's status,
//! headers (framing dropped) and body, a body streamed in chunks that
//! arrive while the handler still runs, request bodies, a handler that
//! loops mid-body (the client's response ends in error, the metrics count
//! a timeout), and the concurrency limit (429).

use std::time::Duration;

use fnhost::{ErrorKind, FunctionConfig, Host};
use fnhost_cli::http::{Gateway, Route, serve};
use fnhost_test_guests as guests;

/// The control API's admin token in these tests.
const ADMIN: &str = "http-components-admin";

struct Server {
    host: Host,
    base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// `web` (the Rust HTTP probe component) on every path, with `cfg`
/// applied.
async fn start(cfg: impl FnOnce(FunctionConfig) -> FunctionConfig) -> Server {
    start_component(guests::COMPONENT_HTTP_PROBE.to_string(), cfg).await
}

/// `web` = the component at `path`, on every path. The artifact cache is
/// the test runs' shared one (a JavaScript component compiles in ~11 s).
async fn start_component(
    path: String,
    cfg: impl FnOnce(FunctionConfig) -> FunctionConfig,
) -> Server {
    let cache = std::path::Path::new(guests::COMPONENTS_DIR).join("artifact-cache");
    let host = Host::builder()
        .cache_dir(cache)
        .epoch_tick(Duration::from_millis(2))
        .build()
        .unwrap();
    host.register(cfg(FunctionConfig::from_file("web", path)))
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let mut gw = Gateway::new(host.clone());
    gw.routes = vec![Route::parse("ANY /{proxy+}", "web").unwrap()];
    gw.admin.token = Some(ADMIN.into());
    tokio::spawn(serve(
        listener,
        gw,
        async {
            let _ = rx.await;
        },
        Duration::from_secs(5),
    ));
    Server {
        host,
        base: format!("http://{addr}"),
        stop: Some(tx),
    }
}

/// `web`'s counters once its invocations have all ended (the report
/// follows the handler's return, a moment after the client's last byte).
async fn settled(host: &Host) -> fnhost::MetricsSnapshot {
    for _ in 0..250 {
        let m = host.function_metrics("web").unwrap();
        if m.in_flight == 0 {
            return m;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("invocations still in flight after 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guests_response_comes_back_with_framing_headers_dropped() {
    let s = start(|c| c).await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/hello", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-fn"], "probe");
    assert_eq!(r.text().await.unwrap(), "hello from rust");

    let r = client
        .post(format!("{}/echo?q=1", s.base))
        .header("x-test", "t1")
        .body("sent by the client")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "POST /echo?q=1 x-test=t1 body=sent by the client"
    );

    // Framing and hop-by-hop headers are the connection's, not the
    // guest's: wasi:http refuses some, the gateway drops the rest and
    // frames the body itself.
    let r = client
        .get(format!("{}/headers", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-kept"], "yes");
    assert_eq!(
        r.headers()["x-refused"],
        "keep-alive,proxy-authenticate,connection,transfer-encoding"
    );
    // `trailer` and `content-length` pass wasi:http; the gateway drops them.
    assert_ne!(
        r.headers().get("transfer-encoding").map(|v| v.as_bytes()),
        None
    );
    for h in [
        "keep-alive",
        "proxy-authenticate",
        "connection",
        "trailer",
        "content-length",
    ] {
        assert!(r.headers().get(h).is_none(), "{h}: {:?}", r.headers());
    }
    assert_eq!(r.text().await.unwrap(), "framed by the host");
    // The connection is still good for the next request.
    let r = client
        .get(format!("{}/status?code=204", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let m = settled(&s.host).await;
    assert_eq!((m.succeeded, m.failed), (4, 0));
}

/// A function URL of an HTTP component: the request reaches the guest as
/// sent (the path without the `/lambda-url/<id>` prefix), and its body
/// streams back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_component_serves_through_its_function_url() {
    let s = start(|c| c.timeout(Duration::from_secs(10))).await;
    let client = reqwest::Client::new();
    let made = client
        .post(format!("{}/2021-10-31/functions/web/url", s.base))
        .bearer_auth(ADMIN)
        .body(r#"{"AuthType":"NONE"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(made.status(), 201);
    let made: serde_json::Value = serde_json::from_str(&made.text().await.unwrap()).unwrap();
    let url = made["FunctionUrl"].as_str().unwrap();
    let host = url
        .strip_prefix("http://")
        .and_then(|u| u.strip_suffix('/'))
        .unwrap()
        .to_string();
    let id = host.split('.').next().unwrap().to_string();

    let r = client
        .post(format!("{}/lambda-url/{id}/echo?q=1", s.base))
        .header("x-test", "t1")
        .body("through the URL")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-amzn-requestid"));
    assert_eq!(
        r.text().await.unwrap(),
        "POST /echo?q=1 x-test=t1 body=through the URL"
    );
    // By host name, streamed while the handler runs.
    let mut r = client
        .get(format!("{}/stream?n=2&ms=300", s.base))
        .header("host", &host)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.chunk().await.unwrap().unwrap(), "chunk 0\n");
    assert_eq!(s.host.function_metrics("web").unwrap().in_flight, 1);
    assert_eq!(r.chunk().await.unwrap().unwrap(), "chunk 1\n");
    assert!(r.chunk().await.unwrap().is_none());
    let m = settled(&s.host).await;
    assert_eq!((m.succeeded, m.in_flight), (2, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_streams_in_chunks_while_the_handler_runs() {
    let s = start(|c| c.timeout(Duration::from_secs(10))).await;
    let mut r = reqwest::get(format!("{}/stream?n=3&ms=400", s.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().unwrap();
    assert_eq!(first, "chunk 0\n");
    // The handler is still running (sleeping before its next chunk): the
    // first chunk was not held back until the end.
    assert_eq!(s.host.function_metrics("web").unwrap().in_flight, 1);
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"chunk 1\nchunk 2\n");
    let m = settled(&s.host).await;
    assert_eq!((m.succeeded, m.in_flight), (1, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_handler_looping_mid_body_ends_the_response_in_error() {
    let s = start(|c| c.timeout(Duration::from_millis(300))).await;
    let mut r = reqwest::get(format!("{}/spin", s.base)).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut got = Vec::new();
    let end = loop {
        match r.chunk().await {
            Ok(Some(c)) => got.extend_from_slice(&c),
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    assert_eq!(got, b"start\n");
    assert!(end.is_err(), "the client must see the response cut");
    let m = settled(&s.host).await;
    assert_eq!(m.failed, 1);
    assert_eq!(m.errors_of(ErrorKind::Timeout), 1);
}

/// An HTTP/1.0 request over raw TCP; the whole answer (the server
/// closes the connection).
async fn http10(base: &str, path: &str) -> String {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let mut c = tokio::net::TcpStream::connect(base.strip_prefix("http://").unwrap())
        .await
        .unwrap();
    c.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out).await.unwrap();
    String::from_utf8(out).unwrap()
}

/// HTTP/1.0 has no chunked framing, so a cut body would look whole: such
/// a client gets the body with a length, or an error status and no body
/// at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_1_0_client_gets_a_whole_body_or_an_error() {
    let s = start(|c| c.timeout(Duration::from_millis(600))).await;
    let whole = http10(&s.base, "/stream?n=3&ms=50").await;
    let (head, body) = whole.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.0 200"), "{whole}");
    assert!(head.contains("content-length: 24"), "{whole}");
    assert_eq!(body, "chunk 0\nchunk 1\nchunk 2\n");
    let cut = http10(&s.base, "/spin").await;
    assert!(cut.starts_with("HTTP/1.0 504"), "{cut}");
    assert!(!cut.contains("start"), "no part of the cut body: {cut}");
    let m = settled(&s.host).await;
    assert_eq!((m.succeeded, m.failed), (1, 1));
    assert_eq!(m.errors_of(ErrorKind::Timeout), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_concurrency_limit_a_request_is_429() {
    let s = start(|c| c.reserved_concurrency(1).timeout(Duration::from_secs(10))).await;
    let mut slow = reqwest::get(format!("{}/stream?n=2&ms=500", s.base))
        .await
        .unwrap();
    assert_eq!(slow.chunk().await.unwrap().unwrap(), "chunk 0\n");
    let r = reqwest::get(format!("{}/hello", s.base)).await.unwrap();
    assert_eq!(r.status(), 429);
    while slow.chunk().await.unwrap().is_some() {}
    settled(&s.host).await;
    let r = reqwest::get(format!("{}/hello", s.base)).await.unwrap();
    assert_eq!(r.status(), 200);
}

/// A JavaScript `fetch` handler (componentize-js, unedited service-worker
/// code) behind the same route: bodies, request bodies, streaming.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_javascript_fetch_handler_serves_through_the_gateway() {
    let s = start_component(guests::component("http-js"), |c| {
        c.timeout(Duration::from_secs(10))
    })
    .await;
    let client = reqwest::Client::new();
    let r = client
        .get(format!("{}/hello", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(
        (r.status().as_u16(), r.headers()["x-fn"].to_str().unwrap()),
        (200, "js")
    );
    assert_eq!(r.text().await.unwrap(), "hello from js");
    let r = client
        .post(format!("{}/echo?from=client", s.base))
        .header("x-test", "gw")
        .body("over the wire")
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.text().await.unwrap(),
        "POST /echo?from=client x-test=gw body=over the wire"
    );
    let mut r = client
        .get(format!("{}/stream?n=3&ms=400", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.chunk().await.unwrap().unwrap(), "chunk 0\n");
    assert_eq!(s.host.function_metrics("web").unwrap().in_flight, 1);
    let mut rest = Vec::new();
    while let Some(c) = r.chunk().await.unwrap() {
        rest.extend_from_slice(&c);
    }
    assert_eq!(rest, b"chunk 1\nchunk 2\n");
    let m = settled(&s.host).await;
    assert_eq!((m.succeeded, m.failed), (3, 0));
}

/// `InvokeWithResponseStream` through boto3 (its core, botocore, parses
/// the event stream and checks both CRCs of every message).
fn boto3_stream(s: &Server, function: &str, payload: &str, tail: bool) -> serde_json::Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/boto3_stream.py");
    let mut cmd = std::process::Command::new("python3");
    cmd.args([script, &s.base, function, payload]);
    if tail {
        cmd.arg("Tail");
    }
    let out = cmd.output().expect("python3 runs");
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoke_with_response_stream_sends_payload_chunks_then_invoke_complete() {
    let s = start(|c| c.timeout(Duration::from_secs(10))).await;
    s.host
        .register(FunctionConfig::from_file("hello", guests::HELLO))
        .unwrap();
    s.host
        .register(
            FunctionConfig::from_file("hasty", guests::COMPONENT_HTTP_PROBE)
                .timeout(Duration::from_millis(300)),
        )
        .unwrap();
    let base = s.base.clone();
    let s = std::sync::Arc::new(s);
    let run = |function: &'static str, payload: &'static str, tail: bool| {
        let s = s.clone();
        tokio::task::spawn_blocking(move || boto3_stream(&s, function, payload, tail))
    };
    // An HTTP component: its body, chunk by chunk, as it writes it.
    let v = run("web", r#""/stream?n=3&ms=100""#, false).await.unwrap();
    assert_eq!(
        v,
        serde_json::json!({"status": 200, "version": "$LATEST", "events": [
            ["chunk", "chunk 0\n"], ["chunk", "chunk 1\n"], ["chunk", "chunk 2\n"],
            ["complete", {}, false],
        ]})
    );
    // Any other payload reaches it as the body of `POST /`.
    let v = run("web", r#"{"a":1}"#, true).await.unwrap();
    assert_eq!(
        v["events"],
        serde_json::json!([["chunk", r#"payload={"a":1}"#], ["complete", {}, true]])
    );
    // A plain function: its output, then the end.
    let v = run("hello", r#"{"name":"Ada"}"#, false).await.unwrap();
    assert_eq!(
        v["events"],
        serde_json::json!([
            ["chunk", r#"{"message":"Hello, Ada!","function":"hello"}"#],
            ["complete", {}, false]
        ])
    );
    // A handler that loops mid-body: what it wrote, then the error.
    let v = run("hasty", r#""/spin""#, false).await.unwrap();
    assert_eq!(v["events"][0], serde_json::json!(["chunk", "start\n"]));
    assert_eq!(v["events"][1][1]["ErrorCode"], "Sandbox.Timedout", "{v}");
    assert_eq!(v["events"].as_array().unwrap().len(), 2);
    // Unknown functions are Lambda's error, not a stream.
    let r = reqwest::Client::new()
        .post(format!(
            "{base}/2021-11-15/functions/nope/response-streaming-invocations"
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.headers()["x-amzn-ErrorType"], "ResourceNotFoundException");
    // A plain function's payload must be JSON, as for Invoke.
    let r = reqwest::Client::new()
        .post(format!(
            "{base}/2021-11-15/functions/hello/response-streaming-invocations"
        ))
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.headers()["x-amzn-ErrorType"],
        "InvalidRequestContentException"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1xx_status_or_a_request_without_host_never_reaches_the_client() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let s = start(|c| c).await;
    let r = reqwest::get(format!("{}/status?code=101", s.base))
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    // HTTP/1.0 without a Host header: refused before any instance.
    let addr = s.base.trim_start_matches("http://").to_string();
    let mut tcp = tokio::net::TcpStream::connect(&addr).await.unwrap();
    tcp.write_all(b"GET /hello HTTP/1.0\r\n\r\n").await.unwrap();
    let mut answer = Vec::new();
    tcp.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.0 400"), "{answer}");
    let m = settled(&s.host).await;
    assert_eq!(m.succeeded + m.failed, 1, "only the 1xx request ran");
}

/// A client that reads slowly holds the guest back (backpressure): 16 MiB
/// of body, read after a pause, arrive whole, and while the client
/// paused the handler was still waiting to write (it would otherwise
/// finish in milliseconds).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_client_holds_the_guest_back() {
    let s = start(|c| c.timeout(Duration::from_secs(20)).max_output(32 << 20)).await;
    let mut r = reqwest::get(format!("{}/big?bytes={}", s.base, 16 << 20))
        .await
        .unwrap();
    let mut got = r.chunk().await.unwrap().unwrap().len();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        s.host.function_metrics("web").unwrap().in_flight,
        1,
        "the handler waits for the client"
    );
    while let Some(c) = r.chunk().await.unwrap() {
        got += c.len();
    }
    assert_eq!(got, 16 << 20);
    let m = settled(&s.host).await;
    assert_eq!((m.succeeded, m.failed), (1, 0));
}
