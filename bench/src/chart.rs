//! Hand-written SVG charts for `docs/performance.md`.
//!
//! Two charts: [`latency_cdf`] (latency distribution as a cumulative curve) and
//! [`throughput_curve`] (messages per second against concurrent visitors).
//!
//! The output is plain SVG with inline attributes only (no CSS, no scripts), a white background,
//! an explicit 720×400 size and `viewBox`, and `font-family="sans-serif"`, so it renders the same
//! on GitHub as in a browser. The same input always gives the same bytes.

use std::fmt::Write;

/// A named series of values.
#[derive(Debug, Clone, Copy)]
pub struct Series<'a, T> {
    /// The name shown in the legend.
    pub name: &'a str,
    /// The values: raw samples in milliseconds for [`latency_cdf`], or
    /// `(concurrent visitors, messages per second)` pairs for [`throughput_curve`].
    pub points: &'a [T],
}

/// Canvas width in pixels.
const WIDTH: f64 = 720.0;
/// Canvas height in pixels.
const HEIGHT: f64 = 400.0;
/// Left edge of the plot area (room for y tick labels and the y axis title).
const PLOT_LEFT: f64 = 78.0;
/// Right edge of the plot area.
const PLOT_RIGHT: f64 = 700.0;
/// Bottom edge of the plot area (room for x tick labels, the x axis title and a note).
const PLOT_BOTTOM: f64 = 340.0;
/// Smallest top edge of the plot area (room for the title).
const PLOT_MIN_TOP: f64 = 50.0;
/// Baseline of the first legend row.
const LEGEND_FIRST_BASELINE: f64 = 20.0;
/// Distance between legend rows.
const LEGEND_ROW: f64 = 16.0;
/// Series colors, cycled; series beyond the palette are drawn dashed.
const PALETTE: [&str; 4] = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"];
/// Grid line color.
const GRID: &str = "#e0e0e0";
/// Axis line color.
const AXIS: &str = "#333333";
/// Color of tick labels and notes.
const MUTED: &str = "#555555";
/// CDFs with more samples than this are drawn from quantiles instead of every sample.
const MAX_EXACT_SAMPLES: usize = 2000;
/// Number of quantiles taken from a large CDF.
const QUANTILE_POINTS: usize = 500;
/// Which percentile of all latency samples the x axis must cover.
const LATENCY_AXIS_PERCENTILE: f64 = 0.999;
/// Horizontal space kept free at both ends of the throughput x axis, in pixels.
const THROUGHPUT_X_PADDING: f64 = 24.0;
/// Headroom above the highest throughput value, so value labels stay inside the plot.
const THROUGHPUT_HEADROOM: f64 = 1.08;

/// Appends formatted text to a `String`; writing into a `String` cannot fail.
macro_rules! put {
    ($out:expr, $($arg:tt)*) => {
        let _ = write!($out, $($arg)*);
    };
}

/// The latency distribution as a CDF ("percent of samples at or below x"): x axis milliseconds
/// (linear, from 0 to a "nice" max covering the 99.9th percentile of all series — clip longer
/// tails at the right edge and say so in a small note "tail beyond X ms not shown" when clipping
/// happened), y axis 0–100 %. One step line per series (samples are raw ms values, unsorted).
/// Vertical dashed guide lines with labels at `marks` (e.g. [("budget p50", 5.0), ("budget p99", 25.0)]).
pub fn latency_cdf(title: &str, series: &[Series<'_, f64>], marks: &[(&str, f64)]) -> String {
    let sorted: Vec<Vec<f64>> = series.iter().map(|s| sorted_finite(s.points)).collect();
    if sorted.iter().all(Vec::is_empty) {
        return no_data(title);
    }

    let mut all: Vec<f64> = sorted.iter().flatten().copied().collect();
    all.sort_by(f64::total_cmp);
    let x_axis = nice_ticks(nearest_rank(&all, LATENCY_AXIS_PERCENTILE));
    let x_max = x_axis.max();
    let y_axis = nice_ticks(100.0);

    let legend: Vec<LegendEntry> = series
        .iter()
        .zip(&sorted)
        .enumerate()
        .map(|(index, (s, samples))| {
            let label = if samples.is_empty() {
                format!("{} (no data)", s.name)
            } else {
                format!(
                    "{} (n = {})",
                    s.name,
                    format_number(samples.len() as f64, 0)
                )
            };
            LegendEntry {
                label,
                index,
                marker: false,
            }
        })
        .collect();
    let frame = Frame::below_legend(legend.len());

    let mut out = String::with_capacity(16 * 1024);
    start_svg(&mut out, title);
    write_legend(&mut out, &legend);
    write_y_axis(&mut out, &frame, &y_axis, "samples ≤ x (%)");
    write_linear_x_axis(&mut out, &frame, &x_axis, "latency (ms)");

    // One step line per series.
    let mut clipped = false;
    for (index, samples) in sorted.iter().enumerate() {
        if samples.is_empty() {
            continue;
        }
        if samples.last().is_some_and(|&last| last > x_max) {
            clipped = true;
        }
        let path = cdf_path(&frame, &cdf_vertices(samples), x_max);
        put!(
            out,
            "<g>\n<path d=\"{path}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n</g>\n",
            series_color(index),
            series_dash(index)
        );
    }

    // Guide lines at the marks; marks beyond the axis are only mentioned in the note.
    let mut off_scale: Vec<String> = Vec::new();
    let mut drawn = 0usize;
    put!(out, "<g font-size=\"11\" fill=\"{MUTED}\">\n");
    for &(label, value) in marks {
        if !value.is_finite() {
            continue;
        }
        let text = format!("{label}: {} ms", format_value(value));
        if value < 0.0 || value > x_max {
            off_scale.push(text);
            continue;
        }
        let x = frame.left + value / x_max * frame.width();
        put!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{MUTED}\" \
             stroke-width=\"1\" stroke-dasharray=\"5 4\"/>\n",
            frame.top,
            frame.bottom
        );
        // Labels sit near the bottom (where CDFs are usually empty), staggered upwards.
        let y = frame.bottom - 8.0 - 14.0 * drawn as f64;
        let (label_x, anchor) = if x > frame.right - 120.0 {
            (x - 4.0, "end")
        } else {
            (x + 4.0, "start")
        };
        put!(
            out,
            "<text x=\"{label_x:.1}\" y=\"{y:.1}\" text-anchor=\"{anchor}\"{HALO}>{}</text>\n",
            escape(&text)
        );
        drawn += 1;
    }
    put!(out, "</g>\n");

    let mut notes: Vec<String> = Vec::new();
    if clipped {
        notes.push(format!(
            "tail beyond {} ms not shown",
            format_number(x_max, x_axis.decimals)
        ));
    }
    if !off_scale.is_empty() {
        notes.push(format!("off scale: {}", off_scale.join(", ")));
    }
    write_axis_lines(&mut out, &frame);
    write_note(&mut out, &notes.join("; "));
    end_svg(&mut out);
    out
}

