//! Every metric the process exports, in one table: its name, type, labels,
//! help text and histogram buckets. Start-up describes each one to the
//! recorder (so every family gets `# HELP`), the buckets come from here, and
//! `docs/metrics.md` is checked against this table by a test, which also
//! checks that every metric name in the source is listed here.

/// A Prometheus metric type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One metric family.
#[derive(Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
    /// Upper bounds in seconds (or the metric's unit); histograms only.
    pub buckets: &'static [f64],
    /// Read from `/proc` at scrape time ([`super::process`]) rather than
    /// recorded through the `metrics` facade.
    pub at_scrape: bool,
}

/// A request served by this process: from the fastest near-cache answer
/// (tens of microseconds) to the request deadline.
const REQUEST_BUCKETS: &[f64] = &[
    0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0,
];

/// One Redis call: a check is a round trip of well under a millisecond, an
/// admin call or a bulk chunk takes up to the store timeout.
const STORE_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// The lag is computed from a millisecond timestamp written by another
/// process, so nothing under a millisecond means anything; a reload waits
/// on a snapshot of up to millions of ids, so the tail reaches tens of
/// seconds.
const LAG_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// Fetching and building one campaign's bitmap: a millisecond for a small
/// audience, tens of seconds for tens of millions of ids.
const RELOAD_BUCKETS: &[f64] = &[
    0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
        buckets: &[],
        at_scrape: false,
    }
}

const fn histogram(
    name: &'static str,
    labels: &'static [&'static str],
    buckets: &'static [f64],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind: Kind::Histogram,
        labels,
        help,
        buckets,
        at_scrape: false,
    }
}

const fn process(name: &'static str, kind: Kind, help: &'static str) -> Metric {
    Metric {
        name,
        kind,
        labels: &[],
        help,
        buckets: &[],
        at_scrape: true,
    }
}

use Kind::{Counter, Gauge};

/// The table; `docs/metrics.md` lists the same names.
pub const METRICS: &[Metric] = &[
    metric(
        "guestlist_build_info",
        Gauge,
        &["version"],
        "Always 1; the version label names the running build.",
    ),
    metric(
        "guestlist_http_requests_total",
        Counter,
        &["method", "route", "status"],
        "HTTP requests answered, by method, route template and status.",
    ),
    histogram(
        "guestlist_http_request_duration_seconds",
        &["method", "route"],
        REQUEST_BUCKETS,
        "Time from a request reaching the router to its response head, in seconds.",
    ),
    metric(
        "guestlist_checks_total",
        Counter,
        &["kind", "outcome"],
        "Membership checks answered, by kind (member, campaigns_for, batch) and outcome or error code.",
    ),
    metric(
        "guestlist_uploads_in_progress",
        Gauge,
        &[],
        "Audience uploads being read or written now.",
    ),
    metric(
        "guestlist_exports_in_progress",
        Gauge,
        &[],
        "Audience exports being streamed now.",
    ),
    metric(
        "guestlist_store_up",
        Gauge,
        &[],
        "1 when the store answered its last readiness probe (on /readyz or a scrape), else 0.",
    ),
    histogram(
        "guestlist_store_duration_seconds",
        &["op"],
        STORE_BUCKETS,
        "Time of one Redis call, by operation, in seconds.",
    ),
    metric(
        "guestlist_store_errors_total",
        Counter,
        &["op", "kind"],
        "Redis calls that failed, by operation and kind (timeout, fenced, redis).",
    ),
    metric(
        "guestlist_upload_backoffs_total",
        Counter,
        &[],
        "Times write pacing slowed an upload because Redis round trips grew slower.",
    ),
    metric(
        "guestlist_upload_pace_depth",
        Gauge,
        &[],
        "Commands per pipelined round trip that write pacing currently allows.",
    ),
    metric(
        "guestlist_upload_pace_ids_per_second",
        Gauge,
        &[],
        "IDs per second that write pacing currently allows uploads (0: no limit).",
    ),
    metric(
        "guestlist_replica_ack_shortfalls_total",
        Counter,
        &[],
        "Publishes that fewer replicas confirmed than --redis-min-replicas asks for.",
    ),
    metric(
        "guestlist_catalog_malformed_campaigns",
        Gauge,
        &[],
        "Campaigns skipped because their metadata in Redis cannot be read.",
    ),
    metric(
        "guestlist_cache_reloads_total",
        Counter,
        &["outcome"],
        "Near-cache reloads of one campaign, by outcome (ok, error, skipped).",
    ),
    histogram(
        "guestlist_cache_reload_duration_seconds",
        &[],
        RELOAD_BUCKETS,
        "Time to fetch and build one campaign's bitmap in the near-cache, in seconds.",
    ),
    histogram(
        "guestlist_cache_invalidation_lag_seconds",
        &[],
        LAG_BUCKETS,
        "Time from a change being published to this process serving it, in seconds.",
    ),
    metric(
        "guestlist_cache_bytes",
        Gauge,
        &[],
        "Bytes held by the near-cache's bitmaps.",
    ),
    metric(
        "guestlist_cache_ids",
        Gauge,
        &[],
        "User ids held by the near-cache.",
    ),
    metric(
        "guestlist_cache_campaigns",
        Gauge,
        &[],
        "Campaigns held by the near-cache.",
    ),
    metric(
        "guestlist_cache_stale_campaigns",
        Gauge,
        &[],
        "Cached campaigns not confirmed against Redis within --max-staleness.",
    ),
    metric(
        "guestlist_cache_skipped_campaigns",
        Gauge,
        &[],
        "Campaigns left to Redis because they do not fit in --near-cache-max-bytes.",
    ),
    process(
        "process_cpu_seconds_total",
        Counter,
        "User and system CPU time spent, in seconds.",
    ),
    process(
        "process_resident_memory_bytes",
        Gauge,
        "Resident memory size, in bytes.",
    ),
    process(
        "process_virtual_memory_bytes",
        Gauge,
        "Virtual memory size, in bytes.",
    ),
    process("process_open_fds", Gauge, "Open file descriptors."),
    process("process_max_fds", Gauge, "Limit on open file descriptors."),
    process(
        "process_start_time_seconds",
        Gauge,
        "Start time of the process since the Unix epoch, in seconds.",
    ),
];

