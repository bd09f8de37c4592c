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

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;
use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Counter, Histogram};

use super::request_id;

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

/// Metric handles, registered once per label set and then reused: building
/// a key from labels and looking it up in the recorder on every request
/// cost several allocations and hashes each time.
///
/// Cheap to clone. Built with the router, after the recorder is installed
/// (a handle taken before that would count nowhere, for good).
#[derive(Clone, Default)]
pub struct Meters(Arc<MetersInner>);

#[derive(Default)]
struct MetersInner {
    /// Per matched route pattern, then per method. Reads far outnumber
    /// inserts (one per new label set), so readers take no lock.
    routes: ArcSwap<HashMap<Box<str>, Vec<Arc<RouteSeries>>>>,
    /// `guestlist_checks_total` per (kind, outcome).
    checks: ArcSwap<Vec<(&'static str, &'static str, Counter)>>,
}

/// One route and method: its latency histogram and a counter per status.
pub struct RouteSeries {
    method: &'static str,
    route: Box<str>,
    duration: Histogram,
    statuses: ArcSwap<Vec<(u16, Counter)>>,
}

/// The label of requests no route matched.
const UNMATCHED: &str = "unmatched";

impl Meters {
    /// The series of `method` on `route` (`None`: no route matched).
    pub fn route(&self, method: &'static str, route: Option<&MatchedPath>) -> Arc<RouteSeries> {
        let route = route.map_or(UNMATCHED, MatchedPath::as_str);
        let found = self
            .0
            .routes
            .load()
            .get(route)
            .and_then(|series| series.iter().find(|s| s.method == method).map(Arc::clone));
        found.unwrap_or_else(|| self.register_route(method, route))
    }

    #[cold]
    fn register_route(&self, method: &'static str, route: &str) -> Arc<RouteSeries> {
        let made = Arc::new(RouteSeries {
            method,
            route: route.into(),
            duration: metrics::histogram!(
                "guestlist_http_request_duration_seconds",
                "method" => method,
                "route" => route.to_string()
            ),
            statuses: ArcSwap::default(),
        });
        let mut kept = made.clone();
        self.0.routes.rcu(|routes| {
            let mut routes = HashMap::clone(routes);
            let series = routes.entry(route.into()).or_default();
            // Another thread may have registered it meanwhile; one handle wins.
            match series.iter().find(|s| s.method == method) {
                Some(existing) => kept = existing.clone(),
                None => {
                    kept = made.clone();
                    series.push(made.clone());
                }
            }
            routes
        });
        kept
    }

    /// Counts `n` checks of `kind` that ended in `outcome`.
    pub fn checks(&self, kind: &'static str, outcome: &'static str, n: u64) {
        let checks = self.0.checks.load();
        if let Some((_, _, counter)) = checks.iter().find(|(k, o, _)| *k == kind && *o == outcome) {
            counter.increment(n);
            return;
        }
        drop(checks);
        let counter =
            metrics::counter!("guestlist_checks_total", "kind" => kind, "outcome" => outcome);
        counter.increment(n);
        self.0.checks.rcu(|checks| {
            let mut checks = Vec::clone(checks);
            if !checks.iter().any(|(k, o, _)| *k == kind && *o == outcome) {
                checks.push((kind, outcome, counter.clone()));
            }
            checks
        });
    }
}

impl RouteSeries {
    /// One request that ended in `status` after `seconds`.
    pub fn record(&self, status: u16, seconds: f64) {
        self.duration.record(seconds);
        let statuses = self.statuses.load();
        if let Some((_, counter)) = statuses.iter().find(|(s, _)| *s == status) {
            counter.increment(1);
            return;
        }
        drop(statuses);
        let counter = metrics::counter!(
            "guestlist_http_requests_total",
            "method" => self.method,
            "route" => self.route.to_string(),
            "status" => status.to_string()
        );
        counter.increment(1);
        self.statuses.rcu(|statuses| {
            let mut statuses = Vec::clone(statuses);
            if !statuses.iter().any(|(s, _)| *s == status) {
                statuses.push((status, counter.clone()));
            }
            statuses
        });
    }
}
