//! Operations endpoints: `/healthz` and `/metrics`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::state::Shared;

/// `GET /healthz`: 200 `{"status": "ok"}`; with a cluster, 503
/// `{"status": "degraded"}` while NATS or JetStream cannot be reached.
pub(super) async fn healthz(State(gw): State<Shared>) -> Response {
    let stats = gw.host.stats();
    let mut body = json!({
        "status": "ok",
        "functions": gw.host.functions().len(),
        "compiles": stats.compiles,
        "cache_hits": stats.cache_hits,
    });
    let mut status = StatusCode::OK;
    if let Some(c) = &gw.cluster {
        let (ok, cluster) = c.health().await;
        body["cluster"] = cluster;
        if !ok {
            body["status"] = json!("degraded");
            status = StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    (status, axum::Json(body)).into_response()
}

pub(super) async fn metrics(State(gw): State<Shared>) -> Response {
    let mut text = gw.host.prometheus();
    if let Some(c) = &gw.cluster {
        text.push_str(&c.prometheus());
    }
    ([("content-type", "text/plain; version=0.0.4")], text).into_response()
}
