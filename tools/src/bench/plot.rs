//! The latency-percentile plot: for each object size of the put (and get) workload, a
//! panel of latency against percentile, one line per system, both axes logarithmic —
//! the shape a person reads tails from at a glance.

use std::collections::BTreeMap;

use svg::Document;
use svg::node::element::{Group, Line, Path, Rectangle, Text, path::Data};

use super::pipeline::{DIRECT, FDW, PipelineReport, STAGES, Spread};
use super::report::{Report, Series};

const PANEL_W: f64 = 420.0;
const PANEL_H: f64 = 300.0;
const MARGIN: f64 = 56.0;
const COLORS: [&str; 8] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#7f7f7f",
];

/// The plot of the report's latency series, as an SVG document.
pub fn latency_svg(report: &Report) -> String {
    let mut panels: BTreeMap<(usize, u64), (String, Vec<&Series>)> = BTreeMap::new();
    let plotted = ["put", "get"];
    for s in report.series.iter().filter(|s| s.latency.is_some()) {
        let Some(rank) = plotted.iter().position(|w| *w == s.workload) else {
            continue;
        };
        panels
            .entry((rank, s.object_bytes))
            .or_insert_with(|| (s.workload.clone(), Vec::new()))
            .1
            .push(s);
    }
    let systems: Vec<String> = {
        let mut names: Vec<String> = Vec::new();
        for s in &report.series {
            if !names.contains(&s.system) {
                names.push(s.system.clone());
            }
        }
        names
    };
    let color = |system: &str| {
        let i = systems.iter().position(|s| s == system).unwrap_or(0);
        COLORS[i % COLORS.len()]
    };
    let columns = 3usize;
    let rows = panels.len().div_ceil(columns).max(1);
    let width = columns as f64 * (PANEL_W + MARGIN) + MARGIN;
    let height = rows as f64 * (PANEL_H + 2.0 * MARGIN) + 60.0;
    let title = format!(
        "fdw-bench latency percentiles — {} — seed {}",
        report.machine, report.seed
    );
    let mut doc = canvas(width, height, (title, 28, 15));
    for (i, ((_, bytes), (workload, series))) in panels.iter().enumerate() {
        let x0 = MARGIN + (i % columns) as f64 * (PANEL_W + MARGIN);
        let y0 = 60.0 + (i / columns) as f64 * (PANEL_H + 2.0 * MARGIN);
        doc = doc.add(panel(x0, y0, workload, *bytes, series, &color));
    }
    doc.to_string()
}

/// A white page `width` by `height` with its title (text, baseline y, font size).
fn canvas(width: f64, height: f64, (title, y, size): (String, u32, u32)) -> Document {
    Document::new()
        .set("viewBox", (0, 0, width, height))
        .set("width", width)
        .set("height", height)
        .set("font-family", "sans-serif")
        .add(
            Rectangle::new()
                .set("width", width)
                .set("height", height)
                .set("fill", "white"),
        )
        .add(
            Text::new(title)
                .set("x", MARGIN)
                .set("y", y)
                .set("font-size", size),
        )
}

/// Percentile p (0..=100) on the x axis: log of 1 / (1 - p), capped at 99.99.
fn nines(p: f64) -> f64 {
    let p = p.min(99.99) / 100.0;
    (1.0 / (1.0 - p)).log10()
}

