//! The admin portal at `/admin`: server-rendered pages for the people who run
//! campaigns.
//!
//! - sign-in sessions, CSRF tokens and cookies live in
//!   [`crate::app::sessions`], since the API's audience uploads take them too;
//! - [`pages`]: one file per page (its template struct, forms and handlers),
//!   rendering `templates/portal/`.
//!
//! Every write goes through [`crate::app::writes`], as the API's do (and the
//! audience upload streams straight to the API's endpoint), so the portal
//! cannot validate, store or audit a change differently from a script.
//!
//! Two layers guard the pages: [`guard`] sends a browser without a session to
//! the sign-in page (the same redirect whatever the path, so nothing about
//! what exists leaks) and refuses any state-changing form whose CSRF token is
//! missing or wrong with 403; [`headers`] adds a strict content security
//! policy, since every script and style is served from here.

pub mod pages;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};

use crate::app::AppState;
use crate::app::sessions::Session;
pub use crate::app::sessions::{DEFAULT_CONFIRM_REMOVAL_SHARE, Portal};

/// Portal forms are a few fields; uploads go to the API, not here.
const FORM_LIMIT: usize = 64 * 1024;

/// The pages and forms, for under the request deadline.
pub fn router(state: AppState) -> Router<AppState> {
    // `/admin` itself is the nested `/`; this is the same with a slash.
    let slash = Router::new().route(
        "/admin/",
        axum::routing::get(|| async { Redirect::to("/admin/campaigns") }),
    );
    guarded(pages::router(), state).merge(slash)
}

/// The forms whose write can take minutes ([`pages::long_router`]), for
/// outside the request deadline.
pub fn long_router(state: AppState) -> Router<AppState> {
    guarded(pages::long_router(), state)
}

/// Mounts `routes` under `/admin` behind the session guard and the
/// portal's headers. The layers see the whole path.
fn guarded(routes: Router<AppState>, state: AppState) -> Router<AppState> {
    Router::new()
        .nest("/admin", routes)
        .layer(middleware::from_fn_with_state(state, guard))
        .layer(middleware::from_fn(headers))
        .layer(DefaultBodyLimit::max(FORM_LIMIT))
}

/// Paths open without a session.
fn is_public(path: &str) -> bool {
    path == "/admin/signin" || path.starts_with("/admin/assets/")
}

/// Requires a session on every page but sign-in, and a matching CSRF token
/// (form field `csrf`) on every POST. The session travels to the handler as
/// a request extension.
async fn guard(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if is_public(path) {
        return next.run(request).await;
    }
    let Some(session) = state.portal.sessions.from_headers(request.headers()) else {
        if request.method() == Method::POST {
            // A form posted without a live session cannot be trusted with a
            // redirect either: the CSRF check below could not have run.
            return forbidden("your session has ended; sign in again");
        }
        return Redirect::to("/admin/signin").into_response();
    };
    let mut request = if request.method() == Method::POST {
        let (parts, body) = request.into_parts();
        let Ok(bytes) = to_bytes(body, FORM_LIMIT).await else {
            return (StatusCode::PAYLOAD_TOO_LARGE, "form too large").into_response();
        };
        let presented = form_field(&bytes, "csrf");
        if !presented.is_some_and(|p| session.csrf_matches(&p)) {
            tracing::warn!(path = %parts.uri.path(), actor = %session.actor, "portal form refused: missing or wrong CSRF token");
            return forbidden(
                "this form is missing its security token or it is wrong; reload the page and try again",
            );
        }
        Request::from_parts(parts, Body::from(bytes))
    } else {
        request
    };
    request.extensions_mut().insert(session);
    next.run(request).await
}

fn forbidden(message: &str) -> Response {
    (StatusCode::FORBIDDEN, pages::error_page(403, message)).into_response()
}

/// The first value of `name` in a urlencoded form body.
pub fn form_field(body: &[u8], name: &str) -> Option<String> {
    serde_urlencoded::from_bytes::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// Security headers for every portal response.
async fn headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The session the guard attached; handlers behind the guard can rely on it.
pub type Signed = axum::Extension<Session>;
