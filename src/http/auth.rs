//! Bearer-token auth, applied per route group ([`require`]).
//!
//! Admin tokens guard every write and the audience export; an optional check
//! token guards reads and checks. Tokens are compared in constant time and
//! never logged ([`crate::app::tokens`]). Each admin token has a name, which
//! becomes the request's [`Actor`] for logs. A client that keeps presenting
//! wrong tokens is answered 429 for a while ([`crate::app::limiter`]), and
//! each wrong token is logged with the client's address and the route,
//! never the token.

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::Response;
use utoipa_axum::router::OpenApiRouter;

use super::AppState;
use crate::app::error::ApiError;
pub use crate::app::tokens::{Actor, Tokens};

/// What a group of routes needs from the caller. Each route group states
/// it beside its routes ([`require`]); routes given none are open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Checks and campaign reads: the check token when one is set (an
    /// admin token too), else anyone.
    Read,
    /// Writes, the export, the audit log, the history, the near-cache's
    /// state: an admin token.
    Admin,
    /// The audience uploads: an admin token, or a portal session with its
    /// CSRF token (the portal's upload form streams to them).
    Upload,
}

/// Guards every route of `routes` with `access`: enforced by a route layer
/// (so a path no route matches is a plain 404) and described in the
/// routes' OpenAPI operations, from the same value.
pub fn require(
    access: Access,
    state: &AppState,
    routes: OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let mut routes = routes.route_layer(middleware::from_fn_with_state(
        (state.clone(), access),
        authenticate,
    ));
    super::openapi::secure(routes.get_openapi_mut(), access);
    routes
}

/// The header carrying a portal session's CSRF token on API calls.
pub const CSRF_HEADER: &str = "x-csrf-token";

fn bearer(request: &Request) -> Option<&[u8]> {
    let value = request.headers().get(header::AUTHORIZATION)?.as_bytes();
    let token = value
        .strip_prefix(b"Bearer ")
        .or_else(|| value.strip_prefix(b"bearer "))?;
    Some(token.trim_ascii())
}

async fn authenticate(
    State((state, access)): State<(AppState, Access)>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let tokens = &state.tokens;
    let presented = bearer(&request);
    // Checks that hold what they need skip the limiter: the login path must
    // not go down because someone behind the same NAT or load balancer sent
    // wrong tokens. Letting a check token through while its client is
    // limited gives a guesser nothing useful: tokens are at least 16
    // characters, and this only answers reads.
    if access == Access::Read
        && (!tokens.has_check_token() || presented.is_some_and(|p| tokens.is_check_token(p)))
    {
        if let Some(name) = presented.and_then(|p| tokens.admin_name(p)) {
            let name = name.to_string();
            request.extensions_mut().insert(Actor(name));
        }
        return Ok(next.run(request).await);
    }
    // A limited client is refused before an admin token is compared: a
    // right guess must not get through while it is limited.
    let client = presented.map(|_| {
        state
            .proxies
            .client_of(request.extensions(), request.headers())
    });
    if let Some(client) = client
        && let Err(wait) = state.limiter.check(client)
    {
        return Err(ApiError::TooManyFailures(wait));
    }
    let mut actor = presented
        .and_then(|p| tokens.admin_name(p))
        .map(str::to_string);
    // The portal's upload form streams to the audience endpoints from the
    // browser, with its session cookie instead of a token; only those take a
    // cookie, so every other API call still needs a bearer token. A cookie is sent
    // by the browser on its own, so it counts only with the session's CSRF
    // token in a header, which another site's page cannot read or set.
    if presented.is_none()
        && access == Access::Upload
        && let Some(session) = state.portal.sessions.from_headers(request.headers())
    {
        let csrf = request
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok());
        if !csrf.is_some_and(|c| session.csrf_matches(c)) {
            return Err(ApiError::Forbidden(
                "a portal session needs its CSRF token in the X-CSRF-Token header".into(),
            ));
        }
        actor = Some(session.actor);
    }
    let allowed = match access {
        Access::Admin | Access::Upload => actor.is_some(),
        Access::Read => {
            !tokens.has_check_token()
                || actor.is_some()
                || presented.is_some_and(|p| tokens.is_check_token(p))
        }
    };
    if !allowed {
        if let Some(client) = client {
            let route = request
                .extensions()
                .get::<MatchedPath>()
                .map_or("unmatched", |p| p.as_str());
            let method = request.method();
            // A known token on the wrong endpoint is a mistake (or a leaked
            // check token probing further), not a guess: logged, not counted.
            let known = presented
                .is_some_and(|p| tokens.admin_name(p).is_some() || tokens.is_check_token(p));
            if known {
                tracing::warn!(%client, %method, route, "refused a token on an endpoint it does not cover");
            } else {
                state.limiter.failed(client);
                tracing::warn!(%client, %method, route, "refused a bearer token");
            }
        }
        let message = match (presented, access) {
            (None, Access::Admin | Access::Upload) => {
                "this endpoint needs an admin token: send Authorization: Bearer <token>"
            }
            (None, _) => "this endpoint needs a token: send Authorization: Bearer <token>",
            (Some(_), _) => "the token is not valid for this endpoint",
        };
        return Err(ApiError::Unauthorized(message.into()));
    }
    if let Some(name) = actor {
        request.extensions_mut().insert(Actor(name));
    }
    Ok(next.run(request).await)
}
