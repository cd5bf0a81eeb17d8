//! HTTP components (`wasi:http/proxy`, the Rust `component-http-probe`
//! built with the plain `wasip2` bindings) through `Host::invoke_http`:
//! status, headers and bodies as the guest sets them, the body streamed
//! while the handler runs, the deadline over the whole exchange, the
//! response body cap, and the kinds kept apart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use fnhost::{Error, FunctionConfig, Host, HttpBodyError, HttpResponse, Invocation};
use futures::executor::block_on;
use http_body_util::{BodyExt as _, Full};

use super::*;

fn web_host() -> Host {
    Host::builder()
        .no_artifact_cache()
        .epoch_tick(Duration::from_millis(2))
        .build()
        .unwrap()
}

fn register(host: &Host, name: &str, cfg: impl FnOnce(FunctionConfig) -> FunctionConfig) {
    host.register(cfg(FunctionConfig::from_file(
        name,
        guests::COMPONENT_HTTP_PROBE,
    )))
    .expect("HTTP component registers");
}

/// One exchange in flight: the invocation runs on its own thread.
struct InFlight {
    response: tokio::sync::oneshot::Receiver<Result<HttpResponse, HttpBodyError>>,
    done: Arc<AtomicBool>,
    invocation: std::thread::JoinHandle<Invocation>,
}

fn send(host: &Host, name: &str, req: http::Request<Full<Bytes>>) -> InFlight {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let done = Arc::new(AtomicBool::new(false));
    let (host, name, flag) = (host.clone(), name.to_string(), done.clone());
    let invocation = std::thread::spawn(move || {
        let inv = host.invoke_http(&name, req, tx).expect("admitted");
        flag.store(true, Ordering::SeqCst);
        inv
    });
    InFlight {
        response: rx,
        done,
        invocation,
    }
}