/// Throughput against load: x axis = number of concurrent visitors (log2 scale when the max/min
/// ratio is ≥ 8, else linear; ticks at the data's x values), y axis messages per second from 0 to a
/// nice max. One polyline with dot markers per series, point values as small labels above dots.
/// A horizontal dashed guide line at `budget` when Some, labelled e.g. "budget 5,000/s".
pub fn throughput_curve(
    title: &str,
    series: &[Series<'_, (u32, f64)>],
    budget: Option<f64>,
) -> String {
    let cleaned: Vec<Vec<(u32, f64)>> = series
        .iter()
        .map(|s| {
            let mut points: Vec<(u32, f64)> = s
                .points
                .iter()
                .copied()
                .filter(|(_, y)| y.is_finite())
                .collect();
            points.sort_by_key(|&(x, _)| x);
            points
        })
        .collect();
    if cleaned.iter().all(Vec::is_empty) {
        return no_data(title);
    }

    let mut xs: Vec<u32> = cleaned.iter().flatten().map(|&(x, _)| x).collect();
    xs.sort_unstable();
    xs.dedup();
    let log = uses_log_scale(&xs);
    let budget = budget.filter(|b| b.is_finite() && *b >= 0.0);
    let max_y = cleaned
        .iter()
        .flatten()
        .map(|&(_, y)| y)
        .chain(budget)
        .fold(0.0, f64::max);
    let y_axis = nice_ticks(max_y * THROUGHPUT_HEADROOM);
    let y_max = y_axis.max();

    let legend: Vec<LegendEntry> = series
        .iter()
        .zip(&cleaned)
        .enumerate()
        .map(|(index, (s, points))| LegendEntry {
            label: if points.is_empty() {
                format!("{} (no data)", s.name)
            } else {
                s.name.to_string()
            },
            index,
            marker: true,
        })
        .collect();
    let frame = Frame::below_legend(legend.len());
    let scale = XScale::new(&frame, &xs, log);

    let mut out = String::with_capacity(8 * 1024);
    start_svg(&mut out, title);
    write_legend(&mut out, &legend);
    write_y_axis(&mut out, &frame, &y_axis, "messages / s");

    // X ticks at the data's x values; a label is left out when it would touch the previous one.
    put!(
        out,
        "<g font-size=\"11\" fill=\"{MUTED}\" text-anchor=\"middle\">\n"
    );
    let mut last_label_right = f64::NEG_INFINITY;
    for &x_value in &xs {
        let x = scale.position(x_value);
        put!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{GRID}\" stroke-width=\"1\"/>\n",
            frame.top,
            frame.bottom
        );
        let label = format_number(f64::from(x_value), 0);
        let half = text_width(&label, 11.0) / 2.0;
        if x - half >= last_label_right + 4.0 {
            put!(
                out,
                "<text x=\"{x:.1}\" y=\"{:.1}\">{label}</text>\n",
                frame.bottom + 16.0
            );
            last_label_right = x + half;
        }
    }
    put!(out, "</g>\n");
    let x_title = if log {
        "concurrent visitors (log₂ scale)"
    } else {
        "concurrent visitors"
    };
    write_x_title(&mut out, &frame, x_title);

    // Budget guide line, under the data.
    if let Some(budget) = budget {
        let y = frame.y(budget, y_max);
        put!(
            out,
            "<g font-size=\"11\" fill=\"{MUTED}\">\n<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" \
             stroke=\"{MUTED}\" stroke-width=\"1\" stroke-dasharray=\"5 4\"/>\n",
            frame.left,
            frame.right
        );
        put!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\"{HALO}>budget {}/s</text>\n</g>\n",
            frame.left + 6.0,
            y - 5.0,
            format_value(budget)
        );
    }

    // Lines and dots, then all value labels on top so no line crosses a label.
    let mut candidates: Vec<PlacedLabel> = Vec::new();
    for (index, points) in cleaned.iter().enumerate() {
        if points.is_empty() {
            continue;
        }
        let color = series_color(index);
        put!(out, "<g>\n");
        if points.len() > 1 {
            let mut coordinates = String::new();
            for (i, &(x_value, y_value)) in points.iter().enumerate() {
                if i > 0 {
                    coordinates.push(' ');
                }
                put!(
                    coordinates,
                    "{:.1},{:.1}",
                    scale.position(x_value),
                    frame.y(y_value, y_max)
                );
            }
            put!(
                out,
                "<polyline points=\"{coordinates}\" fill=\"none\" stroke=\"{color}\" stroke-width=\"2\"{}/>\n",
                series_dash(index)
            );
        }
        for &(x_value, y_value) in points {
            let x = scale.position(x_value);
            let y = frame.y(y_value, y_max);
            put!(
                out,
                "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3.5\" fill=\"{color}\"/>\n"
            );
            let text = format_value(y_value);
            candidates.push(PlacedLabel {
                x,
                y,
                width: text_width(&text, 10.0),
                text,
                color,
            });
        }
        put!(out, "</g>\n");
    }
    // Place labels column by column, the highest dot first: it gets the spot above its dot, and a
    // lower dot whose label would overlap gets its label below instead (or none at all).
    candidates.sort_by(|a, b| a.x.total_cmp(&b.x).then(a.y.total_cmp(&b.y)));
    let mut labels: Vec<PlacedLabel> = Vec::new();
    for mut candidate in candidates {
        if let Some(label_y) = free_label_y(&labels, &candidate, frame.bottom) {
            candidate.y = label_y;
            labels.push(candidate);
        }
    }
    put!(out, "<g font-size=\"10\" text-anchor=\"middle\">\n");
    for label in &labels {
        put!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" fill=\"{}\"{HALO}>{}</text>\n",
            label.x,
            label.y,
            label.color,
            label.text
        );
    }
    put!(out, "</g>\n");

    write_axis_lines(&mut out, &frame);
    end_svg(&mut out);
    out
}

