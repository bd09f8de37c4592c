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

use super::results::{Machine, Results, Run};
use crate::numfmt::{
    format_bytes, format_decimal, format_gib, format_latency_us, format_measure, format_rate,
    format_seconds, thousands,
};

/// File names inside the output directory; the report links to the charts by
/// these names, so they live in one place.
const RESULTS_JSON: &str = "results.json";
const REPORT_MD: &str = "report.md";
const P99_SVG: &str = "p99_vs_audience.svg";
const THROUGHPUT_SVG: &str = "throughput_vs_concurrency.svg";

/// The audience size the story talks about; when it was measured, the
/// per-design cells and the throughput chart use it.
pub(super) const STORY_AUDIENCE: u64 = 30_000;

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
        // The story's table compares designs on the library's path; the
        // HTTP rows have a table of their own.
        let runs: Vec<&Run> = runs_of(&results.runs, design)
            .into_iter()
            .filter(|run| run.via != "http")
            .collect();
        let risk = risk_run(&runs);
        if let Some(run) = risk {
            risk_audiences.insert(run.audience);
        }
        let (checks_per_sec, p99, bytes_per_check) = match risk {
            Some(run) => (
                format_rate(run.completed as f64 / results.duration_secs.max(1e-9)),
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
        "\nRisk, checks/s (answered correctly before the deadline), p99 and bytes/check \
         come from {which}: the open-loop run at the lowest offered rate where measured \
         (every design offered the same rate), else the closed-loop run at the highest \
         concurrency. Network payload and Redis bytes/ID come from the largest audience; \
         complexity compares closed-loop p50 at the lowest concurrency across audience \
         sizes. Bytes are decimal (1 KB = 1,000 B)."
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
        "| Design | Via | Audience | Mode | Concurrency | offered/s | checks/s | completed \
         | p50 | p90 | p99 | p99.9 | max \
         | errors | timeouts | Redis B/check | Redis CPU µs/check | Redis B/ID \
         | client CPU µs/check | client peak RSS MiB | saturated |\n",
    );
    out.push_str(
        "|---|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n",
    );
    for run in &results.runs {
        let cells = [
            run.design.clone(),
            run.via.clone(),
            thousands(run.audience),
            run.mode.clone(),
            thousands(run.concurrency as u64),
            run.offered_rate.map_or_else(|| "—".into(), format_rate),
            format_rate(run.checks_per_sec),
            thousands(run.completed),
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
            saturation(run),
        ];
        out.push_str(&markdown_row(&cells));
    }
    out
}

/// What ran out during a run, for a table cell.
fn saturation(run: &Run) -> String {
    if run.saturated.is_empty() {
        String::new()
    } else {
        run.saturated.join(", ")
    }
}

/// Every open-loop run: what was offered, what was answered in time, and
/// the latency from each check's intended start. Markdown.
pub fn open_loop_table(results: &Results) -> String {
    let mut out = String::new();
    out.push_str(
        "| Design | Via | Audience | offered/s | answered/s | timeouts | errors \
         | p50 | p99 | p99.9 | dispatch lag p99 | saturated |\n",
    );
    out.push_str("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|\n");
    let window = results.duration_secs.max(1e-9);
    for run in results.runs.iter().filter(|run| is_open(run)) {
        let cells = [
            run.design.clone(),
            run.via.clone(),
            thousands(run.audience),
            run.offered_rate.map_or_else(|| "—".into(), format_rate),
            format_rate(run.completed as f64 / window),
            thousands(run.timeouts),
            thousands(run.errors - run.timeouts),
            format_latency_us(run.p50_us),
            format_latency_us(run.p99_us),
            format_latency_us(run.p999_us),
            run.dispatch_lag_p99_us
                .map_or_else(|| "—".into(), format_latency_us),
            saturation(run),
        ];
        out.push_str(&markdown_row(&cells));
    }
    out
}

