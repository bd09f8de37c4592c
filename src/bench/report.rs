//! Turns `results.json` into something a reader can check the story against:
//! a Markdown report whose first table has the story's own columns (time
//! complexity, network payload, concurrency risk), but with every cell
//! derived from a measurement instead of intuition, plus two SVG charts.
//!
//! Everything here is a pure function of [`Results`], so a report can be
//! regenerated from an old `results.json` without touching Redis.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use super::results::{Machine, Results, Run};

/// File names inside the output directory; the report links to the charts by
/// these names, so they live in one place.
const RESULTS_JSON: &str = "results.json";
const REPORT_MD: &str = "report.md";
const P99_SVG: &str = "p99_vs_audience.svg";
const THROUGHPUT_SVG: &str = "throughput_vs_concurrency.svg";

/// The audience size the story talks about; when it was measured, the
/// per-design cells and the throughput chart use it.
const STORY_AUDIENCE: u64 = 30_000;

const CHART_SIZE: (u32, u32) = (900, 560);

/// Tableau 10: distinct, colour-blind-friendlier than plotters' defaults, and
/// fixed, so a design keeps its colour across both charts and across reruns.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

// ---------------------------------------------------------------------------
// Public API
// ---------------------------------------------------------------------------

/// The story's comparison table regenerated from measurements, plus the measured columns. Markdown.
///
/// One row per design, in the order designs first appear in `runs`. How each
/// cell is chosen is spelled out in the line under the table, because a
/// number without its provenance invites the same hand-waving the story did.
pub fn comparison_table(results: &Results) -> String {
    // On a cluster the risk is also measured as one shard's share of the load.
    let on_cluster = super::cluster::on_cluster(results);
    let mut out = String::new();
    out.push_str(
        "| Design | Time complexity | Network payload | Concurrency risk \
         | checks/s | p99 | Redis bytes/check | Redis bytes/ID |",
    );
    out.push_str(if on_cluster {
        " busiest node |\n"
    } else {
        "\n"
    });
    out.push_str("|---|---|---|---|--:|--:|--:|--:|");
    out.push_str(if on_cluster { "--:|\n" } else { "\n" });

    let designs = designs_in_order(&results.runs);
    let mut risk_audiences = BTreeSet::new();
    for design in &designs {
        let runs = runs_of(&results.runs, design);
        let risk = risk_run(&runs);
        if let Some(run) = risk {
            risk_audiences.insert(run.audience);
        }
        let (checks_per_sec, p99, bytes_per_check) = match risk {
            Some(run) => (
                format_rate(run.checks_per_sec),
                format_latency_us(run.p99_us),
                format_bytes(run.redis_bytes_per_check),
            ),
            None => ("n/a".into(), "n/a".into(), "n/a".into()),
        };
        let mut cells = vec![
            design_label(design),
            time_complexity(&runs),
            network_payload(&runs),
            risk.map_or_else(|| "n/a".into(), concurrency_risk),
            checks_per_sec,
            p99,
            bytes_per_check,
            bytes_per_id(&runs),
        ];
        if on_cluster {
            cells.push(risk.map_or_else(|| "n/a".into(), super::cluster::busiest_cell));
        }
        out.push_str(&markdown_row(&cells));
    }

    if designs.is_empty() {
        out.push_str("\nNo runs were measured.\n");
        return out;
    }

    let which = match risk_audiences.iter().collect::<Vec<_>>().as_slice() {
        [only] => format!("the {}-ID runs", thousands(**only)),
        _ => format!(
            "the {}-ID runs where measured, else the largest audience",
            thousands(STORY_AUDIENCE)
        ),
    };
    let _ = writeln!(
        out,
        "\nCells come from {which} at the highest concurrency; network payload and \
         Redis bytes/ID come from the largest audience; complexity compares p50 at the \
         lowest concurrency across audience sizes. Bytes are decimal (1 KB = 1,000 B)."
    );
    out
}

