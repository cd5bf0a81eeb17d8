//! The HTTP API of `fnhost serve`: the AWS Lambda Invoke API (so AWS SDKs
//! and the AWS CLI work with `--endpoint-url`), the control API, API
//! Gateway HTTP API-style routes (payload format 2.0), `/metrics` and
//! `/healthz`.
//!
//! With a cluster ([`crate::cluster`]), `Event` invocations go on the
//! shared stream, a sync invocation this node cannot serve is forwarded to
//! another node, and the control API (create/delete functions, aliases;
//! see [`control`]) changes the registry of every node.
//!
//! Every error is JSON. Lambda API errors carry AWS's shapes: the
//! `x-amzn-ErrorType` header and a `{"Type","Message"}` body ([`aws`]).
//!
//! Inside, `state` (the [`Gateway`]) and `aws` (error shapes, bodies,
//! names) are used by the handlers (`invoke`, `control`, `routes`,
//! `ops`), and this module only wires them into the router.

pub mod auth;
pub mod aws;
pub mod control;
mod eventstream;
pub mod function_url;
mod invoke;
mod ops;
mod payload_v2;
mod routes;
mod sigv4;
mod state;
mod stream_invoke;
mod streaming;
mod url_config;

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::response::Response;

pub use auth::AdminKeys;
pub use payload_v2::guest_may_set;
pub use routes::Route;
pub use state::Gateway;

use aws::plain_error;
use state::Shared;

/// Most header bytes accepted per request (names + values).
pub const MAX_HEADER_BYTES: usize = 16 << 10;
/// Bytes of log tail returned by `X-Amz-Log-Type: Tail` (Lambda's 4 KB).
pub const LOG_TAIL: usize = 4096;

/// The router of the Lambda API, health and metrics (unknown API paths
/// fall back to `trigger`, which answers them as AWS does). The
/// [`front`] runs ahead of it and serves function URLs and trigger routes
/// itself.
fn api_router(gw: Shared) -> Router {
    Router::new()
        .route(
            "/2015-03-31/functions/{name}/invocations",
            axum::routing::post(invoke::invoke),
        )
        .route(
            "/2021-11-15/functions/{name}/response-streaming-invocations",
            axum::routing::post(stream_invoke::invoke_stream),
        )
        .route(
            "/2015-03-31/functions",
            axum::routing::get(control::list_functions).post(control::create_function),
        )
        .route(
            "/2015-03-31/functions/",
            axum::routing::get(control::list_functions).post(control::create_function),
        )
        .route(
            "/2015-03-31/functions/{name}",
            axum::routing::get(control::get_function).delete(control::delete_function),
        )
        .route(
            "/2015-03-31/functions/{name}/configuration",
            axum::routing::get(control::get_function_configuration)
                .put(control::update_function_configuration),
        )
        .route(
            "/2015-03-31/functions/{name}/code",
            axum::routing::put(control::update_function_code),
        )
        .route(
            "/2015-03-31/functions/{name}/versions",
            axum::routing::get(control::list_versions).post(control::publish_version),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases",
            axum::routing::post(control::create_alias).get(control::list_aliases),
        )
        .route(
            "/2015-03-31/functions/{name}/aliases/{alias}",
            axum::routing::put(control::update_alias)
                .delete(control::delete_alias)
                .get(control::get_alias),
        )
        .route(
            "/2017-10-31/functions/{name}/concurrency",
            axum::routing::put(control::put_function_concurrency)
                .delete(control::delete_function_concurrency),
        )
        .route(
            "/2019-09-30/functions/{name}/concurrency",
            axum::routing::get(control::get_function_concurrency),
        )
        .route(
            "/2019-09-25/functions/{name}/event-invoke-config",
            axum::routing::put(control::put_event_invoke_config)
                .post(control::update_event_invoke_config)
                .get(control::get_event_invoke_config)
                .delete(control::delete_event_invoke_config),
        )
        .route(
            "/2021-10-31/functions/{name}/url",
            axum::routing::post(control::create_function_url)
                .get(control::get_function_url)
                .put(control::update_function_url)
                .delete(control::delete_function_url),
        )
        .route(
            "/2021-10-31/functions/{name}/urls",
            axum::routing::get(control::list_function_urls),
        )
        .route(
            "/2016-08-19/account-settings",
            axum::routing::get(control::account_settings),
        )
        .route(
            "/2016-08-19/account-settings/",
            axum::routing::get(control::account_settings),
        )
        .route("/healthz", axum::routing::get(ops::healthz))
        .route("/metrics", axum::routing::get(ops::metrics))
        .fallback(routes::trigger)
        .with_state(gw)
}

