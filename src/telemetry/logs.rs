//! The log subscriber. A line logged while a request is handled names the
//! request's id, taken from the request's task-local scope.

use std::io::IsTerminal;

use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::format::{Format, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::config::LogFormat;

/// Logs go to stderr, coloured only when stderr is a terminal (a file or a
/// log collector would get escape codes). A non-empty `RUST_LOG` wins over
/// `level`, so a directive per module stays possible; `level` is a filter
/// in the same syntax (`info`, `warn,guestlist::access=off`).
pub fn init_logs(format: LogFormat, level: &str) {
    let filter = match std::env::var("RUST_LOG") {
        Ok(directives) if !directives.trim().is_empty() => EnvFilter::new(directives),
        _ => EnvFilter::new(level),
    };
    let ansi = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder
            .event_format(WithRequestId {
                inner: Format::default().with_ansi(ansi),
                json: false,
            })
            .init(),
        LogFormat::Json => builder
            .json()
            .event_format(WithRequestId {
                inner: Format::default().json(),
                json: true,
            })
            .init(),
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
        let id = crate::app::request_id::current();
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