/// Every run as one Markdown table (design, audience, concurrency, checks/s, p50/p90/p99/p99.9/max in ms or µs with units, errors, timeouts, Redis B/check, Redis CPU µs/check, Redis B/ID, client CPU µs/check, client peak RSS MiB).
///
/// Rows keep the order of `runs` (the order the runner measured them) and the
/// raw design names, so a row can be matched to its entry in `results.json`.
pub fn runs_table(results: &Results) -> String {
    let mut out = String::new();
    out.push_str(
        "| Design | Audience | Concurrency | checks/s | p50 | p90 | p99 | p99.9 | max \
         | errors | timeouts | Redis B/check | Redis CPU µs/check | Redis B/ID \
         | client CPU µs/check | client peak RSS MiB |\n",
    );
    out.push_str("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n");
    for run in &results.runs {
        let cells = [
            run.design.clone(),
            thousands(run.audience),
            thousands(run.concurrency as u64),
            format_rate(run.checks_per_sec),
            format_latency_us(run.p50_us),
            format_latency_us(run.p90_us),
            format_latency_us(run.p99_us),
            format_latency_us(run.p999_us),
            format_latency_us(run.max_us),
            thousands(run.errors),
            thousands(run.timeouts),
            format_measure(run.redis_bytes_per_check),
            format_measure(run.redis_cpu_us_per_check),
            format_measure(run.redis_bytes_per_id),
            format_measure(run.client_cpu_us_per_check),
            format_decimal(run.client_peak_rss_bytes as f64 / (1024.0 * 1024.0), 1),
        ];
        out.push_str(&markdown_row(&cells));
    }
    out
}

/// The full report: title, machine (cpus, memory, os, kernel, cpu model), Redis version, date, seed, duration per run, the reproduce command in a code block, the comparison table, the runs table, and links to the two SVG files.
pub fn report_markdown(results: &Results) -> String {
    let Machine {
        cpus,
        memory_bytes,
        os,
        kernel,
        cpu_model,
    } = &results.machine;
    let fence = code_fence_for(&results.command);

    // `writeln!` into a String cannot fail; the `let _ =` only silences the
    // unused `fmt::Result`, here and in `comparison_table`.
    let mut out = String::new();
    let _ = writeln!(out, "# guestlist bench: is user U in campaign C?\n");
    let _ = writeln!(
        out,
        "Measured figures for the designs in the story. They hold for this machine \
         and this Redis; rerun the command below before quoting them elsewhere.\n"
    );
    let _ = writeln!(out, "## Setup\n");
    let _ = writeln!(out, "- Machine: {cpus} CPUs, {}", format_gib(*memory_bytes));
    let _ = writeln!(out, "- CPU model: {cpu_model}");
    let _ = writeln!(out, "- OS: {os}, kernel {kernel}");
    let _ = writeln!(out, "- Redis version: {}", results.redis_version);
    if let Some(masters) = &results.cluster_masters {
        let _ = writeln!(
            out,
            "- Redis Cluster: {} masters ({})",
            masters.len(),
            masters.join(", ")
        );
    }
    let _ = writeln!(out, "- Date: {}", results.date);
    let _ = writeln!(out, "- Seed: {}", results.seed);
    let _ = writeln!(
        out,
        "- Duration per run: {}",
        format_seconds(results.duration_secs)
    );
    let _ = writeln!(out, "\n## Reproduce\n");
    let _ = writeln!(out, "{fence}sh\n{}\n{fence}\n", results.command);
    let _ = writeln!(out, "## Comparison\n");
    out.push_str(&comparison_table(results));
    let _ = writeln!(out, "\n## Charts\n");
    let _ = writeln!(out, "![p99 latency against audience size]({P99_SVG})\n");
    let _ = writeln!(out, "![checks/s against concurrency]({THROUGHPUT_SVG})\n");
    let _ = writeln!(out, "## All runs\n");
    out.push_str(&runs_table(results));
    if super::cluster::on_cluster(results) {
        let _ = writeln!(out, "\n## Load across the cluster's masters\n");
        out.push_str(&super::cluster::node_table(results));
    }
    out
}

/// SVG: p99 latency (log-scale y, in ms) against audience size (log-scale x) — one line per design, using for each (design, audience) the run with the HIGHEST concurrency. Title says which concurrency.
///
/// The highest concurrency is where the story's "hot key" claim would show:
/// a design whose p99 climbs with audience size under load is the one that
/// melts at peak traffic.
pub fn chart_p99_vs_audience(results: &Results, path: &Path) -> Result<()> {
    let designs = designs_in_order(&results.runs);
    let mut concurrencies = BTreeSet::new();
    let series = designs
        .iter()
        .enumerate()
        .map(|(index, design)| {
            let runs = runs_of(&results.runs, design);
            let points = audiences(&runs)
                .into_iter()
                .filter_map(|audience| {
                    let run = highest_concurrency(runs.iter().copied(), audience)?;
                    concurrencies.insert(run.concurrency);
                    Some((audience as f64, run.p99_us / 1000.0))
                })
                .collect();
            Series {
                label: design_label(design),
                color: PALETTE[index % PALETTE.len()],
                points,
            }
        })
        .collect();

    let caption = match concurrencies.iter().collect::<Vec<_>>().as_slice() {
        [] => "p99 latency vs audience size (no runs)".to_string(),
        [only] => format!("p99 latency vs audience size at {} concurrent checks", only),
        [low, .., high] => format!(
            "p99 latency vs audience size at each size's highest concurrency ({low}–{high})"
        ),
    };
    let chart = LogLogChart {
        caption,
        x_desc: "audience size (IDs, log scale)",
        y_desc: "p99 latency (ms, log scale)",
        legend: SeriesLabelPosition::UpperLeft,
        series,
    };
    write_svg(path, &chart.render()?)
}

