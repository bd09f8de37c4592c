//! Logs and metrics set-up, done once per process.

use std::sync::OnceLock;
use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Latency buckets in seconds: fine-grained under a millisecond, where the
/// login path must live, coarse above it.
const LATENCY_BUCKETS: &[f64] = &[
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0, 2.5, 5.0, 10.0,
];

/// How often the recorder's upkeep runs.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Installs the global Prometheus recorder (once) and returns its handle.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
                .expect("bucket list is not empty")
                .install_recorder()
                .expect("no other metrics recorder is installed");
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

/// Logs go to stderr; `RUST_LOG` overrides `default_filter`. A line
/// logged while a request is handled names the request's id.
pub fn init_logs(format: LogFormat, default_filter: &str) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .event_format(WithRequestId {
                inner: Format::default(),
                json: false,
            })
            .init(),
        LogFormat::Json => {
            let builder = builder.json();
            builder
                .event_format(WithRequestId {
                    inner: Format::default().json(),
                    json: true,
                })
                .init()
        }
    }
}

/// Adds `request_id` to the lines logged while a request is handled.
///
/// Not a span per request: at the default level a span is created,
/// formatted and entered on every request although almost none logs
/// anything, and that cost a tenth of the login path. The id comes from
/// the request's task-local scope instead, read only when a line is logged.
struct WithRequestId<F> {
    inner: F,
    json: bool,
}

impl<S, N, F> FormatEvent<S, N> for WithRequestId<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let id = crate::http::request_id::current();
        let Some(id) = id.as_ref().and_then(|id| id.to_str().ok()) else {
            return self.inner.format_event(ctx, writer, event);
        };
        // Ids are at most 64 of [A-Za-z0-9._-], so they need no escaping.
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        write!(writer, "{}", with_request_id(&line, id, self.json))
    }
}

/// `line` (one formatted event, ending in a newline) naming `id`: as the
/// first member of a JSON object, or as a last field of a text line.
fn with_request_id(line: &str, id: &str, json: bool) -> String {
    match line.strip_prefix('{') {
        Some(rest) if json => format!("{{\"request_id\":\"{id}\",{rest}"),
        _ => {
            let text = line.strip_suffix('\n').unwrap_or(line);
            format!("{text} request_id={id}\n")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_id_joins_json_and_text_lines() {
        let json = with_request_id("{\"level\":\"WARN\",\"fields\":{}}\n", "ab-1", true);
        let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(parsed["request_id"], "ab-1");
        assert_eq!(parsed["level"], "WARN");
        assert_eq!(
            with_request_id("WARN x: refused a stale answer\n", "ab-1", false),
            "WARN x: refused a stale answer request_id=ab-1\n"
        );
    }
}
