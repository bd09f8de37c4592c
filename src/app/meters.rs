//! Request and check metrics: handles registered once per label set and
//! then reused, recorded by the HTTP envelope and the login path.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use axum::extract::MatchedPath;
use metrics::{Counter, Histogram};

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
    /// The matched route's pattern (never the raw path), or `unmatched`.
    pub route: Box<str>,
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