/// A white outline behind text drawn over the plot, so lines under it do not hurt readability.
const HALO: &str = " paint-order=\"stroke\" stroke=\"#ffffff\" stroke-width=\"3\"";

/// The plot area, in pixels.
#[derive(Debug, Clone, Copy)]
struct Frame {
    left: f64,
    right: f64,
    top: f64,
    bottom: f64,
}

impl Frame {
    /// The plot area under a legend of `legend_rows` rows.
    fn below_legend(legend_rows: usize) -> Frame {
        let legend_bottom = LEGEND_FIRST_BASELINE + LEGEND_ROW * legend_rows as f64;
        Frame {
            left: PLOT_LEFT,
            right: PLOT_RIGHT,
            top: legend_bottom.max(PLOT_MIN_TOP),
            bottom: PLOT_BOTTOM,
        }
    }

    fn width(&self) -> f64 {
        self.right - self.left
    }

    fn height(&self) -> f64 {
        self.bottom - self.top
    }

    /// The pixel row of `value` on a linear axis from 0 to `max`, clamped to the plot.
    fn y(&self, value: f64, max: f64) -> f64 {
        self.bottom - (value / max).clamp(0.0, 1.0) * self.height()
    }
}

/// The x mapping of the throughput chart: linear or log2 between the smallest and largest x.
#[derive(Debug, Clone, Copy)]
struct XScale {
    log: bool,
    low: f64,
    high: f64,
    left: f64,
    right: f64,
}

impl XScale {
    /// A scale over `xs` (sorted, deduplicated, not empty).
    fn new(frame: &Frame, xs: &[u32], log: bool) -> XScale {
        let first = xs.first().copied().unwrap_or(0);
        let last = xs.last().copied().unwrap_or(0);
        let mut scale = XScale {
            log,
            low: 0.0,
            high: 0.0,
            left: frame.left + THROUGHPUT_X_PADDING,
            right: frame.right - THROUGHPUT_X_PADDING,
        };
        scale.low = scale.transform(first);
        scale.high = scale.transform(last);
        scale
    }

    fn transform(&self, value: u32) -> f64 {
        if self.log {
            f64::from(value).log2()
        } else {
            f64::from(value)
        }
    }

    /// The pixel column of `value`; a single distinct x sits in the middle.
    fn position(&self, value: u32) -> f64 {
        let span = self.high - self.low;
        if span <= 0.0 {
            return (self.left + self.right) / 2.0;
        }
        self.left + (self.transform(value) - self.low) / span * (self.right - self.left)
    }
}