/// Whether `path` is the router's (the Lambda API's, `/healthz`,
/// `/metrics`) rather than a trigger route's.
fn for_router(path: &str) -> bool {
    aws::is_api_path(path) || path == "/healthz" || path == "/metrics"
}

/// What the front holds: the gateway and the function URL index.
type FrontState = (Shared, Arc<function_url::Urls>);

/// Header on every answer a cluster node gives while it cannot reach NATS:
/// the answer comes from what this node has alone.
pub const CLUSTER_STATE_HEADER: &str = "fnhost-cluster";

/// Ahead of routing, for every request: the header-size limit, function
/// URLs, trigger routes (served here, without the router's matching and
/// boxing: they are the hot path), then the router; the cluster-state
/// header and one structured log line per request.
async fn front(
    axum::extract::State((gw, urls)): axum::extract::State<FrontState>,
    req: Request,
    next: axum::middleware::Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    // A reference count, not a copy of the path (every request passes).
    let uri = req.uri().clone();
    let header_bytes: usize = req
        .headers()
        .iter()
        .map(|(k, v)| k.as_str().len() + v.len())
        .sum();
    let mut resp = if header_bytes > MAX_HEADER_BYTES {
        plain_error(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            &format!(
                "request headers are {header_bytes} bytes; at most {MAX_HEADER_BYTES} allowed"
            ),
        )
    } else {
        match function_url::dispatch(&gw, &urls, req).await {
            Ok(resp) => resp,
            Err(req) if for_router(uri.path()) => next.run(req).await,
            Err(req) => routes::trigger(axum::extract::State(gw.clone()), req).await,
        }
    };
    // Every Lambda API answer carries a request id (invocations carry
    // their own).
    if aws::is_api_path(uri.path())
        && !resp.headers().contains_key("x-amzn-RequestId")
        && let Ok(v) = axum::http::HeaderValue::from_str(&crate::ids::fresh(""))
    {
        resp.headers_mut().insert("x-amzn-RequestId", v);
    }
    if gw.cluster.as_ref().is_some_and(|c| !c.is_connected()) {
        resp.headers_mut().insert(
            CLUSTER_STATE_HEADER,
            axum::http::HeaderValue::from_static("disconnected"),
        );
    }
    tracing::info!(
        target: "fnhost::http",
        %method,
        path = uri.path(),
        status = resp.status().as_u16(),
        duration_us = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains the
/// host (running invocations finish within `grace`).
pub async fn serve(
    listener: tokio::net::TcpListener,
    gateway: Gateway,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> Result<()> {
    let host = gateway.host.clone();
    let cluster = gateway.cluster.clone();
    let stopping = cluster.clone();
    let gw: Shared = Arc::new(gateway);
    let front_state: FrontState = (gw.clone(), Arc::new(function_url::Urls::default()));
    let app = tower_layer::Layer::layer(
        &axum::middleware::from_fn_with_state(front_state, front),
        api_router(gw),
    );
    // No Nagle delay: a response's last piece (a streamed body's end
    // chunk) would otherwise wait for the client's delayed ACK.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        let _ = tcp.set_nodelay(true);
    });
    axum::serve(
        listener,
        axum::ServiceExt::<Request>::into_make_service_with_connect_info::<std::net::SocketAddr>(
            app,
        ),
    )
    .with_graceful_shutdown(async move {
        shutdown.await;
        // Stop taking events and forwarded calls as soon as draining
        // starts; what runs finishes below.
        if let Some(c) = stopping {
            c.begin_shutdown();
        }
    })
    .await?;
    let report = tokio::task::spawn_blocking(move || host.shutdown(grace)).await?;
    // Running invocations are done (or cut off): acknowledge their events
    // and flush the answers of forwarded calls.
    if let Some(c) = cluster {
        c.finish_shutdown(std::time::Duration::from_secs(5)).await;
    }
    tracing::info!(target: "fnhost::http", rejected_queued = report.rejected_queued, still_running = report.still_running, "shut down");
    Ok(())
}
