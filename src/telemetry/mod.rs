//! Logs and metrics set-up, done once per process.
//!
//! - [`catalog`]: every metric, its help text and buckets, in one table;
//! - [`process`]: the `process_*` metrics, read from `/proc` at scrape time;
//! - [`logs`]: the log subscriber, which names the request id on a
//!   request's lines.

pub mod catalog;
mod logs;
pub mod process;

pub use logs::init_logs;

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// How often the recorder's upkeep runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the global Prometheus recorder (once) and returns its handle.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for m in catalog::METRICS.iter().filter(|m| !m.buckets.is_empty()) {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(m.name.into()), m.buckets)
                    .expect("bucket list is not empty");
            }
            let handle = builder
                .install_recorder()
                .expect("no other metrics recorder is installed");
            catalog::describe_all();
            metrics::gauge!("guestlist_build_info", "version" => env!("CARGO_PKG_VERSION"))
                .set(1.0);
            // Histogram samples pile up until upkeep (or a scrape) folds them
            // into buckets; nobody may scrape for hours. A plain thread, since
            // the recorder outlives any one runtime.
            let upkeep = handle.clone();
            std::thread::Builder::new()
                .name("metrics-upkeep".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(UPKEEP_EVERY);
                        upkeep.run_upkeep();
                    }
                })
                .expect("spawning the metrics upkeep thread");
            handle
        })
        .clone()
}

/// The `/metrics` body: what the recorder holds, then the process metrics.
pub fn render(handle: &PrometheusHandle) -> String {
    let mut out = handle.render();
    process::render(&mut out);
    out
}

/// Records whether the store answered a readiness probe.
pub fn store_up(up: bool) {
    metrics::gauge!("guestlist_store_up").set(if up { 1.0 } else { 0.0 });
}
