//! The gateway (issue #22, item 5): `fnhost serve`'s synchronous Lambda
//! Invoke (`POST /2015-03-31/functions/echo/invocations`, 64 B of JSON,
//! the echo guest on a fresh instance) beside two floors in the same
//! process and run: a minimal hyper server answering the same bytes (the
//! HTTP floor: what any server pays), and that server calling raw
//! wasmtime on a fresh instance per request on a blocking thread (the
//! wasm floor: fnhost's engine settings, nothing of fnhost). One
//! closed-loop load (reqwest, `CONNECTIONS` keep-alive connections)
//! drives all three in interleaved rounds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use fnhost::{FunctionConfig, Host};
use fnhost_benches::{Raw, Spread, Stats};
use http_body_util::{BodyExt as _, Full};

use crate::Report;
use crate::report_http::{CONNECTIONS, load_with};

const PATH: &str = "/2015-03-31/functions/echo/invocations";

/// A hyper server on 127.0.0.1 whose answer to every request is
/// `answer(body)`, run on a blocking thread when `blocking`.
async fn floor(
    answer: Arc<dyn Fn(Bytes) -> Bytes + Send + Sync>,
    blocking: bool,
) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let answer = answer.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(
                    move |req: hyper::Request<hyper::body::Incoming>| {
                        let answer = answer.clone();
                        async move {
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let out = if blocking {
                                tokio::task::spawn_blocking(move || answer(body))
                                    .await
                                    .unwrap_or_default()
                            } else {
                                answer(body)
                            };
                            Ok::<_, Infallible>(hyper::Response::new(Full::new(out)))
                        }
                    },
                );
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// `fnhost serve`'s gateway with `host`.
async fn gateway(host: Host) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(fnhost_cli::http::serve(
        listener,
        fnhost_cli::http::Gateway::new(host),
        std::future::pending(),
        Duration::from_secs(1),
    ));
    Ok(addr)
}

pub(crate) fn report(r: &mut Report, quick: bool, rounds_n: usize) -> Result<()> {
    let echo = fnhost_test_guests::bytes(fnhost_test_guests::ECHO);
    let raw = Arc::new(Raw::new(&echo, 1000)?);
    let host = Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .concurrency_limit(1000)
        .build()?;
    host.register(FunctionConfig::from_bytes("echo", echo))?;
    let payload = Bytes::from(format!("{{\"k\":\"{}\"}}", "x".repeat(56)));
    assert_eq!(payload.len(), 64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let dur = Duration::from_millis(if quick { 400 } else { 1500 });
    let rounds: Vec<[Stats; 3]> = rt.block_on(async {
        let http = floor(Arc::new(|b| b), false).await?;
        let wasm = floor(
            Arc::new(move |b: Bytes| Bytes::from(raw.fresh_call(&b).unwrap_or_default())),
            true,
        )
        .await?;
        let fnhost = gateway(host).await?;
        let client = reqwest::Client::new();
        let urls = [http, wasm, fnhost].map(|a| format!("http://{a}{PATH}"));
        let body = Some(payload.clone());
        for url in &urls {
            load_with(&client, url, body.clone(), &payload, dur / 4).await;
        }
        let mut rounds = Vec::new();
        for _ in 0..rounds_n.max(1) {
            let mut round = Vec::new();
            for url in &urls {
                round.push(load_with(&client, url, body.clone(), &payload, dur).await);
            }
            rounds.push([round[0], round[1], round[2]]);
        }
        anyhow::Ok(rounds)
    })?;
    let median = |i: usize| {
        let mut v: Vec<Stats> = rounds.iter().map(|r| r[i]).collect();
        v.sort_unstable_by(|a, b| a.throughput.total_cmp(&b.throughput));
        v[v.len() / 2]
    };
    let ratio = |i: usize, of: usize| {
        Spread::of(
            rounds
                .iter()
                .map(|r| r[i].throughput / r[of].throughput)
                .collect(),
        )
    };
    let [http, wasm, fnhost] = [median(0), median(1), median(2)];
    r.row(
        format!(
            "gateway: minimal hyper server, the same bytes, {CONNECTIONS} connections (HTTP floor)"
        ),
        http,
        format!("1.00 ({:.0} req/s)", http.throughput),
    );
    r.row(
        "gateway: hyper + raw wasmtime fresh instance per request (wasm floor)",
        wasm,
        format!(
            "{} HTTP floor req/s ({:.0} req/s)",
            ratio(1, 0),
            wasm.throughput
        ),
    );
    let vs_wasm = ratio(2, 1);
    r.row(
        "gateway: fnhost serve, sync Invoke of echo (fresh), 64 B".to_string(),
        fnhost,
        format!(
            "{vs_wasm} wasm floor req/s, {} HTTP floor ({:.0} req/s)",
            ratio(2, 0),
            fnhost.throughput
        ),
    );
    r.notes.push(format!(
        "gateway p50: HTTP floor {}, wasm floor {}, fnhost serve {}",
        fnhost_benches::fmt_dur(http.p50),
        fnhost_benches::fmt_dur(wasm.p50),
        fnhost_benches::fmt_dur(fnhost.p50),
    ));
    Ok(())
}
