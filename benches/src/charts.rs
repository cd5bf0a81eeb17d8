//! The report's pictures (issue #22): SVG charts BENCHMARKS.md embeds,
//! drawn with plotters' SVG backend (no system libraries: text is SVG
//! `<text>` the viewer renders). The report fills a [`Charts`] as it
//! measures and writes them at the end ([`Charts::write`]).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use plotters::coord::Shift;
use plotters::coord::ranged1d::{Ranged, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// The percentiles [`crate::Stats::percentiles`] holds.
pub const PERCENTILES: [f64; 7] = [10.0, 25.0, 50.0, 75.0, 90.0, 99.0, 99.9];

/// What the report draws.
#[derive(Debug, Default, Clone)]
pub struct Charts {
    /// The isolation-cost ladder: a label and its p50 in µs, cheapest
    /// first.
    pub ladder: Vec<(String, f64)>,
    /// Latency distributions: a label and its latency in µs at each of
    /// [`PERCENTILES`].
    pub latency: Vec<(String, Vec<f64>)>,
    /// The warm-cache new process's time by phase: a label and ms.
    pub cold_start: Vec<(String, f64)>,
    /// Throughput by workers: a label and (workers, operations/s).
    pub scaling: Vec<(String, Vec<(u32, f64)>)>,
}

fn drawing<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing a chart: {e:?}")
}

const FONT: (&str, u32) = ("sans-serif", 15);
const COLORS: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

impl Charts {
    /// Writes every chart that has data into `dir` (created): the paths
    /// written.
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let mut written = Vec::new();
        let mut out = |name: &str, draw: &dyn Fn(&Path) -> Result<()>| -> Result<()> {
            let path = dir.join(name);
            draw(&path)?;
            written.push(path);
            Ok(())
        };
        if !self.ladder.is_empty() {
            out("ladder.svg", &|p| {
                bars(
                    p,
                    "Isolation cost per call, p50 (µs, log scale)",
                    &self.ladder,
                    true,
                )
            })?;
        }
        if !self.latency.is_empty() {
            out("latency.svg", &|p| latency(p, &self.latency))?;
        }
        if !self.cold_start.is_empty() {
            out("cold-start.svg", &|p| {
                bars(
                    p,
                    "New process, warm cache: where the time goes (ms)",
                    &self.cold_start,
                    false,
                )
            })?;
        }
        if !self.scaling.is_empty() {
            out("scaling.svg", &|p| scaling(p, &self.scaling))?;
        }
        Ok(written)
    }
}

/// Horizontal bars, one per entry, labelled with their value.
fn bars(path: &Path, title: &str, entries: &[(String, f64)], log: bool) -> Result<()> {
    let height = 80 + 44 * entries.len() as u32;
    let root = SVGBackend::new(path, (900, height)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let max = entries
        .iter()
        .map(|e| e.1)
        .fold(f64::MIN_POSITIVE, f64::max);
    let rows = 0f64..entries.len() as f64;
    if log {
        let min = entries.iter().map(|e| e.1).fold(f64::MAX, f64::min);
        let lo = 10f64.powf(min.max(1e-3).log10().floor());
        let hi = 10f64.powf((max * 1.5).log10().ceil());
        let chart = chart_on(&root, title)
            .build_cartesian_2d((lo..hi).log_scale(), rows)
            .map_err(drawing)?;
        draw_bars(chart, entries, lo)
    } else {
        let chart = chart_on(&root, title)
            .build_cartesian_2d(0f64..max * 1.25, rows)
            .map_err(drawing)?;
        draw_bars(chart, entries, 0.0)
    }
}

fn chart_on<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut b = ChartBuilder::on(root);
    b.caption(title, ("sans-serif", 20))
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(10);
    b
}

fn draw_bars<X>(
    mut chart: ChartContext<'_, SVGBackend<'_>, Cartesian2d<X, RangedCoordf64>>,
    entries: &[(String, f64)],
    floor: f64,
) -> Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_label_style(FONT)
        .draw()
        .map_err(drawing)?;
    // The first entry on top; each row: its label, then its bar.
    for (i, (label, value)) in entries.iter().enumerate() {
        let y = (entries.len() - 1 - i) as f64;
        let color = COLORS[i % COLORS.len()].mix(0.75);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(floor, y + 0.08), (*value, y + 0.55)],
                color.filled(),
            )))
            .map_err(drawing)?;
        let text = format!("{label}: {}", short(*value));
        chart
            .draw_series(std::iter::once(Text::new(
                text,
                (floor, y + 0.95),
                FONT.into_font(),
            )))
            .map_err(drawing)?;
    }
    Ok(())
}

