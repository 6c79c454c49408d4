//! The metrics log (`metrics.jsonl`: one JSON object per training step or validation) and
//! the loss-curve plot drawn from it (`loss.svg`), both next to the checkpoints.

use crate::atomic_file::write_atomic;
use anyhow::{Context, Result};
use serde_json::Value;
use std::io::Write;
use std::path::Path;

/// Appends one record and flushes it, so a killed run keeps every finished step's line.
pub fn append(path: &Path, record: &Value) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    writeln!(f, "{record}").with_context(|| format!("cannot write {}", path.display()))
}

/// Every record of the log (an absent log is empty; a torn last line from a kill is dropped).
pub fn read(path: &Path) -> Result<Vec<Value>> {
    if !path.exists() {
        return Ok(vec![]);
    }
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect())
}

/// Keeps the records of steps before `step` (a resume from a checkpoint taken after
/// `step` updates redoes the rest), rewriting the log atomically.
pub fn truncate_after(path: &Path, step: u64) -> Result<()> {
    let keep: Vec<String> = read(path)?
        .into_iter()
        .filter(|r| r["step"].as_u64().is_some_and(|s| s < step))
        .map(|r| r.to_string() + "\n")
        .collect();
    write_atomic(path, keep.concat().as_bytes())
}

/// One line of a plot: name, colour, points (x, y).
pub type Series<'a> = (&'a str, &'a str, Vec<(f64, f64)>);

/// A line plot of `series` with axes labelled by their range.
pub fn svg_plot(title: &str, xlabel: &str, series: &[Series]) -> String {
    let (w, h, m) = (640.0, 400.0, 56.0);
    let pts = series.iter().flat_map(|s| s.2.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for &(x, y) in pts {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y0 = y0.min(y);
            y1 = y1.max(y);
        }
    }
    if x0 > x1 {
        (x0, x1, y0, y1) = (0.0, 1.0, 0.0, 1.0);
    }
    let y0 = y0.min(0.0);
    let (sx, sy) = (
        (w - 2.0 * m) / (x1 - x0).max(1e-12),
        (h - 2.0 * m) / (y1 - y0).max(1e-12),
    );
    let px = |x: f64| m + (x - x0) * sx;
    let py = |y: f64| h - m - (y - y0) * sy;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\">{title}</text>\n\
         <line x1=\"{m}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{m}\" y1=\"{m}\" x2=\"{m}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{xlabel}</text>\n",
        w / 2.0,
        h - m,
        w - m,
        h - m,
        h - m,
        w / 2.0,
        h - 12.0
    );
    for (v, anchor_y) in [(y0, h - m), (y1, m)] {
        s += &format!(
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.3}</text>\n",
            m - 4.0,
            anchor_y + 4.0
        );
    }
    for (v, ax) in [(x0, m), (x1, w - m)] {
        s += &format!(
            "<text x=\"{ax}\" y=\"{}\" text-anchor=\"middle\">{v}</text>\n",
            h - m + 16.0
        );
    }
    for (k, (name, colour, p)) in series.iter().enumerate() {
        let path: Vec<String> = p
            .iter()
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .map(|&(x, y)| format!("{:.1},{:.1}", px(x), py(y)))
            .collect();
        s += &format!(
            "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>\n\
             <text x=\"{}\" y=\"{}\" fill=\"{colour}\">{name}</text>\n",
            path.join(" "),
            w - m - 150.0,
            m + 16.0 * k as f64
        );
    }
    s + "</svg>\n"
}

/// `loss.svg` from the log: the training loss per step and, where logged, the validation
/// figure (`val_mae` of the σ estimators, `val_loss` of the others).
pub fn write_loss_plot(log: &Path, out: &Path, title: &str) -> Result<()> {
    let recs = read(log)?;
    let get = |key: &str| -> Vec<(f64, f64)> {
        recs.iter()
            .filter_map(|r| Some((r["step"].as_f64()?, r[key].as_f64()?)))
            .collect()
    };
    let mut series = vec![("train loss", "#1f77b4", get("loss"))];
    for (key, name) in [
        ("val_mae", "validation MAE"),
        ("val_loss", "validation loss"),
    ] {
        let v = get(key);
        if !v.is_empty() {
            series.push((name, "#d62728", v));
        }
    }
    let svg = svg_plot(title, "step", &series);
    write_atomic(out, svg.as_bytes())
}