/// Whether the throughput x axis is log2: all x positive and max/min ≥ 8.
fn uses_log_scale(sorted_xs: &[u32]) -> bool {
    match (sorted_xs.first(), sorted_xs.last()) {
        (Some(&min), Some(&max)) => min > 0 && f64::from(max) / f64::from(min) >= 8.0,
        _ => false,
    }
}

/// A value label of the throughput chart, placed so it does not overlap another one.
#[derive(Debug, Clone)]
struct PlacedLabel {
    x: f64,
    y: f64,
    width: f64,
    text: String,
    color: &'static str,
}

/// The baseline for `label` (whose `y` is still its dot's row): above the dot, or below it when
/// above is taken and below is inside the plot, or `None` when neither is free.
fn free_label_y(placed: &[PlacedLabel], label: &PlacedLabel, plot_bottom: f64) -> Option<f64> {
    let collides = |y: f64| {
        placed.iter().any(|p| {
            (p.x - label.x).abs() < (p.width + label.width) / 2.0 + 2.0 && (p.y - y).abs() < 11.0
        })
    };
    let above = label.y - 8.0;
    let below = label.y + 16.0;
    if !collides(above) {
        Some(above)
    } else if below <= plot_bottom - 2.0 && !collides(below) {
        Some(below)
    } else {
        None
    }
}

/// "Nice" ticks from 0: a step of 1, 2, 2.5 or 5 × 10^k, and how many decimals its labels need.
#[derive(Debug, Clone, PartialEq)]
struct NiceAxis {
    ticks: Vec<f64>,
    decimals: usize,
}

impl NiceAxis {
    /// The last tick, which is the axis maximum.
    fn max(&self) -> f64 {
        self.ticks.last().copied().unwrap_or(1.0)
    }
}

/// Ticks from 0 to at least `max` using the smallest nice step that needs at most 8 ticks
/// (so usually 5–8). A missing, zero or negative `max` gives the axis 0–1.
fn nice_ticks(max: f64) -> NiceAxis {
    let max = if max.is_finite() && max > 0.0 {
        max
    } else {
        1.0
    };
    // (multiplier, extra decimals the multiplier itself needs)
    let multipliers = [(1.0, 0i32), (2.0, 0), (2.5, 1), (5.0, 0)];
    let first_exponent = max.log10().floor() as i32 - 2;
    for exponent in first_exponent..first_exponent + 4 {
        for (multiplier, extra) in multipliers {
            let step = multiplier * 10f64.powi(exponent);
            let steps = (max / step - 1e-9).ceil().max(1.0) as usize;
            if steps < 8 {
                return NiceAxis {
                    ticks: (0..=steps).map(|i| i as f64 * step).collect(),
                    decimals: (extra - exponent).max(0) as usize,
                };
            }
        }
    }
    // Unreachable in practice: a step of 10^(floor(log10 max) + 1) always fits.
    NiceAxis {
        ticks: vec![0.0, max],
        decimals: 0,
    }
}

/// The finite values of `points`, sorted ascending.
fn sorted_finite(points: &[f64]) -> Vec<f64> {
    let mut values: Vec<f64> = points.iter().copied().filter(|v| v.is_finite()).collect();
    values.sort_by(f64::total_cmp);
    values
}

/// The nearest-rank `fraction` percentile of `sorted` (ascending, not empty).
fn nearest_rank(sorted: &[f64], fraction: f64) -> f64 {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    let index = rank.clamp(1, sorted.len()) - 1;
    sorted[index]
}

/// The corners of the CDF of `sorted` (ascending, not empty) as (value, fraction ≤ value) pairs:
/// every distinct value for small inputs, else about [`QUANTILE_POINTS`] quantiles, each still an
/// exact point of the CDF.
fn cdf_vertices(sorted: &[f64]) -> Vec<(f64, f64)> {
    let n = sorted.len();
    let mut vertices: Vec<(f64, f64)> = Vec::new();
    if n > MAX_EXACT_SAMPLES {
        for quantile in 1..=QUANTILE_POINTS {
            let index = (quantile * n).div_ceil(QUANTILE_POINTS) - 1;
            push_cdf_vertex(sorted, index, &mut vertices);
        }
    } else {
        for index in 0..n {
            push_cdf_vertex(sorted, index, &mut vertices);
        }
    }
    vertices
}

/// Appends the CDF point of `sorted[index]` unless it is already the last vertex. Ties: the CDF
/// at a value counts every sample equal to it, so the point uses the last equal index.
fn push_cdf_vertex(sorted: &[f64], index: usize, vertices: &mut Vec<(f64, f64)>) {
    let mut last_equal = index;
    while last_equal + 1 < sorted.len() && sorted[last_equal + 1] == sorted[index] {
        last_equal += 1;
    }
    let point = (sorted[index], (last_equal + 1) as f64 / sorted.len() as f64);
    if vertices.last() != Some(&point) {
        vertices.push(point);
    }
}