/// SVG: checks/s (y, log scale) against concurrency (x, log scale) — one line per design, for the audience size 30,000 if present, else the largest audience measured. Title says which audience.
pub fn chart_throughput_vs_concurrency(results: &Results, path: &Path) -> Result<()> {
    let audience = preferred_audience(results.runs.iter());
    let series = designs_in_order(&results.runs)
        .iter()
        .enumerate()
        .map(|(index, design)| {
            let mut runs: Vec<&Run> = runs_of(&results.runs, design)
                .into_iter()
                .filter(|run| Some(run.audience) == audience)
                .collect();
            // Stable sort: with repeated concurrencies the first measured run wins
            // below, matching how every other cell picks among duplicates.
            runs.sort_by_key(|run| run.concurrency);
            runs.dedup_by_key(|run| run.concurrency);
            Series {
                label: design_label(design),
                color: PALETTE[index % PALETTE.len()],
                points: runs
                    .iter()
                    .map(|run| (run.concurrency as f64, run.checks_per_sec))
                    .collect(),
            }
        })
        .collect();

    let caption = match audience {
        Some(audience) => format!(
            "checks/s vs concurrency, audience of {} IDs",
            thousands(audience)
        ),
        None => "checks/s vs concurrency (no runs)".to_string(),
    };
    let chart = LogLogChart {
        caption,
        x_desc: "concurrent checks (log scale)",
        y_desc: "checks/s (log scale)",
        legend: SeriesLabelPosition::LowerRight,
        series,
    };
    write_svg(path, &chart.render()?)
}

/// Writes results.json (pretty), report.md, p99_vs_audience.svg and throughput_vs_concurrency.svg into dir (creating it).
///
/// `results.json` goes first: if a chart fails to render, the measurements
/// (which took minutes against Redis) are already safe on disk.
pub fn write_all(results: &Results, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir)
        .with_context(|| format!("creating report directory {}", dir.display()))?;

    let mut json = serde_json::to_string_pretty(results).context("serialising results")?;
    json.push('\n');
    let json_path = dir.join(RESULTS_JSON);
    std::fs::write(&json_path, json).with_context(|| format!("writing {}", json_path.display()))?;

    let report_path = dir.join(REPORT_MD);
    std::fs::write(&report_path, report_markdown(results))
        .with_context(|| format!("writing {}", report_path.display()))?;

    chart_p99_vs_audience(results, &dir.join(P99_SVG))?;
    chart_throughput_vs_concurrency(results, &dir.join(THROUGHPUT_SVG))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Choosing the runs behind each cell
// ---------------------------------------------------------------------------

/// Designs in the order they first appear, so the table follows the order
/// the runner (and the user's `--design` list) chose rather than the alphabet.
fn designs_in_order(runs: &[Run]) -> Vec<&str> {
    let mut seen = Vec::new();
    for run in runs {
        if !seen.contains(&run.design.as_str()) {
            seen.push(run.design.as_str());
        }
    }
    seen
}

fn runs_of<'a>(runs: &'a [Run], design: &str) -> Vec<&'a Run> {
    runs.iter().filter(|run| run.design == design).collect()
}

/// Distinct audience sizes, ascending.
fn audiences(runs: &[&Run]) -> Vec<u64> {
    runs.iter()
        .map(|run| run.audience)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The story's audience when measured, else the largest: the story's number
/// keeps the table comparable with the text, the largest is the worst case.
fn preferred_audience<'a>(runs: impl Iterator<Item = &'a Run> + Clone) -> Option<u64> {
    if runs.clone().any(|run| run.audience == STORY_AUDIENCE) {
        Some(STORY_AUDIENCE)
    } else {
        runs.map(|run| run.audience).max()
    }
}

