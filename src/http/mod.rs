//! The HTTP API: one file per route group, each exporting `router()`.
//!
//! - [`campaigns`]: campaign CRUD;
//! - [`audience`]: replace, add and remove of audiences;
//! - [`export`]: the audience export, streamed;
//! - [`checks`]: the login path;
//! - [`ops`]: health, readiness and metrics;
//! - [`versions`]: the audience history and rollback;
//! - [`audit`]: the audit log of every change, and who made it;
//! - [`auth`]: the token policy; each group states the access its routes
//!   need beside them ([`auth::require`]);
//! - [`openapi`]: the OpenAPI document the route groups build, at `/openapi.json`;
//! - [`envelope`]: wraps every request: its id, its scope and its metrics;
//! - [`limits`]: request deadlines, and the idle limit of upload bodies;
//! - [`listener`]: accepts connections (HTTP or HTTPS) under a cap and timeouts.
//!
//! What the handlers share (state, errors, the writes themselves) is in
//! [`crate::app`], which the portal uses too. [`api`] picks the groups one
//! listener serves ([`Surface`]): all of them, or the checks apart from the
//! admin surface (`--admin-listen`); [`crate::routes`] adds the portal and
//! the layers around everything.

pub mod audience;
pub mod audit;
pub mod auth;
pub mod campaigns;
pub mod checks;
pub mod envelope;
pub mod export;
pub mod limits;
pub mod listener;
pub mod openapi;
pub mod ops;
pub mod versions;

use axum::Router;
use axum::extract::{FromRequest, Request};
use axum::http::Method;
use tokio::net::TcpListener;
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::app::{ApiError, AppState};
pub use listener::ListenerOptions;

/// JSON bodies other than audiences are small; this bounds them.
pub const JSON_BODY_LIMIT: usize = 1 << 20;

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
    pub fn serves_checks(self) -> bool {
        self != Surface::Admin
    }

    pub fn serves_admin(self) -> bool {
        self != Surface::Checks
    }
}

/// The API routes one listener serves, split by the time limit they run under.
pub struct Api {
    /// Routes under `--request-timeout`.
    pub deadlined: Router<AppState>,
    /// Uploads and rollbacks, which can take minutes: an upload's body has
    /// an idle limit instead, and a write runs detached to its end.
    pub long: Router<AppState>,
    /// Their description, for `/openapi.json` (see [`openapi::finish`]).
    pub description: OpenApi,
}

/// The API's routes for `surface`, each group guarded by the access it
/// states.
pub fn api(state: &AppState, surface: Surface) -> Api {
    let mut deadlined = OpenApiRouter::with_openapi(openapi::base()).merge(ops::health_router());
    if surface.serves_checks() {
        deadlined = deadlined.merge(checks::router(state));
    }
    if surface.serves_admin() {
        deadlined = deadlined
            .merge(campaigns::router(state))
            .merge(ops::admin_router(state))
            .merge(audit::router(state));
    }
    let (deadlined, mut description) = deadlined.split_for_parts();
    let mut long = Router::new();
    if surface.serves_admin() {
        let (audience, audience_api) = audience::router(state).split_for_parts();
        long = audience;
        description.merge(audience_api);
    }
    Api {
        deadlined,
        long,
        description,
    }
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

/// Parses a user id from a path segment, by the same rule as upload bodies.
pub fn parse_user(raw: &str) -> Result<crate::ids::User, ApiError> {
    crate::ids::User::parse(raw)
        .map_err(|why| ApiError::bad_request("invalid_user_id", why.message(raw.as_bytes())))
}
