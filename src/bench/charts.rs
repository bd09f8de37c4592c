//! The two SVG charts of a report, drawn from closed-loop runs on the
//! direct path: p99 against audience size, and checks/s against
//! concurrency.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};
use plotters::prelude::*;

use super::report::{
    audiences, design_label, designs_in_order, highest_concurrency, preferred_audience, runs_of,
};
use super::results::{Results, Run};
use crate::numfmt::{axis_number, thousands};

/// The runs the charts plot: closed loop on the library's path, where
/// concurrency is a setting and every design has a point.
fn closed_loop_direct(results: &Results) -> Results {
    Results {
        runs: results
            .runs
            .iter()
            .filter(|run| run.mode == "closed" && run.via != "http")
            .cloned()
            .collect(),
        ..results.clone()
    }
}

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

/// SVG: p99 latency (log-scale y, in ms) against audience size (log-scale x) — one line per design, using for each (design, audience) the run with the HIGHEST concurrency. Title says which concurrency.
///
/// The highest concurrency is where the story's "hot key" claim would show:
/// a design whose p99 climbs with audience size under load is the one that
/// melts at peak traffic.
pub(super) fn chart_p99_vs_audience(results: &Results, path: &Path) -> Result<()> {
    let results = &closed_loop_direct(results);
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
pub(super) fn chart_throughput_vs_concurrency(results: &Results, path: &Path) -> Result<()> {
    let results = &closed_loop_direct(results);
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
