//! The HTTP API: one file per route group, each exporting `router()`.
//!
//! - [`campaigns`]: campaign CRUD;
//! - [`audience`]: replace, add and remove of audiences;
//! - [`export`]: the audience export, streamed;
//! - [`checks`]: the login path;
//! - [`ops`]: health, readiness and metrics;
//! - [`audit`]: the audit log of every change, and who made it;
//! - [`auth`]: the token policy, applied to all of the above as one layer;
//! - [`error`]: the error type every handler returns, and every error code;
//! - [`openapi`]: the OpenAPI document the route groups build, at `/openapi.json`;
//! - [`envelope`]: wraps every request: its id, its scope and its metrics;
//! - [`request_id`]: the id that ties a request's logs and error body together;
//! - [`limits`]: request deadlines, and the idle limit of upload bodies;
//! - [`listener`]: accepts connections (HTTP or HTTPS) under a cap and timeouts;
//! - [`limiter`]: the limiter on failed tokens, shared with the portal's sign-in;
//! - [`peer`]: the client's address, through trusted proxies.
//!
//! [`router_for`] picks the groups one listener serves ([`Surface`]): all
//! of them, or the checks apart from the admin surface (`--admin-listen`).

pub mod audience;
pub mod audit;
pub mod auth;
pub mod campaigns;
pub mod checks;
pub mod envelope;
pub mod error;
pub mod export;
pub mod limiter;
pub mod limits;
pub mod listener;
pub mod openapi;
pub mod ops;
pub mod peer;
pub mod request_id;
pub mod versions;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension, FromRequest, Request};
use axum::http::Method;
use axum::middleware;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use utoipa_axum::router::OpenApiRouter;

use crate::lookup::Checker;
use crate::store::Store;
pub use auth::Tokens;
pub use error::ApiError;
pub use limits::Limits;
pub use listener::ListenerOptions;

/// JSON bodies other than audiences are small; this bounds them.
pub const JSON_BODY_LIMIT: usize = 1 << 20;

/// Shared by every handler, and cloned several times per request by the
/// middleware and extractors, so it is one pointer: cloning it is one
/// reference-count increment, where a struct of a dozen `Arc`s would bounce
/// a dozen shared counters between the worker threads on every request.
/// Fields read through `Deref`; a test that changes a field before building
/// the router gets its own copy (`DerefMut` copies on write).
#[derive(Clone)]
pub struct AppState(Arc<Services>);

/// What the handlers share; see [`AppState`].
#[derive(Clone)]
pub struct Services {
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
    /// Exports streaming now, each holding an audience in memory.
    pub exports: audience::UploadSlots,
    /// Renders `/metrics`; `None` when no recorder is installed (some tests).
    pub metrics: Option<PrometheusHandle>,
    /// Portal sessions.
    pub portal: Arc<crate::portal::Portal>,
    /// Request deadlines and the upload idle limit.
    pub limits: Limits,
    /// Failed tokens per client, from the API and the portal's sign-in.
    pub limiter: Arc<limiter::FailureLimiter>,
    /// Whose `X-Forwarded-For` names the client.
    pub proxies: Arc<peer::TrustedProxies>,
    /// Request and check metrics. Every label comes from a closed set,
    /// since each new value is a series kept for the life of the process:
    /// the matched pattern (never the raw path), a known method or `other`,
    /// and the status (a number from 100 to 999).
    pub meters: envelope::Meters,
}

/// Which routes a listener serves. With `--admin-listen`, the login path
/// and the admin surface get a listener each, so an operator can keep the
/// portal, writes and scraping off the network that logins come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Surface {
    /// Everything on one listener (no `--admin-listen`).
    All,
    /// Checks, health and readiness.
    Checks,
    /// The portal, campaign reads and writes, audiences, the audit log, the
    /// near-cache's state and `/metrics`, plus health and readiness.
    Admin,
}

impl Surface {
    fn serves_checks(self) -> bool {
        self != Surface::Admin
    }

    fn serves_admin(self) -> bool {
        self != Surface::Checks
    }
}

/// The whole API as one router.
pub fn router(state: AppState) -> Router {
    router_for(state, Surface::All)
}

/// The routes of `surface`, under the same layers whatever the split.
pub fn router_for(state: AppState, surface: Surface) -> Router {
    // Uploads can take minutes; their bodies have an idle limit instead.
    let mut deadlined = OpenApiRouter::with_openapi(openapi::base()).merge(ops::health_router());
    if surface.serves_checks() {
        deadlined = deadlined.merge(checks::router());
    }
    if surface.serves_admin() {
        deadlined = deadlined
            .merge(campaigns::router())
            .merge(ops::admin_router())
            .merge(audit::router());
    }
    let (mut deadlined, mut api) = deadlined.split_for_parts();
    if surface.serves_admin() {
        deadlined = deadlined.merge(crate::portal::router(state.clone()));
    }
    let deadlined = deadlined.layer(middleware::from_fn_with_state(
        state.limits.request_timeout,
        limits::deadline,
    ));
    let mut router = Router::new().merge(deadlined);
    if surface.serves_admin() {
        let (audience, audience_api) = audience::router().split_for_parts();
        router = router.merge(audience);
        api.merge(audience_api);
    }
    // This listener's routes, described: the document is complete only now.
    let document = openapi::Document::render(&openapi::finish(api));
    let router = router
        .layer(Extension(document))
        .fallback(|| async {
            ApiError::NotFound {
                code: "route_not_found",
                message: "no such endpoint; /openapi.json lists them".into(),
            }
        })
        // A known path with another method: the same JSON error body, not
        // axum's empty 405.
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed(
                "this endpoint does not take this method; /openapi.json lists the methods of each path".into(),
            )
        })
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.meters.clone(),
            envelope::envelope,
        ));
    router.with_state(state)
}

/// Serves `app` on an already-bound listener with the default connection
/// limits until `shutdown` resolves, then drains in-flight requests. Tests
/// bind port 0 and pass the listener in.
pub async fn run(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    listener::serve(listener, app, ListenerOptions::default(), shutdown).await
}

/// A method as metrics and logs name it: one of the standard methods, or
/// `other` for whatever string a client made up.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// `axum::Json` with our error body on rejection.
pub struct ApiJson<T>(pub T);

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

impl std::ops::DerefMut for AppState {
    fn deref_mut(&mut self) -> &mut Services {
        Arc::make_mut(&mut self.0)
    }
}

impl From<Services> for AppState {
    fn from(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl AppState {
    /// State for `store` with no near-cache, the usual test and embedded set-up.
    pub fn new(store: Arc<dyn Store>, tokens: Tokens, max_upload_bytes: u64) -> AppState {
        AppState::from(Services {
            checker: Checker::new(store.clone(), None),
            store,
            tokens: Arc::new(tokens),
            max_upload_bytes,
            max_audience: crate::ingest::DEFAULT_MAX_AUDIENCE,
            uploads: audience::UploadSlots::new(audience::DEFAULT_UPLOAD_SLOTS),
            exports: audience::UploadSlots::new(audience::DEFAULT_EXPORT_SLOTS),
            metrics: None,
            portal: Arc::default(),
            limits: Limits::default(),
            limiter: Arc::default(),
            proxies: Arc::default(),
            meters: envelope::Meters::default(),
        })
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
    // The write's log lines name the request, as the handler's do.
    let task = match request_id::current() {
        Some(id) => tokio::spawn(request_id::scope(id, work)),
        None => tokio::spawn(work),
    };
    task.await
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