fn get(path: &str) -> http::Request<Full<Bytes>> {
    http::Request::get(format!("http://fn.local{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// The body's data frames, and the error it ended with (if any).
fn frames(resp: HttpResponse) -> (Vec<Bytes>, Option<String>) {
    let mut body = resp.into_body();
    let mut out = Vec::new();
    loop {
        match block_on(body.frame()) {
            None => return (out, None),
            Some(Ok(f)) => {
                if let Ok(data) = f.into_data() {
                    out.push(data);
                }
            }
            Some(Err(e)) => return (out, Some(e.message)),
        }
    }
}

fn text(frames: &[Bytes]) -> String {
    frames
        .iter()
        .map(|f| String::from_utf8_lossy(f).into_owned())
        .collect()
}

#[test]
fn status_headers_and_bodies_are_the_guests() {
    let host = web_host();
    register(&host, "web", |c| c);
    let x = send(&host, "web", get("/hello"));
    let resp = block_on(x.response).unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-fn"], "probe");
    let (body, end) = frames(resp);
    assert_eq!((text(&body), end), ("hello from rust".to_string(), None));
    let inv = x.invocation.join().unwrap();
    assert_eq!(inv.outcome.as_ref().ok().map(|b| b.len()), Some(0));
    assert_eq!(inv.report.error, None);
    assert!(inv.report.is_cold());

    let req = http::Request::post("http://fn.local/echo?q=1")
        .header("x-test", "t1")
        .body(Full::new(Bytes::from_static(b"the request body")))
        .unwrap();
    let x = send(&host, "web", req);
    let (body, end) = frames(block_on(x.response).unwrap().unwrap());
    assert_eq!(end, None);
    assert_eq!(
        text(&body),
        "POST /echo?q=1 x-test=t1 body=the request body"
    );
    x.invocation.join().unwrap();

    let x = send(&host, "web", get("/status?code=418"));
    let resp = block_on(x.response).unwrap().unwrap();
    assert_eq!(resp.status(), 418);
    assert_eq!(frames(resp), (vec![], None));
    x.invocation.join().unwrap();
    let m = host.function_metrics("web").unwrap();
    assert_eq!((m.succeeded, m.failed, m.cold_starts), (3, 0, 3));
}

#[test]
fn the_body_streams_while_the_handler_still_runs() {
    let host = web_host();
    register(&host, "web", |c| c.timeout(Duration::from_secs(10)));
    let x = send(&host, "web", get("/stream?n=3&ms=300"));
    let resp = block_on(x.response).unwrap().unwrap();
    assert!(
        !x.done.load(Ordering::SeqCst),
        "the head came before the end"
    );
    let mut body = resp.into_body();
    let first = block_on(body.frame())
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, "chunk 0\n");
    // The first piece arrived while the guest was still sleeping before
    // the next one: streamed, not buffered until the end.
    assert!(!x.done.load(Ordering::SeqCst), "first chunk before the end");
    let mut rest = Vec::new();
    while let Some(f) = block_on(body.frame()) {
        rest.push(f.unwrap().into_data().unwrap());
    }
    assert_eq!(rest, vec!["chunk 1\n", "chunk 2\n"], "one frame per write");
    let inv = x.invocation.join().unwrap();
    assert_eq!(inv.report.error, None);
    assert!(inv.report.duration >= Duration::from_millis(600));
}

#[test]
fn a_guest_looping_mid_body_times_out_and_the_stream_ends_in_error() {
    let host = web_host();
    let timeout = Duration::from_millis(300);
    register(&host, "web", |c| c.timeout(timeout));
    let x = send(&host, "web", get("/spin"));
    let resp = block_on(x.response).unwrap().unwrap();
    let (body, end) = frames(resp);
    assert_eq!(text(&body), "start\n");
    assert!(end.is_some(), "the body must not end cleanly");
    let inv = x.invocation.join().unwrap();
    assert!(
        matches!(inv.outcome, Err(Error::Timeout { timeout: t }) if t == timeout),
        "{:?}",
        inv.outcome
    );
    // A response nobody reads: the guest waits for a reader, never past
    // its deadline.
    let x = send(&host, "web", get("/big?bytes=1048576"));
    let held = block_on(x.response).unwrap().unwrap();
    let inv = x.invocation.join().unwrap();
    assert!(
        matches!(inv.outcome, Err(Error::Timeout { .. })),
        "{:?}",
        inv.outcome
    );
    drop(held);
    let m = host.function_metrics("web").unwrap();
    assert_eq!(m.failed, 2);
    crate::assert_host_goes_on(&host);
}

#[test]
fn the_response_body_is_capped_at_max_output() {
    let host = web_host();
    register(&host, "web", |c| c.max_output(10_000));
    let x = send(&host, "web", get("/big?bytes=9000"));
    let (body, end) = frames(block_on(x.response).unwrap().unwrap());
    assert_eq!((text(&body).len(), end), (9000, None));
    assert!(x.invocation.join().unwrap().outcome.is_ok());

    let x = send(&host, "web", get("/big?bytes=20000"));
    let (body, end) = frames(block_on(x.response).unwrap().unwrap());
    assert!(text(&body).len() <= 10_000);
    assert!(end.is_some(), "a cut body must not end cleanly");
    let inv = x.invocation.join().unwrap();
    assert!(
        matches!(
            inv.outcome,
            Err(Error::OutputTooLarge {
                size: 12_288,
                max: 10_000
            })
        ),
        "{:?}",
        inv.outcome
    );
}

#[test]
fn http_components_and_functions_are_not_confused() {
    let host = web_host();
    register(&host, "web", |c| c);
    crate::with_probe(&host, "plain", |c| c);
    let inv = host.invoke("web", b"{}").unwrap();
    assert!(
        matches!(&inv.outcome, Err(Error::BadExport { name, .. }) if name == "handle"),
        "{:?}",
        inv.outcome
    );
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let err = host.invoke_http("plain", get("/"), tx).unwrap_err();
    assert!(
        matches!(&err, Error::BadExport { name, .. } if name == "wasi:http/incoming-handler"),
        "{err:?}"
    );
    // Fresh per request only.
    let err = host
        .register(
            FunctionConfig::from_file("warm-web", guests::COMPONENT_HTTP_PROBE)
                .reuse(10, Duration::from_secs(60)),
        )
        .unwrap_err();
    assert!(
        matches!(&err, Error::InvalidConfig { field: "reuse", .. }),
        "{err:?}"
    );
    // A declared body over max_input is refused before the guest runs.
    register(&host, "small", |c| c.max_input(8));
    let req = http::Request::post("http://fn.local/echo")
        .header("content-length", "16")
        .body(Full::new(Bytes::from_static(b"0123456789abcdef")))
        .unwrap();
    let (tx, _rx) = tokio::sync::oneshot::channel();
    let err = host.invoke_http("small", req, tx).unwrap_err();
    assert!(
        matches!(err, Error::PayloadTooLarge { size: 16, max: 8 }),
        "{err:?}"
    );
    // Undeclared, it is cut at max_input: the guest reads an error.
    let req = http::Request::post("http://fn.local/echo")
        .body(Full::new(Bytes::from_static(b"0123456789abcdef")))
        .unwrap();
    let x = send(&host, "small", req);
    let (body, _) = frames(block_on(x.response).unwrap().unwrap());
    assert_eq!(text(&body), "POST /echo x-test= body=");
}

/// The same exchanges with a JavaScript handler (componentize-js, a
/// `fetch` event listener: the standard toolchain's output, unedited).
#[test]
fn a_javascript_fetch_handler_serves_and_streams() {
    let dir = std::path::Path::new(guests::COMPONENTS_DIR).join("artifact-cache");
    let host = Host::builder()
        .cache_dir(dir)
        .epoch_tick(Duration::from_millis(2))
        .build()
        .unwrap();
    host.register(
        FunctionConfig::from_file("js", guests::component("http-js"))
            .timeout(Duration::from_secs(10)),
    )
    .unwrap();
    let x = send(&host, "js", get("/hello"));
    let resp = block_on(x.response).unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-fn"], "js");
    assert_eq!(frames(resp), (vec![Bytes::from("hello from js")], None));
    x.invocation.join().unwrap();

    let req = http::Request::post("http://fn.local/echo?q=2")
        .header("x-test", "js1")
        .body(Full::new(Bytes::from_static(b"posted")))
        .unwrap();
    let x = send(&host, "js", req);
    let (body, end) = frames(block_on(x.response).unwrap().unwrap());
    assert_eq!(
        (text(&body), end),
        ("POST /echo?q=2 x-test=js1 body=posted".to_string(), None)
    );
    x.invocation.join().unwrap();

    let x = send(&host, "js", get("/stream?n=3&ms=300"));
    let mut body = block_on(x.response).unwrap().unwrap().into_body();
    let first = block_on(body.frame())
        .unwrap()
        .unwrap()
        .into_data()
        .unwrap();
    assert_eq!(first, "chunk 0\n");
    assert!(!x.done.load(Ordering::SeqCst), "first chunk before the end");
    let mut rest = String::new();
    while let Some(f) = block_on(body.frame()) {
        rest.push_str(&String::from_utf8_lossy(&f.unwrap().into_data().unwrap()));
    }
    assert_eq!(rest, "chunk 1\nchunk 2\n");
    assert_eq!(x.invocation.join().unwrap().report.error, None);

    let x = send(&host, "js", get("/nope"));
    let resp = block_on(x.response).unwrap().unwrap();
    assert_eq!(resp.status(), 404);
    x.invocation.join().unwrap();
    let m = host.function_metrics("js").unwrap();
    assert_eq!((m.succeeded, m.failed), (4, 0));
}

/// What the hostile review found, each closed: a request body that never
/// arrives, a second response dodging the cap, a body never finished, an
/// error-code text as large as the guest likes.
#[test]
fn a_stalled_request_body_ends_at_the_deadline() {
    let host = web_host();
    let timeout = Duration::from_millis(300);
    register(&host, "web", |c| c.timeout(timeout));
    // A body that never sends a byte (and never ends).
    let stalled = http_body_util::StreamBody::new(futures::stream::pending::<
        Result<http_body::Frame<Bytes>, std::convert::Infallible>,
    >());
    let req = http::Request::post("http://fn.local/echo")
        .body(stalled)
        .unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let h = host.clone();
    let inv = std::thread::spawn(move || h.invoke_http("web", req, tx).unwrap())
        .join()
        .unwrap();
    // The guest read an error at the deadline and answered; the
    // invocation is the timeout.
    assert!(
        matches!(inv.outcome, Err(Error::Timeout { timeout: t }) if t == timeout),
        "{:?}",
        inv.outcome
    );
    drop(rx);
    crate::assert_host_goes_on(&host);
}

#[test]
fn every_response_body_shares_the_cap_and_must_be_finished() {
    let host = web_host();
    register(&host, "web", |c| c.max_output(10_000));
    let x = send(&host, "web", get("/two-responses?bytes=20000"));
    let (body, end) = frames(block_on(x.response).unwrap().unwrap());
    assert!(text(&body).len() <= 10_000 && end.is_some(), "{end:?}");
    let inv = x.invocation.join().unwrap();
    assert!(
        matches!(inv.outcome, Err(Error::OutputTooLarge { max: 10_000, .. })),
        "{:?}",
        inv.outcome
    );
    let x = send(&host, "web", get("/two-responses?bytes=500"));
    let (body, end) = frames(block_on(x.response).unwrap().unwrap());
    assert_eq!((text(&body).len(), end), (500, None));
    assert!(x.invocation.join().unwrap().outcome.is_ok());

    // A body the handler never finished is never a complete response.
    let x = send(&host, "web", get("/unfinished"));
    let (body, end) = frames(block_on(x.response).unwrap().unwrap());
    assert_eq!(text(&body), "partial");
    assert_eq!(end.as_deref(), Some("incomplete HTTP response"));
    let inv = x.invocation.join().unwrap();
    assert!(
        matches!(&inv.outcome, Err(Error::Guest { kind, .. }) if kind == "IncompleteResponse"),
        "{:?}",
        inv.outcome
    );

    // A body the guest finished is whole, whatever the handler does next
    // (as `wasmtime serve` has it): the client has it all, the invocation
    // is the trap.
    let x = send(&host, "web", get("/finish-then-trap"));
    let (body, end) = frames(block_on(x.response).unwrap().unwrap());
    assert_eq!((text(&body).as_str(), end), ("complete", None));
    let inv = x.invocation.join().unwrap();
    assert!(
        matches!(&inv.outcome, Err(Error::Trap { .. })),
        "{:?}",
        inv.outcome
    );
    let m = host.function_metrics("web").unwrap();
    assert_eq!((m.succeeded, m.failed), (1, 3));
}

#[test]
fn an_error_code_text_is_cut_while_it_is_formatted() {
    let host = web_host();
    register(&host, "web", |c| c.memory_limit(64 << 20));
    let x = send(&host, "web", get("/error-code?bytes=8000000"));
    let err = block_on(x.response).unwrap().unwrap_err();
    assert!(
        err.message.starts_with("InternalError(Some(\"eee"),
        "{}",
        &err.message[..40]
    );
    assert!(
        err.message.len() <= fnhost::exchange::MAX_ERROR_TEXT,
        "{}",
        err.message.len()
    );
    x.invocation.join().unwrap();
}

/// One REPORT per request, through the embedder's log sink, as for every
/// function (and the guest's stderr in its logs).
#[test]
fn each_request_gets_its_report() {
    /// A REPORT line and the error kind it ended with.
    type Seen = (String, Option<fnhost::ErrorKind>);
    #[derive(Default, Clone)]
    struct Lines(Arc<std::sync::Mutex<Vec<Seen>>>);
    impl fnhost::LogSink for Lines {
        fn record(&self, report: &fnhost::Report, _logs: &fnhost::Logs) {
            self.0
                .lock()
                .unwrap()
                .push((report.report_line(), report.error));
        }
    }
    let lines = Lines::default();
    let host = Host::builder()
        .no_artifact_cache()
        .epoch_tick(Duration::from_millis(2))
        .log_sink(lines.clone())
        .build()
        .unwrap();
    register(&host, "web", |c| c.timeout(Duration::from_millis(300)));
    let mut ids = Vec::new();
    for path in ["/hello", "/spin"] {
        let x = send(&host, "web", get(path));
        let _ = frames(block_on(x.response).unwrap().unwrap());
        ids.push(x.invocation.join().unwrap().report.request_id.to_string());
    }
    let got = lines.0.lock().unwrap().clone();
    assert_eq!(got.len(), 2);
    assert!(
        got[0]
            .0
            .starts_with(&format!("REPORT RequestId: {} Duration: ", ids[0]))
    );
    assert_eq!(got[0].1, None);
    assert!(
        got[1]
            .0
            .starts_with(&format!("REPORT RequestId: {} ", ids[1]))
    );
    assert!(
        got[1].0.ends_with(" Status: error (timeout)"),
        "{}",
        got[1].0
    );
    assert_eq!(got[1].1, Some(fnhost::ErrorKind::Timeout));
}

/// `admit_http` for async callers: a slot or the refusal at once, no
/// thread taken; a ticket dropped unused leaves no count behind.
#[test]
fn admission_comes_before_any_thread_and_an_unused_ticket_counts_nothing() {
    let host = web_host();
    register(&host, "web", |c| c.reserved_concurrency(1));
    crate::with_probe(&host, "plain", |c| c);
    let none = http::HeaderMap::new();
    let ticket = block_on(host.admit_http("web", &none)).unwrap();
    // The one slot is taken: the next is refused at once.
    let err = block_on(host.admit_http("web", &none)).unwrap_err();
    assert!(matches!(err, Error::Throttled { limit: 1, .. }), "{err:?}");
    let err = block_on(host.admit_http("plain", &none)).unwrap_err();
    assert!(matches!(err, Error::BadExport { .. }), "{err:?}");
    drop(ticket);
    let m = host.function_metrics("web").unwrap();
    assert_eq!(
        (m.submitted, m.throttled),
        (1, 1),
        "the dropped ticket is not a request"
    );
    // A ticket runs its exchange on the thread that invokes it.
    let ticket = block_on(host.admit_http("web", &none)).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let inv = std::thread::spawn(move || ticket.invoke(get("/hello"), tx))
        .join()
        .unwrap();
    assert_eq!(inv.report.error, None);
    let (body, _) = frames(block_on(rx).unwrap().unwrap());
    assert_eq!(text(&body), "hello from rust");
    let m = host.function_metrics("web").unwrap();
    assert_eq!(
        (m.submitted, m.succeeded, m.throttled),
        (2, 1, 1),
        "submitted = succeeded + failed + throttled + rejected"
    );
}
