//! Operations endpoints: liveness, readiness and Prometheus metrics.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use super::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

/// The process is up and serving HTTP; says nothing about the store.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when the store answers; 503 with the reason otherwise, so a load
/// balancer takes the instance out while Redis is unreachable.
/// The near-cache's state (loaded campaigns, versions, staleness) is part of
/// the answer either way, since it is what answers logins during an outage.
async fn readyz(State(state): State<AppState>) -> Response {
    let cache = state.checker.cache().map(|c| c.status());
    match state.store.ready().await {
        Ok(()) => Json(json!({
            "status": "ready",
            "store": state.store.kind(),
            "near_cache": cache,
        }))
        .into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "error": "store_unavailable",
                "message": format!("the {} store is not ready: {e}", state.store.kind()),
                "store": state.store.kind(),
                "near_cache": cache,
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
            handle.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}