fn panel(
    x0: f64,
    y0: f64,
    workload: &str,
    bytes: u64,
    series: &[&Series],
    color: &dyn Fn(&str) -> &'static str,
) -> Group {
    let points = |s: &Series| s.latency.as_ref().map_or(Vec::new(), |l| l.curve.clone());
    let all: Vec<f64> = series
        .iter()
        .flat_map(|s| points(s).into_iter().map(|(_, us)| us.max(1.0)))
        .collect();
    let (lo, hi) = (
        all.iter().copied().fold(f64::MAX, f64::min).log10().floor(),
        all.iter()
            .copied()
            .fold(1.0, f64::max)
            .log10()
            .ceil()
            .max(1.0),
    );
    let hi = if hi <= lo { lo + 1.0 } else { hi };
    let x_max = nines(99.99);
    let x = |p: f64| x0 + nines(p) / x_max * PANEL_W;
    let y = |us: f64| y0 + PANEL_H - (us.max(1.0).log10() - lo) / (hi - lo) * PANEL_H;
    let mut group = Group::new()
        .add(
            Rectangle::new()
                .set("x", x0)
                .set("y", y0)
                .set("width", PANEL_W)
                .set("height", PANEL_H)
                .set("fill", "none")
                .set("stroke", "#999"),
        )
        .add(
            Text::new(format!("{workload} {}", bytesize::ByteSize(bytes)))
                .set("x", x0)
                .set("y", y0 - 8.0)
                .set("font-size", 13),
        );
    for decade in lo as i32..=hi as i32 {
        let us = 10f64.powi(decade);
        let label = if us >= 1e6 {
            format!("{} s", us / 1e6)
        } else if us >= 1e3 {
            format!("{} ms", us / 1e3)
        } else {
            format!("{us} µs")
        };
        group = group.add(grid(x0, y(us), x0 + PANEL_W, y(us))).add(
            Text::new(label)
                .set("x", x0 - 4.0)
                .set("y", y(us) + 4.0)
                .set("font-size", 10)
                .set("text-anchor", "end"),
        );
    }
    for (p, label) in [
        (0.0, "p0"),
        (90.0, "p90"),
        (99.0, "p99"),
        (99.9, "p99.9"),
        (99.99, "p99.99"),
    ] {
        group = group.add(grid(x(p), y0, x(p), y0 + PANEL_H)).add(
            Text::new(label)
                .set("x", x(p))
                .set("y", y0 + PANEL_H + 14.0)
                .set("font-size", 10)
                .set("text-anchor", "middle"),
        );
    }
    for (i, s) in series.iter().enumerate() {
        let mut data = Data::new();
        for (j, (p, us)) in points(s).into_iter().enumerate() {
            data = if j == 0 {
                data.move_to((x(p), y(us)))
            } else {
                data.line_to((x(p), y(us)))
            };
        }
        let stroke = color(&s.system);
        group = group
            .add(
                Path::new()
                    .set("d", data)
                    .set("fill", "none")
                    .set("stroke", stroke)
                    .set("stroke-width", 2)
                    .set("stroke-dasharray", if s.baseline { "5,3" } else { "none" }),
            )
            .add(
                Text::new(s.system.clone())
                    .set("x", x0 + 6.0)
                    .set("y", y0 + PANEL_H + 28.0 + 12.0 * (i / 2) as f64)
                    .set("dx", (i % 2) as f64 * PANEL_W / 2.0)
                    .set("font-size", 10)
                    .set("fill", stroke),
            );
    }
    group
}

fn grid(x1: f64, y1: f64, x2: f64, y2: f64) -> Line {
    Line::new()
        .set("x1", x1)
        .set("y1", y1)
        .set("x2", x2)
        .set("y2", y2)
        .set("stroke", "#e4e4e4")
}