/// Each design's paths side by side at the story's audience: in-process,
/// Redis-direct and HTTP, from open-loop runs at the same offered rate
/// (else closed-loop runs at the highest concurrency). Markdown.
pub fn paths_table(results: &Results) -> String {
    const PATHS: [&str; 3] = ["in-process", "redis-direct", "http"];
    let audience = preferred_audience(results.runs.iter());
    let open = results.runs.iter().any(is_open);
    let rate = results
        .runs
        .iter()
        .filter(|run| is_open(run) && Some(run.audience) == audience)
        .filter_map(|run| run.offered_rate)
        .fold(f64::INFINITY, f64::min);
    let mut out = String::new();
    out.push_str("| Design | in-process p99 | in-process answered/s | redis-direct p99 | redis-direct answered/s | http p99 | http answered/s |\n");
    out.push_str("|---|--:|--:|--:|--:|--:|--:|\n");
    let window = results.duration_secs.max(1e-9);
    for design in designs_in_order(&results.runs) {
        let mut cells = vec![design_label(design)];
        for path in PATHS {
            let mut candidates = results.runs.iter().filter(|run| {
                run.design == design && run.via == path && Some(run.audience) == audience
            });
            let run = if open {
                candidates.find(|run| is_open(run) && run.offered_rate == Some(rate))
            } else {
                highest_concurrency(candidates, audience.unwrap_or(0))
            };
            match run {
                Some(run) => {
                    cells.push(format_latency_us(run.p99_us));
                    cells.push(format_rate(run.completed as f64 / window));
                }
                None => cells.extend(["—".to_string(), "—".to_string()]),
            }
        }
        out.push_str(&markdown_row(&cells));
    }
    let _ = writeln!(
        out,
        "\n{} at {} IDs. A dash: that path does not exist for the design \
         (the JSON array has no server design, only the near-cache runs in process) \
         or was not measured.",
        if open {
            format!("Open loop, {}/s offered,", format_rate(rate))
        } else {
            "Closed loop at the highest concurrency,".to_string()
        },
        audience.map_or_else(|| "n/a".into(), thousands)
    );
    out
}

/// The `--redis-baselines` comparison as a table with its ratios.
pub fn baselines_table(b: &super::baselines::Baselines) -> String {
    let mut out = String::new();
    out.push_str("| Work | Redis's tool | guestlist | ratio | goal |\n|---|--:|--:|--:|---|\n");
    let rows = [
        [
            format!("SISMEMBER, {} concurrent (requests/s)", b.concurrency),
            format_rate(b.redis_benchmark_rps),
            format_rate(b.library_sismember_rps),
            format!("{:.2}×", b.sismember_ratio),
            "≥ 0.8×".to_string(),
        ],
        [
            format!(
                "the store's whole `set` check, {} concurrent (checks/s)",
                b.concurrency
            ),
            format_rate(b.redis_benchmark_rps),
            format_rate(b.store_check_rps),
            format!("{:.2}×", b.store_check_ratio),
            "—".to_string(),
        ],
        [
            "1,000,000-ID replace (s)".to_string(),
            format!("{:.2}", b.pipe_secs),
            format!("{:.2}", b.replace_secs),
            format!("{:.2}×", b.replace_ratio),
            "≤ 1.5×".to_string(),
        ],
    ];
    for row in rows {
        out.push_str(&markdown_row(&row));
    }
    let _ = writeln!(
        out,
        "\nThe tools: `redis-benchmark -c {} SISMEMBER key __rand_int__` and `redis-cli --pipe` \
         with the same SADDs of 1,000 IDs; the store's check reads the campaign's metadata \
         with the probe in one round trip. Commands over 10 ms during the replace: {}.",
        b.concurrency,
        match b.slow_commands.as_slice() {
            [] => "none".to_string(),
            [first, ..] => format!(
                "{} (the first: {first}; all in results.json)",
                b.slow_commands.len()
            ),
        }
    );
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
    let _ = writeln!(out, "- User IDs: {}", results.id_type);
    let _ = writeln!(
        out,
        "- Duration per run: {}",
        format_seconds(results.duration_secs)
    );
    let _ = writeln!(out, "\n## Reproduce\n");
    let _ = writeln!(out, "{fence}sh\n{}\n{fence}\n", results.command);
    let _ = writeln!(out, "## Comparison\n");
    out.push_str(&comparison_table(results));
    if results.runs.iter().any(is_open) {
        let _ = writeln!(out, "\n## Open loop: a fixed arrival rate\n");
        out.push_str(&open_loop_table(results));
    }
    let _ = writeln!(out, "\n## The same check by each path\n");
    out.push_str(&paths_table(results));
    if let Some(b) = &results.baselines {
        let _ = writeln!(out, "\n## Against Redis's own tools\n");
        out.push_str(&baselines_table(b));
    }
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

    super::charts::chart_p99_vs_audience(results, &dir.join(P99_SVG))?;
    super::charts::chart_throughput_vs_concurrency(results, &dir.join(THROUGHPUT_SVG))?;
    Ok(())
}

// ---------------------------------------------------------------------------
// Choosing the runs behind each cell
// ---------------------------------------------------------------------------

