//! End to end over HTTP on 127.0.0.1:0 with a real client: every Lambda
//! API route, header and status, the trigger routes, /metrics, /healthz,
//! and malformed requests (HOSTILE 26).

use std::io::{Read, Write};
use std::process::Command;
use std::time::Duration;

use base64::Engine as _;
use fnhost::{FunctionConfig, Host};
use fnhost_cli::http::{Gateway, Route, serve};
use fnhost_test_guests as guests;
use serde_json::{Value, json};

struct Server {
    host: Host,
    base: String,
    addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

/// A gateway with `hello`, `probe` (reserved 1), `web` (an HTTP route
/// function: the probe echoing its event) on an ephemeral port.
async fn start() -> Server {
    start_with(None).await
}

/// [`start`] with the control API on under `admin_token`.
async fn start_with(admin_token: Option<&str>) -> Server {
    let host = Host::builder()
        .no_artifact_cache()
        .concurrency_limit(32)
        .workers(2)
        .build()
        .unwrap();
    host.register(FunctionConfig::from_file("hello", guests::HELLO))
        .unwrap();
    host.register(
        FunctionConfig::from_file("probe", guests::PROBE)
            .reserved_concurrency(1)
            .max_input(1024)
            .timeout(Duration::from_secs(5)),
    )
    .unwrap();
    host.register(FunctionConfig::from_file("web", guests::ECHO))
        .unwrap();
    let routes = vec![
        Route::parse("ANY /web/{proxy+}", "web").unwrap(),
        // Its function is registered by the test that uses it.
        Route::parse("GET /forge", "forge").unwrap(),
        Route::parse("GET /hi", "hello").unwrap(),
    ];
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let gw = Gateway {
        host: host.clone(),
        routes,
        max_body: 64 << 10,
        cluster: None,
        admin: fnhost_cli::http::AdminKeys {
            token: admin_token.map(str::to_string),
            // With the control API on, one configured key pair as well.
            keys: admin_token
                .map(|_| vec![("AKIDFNHOSTTEST".into(), "a-configured-secret-key".into())])
                .unwrap_or_default(),
        },
    };
    let done = tokio::spawn(serve(
        listener,
        gw,
        async {
            let _ = rx.await;
        },
        Duration::from_secs(10),
    ));
    Server {
        host,
        base: format!("http://{addr}"),
        addr,
        stop: Some(tx),
        done: Some(done),
    }
}

impl Server {
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.done.take().unwrap().await.unwrap().unwrap();
    }
}

async fn post(s: &Server, path: &str, headers: &[(&str, &str)], body: &str) -> reqwest::Response {
    let mut req = reqwest::Client::new()
        .post(format!("{}{path}", s.base))
        .body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap()
}

async fn json_of(r: reqwest::Response) -> Value {
    serde_json::from_slice(&r.bytes().await.unwrap()).unwrap()
}