/// The seed pipeline's figure: per-stage bars of every mode (mean, with the runs' min
/// and max as error bars), and the whole pipeline's totals the same way.
pub fn pipeline_svg(report: &PipelineReport) -> String {
    let (width, height) = (980.0, 440.0);
    // Direct S3 red, fdw blue, the floor grey, whichever of them ran.
    let modes = report.modes();
    let colors: Vec<&str> = modes
        .iter()
        .map(|m| match *m {
            DIRECT => COLORS[1],
            FDW => COLORS[0],
            _ => COLORS[7],
        })
        .collect();
    let stages: Vec<(String, Vec<Spread>)> = STAGES
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let spreads = modes.iter().map(|m| report.stage(m, i)).collect();
            (name.to_string(), spreads)
        })
        .collect();
    let totals = vec![(
        "whole pipeline".to_owned(),
        modes.iter().map(|m| report.total(m)).collect::<Vec<_>>(),
    )];
    let title = format!(
        "seed pipeline, {} CSV in {} files — {} — {} runs each, bars: mean, whiskers: min–max",
        bytesize::ByteSize(report.csv_bytes),
        report.files,
        modes.join(" vs "),
        report.runs.len() / modes.len().max(1)
    );
    let mut doc = canvas(width, height, (title, 26, 14));
    doc = doc.add(bar_panel(
        MARGIN,
        60.0,
        600.0,
        "seconds per stage",
        &stages,
        &colors,
    ));
    doc = doc.add(bar_panel(
        MARGIN + 680.0,
        60.0,
        200.0,
        "seconds, total",
        &totals,
        &colors,
    ));
    for (i, mode) in modes.iter().enumerate() {
        doc = doc.add(
            Text::new(mode.to_string())
                .set("x", MARGIN + 140.0 * i as f64)
                .set("y", height - 14.0)
                .set("font-size", 12)
                .set("fill", colors[i]),
        );
    }
    if modes.contains(&DIRECT) && modes.contains(&FDW) {
        let speedup = report.total(DIRECT).mean / report.total(FDW).mean.max(1e-12);
        doc = doc.add(
            Text::new(format!("fdw {speedup:.1}x faster overall"))
                .set("x", MARGIN + 680.0)
                .set("y", height - 14.0)
                .set("font-size", 12),
        );
    }
    doc.to_string()
}

/// Groups of bars, one bar per mode, on a linear axis from zero.
fn bar_panel(
    x0: f64,
    y0: f64,
    w: f64,
    title: &str,
    groups: &[(String, Vec<Spread>)],
    colors: &[&str],
) -> Group {
    let h = 300.0;
    let top = groups
        .iter()
        .flat_map(|(_, s)| s.iter().map(|s| s.max))
        .fold(1e-9, f64::max)
        * 1.1;
    let y = |v: f64| y0 + h - v / top * h;
    let mut group = Group::new()
        .add(
            Rectangle::new()
                .set("x", x0)
                .set("y", y0)
                .set("width", w)
                .set("height", h)
                .set("fill", "none")
                .set("stroke", "#999"),
        )
        .add(
            Text::new(title)
                .set("x", x0)
                .set("y", y0 - 8.0)
                .set("font-size", 12),
        );
    for tick in 0..=4 {
        let v = top * f64::from(tick) / 4.0;
        group = group.add(grid(x0, y(v), x0 + w, y(v))).add(
            Text::new(format!("{v:.1}"))
                .set("x", x0 - 4.0)
                .set("y", y(v) + 4.0)
                .set("font-size", 10)
                .set("text-anchor", "end"),
        );
    }
    let slot = w / groups.len() as f64;
    for (g, (name, spreads)) in groups.iter().enumerate() {
        let bar = slot * 0.7 / spreads.len() as f64;
        for (m, s) in spreads.iter().enumerate() {
            let bx = x0 + slot * g as f64 + slot * 0.15 + bar * m as f64;
            let mid = bx + bar / 2.0;
            group = group
                .add(
                    Rectangle::new()
                        .set("x", bx)
                        .set("y", y(s.mean))
                        .set("width", bar * 0.9)
                        .set("height", (y0 + h - y(s.mean)).max(0.5))
                        .set("fill", colors[m % colors.len()]),
                )
                .add(grid(mid, y(s.min), mid, y(s.max)).set("stroke", "#222"))
                .add(grid(mid - 4.0, y(s.min), mid + 4.0, y(s.min)).set("stroke", "#222"))
                .add(grid(mid - 4.0, y(s.max), mid + 4.0, y(s.max)).set("stroke", "#222"))
                .add(
                    Text::new(format!("{:.2}", s.mean))
                        .set("x", mid)
                        .set("y", y(s.max) - 4.0)
                        .set("font-size", 9)
                        .set("text-anchor", "middle"),
                );
        }
        group = group.add(
            Text::new(name.clone())
                .set("x", x0 + slot * (g as f64 + 0.5))
                .set("y", y0 + h + 16.0)
                .set("font-size", 10)
                .set("text-anchor", "middle"),
        );
    }
    group
}
