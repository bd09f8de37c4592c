//! The HTTP API: one file per route group, each exporting `router()`.
//!
//! - [`campaigns`]: campaign CRUD;
//! - [`audience`]: replace, add, remove and export of audiences;
//! - [`checks`]: the login path;
//! - [`ops`]: health, readiness and metrics;
//! - [`audit`]: the audit log of every change, and who made it;
//! - [`auth`]: the token policy, applied to all of the above as one layer;
//! - [`error`]: the error type every handler returns.

pub mod audience;
pub mod audit;
pub mod auth;
pub mod campaigns;
pub mod checks;
pub mod error;
pub mod ops;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequest, MatchedPath, Request};
use axum::middleware::{self, Next};
use axum::response::Response;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tower_http::trace::TraceLayer;

use crate::lookup::Checker;
use crate::store::Store;
pub use auth::Tokens;
pub use error::ApiError;

/// JSON bodies other than audiences are small; this bounds them.
pub const JSON_BODY_LIMIT: usize = 1 << 20;

/// Shared by every handler; cloning copies a few pointers.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    /// The login path: near-cache first (when there is one), then the store.
    pub checker: Checker,
    pub tokens: Arc<Tokens>,
    /// Largest audience upload, in bytes.
    pub max_upload_bytes: u64,
    /// Most distinct user ids one upload may hold.
    pub max_audience: u64,
    /// Uploads allowed to parse at once.
    pub uploads: audience::UploadSlots,
    /// Renders `/metrics`; `None` when no recorder is installed (some tests).
    pub metrics: Option<PrometheusHandle>,
    /// Portal sessions and the sign-in limiter.
    pub portal: Arc<crate::portal::Portal>,
}

/// The whole API as one router.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(campaigns::router())
        .merge(audience::router())
        .merge(checks::router())
        .merge(ops::router())
        .merge(audit::router())
        .merge(crate::portal::router(state.clone()))
        .fallback(|| async {
            ApiError::NotFound {
                code: "route_not_found",
                message: "no such endpoint; see the README for the API".into(),
            }
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn(record_metrics))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}

/// Serves `app` on an already-bound listener until `shutdown` resolves, then
/// drains in-flight requests. Tests bind port 0 and pass the listener in.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // Connection info gives the portal's sign-in limiter a client address.
    let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Request counts and latency per route (the matched pattern, never the raw
/// path, so user ids do not explode the label set).
async fn record_metrics(request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().as_str().to_string();
    let start = Instant::now();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("guestlist_http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("guestlist_http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    response
}

/// `axum::Json` with our error body on rejection.
pub struct ApiJson<T>(pub T);

impl AppState {
    /// State for `store` with no near-cache, the usual test and embedded set-up.
    pub fn new(store: Arc<dyn Store>, tokens: Tokens, max_upload_bytes: u64) -> AppState {
        AppState {
            checker: Checker::new(store.clone(), None),
            store,
            tokens: Arc::new(tokens),
            max_upload_bytes,
            max_audience: crate::ingest::DEFAULT_MAX_AUDIENCE,
            uploads: audience::UploadSlots::new(audience::DEFAULT_UPLOAD_SLOTS),
            metrics: None,
            portal: Arc::default(),
        }
    }
}

impl<S, T> FromRequest<S> for ApiJson<T>
where
    axum::Json<T>: FromRequest<S, Rejection = axum::extract::rejection::JsonRejection>,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let axum::Json(value) = axum::Json::<T>::from_request(req, state).await?;
        Ok(ApiJson(value))
    }
}

/// Runs a write to completion even if the client goes away. Hyper drops a
/// handler's future when its connection closes; a write cut off there would
/// skip its announcement, its audit record and its lease release.
pub async fn detached<T: Send + 'static>(
    work: impl Future<Output = Result<T, ApiError>> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::spawn(work)
        .await
        .map_err(|e| ApiError::Internal(format!("write task failed: {e}")))?
}

/// Parses a user id from a path segment, by the same rule as upload bodies.
pub fn parse_user_id(raw: &str) -> Result<u64, ApiError> {
    crate::domain::parse_user_id(raw.as_bytes())
        .map_err(|why| ApiError::bad_request("invalid_user_id", why.message(raw.as_bytes())))
}

/// Campaign ids from paths are checked before they reach a store key: a
/// malformed one cannot name a campaign, so it is simply not found.
pub fn checked_campaign_id(raw: &str) -> Result<&str, ApiError> {
    crate::domain::validate_id(raw).map_err(|_| ApiError::NotFound {
        code: "campaign_not_found",
        message: format!("campaign {raw:?} does not exist"),
    })?;
    Ok(raw)
}