/// Designs in the order they first appear, so the table follows the order
/// the runner (and the user's `--design` list) chose rather than the alphabet.
pub(super) fn designs_in_order(runs: &[Run]) -> Vec<&str> {
    let mut seen = Vec::new();
    for run in runs {
        if !seen.contains(&run.design.as_str()) {
            seen.push(run.design.as_str());
        }
    }
    seen
}

/// An open-loop run (a fixed arrival rate).
fn is_open(run: &Run) -> bool {
    run.mode == "open"
}

pub(super) fn runs_of<'a>(runs: &'a [Run], design: &str) -> Vec<&'a Run> {
    runs.iter().filter(|run| run.design == design).collect()
}

/// Distinct audience sizes, ascending.
pub(super) fn audiences(runs: &[&Run]) -> Vec<u64> {
    runs.iter()
        .map(|run| run.audience)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// The story's audience when measured, else the largest: the story's number
/// keeps the table comparable with the text, the largest is the worst case.
pub(super) fn preferred_audience<'a>(runs: impl Iterator<Item = &'a Run> + Clone) -> Option<u64> {
    if runs.clone().any(|run| run.audience == STORY_AUDIENCE) {
        Some(STORY_AUDIENCE)
    } else {
        runs.map(|run| run.audience).max()
    }
}

/// The run with the highest concurrency at `audience`; the first one measured
/// if that concurrency was repeated.
pub(super) fn highest_concurrency<'a>(
    runs: impl Iterator<Item = &'a Run>,
    audience: u64,
) -> Option<&'a Run> {
    runs.filter(|run| run.audience == audience)
        .fold(None, |best: Option<&Run>, run| match best {
            Some(b) if b.concurrency >= run.concurrency => Some(b),
            _ => Some(run),
        })
}

/// The run behind the "concurrency risk", checks/s, p99 and bytes/check cells.
fn risk_run<'a>(runs: &[&'a Run]) -> Option<&'a Run> {
    let audience = preferred_audience(runs.iter().copied())?;
    let lowest_offered = runs
        .iter()
        .copied()
        .filter(|run| is_open(run) && run.audience == audience)
        .min_by(|a, b| {
            a.offered_rate
                .partial_cmp(&b.offered_rate)
                .expect("rates are finite")
        });
    lowest_offered
        .or_else(|| highest_concurrency(runs.iter().copied().filter(|run| !is_open(run)), audience))
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
    let closed: Vec<&Run> = runs.iter().copied().filter(|run| !is_open(run)).collect();
    let runs = &closed;
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
    let at = match run.offered_rate {
        Some(rate) => format!("{}/s offered", format_rate(rate)),
        None => format!("{} concurrent", run.concurrency),
    };
    if run.errors > 0 || run.p99_us >= 10_000.0 {
        format!(
            "High — p99 {p99} at {at}, {} timeouts, {} other errors",
            thousands(run.timeouts),
            thousands(run.errors - run.timeouts)
        )
    } else if !run.p99_us.is_finite() {
        format!("n/a — no p99 at {at}")
    } else if run.p99_us >= 1_000.0 {
        format!("Medium — p99 {p99} at {at}")
    } else {
        format!("Low — p99 {p99} at {at}")
    }
}

/// Memory per ID is a property of the stored audience, not of the load, so
/// the first usable figure at the largest audience stands for the design.
fn bytes_per_id(runs: &[&Run]) -> String {
    let Some(largest) = runs.iter().map(|run| run.audience).max() else {
        return "n/a".into();
    };
    let redis = runs
        .iter()
        .filter(|run| run.audience == largest)
        .map(|run| run.redis_bytes_per_id)
        .find(|bytes| bytes.is_finite() && *bytes > 0.0)
        .map_or_else(|| "n/a".into(), |bytes| format!("{bytes:.1} B"));
    // The near-cache's own copy, held in the process beside Redis's.
    let cache = runs
        .iter()
        .filter(|run| run.audience == largest)
        .find_map(|run| run.cache_bytes_per_id);
    match cache {
        Some(held) => format!("{redis}; cache {held:.1} B"),
        None => redis,
    }
}

// ---------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------

