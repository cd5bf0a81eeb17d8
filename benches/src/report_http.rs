//! HTTP components behind a server (issue #20): requests/s and p50/p99 of
//! a trivial `wasi:http/proxy` component (`component-http-probe`'s
//! `/hello`) behind `fnhost serve`'s route, against the raw baseline: a
//! minimal hyper server calling the same component with
//! wasmtime-wasi-http, a fresh instance per request, on an engine with
//! fnhost's settings (what `wasmtime serve` does). Both run in this
//! process; one closed-loop load (`CONNECTIONS` keep-alive connections
//! from reqwest) drives them in interleaved rounds.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result};
use fnhost::{FunctionConfig, Host};
use fnhost_benches::{Rounds, Stats};
use http_body_util::BodyExt as _;
use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, Store};
use wasmtime_wasi::p2::pipe::SinkOutputStream;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::sync::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use crate::Report;

/// Concurrent keep-alive connections of the load.
pub(crate) const CONNECTIONS: usize = 8;

/// Store data of the raw server's instances.
struct RawState {
    ctx: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for RawState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.ctx,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for RawState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: wasmtime_wasi_http::default_hooks(),
        }
    }
}

/// The component, pre-linked for the raw server.
struct RawHttp {
    engine: Engine,
    pre: ProxyPre<RawState>,
}

impl RawHttp {
    fn new(path: &std::path::Path) -> Result<RawHttp> {
        let engine = Engine::new(&fnhost::wasmtime_config(1000, 4 << 30, 512 << 10))?;
        let component = Component::from_file(&engine, path)?;
        let mut linker: Linker<RawState> = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker)?;
        let pre = ProxyPre::new(linker.instantiate_pre(&component)?)?;
        Ok(RawHttp { engine, pre })
    }

    /// One request on a fresh instance (blocking: on a blocking thread).
    fn serve(
        &self,
        req: hyper::Request<hyper::body::Incoming>,
        tx: tokio::sync::oneshot::Sender<
            Result<
                hyper::Response<wasmtime_wasi_http::p2::body::HyperOutgoingBody>,
                wasmtime_wasi_http::p2::bindings::http::types::ErrorCode,
            >,
        >,
    ) -> Result<()> {
        let ctx = WasiCtxBuilder::new()
            .stdout(SinkOutputStream)
            .stderr(SinkOutputStream)
            .build();
        let mut store = Store::new(
            &self.engine,
            RawState {
                ctx,
                http: WasiHttpCtx::new(),
                table: ResourceTable::new(),
            },
        );
        store.set_epoch_deadline(u64::MAX / 2);
        let proxy = self.pre.instantiate(&mut store)?;
        let mut view = store.data_mut().http();
        let req = view.new_incoming_request(Scheme::Http, req)?;
        let out = view.new_response_outparam(tx)?;
        proxy
            .wasi_http_incoming_handler()
            .call_handle(&mut store, req, out)?;
        Ok(())
    }
}

/// Starts the raw hyper server; returns its address.
async fn raw_server(raw: Arc<RawHttp>) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            // As fnhost serve does (and any HTTP server should).
            let _ = stream.set_nodelay(true);
            let raw = raw.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| {
                    let raw = raw.clone();
                    async move {
                        let (tx, rx) = tokio::sync::oneshot::channel();
                        let running = tokio::task::spawn_blocking(move || raw.serve(req, tx));
                        let resp = match rx.await {
                            Ok(Ok(resp)) => resp,
                            _ => hyper::Response::builder()
                                .status(500)
                                .body(
                                    http_body_util::Empty::<bytes::Bytes>::new()
                                        .map_err(|e: Infallible| match e {})
                                        .boxed_unsync(),
                                )
                                .unwrap(),
                        };
                        tokio::spawn(running);
                        Ok::<_, Infallible>(resp)
                    }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, service)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// Starts `fnhost serve`'s gateway with `host` and a route to `web`.