/// The SVG path of a CDF step line through `vertices`, on an x axis from 0 to `x_max` and a y axis
/// from 0 to 100 %. Steps closer than half a pixel are merged; values beyond `x_max` end the line
/// at the right edge.
fn cdf_path(frame: &Frame, vertices: &[(f64, f64)], x_max: f64) -> String {
    let x_of = |value: f64| frame.left + value.clamp(0.0, x_max) / x_max * frame.width();
    let mut path = String::new();
    put!(path, "M{:.1},{:.1}", frame.left, frame.bottom);
    let mut last_x = frame.left;
    let mut pending_y: Option<f64> = None;
    for &(value, fraction) in vertices {
        if value > x_max {
            break;
        }
        let x = x_of(value);
        if x - last_x >= 0.5 {
            if let Some(y) = pending_y.take() {
                put!(path, "V{y:.1}");
            }
            put!(path, "H{x:.1}");
            last_x = x;
        }
        pending_y = Some(frame.y(fraction, 1.0));
    }
    if let Some(y) = pending_y {
        put!(path, "V{y:.1}");
    }
    put!(path, "H{:.1}", frame.right);
    path
}

/// A legend row.
#[derive(Debug, Clone)]
struct LegendEntry {
    label: String,
    /// The series index, for its color and dash.
    index: usize,
    /// Whether to draw a dot on the swatch (series drawn with dot markers).
    marker: bool,
}

/// The legend in the top-right corner, one row per series.
fn write_legend(out: &mut String, entries: &[LegendEntry]) {
    if entries.is_empty() {
        return;
    }
    let widest = entries
        .iter()
        .map(|e| text_width(&e.label, 12.0))
        .fold(0.0, f64::max);
    let x = WIDTH - 12.0 - widest - 24.0;
    put!(out, "<g font-size=\"12\" fill=\"#222222\">\n");
    for entry in entries {
        let y = LEGEND_FIRST_BASELINE + LEGEND_ROW * entry.index as f64;
        let color = series_color(entry.index);
        put!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" stroke=\"{color}\" stroke-width=\"2\"{}/>\n",
            y - 4.0,
            x + 18.0,
            y - 4.0,
            series_dash(entry.index)
        );
        if entry.marker {
            put!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3.5\" fill=\"{color}\"/>\n",
                x + 9.0,
                y - 4.0
            );
        }
        put!(
            out,
            "<text x=\"{:.1}\" y=\"{y:.1}\">{}</text>\n",
            x + 24.0,
            escape(&entry.label)
        );
    }
    put!(out, "</g>\n");
}

/// Horizontal grid lines, tick labels and the rotated title of a y axis from 0.
fn write_y_axis(out: &mut String, frame: &Frame, axis: &NiceAxis, title: &str) {
    let max = axis.max();
    put!(
        out,
        "<g font-size=\"11\" fill=\"{MUTED}\" text-anchor=\"end\">\n"
    );
    for &tick in &axis.ticks {
        let y = frame.y(tick, max);
        put!(
            out,
            "<line x1=\"{:.1}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"{GRID}\" stroke-width=\"1\"/>\n",
            frame.left,
            frame.right
        );
        put!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>\n",
            frame.left - 6.0,
            y + 4.0,
            format_number(tick, axis.decimals)
        );
    }
    put!(out, "</g>\n");
    put!(
        out,
        "<text transform=\"translate(16,{:.1}) rotate(-90)\" text-anchor=\"middle\" font-size=\"12\" fill=\"#222222\">{}</text>\n",
        (frame.top + frame.bottom) / 2.0,
        escape(title)
    );
}

/// Vertical grid lines, tick labels and the title of a linear x axis from 0.
fn write_linear_x_axis(out: &mut String, frame: &Frame, axis: &NiceAxis, title: &str) {
    let max = axis.max();
    put!(
        out,
        "<g font-size=\"11\" fill=\"{MUTED}\" text-anchor=\"middle\">\n"
    );
    for &tick in &axis.ticks {
        let x = frame.left + tick / max * frame.width();
        put!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{:.1}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"{GRID}\" stroke-width=\"1\"/>\n",
            frame.top,
            frame.bottom
        );
        put!(
            out,
            "<text x=\"{x:.1}\" y=\"{:.1}\">{}</text>\n",
            frame.bottom + 16.0,
            format_number(tick, axis.decimals)
        );
    }
    put!(out, "</g>\n");
    write_x_title(out, frame, title);
}

/// The x axis title, centered under the plot.
fn write_x_title(out: &mut String, frame: &Frame, title: &str) {
    put!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"12\" fill=\"#222222\">{}</text>\n",
        (frame.left + frame.right) / 2.0,
        frame.bottom + 36.0,
        escape(title)
    );
}

/// The left and bottom axis lines, drawn over the data.
fn write_axis_lines(out: &mut String, frame: &Frame) {
    put!(
        out,
        "<path d=\"M{:.1},{:.1}V{:.1}H{:.1}\" fill=\"none\" stroke=\"{AXIS}\" stroke-width=\"1\"/>\n",
        frame.left,
        frame.top,
        frame.bottom,
        frame.right
    );
}