/// The entry for `name`.
pub fn find(name: &str) -> Option<&'static Metric> {
    METRICS.iter().find(|m| m.name == name)
}

/// Gives every recorded metric its help text. Descriptions are kept by the
/// recorder apart from the values, so a family gets its `# HELP` line from
/// its first sample on.
pub fn describe_all() {
    for m in METRICS.iter().filter(|m| !m.at_scrape) {
        match m.kind {
            Kind::Counter => metrics::describe_counter!(m.name, m.help),
            Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
            Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `"guestlist_…"` string literal in `src`, which is how each
    /// metric is named at its `counter!`, `gauge!` or `histogram!`.
    fn names_in_source(dir: &std::path::Path, found: &mut Vec<(String, String)>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                names_in_source(&path, found);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path.ends_with("catalog.rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                for (at, _) in text.match_indices(macro_name) {
                    let rest = text[at + macro_name.len()..].trim_start();
                    let Some(rest) = rest.strip_prefix('"') else {
                        continue;
                    };
                    let name = &rest[..rest.find('"').unwrap()];
                    found.push((name.to_string(), path.display().to_string()));
                }
            }
        }
    }

    #[test]
    fn every_metric_the_source_emits_is_in_the_table() {
        let mut found = Vec::new();
        names_in_source(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        // The scan must see the metrics we know are there, or it proves nothing.
        assert!(found.len() >= 15, "{found:?}");
        for (name, file) in &found {
            assert!(
                find(name).is_some(),
                "{file} emits {name}, which is missing from telemetry::catalog::METRICS"
            );
        }
    }

    #[test]
    fn names_are_unique_and_well_formed_and_histograms_have_buckets() {
        let mut names: Vec<&str> = METRICS.iter().map(|m| m.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), METRICS.len(), "a name is listed twice");
        for m in METRICS {
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Counter,
                m.name.ends_with("_total"),
                "{}",
                m.name
            );
            assert_eq!(
                m.kind == Kind::Histogram,
                !m.buckets.is_empty(),
                "{}",
                m.name
            );
            assert!(m.buckets.windows(2).all(|w| w[0] < w[1]), "{}", m.name);
            assert!(m.help.ends_with('.'), "{}", m.name);
        }
        // Measured from millisecond timestamps: sub-millisecond buckets
        // would only ever hold rounding.
        let lag = find("guestlist_cache_invalidation_lag_seconds").unwrap();
        assert_eq!(lag.buckets[0], 0.001);
        assert!(*lag.buckets.last().unwrap() >= 10.0);
    }

    #[test]
    fn docs_list_exactly_the_metrics_in_the_table() {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/metrics.md"),
        )
        .unwrap();
        let documented = documented_names(&doc);
        for m in METRICS {
            assert!(
                documented.contains(&m.name.to_string()),
                "docs/metrics.md does not document {}",
                m.name
            );
        }
        for name in &documented {
            assert!(
                find(name).is_some(),
                "docs/metrics.md documents {name}, which the code does not export"
            );
        }
    }

    /// The names of the reference's `### name` headings.
    fn documented_names(doc: &str) -> Vec<String> {
        doc.lines()
            .filter_map(|l| l.strip_prefix("### "))
            .map(|h| h.trim().trim_matches('`').to_string())
            .collect()
    }
}