const INVOKE: &str = "/2015-03-31/functions/hello/invocations";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_invoke_api() {
    let s = start().await;
    // RequestResponse (the default): 200, output, executed version.
    let r = post(&s, INVOKE, &[], r#"{"name":"Ada"}"#).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amz-executed-version"], "$LATEST");
    assert!(r.headers().get("x-amz-function-error").is_none());
    assert_eq!(
        json_of(r).await,
        json!({"message": "Hello, Ada!", "function": "hello"})
    );

    // Tail: base64 of the last 4 KB of logs, with the REPORT line.
    let r = post(
        &s,
        INVOKE,
        &[("X-Amz-Log-Type", "Tail")],
        r#"{"name":"Bo"}"#,
    )
    .await;
    let tail = base64::engine::general_purpose::STANDARD
        .decode(r.headers()["x-amz-log-result"].to_str().unwrap())
        .unwrap();
    let tail = String::from_utf8(tail).unwrap();
    assert!(tail.starts_with("greeting Bo (request "), "{tail}");
    assert!(tail.contains("\nREPORT RequestId: "), "{tail}");

    // A function error: 200 with X-Amz-Function-Error and Lambda's body.
    let r = post(&s, INVOKE, &[], r#"{"name":""}"#).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amz-function-error"], "Unhandled");
    assert_eq!(
        json_of(r).await,
        json!({"errorMessage": "name must not be empty", "errorType": "InvalidName"})
    );

    // Timeouts and traps are function errors too, with runtime error types.
    let r = post(
        &s,
        "/2015-03-31/functions/probe/invocations",
        &[],
        r#"{"op":"panic","message":"x"}"#,
    )
    .await;
    assert_eq!(r.headers()["x-amz-function-error"], "Unhandled");
    assert_eq!(json_of(r).await["errorType"], "Panic");

    // Event: 202 with the event's id once it is stored; the host's event
    // system runs it. Unknown functions are 404 before anything is stored.
    let r = post(
        &s,
        INVOKE,
        &[("X-Amz-Invocation-Type", "Event")],
        r#"{"name":"Ev"}"#,
    )
    .await;
    assert_eq!(r.status(), 202);
    assert_eq!(r.headers()["x-amzn-requestid"].len(), 36);
    let ev = s.host.events().clone();
    let settled = tokio::task::spawn_blocking(move || {
        ev.wait_for(std::time::Duration::from_secs(20), |ev| {
            ev.stats()
                .is_ok_and(|st| st.succeeded == 1 && st.pending == 0)
        })
    })
    .await
    .unwrap();
    assert!(settled, "{:?}", s.host.events().stats());
    let r = post(
        &s,
        "/2015-03-31/functions/ghost/invocations",
        &[("X-Amz-Invocation-Type", "Event")],
        "{}",
    )
    .await;
    assert_eq!(r.status(), 404);
    assert_eq!(s.host.events().stats().unwrap().accepted, 1);
    let r = post(&s, INVOKE, &[("X-Amz-Invocation-Type", "DryRun")], "{}").await;
    assert_eq!(r.status(), 204);

    // Qualifiers: $LATEST works, in the query or the name; others are 404.
    let r = post(
        &s,
        &format!("{INVOKE}?Qualifier=$LATEST"),
        &[],
        r#"{"name":"Q"}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post(
        &s,
        "/2015-03-31/functions/hello:$LATEST/invocations",
        &[],
        r#"{"name":"Q"}"#,
    )
    .await;
    assert_eq!(r.status(), 200);
    let r = post(&s, &format!("{INVOKE}?Qualifier=prod"), &[], "{}").await;
    assert_eq!(r.status(), 404);
    // Versions and aliases: the executed version says which ran.
    s.host
        .register(FunctionConfig::from_file("hello", guests::HELLO).env("GREETING", "Hi"))
        .unwrap();
    s.host
        .set_alias("hello", "live", fnhost::Alias::to(1))
        .unwrap();
    let r = post(
        &s,
        &format!("{INVOKE}?Qualifier=live"),
        &[],
        r#"{"name":"V"}"#,
    )
    .await;
    assert_eq!(r.headers()["x-amz-executed-version"], "1");
    assert_eq!(json_of(r).await["message"], "Hello, V!");
    let r = post(&s, &format!("{INVOKE}?Qualifier=2"), &[], r#"{"name":"V"}"#).await;
    assert_eq!(r.headers()["x-amz-executed-version"], "2");
    assert_eq!(json_of(r).await["message"], "Hi, V!");
    let r = post(&s, INVOKE, &[], r#"{"name":"V"}"#).await;
    assert_eq!(r.headers()["x-amz-executed-version"], "$LATEST");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lambda_errors_have_aws_shapes() {
    let s = start().await;
    let check = |r: &reqwest::Response, status: u16, ty: &str| {
        assert_eq!(r.status().as_u16(), status, "{ty}");
        assert_eq!(r.headers()["x-amzn-errortype"], ty);
    };
    let r = post(&s, "/2015-03-31/functions/ghost/invocations", &[], "{}").await;
    check(&r, 404, "ResourceNotFoundException");
    assert_eq!(
        r.headers()["x-amzn-RequestId"].len(),
        36,
        "every answer has an id"
    );
    assert_eq!(json_of(r).await["Type"], "User");
    // An unknown operation under an API version is the API's answer, never
    // a route's (even a catch-all one).
    for path in [
        "/2015-03-31/functions/web/policy",
        "/2019-09-25/functions/web/event-invoke-config/list",
    ] {
        let r = post(&s, path, &[], "{}").await;
        check(&r, 404, "UnknownOperationException");
        assert!(r.headers().contains_key("x-amzn-RequestId"));
    }
    // An empty payload reaches the handler as `{}`, as on AWS.
    let r = post(&s, "/2015-03-31/functions/web/invocations", &[], "").await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "{}");

    let r = post(&s, INVOKE, &[], "this is not json").await;
    check(&r, 400, "InvalidRequestContentException");
    let r = post(&s, INVOKE, &[("X-Amz-Invocation-Type", "Sometimes")], "{}").await;
    check(&r, 400, "InvalidParameterValueException");
    let r = post(&s, INVOKE, &[("X-Amz-Log-Type", "Everything")], "{}").await;
    check(&r, 400, "InvalidParameterValueException");

    // Over the function's max_input (1024) but under the body limit.
    let big = format!("{{\"op\":\"echo\",\"data\":\"{}\"}}", "x".repeat(2000));
    let r = post(&s, "/2015-03-31/functions/probe/invocations", &[], &big).await;
    check(&r, 413, "RequestTooLargeException");
    // Over the gateway's body limit (64 KiB).
    let huge = format!("\"{}\"", "x".repeat(100 << 10));
    let r = post(&s, INVOKE, &[], &huge).await;
    check(&r, 413, "RequestTooLargeException");

    // Throttling: `probe` has reserved concurrency 1.
    let slow = post(
        &s,
        "/2015-03-31/functions/probe/invocations",
        &[],
        r#"{"op":"sleep","ms":400}"#,
    );
    let fast = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        post(
            &s,
            "/2015-03-31/functions/probe/invocations",
            &[],
            r#"{"op":"echo","data":1}"#,
        )
        .await
    };
    let (slow, fast) = tokio::join!(slow, fast);
    assert_eq!(slow.status(), 200);
    check(&fast, 429, "TooManyRequestsException");
    assert_eq!(
        json_of(fast).await["Reason"],
        "ReservedFunctionConcurrentInvocationLimitExceeded"
    );

    // A host bug (a panic, injected) is the service's failure: 500
    // ServiceException, not a function error; the next call is served.
    s.host
        .register(FunctionConfig::from_file("boom", guests::ECHO))
        .unwrap();
    fnhost::fault::arm(fnhost::fault::Point::Execute, "boom", 1);
    let boom = "/2015-03-31/functions/boom/invocations";
    let r = post(&s, boom, &[], "{}").await;
    check(&r, 500, "ServiceException");
    assert!(r.headers().get("x-amz-function-error").is_none());
    assert!(r.headers().contains_key("x-amzn-requestid"));
    assert!(
        json_of(r).await["Message"]
            .as_str()
            .unwrap()
            .contains("fault injected")
    );
    assert_eq!(post(&s, boom, &[], "{}").await.status(), 200);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_get_metrics_health() {
    let s = start().await;
    post(&s, INVOKE, &[], r#"{"name":"M"}"#).await;
    let c = reqwest::Client::new();
    let list: Value = serde_json::from_slice(
        &c.get(format!("{}/2015-03-31/functions/", s.base))
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap(),
    )
    .unwrap();
    let names: Vec<&str> = list["Functions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["FunctionName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["hello", "probe", "web"]);
    let r = c
        .get(format!("{}/2015-03-31/functions/probe", s.base))
        .send()
        .await
        .unwrap();
    let v: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(v["Configuration"]["MemorySize"], 128);
    assert_eq!(v["Configuration"]["Timeout"], 5);
    assert_eq!(v["Concurrency"]["ReservedConcurrentExecutions"], 1);
    let r = c
        .get(format!("{}/2015-03-31/functions/ghost", s.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let m = c
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        m.lines()
            .any(|l| l == "fnhost_invocations_total{function=\"hello\",outcome=\"success\"} 1"),
        "{m}"
    );
    let h = c
        .get(format!("{}/healthz", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&h).unwrap(),
        // No artifact cache: each of the three modules was compiled.
        json!({"status": "ok", "functions": 3, "compiles": 3, "cache_hits": 0})
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_trigger_routes_use_payload_format_2() {
    let s = start().await;
    let c = reqwest::Client::new();
    // `web` is echo: its output is the event itself, returned as a 200 JSON body.
    let r = c
        .post(format!("{}/web/a/b?x=1&x=2&y=3", s.base))
        .header("X-Custom", "v")
        .header("Cookie", "c1=1; c2=2")
        .body("hello body")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let ev: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(ev["version"], "2.0");
    assert_eq!(ev["routeKey"], "ANY /web/{proxy+}");
    assert_eq!(ev["rawPath"], "/web/a/b");
    assert_eq!(ev["rawQueryString"], "x=1&x=2&y=3");
    assert_eq!(ev["queryStringParameters"], json!({"x": "1,2", "y": "3"}));
    assert_eq!(ev["pathParameters"], json!({"proxy": "a/b"}));
    assert_eq!(ev["headers"]["x-custom"], "v");
    assert_eq!(ev["cookies"], json!(["c1=1", "c2=2"]));
    assert_eq!(ev["requestContext"]["http"]["method"], "POST");
    assert_eq!(ev["requestContext"]["http"]["sourceIp"], "127.0.0.1");
    assert_eq!(
        (ev["body"].clone(), ev["isBase64Encoded"].clone()),
        (json!("hello body"), json!(false))
    );
    // Binary bodies arrive base64-encoded.
    let r = c
        .put(format!("{}/web/bin", s.base))
        .body(vec![0xffu8, 0x00, 0xfe])
        .send()
        .await
        .unwrap();
    let ev: Value = serde_json::from_slice(&r.bytes().await.unwrap()).unwrap();
    assert_eq!(
        (ev["body"].clone(), ev["isBase64Encoded"].clone()),
        (json!("/wD+"), json!(true))
    );
    // A plain JSON result (hello's) becomes a 200 JSON response; an unmatched
    // route is a JSON 404.
    let r = c.get(format!("{}/hi", s.base)).send().await.unwrap();
    assert_eq!(
        r.status(),
        500,
        "hello cannot parse an API Gateway event as Greet: a function error"
    );
    let r = c.get(format!("{}/nowhere", s.base)).send().await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        serde_json::from_slice::<Value>(&r.bytes().await.unwrap()).unwrap(),
        json!({"message": "Not Found"})
    );
    s.stop().await;
}

/// What the `forge` guest answers on its route: a body that holds a whole
/// second HTTP response, with framing and hop-by-hop headers that would
/// make the client read that second response as the answer to its next
/// request (HOSTILE 34).
const FORGED: &str = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nforged";

fn forging_guest() -> Vec<u8> {
    let out = json!({
        "statusCode": 200,
        "headers": {
            "content-length": "2",
            "Transfer-Encoding": "chunked",
            "connection": "keep-alive",
            "keep-alive": "timeout=600",
            "upgrade": "h2c",
            "te": "trailers",
            "trailer": "x-t",
            "proxy-authenticate": "Basic",
            "x-kept": "yes",
        },
        "body": format!("ok{FORGED}"),
    })
    .to_string();
    let data: String = out.bytes().map(|b| format!("\\{b:02x}")).collect();
    let len = out.len();
    fnhost_hostile::wat_guest(
        "",
        &format!("(data (i32.const 1024) \"{data}\")"),
        // The route's event goes to 8192, past the output at 1024.
        "(i32.const 8192)",
        &format!("(call $output (i32.const 1024) (i32.const {len})) (i32.const 0)"),
    )
    .into_bytes()
}

/// One HTTP/1.1 response read off a raw connection.
struct RawResponse {
    /// The status line.
    status: String,
    /// Names lower-cased, in wire order.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    /// The bytes after this response.
    rest: Vec<u8>,
}

/// Splits one HTTP/1.1 response off the front of `raw` (Content-Length
/// framing, as the gateway sends).
fn split_response(raw: &[u8]) -> RawResponse {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().to_string();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.trim().to_ascii_lowercase(), v.trim().to_string())
        })
        .collect();
    let lens: Vec<usize> = headers
        .iter()
        .filter(|(k, _)| k == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .collect();
    assert_eq!(lens.len(), 1, "exactly one content-length: {headers:?}");
    RawResponse {
        status,
        headers,
        body: raw[end + 4..end + 4 + lens[0]].to_vec(),
        rest: raw[end + 4 + lens[0]..].to_vec(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_headers_cannot_frame_the_response() {
    // HOSTILE 34: two pipelined requests on one connection; the first
    // route's guest sets content-length and friends. The second request
    // still gets its own, true response.
    let s = start().await;
    s.host
        .register(FunctionConfig::from_bytes("forge", forging_guest()))
        .unwrap();
    let addr = s.addr;
    let raw_out = tokio::task::spawn_blocking(move || {
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        c.write_all(
            b"GET /forge HTTP/1.1\r\nHost: x\r\n\r\nGET /web/second HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        out
    })
    .await
    .unwrap();
    let RawResponse {
        status,
        headers,
        body,
        rest,
    } = split_response(&raw_out);
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(
        body,
        format!("ok{FORGED}").into_bytes(),
        "the whole body, framed by the gateway"
    );
    for h in [
        "transfer-encoding",
        "connection",
        "keep-alive",
        "upgrade",
        "te",
        "trailer",
        "proxy-authenticate",
    ] {
        assert!(
            headers.iter().all(|(k, _)| k != h),
            "{h} came from the guest: {headers:?}"
        );
    }
    assert!(
        headers.contains(&("x-kept".into(), "yes".into())),
        "{headers:?}"
    );
    // The second response is the echo of the second request's own event.
    let RawResponse {
        status, body, rest, ..
    } = split_response(&rest);
    assert_eq!(status, "HTTP/1.1 200 OK");
    let ev: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(ev["rawPath"], "/web/second");
    assert!(rest.is_empty(), "nothing after the two responses: {rest:?}");
    s.stop().await;
}

/// Raw bytes over TCP: what no well-behaved client sends.
fn raw(addr: std::net::SocketAddr, request: &[u8]) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_requests_get_4xx_and_the_server_goes_on() {
    // HOSTILE 26
    let s = start().await;
    let addr = s.addr;
    let big_header = format!(
        "POST {INVOKE} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
        "a".repeat(20 << 10)
    );
    // Bytes that are not HTTP at all cannot get an HTTP answer: the
    // connection is closed without one (hyper's parser), and nothing else
    // happens.
    let garbage = tokio::task::spawn_blocking(move || raw(addr, b"GARBAGE\r\n\r\n"))
        .await
        .unwrap();
    assert!(
        garbage.is_empty() || garbage.starts_with("HTTP/1.1 400"),
        "{garbage:?}"
    );
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (format!("POST {INVOKE} HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nConnection: close\r\n\r\n{{bad").into_bytes(), "HTTP/1.1 400"),
        (big_header.into_bytes(), "HTTP/1.1 431"),
        (format!("POST {INVOKE} HTTP/1.1\r\nHost: x\r\nContent-Length: 999999\r\nConnection: close\r\n\r\n{{}}").into_bytes(), "HTTP/1.1 413"),
    ];
    for (req, want) in cases {
        let resp = tokio::task::spawn_blocking(move || raw(addr, &req))
            .await
            .unwrap();
        assert!(resp.starts_with(want), "wanted {want}, got {resp:?}");
        assert!(
            resp.contains("content-type: application/json"),
            "JSON error body expected: {resp:?}"
        );
    }
    // The server goes on.
    let r = post(&s, INVOKE, &[], r#"{"name":"still"}"#).await;
    assert_eq!(r.status(), 200);
    s.stop().await;
}

/// Runs the real AWS CLI against the gateway.
fn aws(base: &str, args: &[&str]) -> std::process::Output {
    Command::new("aws")
        .args([
            "--endpoint-url",
            base,
            "--region",
            "us-east-1",
            "--output",
            "json",
        ])
        .args(args)
        .env("AWS_ACCESS_KEY_ID", "fnhost")
        .env("AWS_SECRET_ACCESS_KEY", "fnhost")
        .env("AWS_MAX_ATTEMPTS", "1")
        .output()
        .expect("the AWS CLI (`pip install awscli`; cargo xtask test installs it)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_aws_cli_works_against_the_gateway() {
    let s = start().await;
    let base = s.base.clone();
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("out.json");
    let out_path = out_file.to_str().unwrap().to_string();
    let (invoke, list, get, missing, failing) = tokio::task::spawn_blocking(move || {
        let invoke = aws(
            &base,
            &[
                "lambda",
                "invoke",
                "--function-name",
                "hello",
                "--payload",
                r#"{"name":"Aws"}"#,
                "--log-type",
                "Tail",
                &out_path,
            ],
        );
        let list = aws(&base, &["lambda", "list-functions"]);
        let get = aws(
            &base,
            &["lambda", "get-function", "--function-name", "probe"],
        );
        let missing = aws(
            &base,
            &["lambda", "invoke", "--function-name", "ghost", &out_path],
        );
        let failing = aws(
            &base,
            &[
                "lambda",
                "invoke",
                "--function-name",
                "hello",
                "--payload",
                r#"{"name":""}"#,
                &out_path,
            ],
        );
        (invoke, list, get, missing, failing)
    })
    .await
    .unwrap();
    assert!(
        invoke.status.success(),
        "{}",
        String::from_utf8_lossy(&invoke.stderr)
    );
    let meta: Value = serde_json::from_slice(&invoke.stdout).unwrap();
    assert_eq!(meta["StatusCode"], 200);
    assert_eq!(meta["ExecutedVersion"], "$LATEST");
    let log = base64::engine::general_purpose::STANDARD
        .decode(meta["LogResult"].as_str().unwrap())
        .unwrap();
    assert!(String::from_utf8_lossy(&log).contains("REPORT RequestId: "));

    let listed: Value = serde_json::from_slice(&list.stdout).unwrap();
    assert_eq!(listed["Functions"].as_array().unwrap().len(), 3, "{listed}");
    let got: Value = serde_json::from_slice(&get.stdout).unwrap();
    assert_eq!(got["Configuration"]["FunctionName"], "probe");

    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("ResourceNotFoundException"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );

    assert!(
        failing.status.success(),
        "function errors are not CLI errors"
    );
    let meta: Value = serde_json::from_slice(&failing.stdout).unwrap();
    assert_eq!(meta["FunctionError"], "Unhandled");
    let body: Value = serde_json::from_slice(&std::fs::read(&out_file).unwrap()).unwrap();
    assert_eq!(
        body,
        json!({"errorMessage": "name must not be empty", "errorType": "InvalidName"})
    );
    s.stop().await;
}

/// A control call with the test server's admin token.
async fn admin(s: &Server, method: reqwest::Method, path: &str, body: String) -> reqwest::Response {
    reqwest::Client::new()
        .request(method, format!("{}{path}", s.base))
        .header("authorization", "Bearer s3cret")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_needs_the_token_and_changes_the_registry() {
    use base64::Engine as _;
    let module = base64::engine::general_purpose::STANDARD.encode(guests::bytes(guests::PROBE));
    let create = json!({
        "FunctionName": "fresh",
        "Code": {"ZipFile": module},
        "MemorySize": 32,
        "Timeout": 2,
        "Environment": {"Variables": {"GEN": "1"}},
        "Runtime": "ignored", "Role": "ignored", "Handler": "ignored",
        "Publish": true,
    })
    .to_string();
    let bearer = [("authorization", "Bearer s3cret")];

    // Off without a token on the server.
    let s = start().await;
    let r = post(&s, "/2015-03-31/functions", &bearer, &create).await;
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-amzn-ErrorType"], "AccessDeniedException");
    s.stop().await;

    let s = start_with(Some("s3cret")).await;
    let r = post(
        &s,
        "/2015-03-31/functions",
        &[("authorization", "Bearer wrong")],
        &create,
    )
    .await;
    assert_eq!(r.status(), 403);
    assert!(s.host.function_info("fresh").is_err(), "nothing registered");

    let r = post(&s, "/2015-03-31/functions", &bearer, &create).await;
    assert_eq!(r.status(), 201);
    let c = json_of(r).await;
    assert_eq!(c["FunctionName"], "fresh");
    assert_eq!(c["MemorySize"], 32);
    assert_eq!(c["Timeout"], 2);
    assert_eq!(c["Version"], "1");
    let r = post(
        &s,
        "/2015-03-31/functions/fresh/invocations",
        &[],
        r#"{"op":"env"}"#,
    )
    .await;
    assert_eq!(json_of(r).await["GEN"], "1");
    // Again: a conflict, and nothing new is published.
    let r = post(&s, "/2015-03-31/functions", &bearer, &create).await;
    assert_eq!(r.status(), 409);
    assert_eq!(r.headers()["x-amzn-ErrorType"], "ResourceConflictException");
    assert_eq!(s.host.versions("fresh").unwrap(), vec![1]);

    // Bad input: typed 400s, nothing registered.
    for (body, says) in [
        (r#"{"FunctionName":"x","Code":{}}"#, "Code.ZipFile"),
        (
            r#"{"FunctionName":"x","Code":{"ZipFile":"%%%"}}"#,
            "not base64",
        ),
        (
            r#"{"FunctionName":"x","Code":{"ZipFile":"AGFzbQ=="}}"#,
            "invalid module",
        ),
        (
            r#"{"FunctionName":"bad name","Code":{"ZipFile":"AGFzbQEAAAA="}}"#,
            "`name`",
        ),
        ("not json", "request body"),
    ] {
        let r = post(&s, "/2015-03-31/functions", &bearer, body).await;
        assert_eq!(r.status(), 400, "{body}");
        assert_eq!(
            r.headers()["x-amzn-ErrorType"],
            "InvalidParameterValueException"
        );
        let m = json_of(r).await["Message"].as_str().unwrap().to_string();
        assert!(m.contains(says), "{body}: {m}");
    }
    assert!(s.host.function_info("x").is_err());

    // Aliases: create (201), again (409), update (200), delete (204).
    let alias = |v: &str| json!({"Name": "live", "FunctionVersion": v}).to_string();
    let r = post(
        &s,
        "/2015-03-31/functions/fresh/aliases",
        &bearer,
        &alias("1"),
    )
    .await;
    assert_eq!(r.status(), 201);
    assert_eq!(
        json_of(r).await["AliasArn"],
        "arn:aws:lambda:local:000000000000:function:fresh:live"
    );
    let r = post(
        &s,
        "/2015-03-31/functions/fresh/aliases",
        &bearer,
        &alias("1"),
    )
    .await;
    assert_eq!(r.status(), 409);
    let r = post(
        &s,
        "/2015-03-31/functions/fresh/aliases",
        &bearer,
        &alias("7"),
    )
    .await;
    assert_eq!(r.status(), 409, "already exists comes first");
    let r = admin(
        &s,
        reqwest::Method::PUT,
        "/2015-03-31/functions/fresh/aliases/live",
        alias("9"),
    )
    .await;
    // As Lambda: a version that does not exist is ResourceNotFound.
    assert_eq!(r.status(), 404, "version 9 does not exist");
    assert_eq!(
        s.host.aliases("fresh").unwrap()["live"],
        fnhost::Alias::to(1)
    );
    let r = admin(
        &s,
        reqwest::Method::PUT,
        "/2015-03-31/functions/fresh/aliases/nope",
        alias("1"),
    )
    .await;
    assert_eq!(r.status(), 404);
    let r = admin(
        &s,
        reqwest::Method::DELETE,
        "/2015-03-31/functions/fresh/aliases/live",
        String::new(),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert!(s.host.aliases("fresh").unwrap().is_empty());

    // A qualified delete removes that version only (it used to delete the
    // whole function).
    s.host
        .register(FunctionConfig::from_file("fresh", guests::HELLO))
        .unwrap();
    assert_eq!(s.host.versions("fresh").unwrap(), [1, 2]);
    let r = admin(
        &s,
        reqwest::Method::DELETE,
        "/2015-03-31/functions/fresh?Qualifier=1",
        String::new(),
    )
    .await;
    assert_eq!(r.status(), 204);
    assert_eq!(s.host.versions("fresh").unwrap(), [2]);
    let r = admin(
        &s,
        reqwest::Method::DELETE,
        "/2015-03-31/functions/fresh:1",
        String::new(),
    )
    .await;
    assert_eq!(r.status(), 404, "version 1 is gone");

    // Delete: 204, then 404.
    for expected in [204, 404] {
        let r = admin(
            &s,
            reqwest::Method::DELETE,
            "/2015-03-31/functions/fresh",
            String::new(),
        )
        .await;
        assert_eq!(r.status(), expected);
    }
    assert!(s.host.function_info("fresh").is_err());
    s.stop().await;
}

/// A component behind the Lambda Invoke API: the same shapes as a module.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_component_serves_through_the_invoke_api() {
    let s = start().await;
    s.host
        .register(FunctionConfig::from_file("hello-rust", guests::HELLO_RUST))
        .unwrap();
    let path = "/2015-03-31/functions/hello-rust/invocations";
    let r = post(&s, path, &[("X-Amz-Log-Type", "Tail")], r#"{"name":"Ada"}"#).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amz-executed-version"], "$LATEST");
    let tail = base64::engine::general_purpose::STANDARD
        .decode(r.headers()["x-amz-log-result"].to_str().unwrap())
        .unwrap();
    let tail = String::from_utf8(tail).unwrap();
    assert!(tail.starts_with("request "), "{tail}");
    assert!(
        tail.contains(": greeting Ada\nEND RequestId: ") && tail.contains("\nREPORT RequestId: "),
        "{tail}"
    );
    assert_eq!(
        json_of(r).await,
        json!({"message": "Hello, Ada!", "language": "rust"})
    );
    let r = post(&s, path, &[], r#"{"name":""}"#).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-amz-function-error"], "Unhandled");
    assert_eq!(
        json_of(r).await,
        json!({"errorMessage": "name must be a non-empty string", "errorType": "InvalidRequest"})
    );
    s.stop().await;
}