/// A small note in the bottom-right corner; nothing when `note` is empty.
fn write_note(out: &mut String, note: &str) {
    if note.is_empty() {
        return;
    }
    put!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" font-size=\"11\" font-style=\"italic\" fill=\"{MUTED}\">{}</text>\n",
        WIDTH - 12.0,
        HEIGHT - 6.0,
        escape(note)
    );
}

/// The opening tag, accessible title, white background and visible title.
fn start_svg(out: &mut String, title: &str) {
    let title = escape(title);
    put!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{WIDTH}\" height=\"{HEIGHT}\" \
         viewBox=\"0 0 {WIDTH} {HEIGHT}\" font-family=\"sans-serif\">\n"
    );
    put!(out, "<title>{title}</title>\n");
    put!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{WIDTH}\" height=\"{HEIGHT}\" fill=\"#ffffff\"/>\n"
    );
    put!(
        out,
        "<text x=\"12\" y=\"26\" font-size=\"16\" font-weight=\"bold\" fill=\"#222222\">{title}</text>\n"
    );
}

/// The closing tag.
fn end_svg(out: &mut String) {
    out.push_str("</svg>\n");
}

/// A chart with only its title and "no data".
fn no_data(title: &str) -> String {
    let mut out = String::new();
    start_svg(&mut out, title);
    put!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"16\" fill=\"{MUTED}\">no data</text>\n",
        WIDTH / 2.0,
        HEIGHT / 2.0
    );
    end_svg(&mut out);
    out
}

/// The color of series `index`.
fn series_color(index: usize) -> &'static str {
    PALETTE[index % PALETTE.len()]
}

/// The dash attribute of series `index`: solid for the first round of colors, dashed after.
fn series_dash(index: usize) -> &'static str {
    if index < PALETTE.len() {
        ""
    } else {
        " stroke-dasharray=\"6 3\""
    }
}

/// A rough width of `text` at `font_size` in a sans-serif font, for layout only.
fn text_width(text: &str, font_size: f64) -> f64 {
    text.chars().count() as f64 * font_size * 0.58
}

/// `text` with `&`, `<`, `>` and `"` escaped and control characters (not allowed in XML) replaced
/// by spaces.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

/// A data value for a label: whole numbers from 100 up (and for whole values), else one decimal;
/// thousands separators from 1,000.
fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 || value.fract() == 0.0 {
        format_number(value, 0)
    } else {
        format_number(value, 1)
    }
}