/// Latency at each percentile, one line per case (log scale).
fn latency(path: &Path, series: &[(String, Vec<f64>)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let all = series.iter().flat_map(|s| s.1.iter().copied());
    let (min, max) = all.fold((f64::MAX, f64::MIN_POSITIVE), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let lo = 10f64.powf(min.max(1e-3).log10().floor());
    let hi = 10f64.powf((max * 1.5).log10().ceil());
    let last = (PERCENTILES.len() - 1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Fresh instance per call: latency by percentile (µs, log scale)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.2f64..last + 0.2, (lo..hi).log_scale())
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_labels(PERCENTILES.len())
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && (0.0..=last).contains(&i) {
                format!("p{}", PERCENTILES[i as usize])
            } else {
                String::new()
            }
        })
        .label_style(FONT)
        .draw()
        .map_err(drawing)?;
    let lines = series.iter().map(|(label, values)| {
        let points = values.iter().enumerate().map(|(j, v)| (j as f64, *v));
        (label.as_str(), points.collect())
    });
    draw_lines(&mut chart, lines)
}

/// Throughput by worker count, one line per case.
fn scaling(path: &Path, series: &[(String, Vec<(u32, f64)>)]) -> Result<()> {
    let root = SVGBackend::new(path, (900, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(drawing)?;
    let max_workers = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.0))
        .max()
        .unwrap_or(1) as f64;
    let top = series
        .iter()
        .flat_map(|s| s.1.iter().map(|p| p.1))
        .fold(1.0, f64::max);
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Throughput by workers (fresh instance per call, 64 B)",
            ("sans-serif", 20),
        )
        .margin(16)
        .x_label_area_size(36)
        .y_label_area_size(70)
        .build_cartesian_2d(0.8f64..max_workers + 0.2, 0f64..top * 1.2)
        .map_err(drawing)?;
    chart
        .configure_mesh()
        .x_labels(max_workers as usize + 1)
        .x_label_formatter(&|x| {
            if (x - x.round()).abs() < 0.01 {
                format!("{} worker(s)", x.round())
            } else {
                String::new()
            }
        })
        .y_label_formatter(&|y| format!("{:.0}k/s", y / 1000.0))
        .label_style(FONT)
        .draw()
        .map_err(drawing)?;
    let lines = series.iter().map(|(label, points)| {
        let points = points.iter().map(|(w, v)| (*w as f64, *v));
        (label.as_str(), points.collect())
    });
    draw_lines(&mut chart, lines)
}

/// One labelled line with its points marked per `(label, points)`, then
/// the legend.
fn draw_lines<'a, 'l, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    lines: impl Iterator<Item = (&'l str, Vec<(f64, f64)>)>,
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (label, points)) in lines.enumerate() {
        let color = COLORS[i % COLORS.len()];
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(2)))
            .map_err(drawing)?
            .label(label)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        chart
            .draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))
            .map_err(drawing)?;
    }
    legend(chart)
}

fn legend<'a, X, Y>(chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>) -> Result<()>
where
    X: Ranged,
    Y: Ranged,
{
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .label_font(FONT)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(drawing)
}

/// `0.56`, `7.1`, `861`.
fn short(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_chart_is_written_as_svg() {
        let dir = std::env::temp_dir().join(format!("fnhost-charts-{}", std::process::id()));
        let charts = Charts {
            ladder: vec![("raw reuse".into(), 0.5), ("process".into(), 861.0)],
            latency: vec![("raw".into(), vec![6.0, 6.5, 7.0, 7.5, 9.0, 17.0, 40.0])],
            cold_start: vec![("loader".into(), 1.2), ("first call".into(), 0.3)],
            scaling: vec![("raw".into(), vec![(1, 1.2e5), (2, 2.0e5)])],
        };
        let written = charts.write(&dir).unwrap();
        assert_eq!(written.len(), 4);
        for p in &written {
            let svg = std::fs::read_to_string(p).unwrap();
            assert!(svg.starts_with("<svg"), "{}", p.display());
            assert!(svg.contains("<text"), "{}: labels", p.display());
        }
        let ladder = std::fs::read_to_string(dir.join("ladder.svg")).unwrap();
        assert!(ladder.contains("process: 861"), "{ladder}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