async fn fnhost_server(host: Host) -> Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let mut gw = fnhost_cli::http::Gateway::new(host);
    gw.routes = vec![fnhost_cli::http::Route::parse("ANY /{proxy+}", "web")?];
    tokio::spawn(fnhost_cli::http::serve(
        listener,
        gw,
        std::future::pending(),
        Duration::from_secs(1),
    ));
    Ok(addr)
}

/// `CONNECTIONS` loops of `GET /hello` for `dur`: every latency, and the
/// requests completed per second.
async fn load(client: &reqwest::Client, addr: SocketAddr, dur: Duration) -> Stats {
    let url = format!("http://{addr}/hello");
    load_with(client, &url, None, b"hello from rust", dur).await
}

/// `CONNECTIONS` closed loops of one request to `url` (a POST of `body`,
/// else a GET) for `dur`, each answer checked against `expect`: every
/// latency, and the requests completed per second.
pub(crate) async fn load_with(
    client: &reqwest::Client,
    url: &str,
    body: Option<bytes::Bytes>,
    expect: &[u8],
    dur: Duration,
) -> Stats {
    let end = Instant::now() + dur;
    let started = Instant::now();
    let expect = bytes::Bytes::copy_from_slice(expect);
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|_| {
            let (client, url, body, expect) = (
                client.clone(),
                url.to_string(),
                body.clone(),
                expect.clone(),
            );
            tokio::spawn(async move {
                let mut lat = Vec::new();
                while Instant::now() < end {
                    let t = Instant::now();
                    let req = match &body {
                        Some(b) => client.post(&url).body(b.clone()),
                        None => client.get(&url),
                    };
                    let r = req.send().await.expect("request");
                    let got = r.bytes().await.expect("body");
                    assert_eq!(got, expect);
                    lat.push(t.elapsed());
                }
                lat
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    let total = started.elapsed();
    all.sort_unstable();
    assert!(!all.is_empty(), "no request completed in {dur:?}");
    Stats::of_sorted(&all, all.len() as f64 / total.as_secs_f64())
}

pub(crate) fn report(r: &mut Report, quick: bool, rounds_n: usize) -> Result<()> {
    let path = std::path::Path::new(fnhost_test_guests::COMPONENT_HTTP_PROBE);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let raw = Arc::new(RawHttp::new(path).context("raw HTTP baseline")?);
    let host = Host::builder()
        .no_artifact_cache()
        .no_log_sink()
        .concurrency_limit(1000)
        .build()?;
    host.register(FunctionConfig::from_file("web", path))?;
    let dur = Duration::from_millis(if quick { 400 } else { 1500 });
    let result = rt.block_on(async {
        let raw_addr = raw_server(raw).await?;
        let fn_addr = fnhost_server(host).await?;
        let client = reqwest::Client::new();
        // Warm both up (connections, code pages).
        load(&client, raw_addr, dur / 4).await;
        load(&client, fn_addr, dur / 4).await;
        let mut pairs = Vec::new();
        for _ in 0..rounds_n.max(1) {
            let a = load(&client, raw_addr, dur).await;
            let b = load(&client, fn_addr, dur).await;
            pairs.push((a, b));
        }
        anyhow::Ok(pairs)
    })?;
    let rounds = Rounds { pairs: result };
    let tput = rounds.throughput_ratio();
    r.row(
        format!("HTTP: raw hyper + wasmtime-wasi-http, fresh per request, {CONNECTIONS} connections (baseline)"),
        rounds.a(),
        format!("1.00 ({:.0} req/s)", rounds.a().throughput),
    );
    r.row(
        format!("HTTP: fnhost serve route to an HTTP component, {CONNECTIONS} connections"),
        rounds.b(),
        format!(
            "{tput} raw req/s ({:.0} req/s), p50 {}, p99 {} raw",
            rounds.b().throughput,
            rounds.p50_ratio(),
            rounds.spread(|a, b| b.p99.as_nanos() as f64 / a.p99.as_nanos().max(1) as f64),
        ),
    );
    r.target(
        "HTTP component behind fnhost serve ≥ 0.8× raw hyper + wasmtime-wasi-http requests/s",
        format!("{tput}"),
        tput.median >= 0.8,
    );
    Ok(())
}
