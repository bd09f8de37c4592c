//! Operations endpoints: liveness, readiness, the near-cache's state and
//! Prometheus metrics.

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::AppState;

/// Liveness and readiness, served on every listener.
pub fn health_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
}

/// The near-cache's state and metrics: the admin listener's, when split.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/v1/cache", get(cache_status))
        .route("/metrics", get(metrics))
}

/// The process is up and serving HTTP; says nothing about the store.
async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// Ready when this instance can answer checks within its policy: the store
/// answers, or the near-cache holds every campaign and its answers are fresh
/// or may be served stale. Anyone may read it, so it gives counts only; the
/// per-campaign state is at `/v1/cache`, behind the admin token, and the
/// store's error goes to the log, never to the client.
async fn readyz(State(state): State<AppState>) -> Response {
    let cache = state.checker.cache();
    let counts = cache.map(|c| c.counts());
    let kind = state.store.kind();
    let store_error = state.store.ready().await.err();
    crate::telemetry::store_up(store_error.is_none());
    log_store_readiness(kind, store_error.as_ref().map(|e| e.to_string()));
    let ready = store_error.is_none() || cache.is_some_and(|c| c.answers_without_store());
    let mut body = json!({
        "status": if ready { "ready" } else { "unavailable" },
        "store": kind,
        "store_reachable": store_error.is_none(),
        "near_cache": counts,
    });
    if ready {
        return Json(body).into_response();
    }
    body["error"] = "store_unavailable".into();
    body["message"] = format!("the {kind} store is not ready and nothing else can answer").into();
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The near-cache's state per campaign: versions, sizes, staleness.
async fn cache_status(State(state): State<AppState>) -> Json<serde_json::Value> {
    Json(json!({ "near_cache": state.checker.cache().map(|c| c.status()) }))
}

/// How often an unchanged store error is logged again while probes repeat it.
const REPEAT_LOG_EVERY: Duration = Duration::from_secs(60);

/// The last store error logged, and when. Probes arrive every few seconds
/// from each load balancer; the log gets a line when the reason changes, when
/// the store recovers, and once a minute while it stays the same. One process
/// serves one store, so a process-wide record is enough.
static LAST_STORE_ERROR: Mutex<Option<(String, Instant)>> = Mutex::new(None);

fn log_store_readiness(kind: &str, error: Option<String>) {
    let mut last = LAST_STORE_ERROR.lock().expect("lock poisoned");
    match (error, last.as_ref()) {
        (None, None) => {}
        (None, Some(_)) => {
            tracing::info!(store = kind, "the store is ready again");
            *last = None;
        }
        (Some(e), Some((prev, at))) if *prev == e && at.elapsed() < REPEAT_LOG_EVERY => {}
        (Some(e), _) => {
            tracing::warn!(store = kind, error = %e, "the store is not ready");
            *last = Some((e, Instant::now()));
        }
    }
}

/// Longest a scrape waits on the store for `guestlist_store_up`: a hung
/// store must not hang the scrape that would show it.
const SCRAPE_PROBE_TIMEOUT: Duration = Duration::from_secs(1);

async fn metrics(State(state): State<AppState>) -> Response {
    match &state.metrics {
        Some(handle) => {
            let probe = tokio::time::timeout(SCRAPE_PROBE_TIMEOUT, state.store.ready()).await;
            crate::telemetry::store_up(matches!(probe, Ok(Ok(()))));
            (
                [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                crate::telemetry::render(handle),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "metrics recorder not installed\n").into_response(),
    }
}
