//! Operations endpoints: liveness, readiness, the near-cache's state and
//! Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::auth::{Access, require};
use crate::app::AppState;
use crate::nearcache::{CacheCounts, CacheStatus};

/// Liveness, readiness and the API's description, served on every listener.
pub fn health_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(super::openapi::document))
}

/// The near-cache's state and metrics: the admin listener's, when split.
pub fn admin_router(state: &AppState) -> OpenApiRouter<AppState> {
    let cache = OpenApiRouter::new().routes(routes!(cache_status));
    // Scrapers carry no token; keep /metrics off public networks with
    // --admin-listen instead.
    OpenApiRouter::new()
        .routes(routes!(metrics))
        .merge(require(Access::Admin, state, cache))
}

/// `GET /healthz`.
#[derive(Serialize, utoipa::ToSchema)]
struct Health {
    /// Always `ok`.
    status: &'static str,
}

/// `GET /readyz`.
#[derive(Serialize, utoipa::ToSchema)]
struct Readiness {
    /// `ready`, or `unavailable` (with status 503).
    status: &'static str,
    /// `embedded` or `redis`.
    store: &'static str,
    store_reachable: bool,
    /// Counts only (anyone may read this); `null` without a near-cache.
    near_cache: Option<CacheCounts>,
    /// `store_unavailable` when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
}

/// `GET /v1/cache`.
#[derive(Serialize, utoipa::ToSchema)]
struct CacheBody {
    /// `null` without a near-cache (the embedded store needs none).
    near_cache: Option<CacheStatus>,
}

/// The process is up and serving HTTP; says nothing about the store.
#[utoipa::path(
    get,
    path = "/healthz",
    operation_id = "healthz",
    tag = "operations",
    responses((status = 200, description = "Up.", body = Health))
)]
async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// Ready when this instance can answer checks within its policy: the store
/// answers, or the near-cache holds every campaign and its answers are fresh
/// or may be served stale. Anyone may read it, so it gives counts only; the
/// per-campaign state is at `/v1/cache`, behind the admin token, and the
/// store's error goes to the log, never to the client.
#[utoipa::path(
    get,
    path = "/readyz",
    operation_id = "readyz",
    tag = "operations",
    responses(
        (status = 200, description = "Ready.", body = Readiness),
        (status = 503, description = "Not ready: the store cannot answer and the near-cache cannot answer without it.", body = Readiness),
    )
)]
async fn readyz(State(state): State<AppState>) -> Response {
    let cache = state.checker.cache();
    let counts = cache.map(|c| c.counts());
    let kind = state.store.kind();
    let store_error = state.store.ready().await.err();
    crate::telemetry::store_up(store_error.is_none());
    log_store_readiness(kind, store_error.as_ref().map(|e| e.to_string()));
    let ready = store_error.is_none() || cache.is_some_and(|c| c.answers_without_store());
    let mut body = Readiness {
        status: if ready { "ready" } else { "unavailable" },
        store: kind,
        store_reachable: store_error.is_none(),
        near_cache: counts,
        error: None,
        message: None,
    };
    if ready {
        return Json(body).into_response();
    }
    body.error = Some("store_unavailable");
    body.message = Some(format!(
        "the {kind} store is not ready and nothing else can answer"
    ));
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// The near-cache's state per campaign: versions, sizes, staleness.
#[utoipa::path(
    get,
    path = "/v1/cache",
    operation_id = "cache_status",
    tag = "operations",
    responses((status = 200, description = "The near-cache's state.", body = CacheBody))
)]
async fn cache_status(State(state): State<AppState>) -> Json<CacheBody> {
    Json(CacheBody {
        near_cache: state.checker.cache().map(|c| c.status()),
    })
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

/// Prometheus metrics (see docs/metrics.md).
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "operations",
    responses(
        (status = 200, description = "The Prometheus text format.", content_type = "text/plain; version=0.0.4", body = String),
        (status = 404, description = "No metrics recorder is installed (embedding only).", content_type = "text/plain", body = String),
    )
)]
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
