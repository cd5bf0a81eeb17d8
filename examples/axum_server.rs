//! fnhost inside an axum server: each request's handler awaits
//! [`Host::invoke_async`], so a tokio runtime serves many requests while
//! the host's worker pool runs the guests, and no executor thread ever
//! blocks on wasm.
//!
//! Routes:
//! - `POST /fn/{name}`: the body is the payload; `200` with the output,
//!   and the invocation's REPORT line in the `x-fnhost-report` header; an
//!   error is a JSON body `{"error": kind, "message": …}` with a status
//!   chosen by [`fnhost::ErrorKind`] (404 unknown function, 429 throttled,
//!   413 payload too large, 502 the guest failed, …).
//! - `GET /usage`: each function's counts, as JSON.
//!
//! Run with `cargo run --release --bin axum-server -- [ADDR]` (default
//! `127.0.0.1:3000`; port 0 picks a free one). It prints
//! `listening on http://ADDR` once it accepts connections and stops on
//! Ctrl-C (or end of standard input with `--stdin-stops`, which the tests
//! use), letting running invocations finish.
//!
//! ```text
//! curl -d '{"name":"Ada"}' localhost:3000/fn/hello
//! {"message":"Hello, Ada!","function":"hello"}
//! ```

use std::time::Duration;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fnhost::{Error, ErrorKind, FunctionConfig, Host};
use fnhost_test_guests as guests;
use serde_json::json;

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut addr = "127.0.0.1:3000".to_string();
    let mut stdin_stops = false;
    for a in args.by_ref() {
        match a.as_str() {
            "--stdin-stops" => stdin_stops = true,
            other => addr = other.to_string(),
        }
    }
    // The host owns its worker threads; tokio owns the network. The two
    // meet only in `invoke_async`'s future.
    let host = Host::builder().build().context("starting the host")?;
    host.register(FunctionConfig::from_file("echo", guests::ECHO))?;
    host.register(
        FunctionConfig::from_file("hello", guests::HELLO)
            .env("GREETING", "Hello")
            // Past 8 at once, a request waits (without holding a thread)
            // up to a second for a slot, then gets 429.
            .reserved_concurrency(8)
            .max_wait(Duration::from_secs(1)),
    )?;
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(host.clone(), &addr, stdin_stops))?;
    let report = host.shutdown(Duration::from_secs(5));
    println!(
        "stopped: {} queued invocations refused, {} still running",
        report.rejected_queued, report.still_running
    );
    Ok(())
}

async fn serve(host: Host, addr: &str, stdin_stops: bool) -> anyhow::Result<()> {
    let app = Router::new()
        .route("/fn/{name}", post(invoke))
        .route("/usage", get(usage))
        .with_state(host);
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("binding {addr}"))?;
    println!("listening on http://{}", listener.local_addr()?);
    let stop = async move {
        if stdin_stops {
            // Reading standard input blocks: a blocking thread does it.
            let _ = tokio::task::spawn_blocking(|| std::io::read_to_string(std::io::stdin())).await;
        } else {
            let _ = tokio::signal::ctrl_c().await;
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await?;
    Ok(())
}

/// `POST /fn/{name}`: one invocation, awaited without blocking.
async fn invoke(State(host): State<Host>, Path(name): Path<String>, body: Bytes) -> Response {
    // `Bytes` moves into the host without a copy.
    let inv = match host.invoke_async(&name, body).await {
        Ok(inv) => inv,
        Err(e) => return error(&e),
    };
    let report = HeaderValue::from_str(&inv.report.report_line()).ok();
    match inv.output() {
        Ok(out) => {
            let mut resp = out.to_vec().into_response();
            if let Some(r) = report {
                resp.headers_mut().insert("x-fnhost-report", r);
            }
            resp
        }
        Err(e) => error(e),
    }
}

/// `GET /usage`: what each function has done so far.
async fn usage(State(host): State<Host>) -> Response {
    let mut all = serde_json::Map::new();
    for f in host.functions() {
        if let Ok(m) = host.function_metrics(&f.name) {
            all.insert(
                f.name,
                json!({
                    "submitted": m.submitted,
                    "succeeded": m.succeeded,
                    "failed": m.failed,
                    "throttled": m.throttled,
                }),
            );
        }
    }
    axum::Json(all).into_response()
}

/// An error as a status and a JSON body naming its kind.
fn error(e: &Error) -> Response {
    let status = match e.kind() {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        // The guest ran and failed (trap, its own error, a quota).
        _ => StatusCode::BAD_GATEWAY,
    };
    let body = json!({"error": e.kind().as_str(), "message": e.to_string()});
    (status, axum::Json(body)).into_response()
}
