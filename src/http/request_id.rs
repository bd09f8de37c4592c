//! Request ids: every request gets one, every log line of the request
//! carries it (in the request's span), every response echoes it in
//! `x-request-id`, and every JSON error body names it as `request_id`, so a
//! user's error report leads straight to the log lines.
//!
//! A client's own `x-request-id` is kept when it is short and plain; any
//! other is replaced, since it is echoed and logged.

use std::sync::Arc;

use axum::Router;
use axum::extract::{MatchedPath, Request};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use super::AppState;

const HEADER: &str = "x-request-id";

/// Longest client-chosen id kept.
const MAX_LEN: usize = 64;

tokio::task_local! {
    static CURRENT: Arc<str>;
}

/// Wraps `router` in the id layers and the request trace, outermost last:
/// a bad client id is dropped, a missing one made, the span opened with it,
/// the id put in reach of error bodies, and echoed on the response.
pub fn layer(router: Router<AppState>) -> Router<AppState> {
    router
        .layer(middleware::from_fn(scope))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(span)
                // ApiError logs each failure once, at the level it deserves;
                // tower-http's default would add an ERROR line per 5xx, one
                // per readiness probe during an outage.
                .on_failure(DefaultOnFailure::new().level(tracing::Level::DEBUG)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::map_request(drop_unacceptable))
}

/// The id of the request being handled, if any.
pub fn current() -> Option<Arc<str>> {
    CURRENT.try_with(Arc::clone).ok()
}

/// Whether a client's id may be kept: at most 64 of `[A-Za-z0-9._-]`.
pub fn acceptable(id: &HeaderValue) -> bool {
    let bytes = id.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_LEN
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn drop_unacceptable(mut request: Request) -> Request {
    let headers = request.headers_mut();
    let ids = headers.get_all(HEADER);
    // Several ids are as unusable as a bad one.
    let keep = ids.iter().count() == 1 && ids.iter().all(acceptable);
    if !keep {
        headers.remove(HEADER);
    }
    request
}

fn id_of(request: &Request) -> &str {
    request
        .extensions()
        .get::<RequestId>()
        .and_then(|id| id.header_value().to_str().ok())
        .unwrap_or("")
}

/// The request's span: its id, method and route template (never the raw
/// path, which holds user ids, nor the query or headers).
fn span(request: &Request) -> tracing::Span {
    tracing::info_span!(
        "request",
        id = %id_of(request),
        method = super::method_label(request.method()),
        route = request
            .extensions()
            .get::<MatchedPath>()
            .map_or("unmatched", |p| p.as_str()),
    )
}

async fn scope(request: Request, next: Next) -> Response {
    let id: Arc<str> = Arc::from(id_of(&request));
    CURRENT.scope(id, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_short_plain_ids_are_kept() {
        let ok = |s: &str| acceptable(&HeaderValue::from_str(s).unwrap());
        assert!(ok("abc-123_x.y"));
        assert!(ok(&"a".repeat(64)));
        assert!(!ok(&"a".repeat(65)));
        assert!(!ok(""));
        assert!(!ok("a b"));
        assert!(!ok("a\"b"));
        assert!(!ok("id;rm"));
        assert!(!acceptable(
            &HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()
        ));
    }
}