/// The story's names for the designs, so the regenerated table reads like
/// the one it replaces.
pub(super) fn design_label(design: &str) -> String {
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

#[cfg(test)]
mod tests {
    use super::super::charts::{chart_p99_vs_audience, chart_throughput_vs_concurrency};
    use super::*;

    const AUDIENCES: [u64; 3] = [100, 30_000, 1_000_000];
    const CONCURRENCIES: [usize; 2] = [1, 64];

    fn run(design: &str, audience: u64, concurrency: usize) -> Run {
        Run {
            design: design.into(),
            via: if design == "near-cache" {
                "in-process".into()
            } else {
                "redis-direct".into()
            },
            audience,
            mode: "closed".into(),
            concurrency,
            offered_rate: None,
            checks: 100_000,
            completed: 100_000,
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
            cache_bytes_per_id: None,
            client_cpu_us_per_check: 8.0,
            client_peak_rss_bytes: 64 * 1024 * 1024,
            client_cpu_share: 0.3,
            redis_cpu_share: 0.4,
            dispatch_lag_p99_us: None,
            saturated: Vec::new(),
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
            id_type: "integer".into(),
            duration_secs: 10.0,
            baselines: None,
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
        assert!(
            cells[3].contains("1,000 timeouts, 234 other errors"),
            "{table}"
        );
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
        // Answered correctly per second of the 10 s window.
        assert_eq!(cells[4], "10,000");
        assert_eq!(cells[5], "250 µs");
        assert_eq!(cells[6], "4 B");
        assert_eq!(cells[7], "12.0 B");
    }

    /// Open-loop runs at 30,000 IDs: json collapses at the offered rate,
    /// set holds it; HTTP rows of set sit beside its direct ones.
    fn with_open_loop() -> Results {
        let mut results = synthetic();
        for (design, via, p99, timeouts) in [
            ("json", "redis-direct", 1_000_000.0, 9_000),
            ("set", "redis-direct", 800.0, 0),
            ("set", "http", 1_900.0, 0),
        ] {
            let mut r = run(design, 30_000, 256);
            r.mode = "open".into();
            r.via = via.into();
            r.offered_rate = Some(10_000.0);
            r.checks = 100_000;
            r.completed = 100_000 - timeouts;
            r.timeouts = timeouts;
            r.errors = timeouts;
            r.p99_us = p99;
            r.dispatch_lag_p99_us = Some(60.0);
            results.runs.push(r);
        }
        results
    }

    #[test]
    fn the_story_table_takes_its_risk_from_the_open_loop_run() {
        let table = comparison_table(&with_open_loop());
        let json = row(&table, "JSON array (story's original)");
        assert_eq!(
            json[3], "High — p99 1.00 s at 10,000/s offered, 9,000 timeouts, 0 other errors",
            "{table}"
        );
        assert_eq!(json[4], "9,100", "{table}");
        let set = row(&table, "Redis Set");
        assert_eq!(set[3], "Low — p99 800 µs at 10,000/s offered", "{table}");
        // Complexity still comes from the closed-loop runs.
        assert!(json[1].starts_with("O(n)"), "{table}");
    }

    #[test]
    fn open_loop_and_path_tables_list_what_was_offered_and_each_path() {
        let results = with_open_loop();
        let open = open_loop_table(&results);
        assert_eq!(open.lines().count(), 2 + 3, "{open}");
        let set_http = open
            .lines()
            .find(|l| l.starts_with("| set | http |"))
            .expect("an HTTP row");
        assert!(
            set_http.contains("| 10,000 | 10,000 | 0 | 0 |"),
            "{set_http}"
        );
        assert!(set_http.contains("1.90 ms"), "{set_http}");
        let paths = paths_table(&results);
        let set = row(&paths, "Redis Set");
        assert_eq!(
            set[1..],
            ["—", "—", "800 µs", "10,000", "1.90 ms", "10,000"],
            "{paths}"
        );
        assert!(
            paths.contains("Open loop, 10,000/s offered, at 30,000 IDs"),
            "{paths}"
        );
    }

    #[test]
    fn comparison_rows_follow_the_order_designs_were_first_measured() {
        let table = comparison_table(&synthetic());
        let position = |label: &str| table.find(&format!("| {label} |")).unwrap();
        assert!(position("JSON array (story's original)") < position("Redis Set"));
        assert!(position("Redis Set") < position("Per-user key"));
        assert!(position("Per-user key") < position("Redis bitmap"));
        assert!(table.contains("come from the 30,000-ID runs"), "{table}");
    }

    #[test]
    fn cells_fall_back_to_the_largest_audience_without_a_30000_run() {
        let mut results = synthetic();
        results.runs.retain(|r| r.audience != 30_000);
        let table = comparison_table(&results);
        let cells = row(&table, "JSON array (story's original)");
        // p99 at 1,000,000 IDs and 64 concurrent: (50 + 30,000) × 3 × 64 µs.
        assert_eq!(cells[5], "5.77 s");
        assert!(table.contains("come from the 1,000,000-ID runs"), "{table}");
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
            "| Design | Via | Audience | Mode | Concurrency |",
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