/// The run with the highest concurrency at `audience`; the first one measured
/// if that concurrency was repeated.
fn highest_concurrency<'a>(runs: impl Iterator<Item = &'a Run>, audience: u64) -> Option<&'a Run> {
    runs.filter(|run| run.audience == audience)
        .fold(None, |best: Option<&Run>, run| match best {
            Some(b) if b.concurrency >= run.concurrency => Some(b),
            _ => Some(run),
        })
}

/// The run behind the "concurrency risk", checks/s, p99 and bytes/check cells.
fn risk_run<'a>(runs: &[&'a Run]) -> Option<&'a Run> {
    let audience = preferred_audience(runs.iter().copied())?;
    highest_concurrency(runs.iter().copied(), audience)
}

// ---------------------------------------------------------------------------
// The story's three columns, measured
// ---------------------------------------------------------------------------

/// Infers O(1) versus O(n) from how p50 grows with the audience.
///
/// Uses the lowest concurrency so queueing does not masquerade as work per
/// ID. The threshold is √A: on a log scale it sits halfway between "flat"
/// (ratio 1) and "linear" (ratio A), so noise in either direction has the
/// same room before it flips the verdict. Below a 10× spread in sizes the
/// two are too close to tell, so the verdict stays O(1).
fn time_complexity(runs: &[&Run]) -> String {
    let Some(lowest) = runs.iter().map(|run| run.concurrency).min() else {
        return "n/a".into();
    };
    let at_lowest: Vec<&Run> = runs
        .iter()
        .copied()
        .filter(|run| run.concurrency == lowest)
        .collect();
    let sizes = audiences(&at_lowest);
    let (Some(&small), Some(&large)) = (sizes.first(), sizes.last()) else {
        return "n/a".into();
    };
    if small == large {
        return "n/a (one size)".into();
    }
    let p50_at = |audience: u64| {
        at_lowest
            .iter()
            .find(|run| run.audience == audience)
            .map_or(f64::NAN, |run| run.p50_us)
    };
    let (p50_small, p50_large) = (p50_at(small), p50_at(large));
    if !(p50_small > 0.0 && p50_large.is_finite()) {
        return format!("n/a (no p50 at {} IDs)", thousands(small));
    }

    let ratio = p50_large / p50_small;
    let spread = large as f64 / small.max(1) as f64;
    let (n1, n2) = (thousands(small), thousands(large));
    if spread >= 10.0 && ratio > spread.sqrt() {
        format!("O(n) — p50 ×{ratio:.0} from {n1} to {n2} IDs")
    } else {
        format!("O(1) — p50 ×{ratio:.1} from {n1} to {n2} IDs")
    }
}

/// How many bytes Redis ships per check at the largest audience, where a
/// design that returns the whole list is at its worst.
fn network_payload(runs: &[&Run]) -> String {
    let Some(largest) = runs.iter().map(|run| run.audience).max() else {
        return "n/a".into();
    };
    let bytes = runs
        .iter()
        .filter(|run| run.audience == largest)
        .map(|run| run.redis_bytes_per_check)
        .filter(|bytes| bytes.is_finite())
        .fold(f64::NAN, f64::max);
    if !bytes.is_finite() {
        return "n/a".into();
    }
    let level = if bytes >= 10_000.0 {
        "High"
    } else if bytes >= 1_000.0 {
        "Medium"
    } else {
        "Minimal"
    };
    format!("{level} — {}/check", format_bytes(bytes))
}

/// Errors or a double-digit-millisecond p99 under load is what "risk" meant
/// in the story: requests piling up behind one hot key.
fn concurrency_risk(run: &Run) -> String {
    let p99 = format_latency_us(run.p99_us);
    let at = run.concurrency;
    if run.errors > 0 || run.p99_us >= 10_000.0 {
        format!(
            "High — p99 {p99} at {at} concurrent, {} errors",
            thousands(run.errors)
        )
    } else if !run.p99_us.is_finite() {
        format!("n/a — no p99 at {at} concurrent")
    } else if run.p99_us >= 1_000.0 {
        format!("Medium — p99 {p99} at {at} concurrent")
    } else {
        format!("Low — p99 {p99} at {at} concurrent")
    }
}

