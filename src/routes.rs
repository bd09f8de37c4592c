//! Every route of the service, composed: the JSON API ([`crate::http`]) and
//! the portal ([`crate::portal`]), which know nothing of each other, under
//! the layers every request passes.

use axum::Router;
use axum::extract::{DefaultBodyLimit, Extension};
use axum::middleware;

use crate::app::{ApiError, AppState};
pub use crate::http::Surface;
use crate::http::{self, JSON_BODY_LIMIT, envelope, limits, openapi};

/// The whole service as one router.
pub fn router(state: AppState) -> Router {
    router_for(state, Surface::All)
}

/// The routes of `surface`, under the same layers whatever the split.
pub fn router_for(state: AppState, surface: Surface) -> Router {
    let api = http::api(&state, surface);
    let (mut deadlined, mut long) = (api.deadlined, api.long);
    if surface.serves_admin() {
        deadlined = deadlined.merge(crate::portal::router(state.clone()));
        long = long.merge(crate::portal::long_router(state.clone()));
    }
    let deadlined = deadlined.layer(middleware::from_fn_with_state(
        state.limits.request_timeout,
        limits::deadline,
    ));
    // This listener's routes, described: the document is complete only now.
    let document = openapi::Document::render(&openapi::finish(api.description));
    Router::new()
        .merge(deadlined)
        .merge(long)
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
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        .layer(middleware::from_fn_with_state(
            state.meters.clone(),
            envelope::envelope,
        ))
        .with_state(state)
}
