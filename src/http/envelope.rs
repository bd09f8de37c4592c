//! What wraps every request, in one middleware: its id (kept from the
//! client or made), the task-local scope that lets error bodies and log
//! lines name it, the `x-request-id` answer header, and the request's
//! metrics.
//!
//! One middleware rather than a layer each: every axum layer costs the
//! login path a boxed future and a clone of the stack beneath it, and
//! together the six layers this replaces cost more than the check itself.
//! The access log is here too: the id, method, route, status and latency
//! are all at hand, and a line logged inside the scope carries the id
//! without a span.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::app::meters::Meters;
use crate::app::request_id;

/// The middleware; its state is the process's [`Meters`].
pub async fn envelope(State(meters): State<Meters>, request: Request, next: Next) -> Response {
    let id = request_id::keep_or_make(request.headers());
    let method = super::method_label(request.method());
    let start = Instant::now();
    let series = meters.route(method, request.extensions().get::<MatchedPath>());
    let mut response = request_id::scope(id.clone(), async {
        let response = next.run(request).await;
        let elapsed = start.elapsed();
        let status = response.status().as_u16();
        series.record(status, elapsed.as_secs_f64());
        // Logged inside the scope, so it names the request id where every
        // other line of the request does. The route template, never the
        // raw path, which holds user ids. Borrowed fields only: the line
        // costs its formatting and one write, and nothing when the access
        // target is filtered out.
        tracing::info!(
            target: "guestlist::access",
            method,
            route = &*series.route,
            status,
            duration_us = elapsed.as_micros() as u64,
            "request"
        );
        response
    })
    .await;
    response
        .headers_mut()
        .entry(request_id::HEADER)
        .or_insert(id);
    response
}