/// `value` with `decimals` decimals and a comma between thousands ("12,500", "2.5").
pub fn format_number(value: f64, decimals: usize) -> String {
    let plain = format!("{:.*}", decimals, value.abs());
    let (whole, fraction) = match plain.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (plain.as_str(), None),
    };
    let mut out = String::with_capacity(plain.len() + 4);
    let is_zero = plain.chars().all(|c| c == '0' || c == '.');
    if value < 0.0 && !is_zero {
        out.push('-');
    }
    for (i, digit) in whole.chars().enumerate() {
        if i > 0 && (whole.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    if let Some(fraction) = fraction {
        out.push('.');
        out.push_str(fraction);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small deterministic generator (xorshift64*), so tests need no dependencies.
    struct Rng(u64);

    impl Rng {
        fn next_unit(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            let bits = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11;
            (bits as f64 + 0.5) / (1u64 << 53) as f64
        }

        /// A right-skewed latency-like sample around `median_ms`.
        fn latency(&mut self, median_ms: f64) -> f64 {
            let normal = (0..6).map(|_| self.next_unit()).sum::<f64>() - 3.0;
            median_ms * (0.45 * normal).exp()
        }
    }

    fn latencies(seed: u64, count: usize, median_ms: f64) -> Vec<f64> {
        let mut rng = Rng(seed);
        (0..count).map(|_| rng.latency(median_ms)).collect()
    }

    fn assert_well_formed(svg: &str) {
        assert!(svg.starts_with("<svg"), "starts with <svg: {svg}");
        assert!(svg.ends_with("</svg>\n"), "ends with </svg>");
        let opened = svg.matches("<g>").count() + svg.matches("<g ").count();
        let closed = svg.matches("</g>").count();
        assert_eq!(opened, closed, "<g> tags balance");
        assert_eq!(svg.matches("<svg").count(), 1);
        assert_eq!(svg.matches("<text").count(), svg.matches("</text>").count());
        assert!(svg.contains("viewBox=\"0 0 720 400\""));
        assert!(svg.contains("font-family=\"sans-serif\""));
        assert!(svg.contains("fill=\"#ffffff\""));
    }

    #[test]
    fn charts_are_well_formed() {
        let fast = latencies(1, 300, 3.0);
        let slow = latencies(2, 300, 9.0);
        let svg = latency_cdf(
            "Latency",
            &[
                Series {
                    name: "fast",
                    points: &fast,
                },
                Series {
                    name: "slow",
                    points: &slow,
                },
            ],
            &[("budget p50", 5.0), ("budget p99", 25.0)],
        );
        assert_well_formed(&svg);

        let points = [(1, 900.0), (4, 3400.0), (16, 9800.0)];
        let svg = throughput_curve(
            "Throughput",
            &[Series {
                name: "bridge",
                points: &points,
            }],
            Some(5000.0),
        );
        assert_well_formed(&svg);
    }

    #[test]
    fn title_and_names_are_escaped() {
        let samples = [1.0, 2.0, 3.0];
        let svg = latency_cdf(
            "a<b & \"c\"",
            &[Series {
                name: "x>y",
                points: &samples,
            }],
            &[("m<n", 2.0)],
        );
        assert!(svg.contains("a&lt;b &amp; &quot;c&quot;"));
        assert!(svg.contains("x&gt;y"));
        assert!(svg.contains("m&lt;n"));
        assert!(!svg.contains("a<b"));

        let points = [(1, 10.0)];
        let svg = throughput_curve(
            "a<b",
            &[Series {
                name: "s&t",
                points: &points,
            }],
            None,
        );
        assert!(svg.contains("a&lt;b"));
        assert!(svg.contains("s&amp;t"));
        assert!(!svg.contains("a<b"));
    }

    #[test]
    fn nice_ticks_are_nice() {
        let axis = nice_ticks(23.7);
        assert_eq!(axis.ticks, vec![0.0, 5.0, 10.0, 15.0, 20.0, 25.0]);
        assert_eq!(axis.decimals, 0);

        assert_eq!(nice_ticks(100.0).ticks.last(), Some(&100.0));
        assert_eq!(nice_ticks(0.0).max(), 1.0);
        assert_eq!(nice_ticks(f64::NAN).max(), 1.0);
        let small = nice_ticks(0.9);
        assert_eq!(small.decimals, 1);
        for max in [0.013, 0.9, 1.0, 7.0, 23.7, 99.0, 140.0, 5400.0, 123_456.0] {
            let axis = nice_ticks(max);
            assert!(axis.max() >= max, "{max}: {axis:?}");
            assert!(
                (4..=8).contains(&axis.ticks.len()),
                "{max}: {} ticks",
                axis.ticks.len()
            );
        }
    }

    #[test]
    fn numbers_have_thousands_separators() {
        assert_eq!(format_number(5000.0, 0), "5,000");
        assert_eq!(format_number(999.0, 0), "999");
        assert_eq!(format_number(1_234_567.0, 0), "1,234,567");
        assert_eq!(format_number(2.5, 1), "2.5");
        assert_eq!(format_number(12_500.25, 2), "12,500.25");
        assert_eq!(format_number(-1500.0, 0), "-1,500");
        assert_eq!(format_value(5000.0), "5,000");
        assert_eq!(format_value(4.25), "4.2");
        assert_eq!(format_value(7.0), "7");
    }

    #[test]
    fn large_cdf_stays_small() {
        let samples = latencies(3, 10_000, 4.0);
        let svg = latency_cdf(
            "10k samples",
            &[Series {
                name: "bridge",
                points: &samples,
            }],
            &[("budget p50", 5.0), ("budget p99", 25.0)],
        );
        assert_well_formed(&svg);
        assert!(svg.len() < 30 * 1024, "{} bytes", svg.len());

        let mut sorted = samples.clone();
        sorted.sort_by(f64::total_cmp);
        let vertices = cdf_vertices(&sorted);
        assert!(vertices.len() <= QUANTILE_POINTS, "{}", vertices.len());
        assert_eq!(vertices.last().map(|v| v.1), Some(1.0));
    }

    #[test]
    fn four_large_series_stay_small() {
        let data: Vec<Vec<f64>> = (0..4)
            .map(|i| latencies(10 + i, 2000, 2.0 + i as f64))
            .collect();
        let names = ["a", "b", "c", "d"];
        let series: Vec<Series<'_, f64>> = data
            .iter()
            .zip(names)
            .map(|(points, name)| Series { name, points })
            .collect();
        let svg = latency_cdf("four", &series, &[]);
        assert_well_formed(&svg);
        assert!(svg.len() < 30 * 1024, "{} bytes", svg.len());
    }

    #[test]
    fn budget_line_is_labelled() {
        let points = [(1, 900.0), (2, 1800.0), (4, 3400.0)];
        let svg = throughput_curve(
            "Throughput",
            &[Series {
                name: "bridge",
                points: &points,
            }],
            Some(5000.0),
        );
        assert!(svg.contains("budget 5,000/s"));
        assert!(svg.contains("stroke-dasharray=\"5 4\""));

        let svg = throughput_curve(
            "Throughput",
            &[Series {
                name: "bridge",
                points: &points,
            }],
            None,
        );
        assert!(!svg.contains("budget"));
    }

    #[test]
    fn log_scale_for_wide_x_range() {
        assert!(uses_log_scale(&[1, 4, 16, 64, 256]));
        assert!(!uses_log_scale(&[1, 2, 4]));
        assert!(!uses_log_scale(&[0, 16, 256]));
        let points = [
            (1, 800.0),
            (4, 3000.0),
            (16, 9000.0),
            (64, 14000.0),
            (256, 15000.0),
        ];
        let svg = throughput_curve(
            "Throughput",
            &[Series {
                name: "bridge",
                points: &points,
            }],
            None,
        );
        assert!(svg.contains("log₂ scale"));
        // Equal steps in log2: 1 → 4 → 16 are evenly spaced.
        let frame = Frame::below_legend(1);
        let scale = XScale::new(&frame, &[1, 4, 16, 64, 256], true);
        let a = scale.position(4) - scale.position(1);
        let b = scale.position(16) - scale.position(4);
        assert!((a - b).abs() < 1e-9);
    }

    #[test]
    fn empty_input_says_no_data() {
        for svg in [
            latency_cdf("empty", &[], &[]),
            latency_cdf(
                "empty",
                &[Series {
                    name: "none",
                    points: &[],
                }],
                &[("budget", 5.0)],
            ),
            latency_cdf(
                "nan",
                &[Series {
                    name: "nan",
                    points: &[f64::NAN, f64::INFINITY],
                }],
                &[],
            ),
            throughput_curve("empty", &[], Some(5000.0)),
            throughput_curve(
                "nan",
                &[Series {
                    name: "nan",
                    points: &[(4, f64::NAN)],
                }],
                None,
            ),
        ] {
            assert_well_formed(&svg);
            assert!(svg.contains("no data"));
        }
    }

    #[test]
    fn non_finite_values_are_skipped() {
        let samples = [1.0, f64::NAN, 2.0, f64::INFINITY, 3.0, f64::NEG_INFINITY];
        let svg = latency_cdf(
            "mixed",
            &[Series {
                name: "s",
                points: &samples,
            }],
            &[],
        );
        assert_well_formed(&svg);
        assert!(svg.contains("(n = 3)"));
        assert!(!svg.contains("NaN"));
        assert!(!svg.contains("inf"));

        let points = [(1, 10.0), (2, f64::NAN), (4, 30.0)];
        let svg = throughput_curve(
            "mixed",
            &[Series {
                name: "s",
                points: &points,
            }],
            Some(f64::NAN),
        );
        assert_well_formed(&svg);
        assert!(!svg.contains("NaN"));
        assert!(!svg.contains("budget"));
    }

    #[test]
    fn long_tail_is_clipped_with_a_note() {
        let mut samples = latencies(4, 2000, 2.0);
        let typical = samples.iter().copied().fold(0.0, f64::max);
        samples.push(typical * 100.0);
        let svg = latency_cdf(
            "tail",
            &[Series {
                name: "s",
                points: &samples,
            }],
            &[],
        );
        assert_well_formed(&svg);
        assert!(svg.contains("tail beyond"), "{svg}");
        assert!(svg.contains("ms not shown"));

        // Bounded samples (0.01 ms to 10 ms): the axis covers them all.
        let short: Vec<f64> = (1..=1000).map(|i| f64::from(i) / 100.0).collect();
        let svg = latency_cdf(
            "no tail",
            &[Series {
                name: "s",
                points: &short,
            }],
            &[],
        );
        assert!(!svg.contains("tail beyond"));
    }

    #[test]
    fn output_is_deterministic() {
        let samples = latencies(6, 5000, 3.0);
        let series = [Series {
            name: "s",
            points: &samples[..],
        }];
        assert_eq!(
            latency_cdf("t", &series, &[("p50", 5.0)]),
            latency_cdf("t", &series, &[("p50", 5.0)])
        );
    }

    /// Writes sample charts to `$TMPDIR/chartcheck/` for looking at them:
    /// `cargo test -- --ignored write_samples`.
    #[test]
    #[ignore]
    fn write_samples() {
        let directory = std::env::temp_dir().join("chartcheck");
        std::fs::create_dir_all(&directory).unwrap();

        let bridge = latencies(7, 10_000, 3.2);
        let mut floor = latencies(8, 10_000, 1.1);
        floor.push(900.0);
        let long_names = latencies(9, 800, 6.0);
        let svg = latency_cdf(
            "End-to-end latency, 64 visitors",
            &[
                Series {
                    name: "bridge",
                    points: &bridge,
                },
                Series {
                    name: "loopback floor",
                    points: &floor,
                },
                Series {
                    name: "bridge + connector <tls>",
                    points: &long_names,
                },
            ],
            &[("budget p50", 5.0), ("budget p99", 25.0)],
        );
        std::fs::write(directory.join("latency.svg"), &svg).unwrap();

        let bridge = [
            (1, 950.0),
            (2, 1880.0),
            (4, 3600.0),
            (8, 6400.0),
            (16, 9800.0),
            (32, 12100.0),
            (64, 12900.0),
            (128, 13100.0),
            (256, 12700.0),
        ];
        let floor = [
            (1, 1400.0),
            (2, 2700.0),
            (4, 5100.0),
            (8, 9000.0),
            (16, 14200.0),
            (32, 18800.0),
            (64, 21000.0),
            (128, 21900.0),
            (256, 22100.0),
        ];
        let svg = throughput_curve(
            "Throughput under load",
            &[
                Series {
                    name: "bridge",
                    points: &bridge,
                },
                Series {
                    name: "loopback floor",
                    points: &floor,
                },
            ],
            Some(5000.0),
        );
        std::fs::write(directory.join("throughput.svg"), &svg).unwrap();
    }
}