/// Memory per ID is a property of the stored audience, not of the load, so
/// the first usable figure at the largest audience stands for the design.
fn bytes_per_id(runs: &[&Run]) -> String {
    let Some(largest) = runs.iter().map(|run| run.audience).max() else {
        return "n/a".into();
    };
    runs.iter()
        .filter(|run| run.audience == largest)
        .map(|run| run.redis_bytes_per_id)
        .find(|bytes| bytes.is_finite() && *bytes > 0.0)
        .map_or_else(|| "n/a".into(), |bytes| format!("{bytes:.1} B"))
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// The story's names for the designs, so the regenerated table reads like
/// the one it replaces.
fn design_label(design: &str) -> String {
    match design {
        "json" => "JSON array (story's original)",
        "set" => "Redis Set",
        "per-user" => "Per-user key",
        "bitmap" => "Redis bitmap",
        "near-cache" => "In-process near-cache",
        other => other,
    }
    .to_string()
}

/// `30000` → `30,000`.
pub(super) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// A rate or count measured as `f64`, rounded, with thousands separators.
pub(super) fn format_rate(value: f64) -> String {
    if !value.is_finite() || value < 0.0 {
        return "n/a".into();
    }
    thousands(value.round() as u64)
}

/// Latency with the unit that keeps it readable: µs below a millisecond,
/// ms below a second, seconds beyond.
fn format_latency_us(us: f64) -> String {
    if !us.is_finite() || us < 0.0 {
        "n/a".into()
    } else if us < 1_000.0 {
        format!("{us:.0} µs")
    } else if us < 10_000.0 {
        format!("{:.2} ms", us / 1_000.0)
    } else if us < 1_000_000.0 {
        format!("{:.1} ms", us / 1_000.0)
    } else {
        format!("{:.2} s", us / 1_000_000.0)
    }
}

/// Decimal (1 KB = 1,000 B) byte sizes with two or three significant digits.
fn format_bytes(bytes: f64) -> String {
    if !bytes.is_finite() || bytes < 0.0 {
        return "n/a".into();
    }
    const UNITS: [&str; 4] = ["KB", "MB", "GB", "TB"];
    if bytes > 0.0 && bytes < 1.0 {
        // A cache that rarely reaches Redis averages a fraction of a byte.
        return format!("{bytes:.2} B");
    }
    if bytes < 1_000.0 {
        return format!("{bytes:.0} B");
    }
    let mut value = bytes / 1_000.0;
    let mut unit = UNITS[0];
    for next in &UNITS[1..] {
        if value < 1_000.0 {
            break;
        }
        value /= 1_000.0;
        unit = next;
    }
    if value < 10.0 {
        format!("{value:.1} {unit}")
    } else {
        format!("{value:.0} {unit}")
    }
}

/// A per-check figure for the runs table: whole numbers with separators
/// once the fraction stops mattering, one decimal below that, so a
/// near-cache's 0.02 B/check does not read as 0.
fn format_measure(value: f64) -> String {
    if value.is_finite() && value.abs() >= 100.0 {
        format_rate(value)
    } else {
        format_decimal(value, if value.abs() < 1.0 { 2 } else { 1 })
    }
}

fn format_decimal(value: f64, decimals: usize) -> String {
    if value.is_finite() {
        format!("{value:.decimals$}")
    } else {
        "n/a".into()
    }
}

fn format_gib(bytes: u64) -> String {
    format!(
        "{:.1} GiB memory",
        bytes as f64 / (1024.0 * 1024.0 * 1024.0)
    )
}

fn format_seconds(secs: f64) -> String {
    if secs.fract() == 0.0 {
        format!("{secs:.0} s")
    } else {
        format!("{secs:.1} s")
    }
}

/// A Markdown table row; `|` inside a cell would split it, so it is escaped.
pub(super) fn markdown_row(cells: &[String]) -> String {
    let escaped: Vec<String> = cells.iter().map(|cell| cell.replace('|', "\\|")).collect();
    format!("| {} |\n", escaped.join(" | "))
}

/// A backtick fence longer than any backtick run in `text`, so a command
/// containing backticks cannot close the code block early.
fn code_fence_for(text: &str) -> String {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    "`".repeat(longest.max(2) + 1)
}

/// Compact tick labels for log axes: `30k`, `1M`, `0.25`.
fn axis_number(value: f64) -> String {
    if !value.is_finite() {
        return String::new();
    }
    let magnitude = value.abs();
    if magnitude >= 1e6 {
        format!("{}M", significant(value / 1e6))
    } else if magnitude >= 1e3 {
        format!("{}k", significant(value / 1e3))
    } else {
        significant(value)
    }
}

/// Three significant digits without trailing zeros.
fn significant(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let decimals = (2 - value.abs().log10().floor() as i32).clamp(0, 6) as usize;
    let text = format!("{value:.decimals$}");
    if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    }
}

// ---------------------------------------------------------------------------
// Charts
// ---------------------------------------------------------------------------

struct Series {
    label: String,
    color: RGBColor,
    points: Vec<(f64, f64)>,
}

