//! `plot`: SVG charts from the JSON lines of earlier runs: delivery and
//! ack latency against offered rate (ramp steps), and server RSS against
//! open sessions (connections runs).

use std::path::Path;

use plotters::prelude::*;
use serde_json::Value;

use crate::BenchResult;

const SIZE: (u32, u32) = (900, 560);

fn num(v: &Value, path: &[&str]) -> Option<f64> {
    path.iter().try_fold(v, |v, key| v.get(key))?.as_f64()
}

fn lines(input: &Path) -> BenchResult<Vec<Value>> {
    let text = std::fs::read_to_string(input)?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

fn chart(
    out: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> BenchResult<()> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let x_max = points.clone().map(|p| p.0).fold(1.0, f64::max) * 1.05;
    let y_max = points.map(|p| p.1).fold(1.0, f64::max) * 1.1;
    let root = SVGBackend::new(out, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(65)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()
        .map_err(|e| e.to_string())?;
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                points.iter().copied(),
                color.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        chart
            .draw_series(points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| e.to_string())?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

pub fn run(input: &Path, out_dir: &Path) -> BenchResult<Vec<String>> {
    let runs = lines(input)?;
    std::fs::create_dir_all(out_dir)?;
    let mut written = Vec::new();
    let steps: Vec<&Value> = runs
        .iter()
        .filter(|r| r["scenario"] == "ramp-step")
        .collect();
    if !steps.is_empty() {
        let series: Vec<(String, Vec<(f64, f64)>)> = [
            ("delivery p50", ["latency", "delivery", "p50_ms"]),
            ("delivery p99", ["latency", "delivery", "p99_ms"]),
            ("ack p50", ["latency", "ack", "p50_ms"]),
            ("ack p99", ["latency", "ack", "p99_ms"]),
        ]
        .iter()
        .map(|(name, path)| {
            let mut points: Vec<(f64, f64)> = steps
                .iter()
                .filter_map(|s| {
                    Some((
                        num(s, &["throughput", "offered_msgs_per_s"])?,
                        num(s, path)?,
                    ))
                })
                .collect();
            // Several ramps may share a file: draw by rate, not by time.
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (name.to_string(), points)
        })
        .collect();
        let out = out_dir.join("latency-vs-rate.svg");
        chart(
            &out,
            "Latency against offered rate (ramp)",
            "offered messages/s",
            "ms",
            &series,
        )?;
        written.push(out.display().to_string());
    }
    let rss: Vec<(f64, f64)> = runs
        .iter()
        .filter(|r| r["scenario"] == "connections")
        .flat_map(|r| {
            r["extra"]["rss_samples"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()? / 1048576.0)))
        .collect();
    if !rss.is_empty() {
        let mut rss = rss;
        rss.sort_by(|a, b| a.0.total_cmp(&b.0));
        let out = out_dir.join("rss-vs-sessions.svg");
        chart(
            &out,
            "Server RSS against open sessions",
            "sessions",
            "RSS (MiB)",
            &[("server RSS".into(), rss)],
        )?;
        written.push(out.display().to_string());
    }
    // Long fan-out runs: is RSS flat over time?
    let soak: Vec<(String, Vec<(f64, f64)>)> = runs
        .iter()
        .filter(|r| r["scenario"] == "fanout" && r["duration_s"].as_f64().unwrap_or(0.0) >= 60.0)
        .map(|r| {
            let points = r["extra"]["rss_samples"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .filter_map(|p| Some((p.get(0)?.as_f64()?, p.get(1)?.as_f64()? / 1048576.0)))
                .collect();
            let label = format!(
                "{}x{} at {} msg/s",
                r["params"]["threads"], r["params"]["members"], r["params"]["rate"]
            );
            (label, points)
        })
        .collect();
    if !soak.is_empty() {
        let out = out_dir.join("rss-over-time.svg");
        chart(
            &out,
            "Server RSS during a long fan-out run",
            "seconds",
            "RSS (MiB)",
            &soak,
        )?;
        written.push(out.display().to_string());
    }
    Ok(written)
}