/// Both charts are log–log line charts; only data and words differ.
struct LogLogChart {
    caption: String,
    x_desc: &'static str,
    y_desc: &'static str,
    legend: SeriesLabelPosition,
    series: Vec<Series>,
}

impl LogLogChart {
    /// Renders into a string rather than straight to a file, so file errors
    /// come back through `write_svg` with a path in the message instead of
    /// being swallowed by the backend's drop.
    fn render(mut self) -> Result<String> {
        // A log axis cannot place zero, negatives or NaN (a run that answered
        // nothing has p99 0); such points are left out rather than faked.
        for series in &mut self.series {
            series
                .points
                .retain(|&(x, y)| x.is_finite() && y.is_finite() && x > 0.0 && y > 0.0);
        }
        let x_range = log_range(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.0)),
        );
        let y_range = log_range(
            self.series
                .iter()
                .flat_map(|s| s.points.iter().map(|p| p.1)),
        );

        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, CHART_SIZE).into_drawing_area();
            root.fill(&WHITE).context("drawing chart background")?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.caption, ("sans-serif", 22))
                .margin(16)
                .x_label_area_size(48)
                .y_label_area_size(64)
                .build_cartesian_2d(x_range.log_scale(), y_range.log_scale())
                .context("laying out chart")?;
            chart
                .configure_mesh()
                .x_desc(self.x_desc)
                .y_desc(self.y_desc)
                .x_label_formatter(&|v| axis_number(*v))
                .y_label_formatter(&|v| axis_number(*v))
                .draw()
                .context("drawing chart axes")?;

            for series in &self.series {
                let color = series.color;
                chart
                    .draw_series(LineSeries::new(
                        series.points.iter().copied(),
                        color.stroke_width(2),
                    ))
                    .context("drawing chart line")?
                    .label(series.label.as_str())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(
                        series
                            .points
                            .iter()
                            .map(|&point| Circle::new(point, 3, color.filled())),
                    )
                    .context("drawing chart points")?;
            }

            chart
                .configure_series_labels()
                .position(self.legend)
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .context("drawing chart legend")?;
            root.present().context("finishing SVG")?;
        }
        Ok(svg)
    }
}

/// A range that shows every value with some air around it. Log axes need a
/// positive, non-empty range: one point (or none) still gets a sensible one.
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (low, high) = values.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !(low.is_finite() && high.is_finite()) {
        return 1.0..10.0;
    }
    if high / low < 1.5 {
        return low / 2.0..high * 2.0;
    }
    low / 1.25..high * 1.25
}

fn write_svg(path: &Path, svg: &str) -> Result<()> {
    std::fs::write(path, svg).with_context(|| format!("writing chart {}", path.display()))
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;

    const AUDIENCES: [u64; 3] = [100, 30_000, 1_000_000];
    const CONCURRENCIES: [usize; 2] = [1, 64];

    fn run(design: &str, audience: u64, concurrency: usize) -> Run {
        Run {
            design: design.into(),
            audience,
            concurrency,
            checks: 100_000,
            errors: 0,
            timeouts: 0,
            checks_per_sec: 10_000.0 * concurrency as f64,
            p50_us: 120.0,
            p90_us: 180.0,
            p99_us: 250.0,
            p999_us: 400.0,
            max_us: 900.0,
            redis_bytes_per_check: 4.0,
            redis_cpu_us_per_check: 2.5,
            redis_bytes_per_id: 12.0,
            client_cpu_us_per_check: 8.0,
            client_peak_rss_bytes: 64 * 1024 * 1024,
            busiest_node_share: None,
            busiest_node_check_share: None,
            node_commands: None,
            node_check_commands: None,
        }
    }

    /// json pays per ID (latency and bytes grow linearly, errors under load);
    /// the other designs answer one member check in constant time.
    fn synthetic() -> Results {
        let mut runs = Vec::new();
        for design in ["json", "set", "per-user", "bitmap"] {
            for audience in AUDIENCES {
                for concurrency in CONCURRENCIES {
                    let mut r = run(design, audience, concurrency);
                    if design == "json" {
                        let linear = 50.0 + audience as f64 * 0.03;
                        r.p50_us = linear;
                        r.p90_us = linear * 1.5;
                        r.p99_us = linear * 3.0 * concurrency as f64;
                        r.p999_us = r.p99_us * 2.0;
                        r.max_us = r.p99_us * 4.0;
                        r.checks_per_sec = 1e6 / linear;
                        r.redis_bytes_per_check = audience as f64 * 9.0;
                        r.redis_bytes_per_id = 9.5;
                        if concurrency == 64 {
                            r.errors = 1_234;
                            r.timeouts = 1_000;
                        }
                    }
                    runs.push(r);
                }
            }
        }
        Results {
            machine: Machine {
                cpus: 8,
                memory_bytes: 16 * 1024 * 1024 * 1024,
                os: "Debian GNU/Linux 13".into(),
                kernel: "6.12.0".into(),
                cpu_model: "Synthetic CPU @ 3.0GHz".into(),
            },
            redis_version: "7.4.2".into(),
            cluster_masters: None,
            date: "2025-01-02T03:04:05Z".into(),
            command: "guestlist bench --seed 42 --duration 10s".into(),
            seed: 42,
            duration_secs: 10.0,
            runs,
        }
    }

    /// The cells of the comparison-table row whose first cell is `label`.
    fn row(table: &str, label: &str) -> Vec<String> {
        let line = table
            .lines()
            .find(|line| line.starts_with(&format!("| {label} |")))
            .unwrap_or_else(|| panic!("no row for {label} in\n{table}"));
        line.trim_matches('|')
            .split(" | ")
            .map(|cell| cell.trim().to_string())
            .collect()
    }

    #[test]
    fn json_is_measured_as_linear_with_a_high_payload_and_high_risk() {
        let table = comparison_table(&synthetic());
        let cells = row(&table, "JSON array (story's original)");
        assert!(cells[1].starts_with("O(n)"), "{table}");
        assert!(cells[1].contains("from 100 to 1,000,000 IDs"), "{table}");
        assert!(cells[2].starts_with("High"), "{table}");
        assert!(cells[2].contains("9.0 MB/check"), "{table}");
        assert!(cells[3].starts_with("High"), "{table}");
        assert!(cells[3].contains("1,234 errors"), "{table}");
        assert!(cells[3].contains("at 64 concurrent"), "{table}");
    }

    #[test]
    fn set_is_measured_as_constant_with_a_minimal_payload_and_low_risk() {
        let table = comparison_table(&synthetic());
        let cells = row(&table, "Redis Set");
        assert!(cells[1].starts_with("O(1)"), "{table}");
        assert!(cells[1].contains("×1.0"), "{table}");
        assert_eq!(cells[2], "Minimal — 4 B/check");
        assert_eq!(cells[3], "Low — p99 250 µs at 64 concurrent");
        assert_eq!(cells[4], "640,000");
        assert_eq!(cells[5], "250 µs");
        assert_eq!(cells[6], "4 B");
        assert_eq!(cells[7], "12.0 B");
    }

    #[test]
    fn comparison_rows_follow_the_order_designs_were_first_measured() {
        let table = comparison_table(&synthetic());
        let position = |label: &str| table.find(&format!("| {label} |")).unwrap();
        assert!(position("JSON array (story's original)") < position("Redis Set"));
        assert!(position("Redis Set") < position("Per-user key"));
        assert!(position("Per-user key") < position("Redis bitmap"));
        assert!(table.contains("Cells come from the 30,000-ID runs at the highest concurrency"));
    }

    #[test]
    fn cells_fall_back_to_the_largest_audience_without_a_30000_run() {
        let mut results = synthetic();
        results.runs.retain(|r| r.audience != 30_000);
        let table = comparison_table(&results);
        let cells = row(&table, "JSON array (story's original)");
        // p99 at 1,000,000 IDs and 64 concurrent: (50 + 30,000) × 3 × 64 µs.
        assert_eq!(cells[5], "5.77 s");
        assert!(table.contains("Cells come from the 1,000,000-ID runs"));
    }

    #[test]
    fn a_single_audience_size_cannot_show_complexity() {
        let mut results = synthetic();
        results.runs.retain(|r| r.audience == 30_000);
        let cells = row(&comparison_table(&results), "Redis Set");
        assert_eq!(cells[1], "n/a (one size)");
    }

    #[test]
    fn unknown_designs_keep_their_raw_name_and_pipes_are_escaped() {
        let mut results = synthetic();
        results.runs.push(run("lua|script", 100, 1));
        let table = comparison_table(&results);
        assert!(table.contains("| lua\\|script |"), "{table}");
    }

    #[test]
    fn an_empty_result_set_still_renders() {
        let mut results = synthetic();
        results.runs.clear();
        assert!(comparison_table(&results).contains("No runs were measured."));
        assert_eq!(runs_table(&results).lines().count(), 2);
        let dir = tempfile::tempdir().unwrap();
        write_all(&results, dir.path()).unwrap();
    }

    #[test]
    fn thousands_separators_group_every_three_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1_000), "1,000");
        assert_eq!(thousands(30_000), "30,000");
        assert_eq!(thousands(1_000_000), "1,000,000");
        assert_eq!(thousands(1_234_567_890), "1,234,567,890");
        assert_eq!(format_rate(12_345.6), "12,346");
    }

    #[test]
    fn latencies_use_the_unit_that_keeps_them_readable() {
        assert_eq!(format_latency_us(250.4), "250 µs");
        assert_eq!(format_latency_us(2_345.0), "2.35 ms");
        assert_eq!(format_latency_us(12_345.0), "12.3 ms");
        assert_eq!(format_latency_us(2_500_000.0), "2.50 s");
        assert_eq!(format_latency_us(f64::NAN), "n/a");
    }

    #[test]
    fn byte_sizes_are_decimal_and_short() {
        assert_eq!(format_bytes(0.0), "0 B");
        assert_eq!(format_bytes(0.02), "0.02 B");
        assert_eq!(format_bytes(4.0), "4 B");
        assert_eq!(format_bytes(1_234.0), "1.2 KB");
        assert_eq!(format_bytes(291_000.0), "291 KB");
        assert_eq!(format_bytes(9_100_000.0), "9.1 MB");
    }

    #[test]
    fn the_report_carries_setup_command_tables_and_chart_links() {
        let report = report_markdown(&synthetic());
        for needle in [
            "8 CPUs",
            "16.0 GiB memory",
            "Debian GNU/Linux 13",
            "6.12.0",
            "Synthetic CPU @ 3.0GHz",
            "Redis version: 7.4.2",
            "2025-01-02T03:04:05Z",
            "Seed: 42",
            "Duration per run: 10 s",
            "```sh\nguestlist bench --seed 42 --duration 10s\n```",
            "| Design | Time complexity |",
            "| Design | Audience | Concurrency |",
            "(p99_vs_audience.svg)",
            "(throughput_vs_concurrency.svg)",
        ] {
            assert!(report.contains(needle), "missing {needle:?} in\n{report}");
        }
        // One row per run, plus header and separator.
        assert_eq!(runs_table(&synthetic()).lines().count(), 24 + 2);
    }

    #[test]
    fn write_all_creates_the_four_files_and_results_round_trip() {
        let results = synthetic();
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("nested/report");
        write_all(&results, &out).unwrap();

        for name in [RESULTS_JSON, REPORT_MD, P99_SVG, THROUGHPUT_SVG] {
            assert!(out.join(name).is_file(), "{name} missing");
        }
        for name in [P99_SVG, THROUGHPUT_SVG] {
            let svg = std::fs::read_to_string(out.join(name)).unwrap();
            assert!(svg.starts_with("<svg"), "{name}");
            assert!(svg.contains("<polyline") || svg.contains("<path"), "{name}");
            assert!(svg.contains("<text"), "{name} has no text");
            for label in [
                "JSON array (story&apos;s original)",
                "Redis Set",
                "Per-user key",
                "Redis bitmap",
            ] {
                assert!(svg.contains(label), "{name} lacks {label}");
            }
        }
        let p99 = std::fs::read_to_string(out.join(P99_SVG)).unwrap();
        assert!(p99.contains("at 64 concurrent checks"));
        let throughput = std::fs::read_to_string(out.join(THROUGHPUT_SVG)).unwrap();
        assert!(throughput.contains("audience of 30,000 IDs"));

        let json = std::fs::read_to_string(out.join(RESULTS_JSON)).unwrap();
        let back: Results = serde_json::from_str(&json).unwrap();
        assert_eq!(back, results);
    }

    #[test]
    fn charts_skip_unplottable_points_and_survive_a_single_point() {
        let mut results = synthetic();
        results
            .runs
            .retain(|r| r.design == "set" && r.audience == 100);
        results.runs[0].checks_per_sec = 0.0;
        results.runs[1].p99_us = f64::NAN;
        let dir = tempfile::tempdir().unwrap();
        chart_p99_vs_audience(&results, &dir.path().join("p99.svg")).unwrap();
        chart_throughput_vs_concurrency(&results, &dir.path().join("tp.svg")).unwrap();
        let throughput = std::fs::read_to_string(dir.path().join("tp.svg")).unwrap();
        assert!(throughput.contains("audience of 100 IDs"));
    }

    #[test]
    fn writing_into_an_unwritable_place_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, "not a directory").unwrap();
        let error = write_all(&synthetic(), &blocker.join("out")).unwrap_err();
        assert!(format!("{error:#}").contains("file/out"), "{error:#}");
    }
}
