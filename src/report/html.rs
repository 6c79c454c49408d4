//! `dynface report html REPORT.json` and `restore --html`: one self-contained page for a run.
//! Per image: input, RM(y), the guidance images, the restored face and DGSA's scale maps S_t
//! (first, middle and last step, colour-mapped with their range) side by side (PNG data
//! URIs, at most 512 px a side, shown as thumbnails; a click shows one full size), the σ_i
//! trajectories and the guidance loss per step as inline SVG, and the seconds per stage; rows
//! sort by σ̂, time or name. Guidance images, S maps and per-step curves come from a `--dump` folder
//! (`restore --html` writes one to OUTPUT/stages); without it those cells say so.
//!
//! The page checks itself once loaded and says so in its footer: how many images decoded,
//! how many plots drew, and any script error (the browser test reads that line).

use crate::degrade::load::{load_rgb8, stem_of};
use anyhow::{Context, Result};
use serde_json::Value;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct HtmlOptions {
    /// A report written by `dynface restore` (or `report merge`).
    pub report: PathBuf,
    /// The run's `--dump` folder (guidance images, σ and loss per step); default: `stages`
    /// beside the report, when it exists.
    pub dump: Option<PathBuf>,
    /// The page (default: report.html beside the report).
    pub output: Option<PathBuf>,
}

/// What the page holds.
#[derive(Clone, Debug)]
pub struct HtmlSummary {
    pub path: PathBuf,
    pub images: usize,
    pub pictures: usize,
    pub plots: usize,
}

/// Largest side of an embedded picture.
const MAX_SIDE: u32 = 512;

/// Standard base64 with padding (RFC 4648), for data URIs.
pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for k in 0..4 {
            if k <= c.len() {
                s.push(A[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// `path` decoded (as restore decodes inputs), scaled to fit [`MAX_SIDE`], as a PNG data URI.
fn picture(path: &Path) -> Result<String> {
    let img = load_rgb8(path)?.rgb;
    let img = if img.width().max(img.height()) > MAX_SIDE {
        image::imageops::resize(
            &img,
            (img.width() * MAX_SIDE / img.width().max(img.height())).max(1),
            (img.height() * MAX_SIDE / img.width().max(img.height())).max(1),
            image::imageops::FilterType::Triangle,
        )
    } else {
        img
    };
    let png = crate::restore::images::png_bytes(&img)?;
    Ok(format!("data:image/png;base64,{}", base64(&png)))
}

/// One picture cell: the image, or why there is none.
fn picture_cell(caption: &str, path: Option<&Path>, pictures: &mut usize) -> String {
    let body = match path {
        None => "<span class=\"na\">not available</span>".to_string(),
        Some(p) => match picture(p) {
            Ok(uri) => {
                *pictures += 1;
                format!(
                    "<img class=\"thumb\" src=\"{uri}\" alt=\"{}\" title=\"{}\">",
                    esc(caption),
                    esc(&p.display().to_string())
                )
            }
            Err(e) => format!(
                "<span class=\"na\">cannot show: {}</span>",
                esc(&format!("{e:#}"))
            ),
        },
    };
    format!(
        "<figure>{body}<figcaption>{}</figcaption></figure>",
        esc(caption)
    )
}

const COLOURS: [&str; 6] = [
    "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf",
];

/// An SVG line plot of `series` (name, y per x; `None` leaves a gap) against `xs`.
fn svg_plot(title: &str, xs: &[f64], series: &[(String, Vec<Option<f64>>)], log_y: bool) -> String {
    let (w, h, l, r, t, b) = (300.0, 170.0, 44.0, 8.0, 18.0, 28.0);
    let tr = |v: f64| if log_y { v.max(1e-12).log10() } else { v };
    let ys: Vec<f64> = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten().map(|&y| tr(y)))
        .filter(|y| y.is_finite())
        .collect();
    let (x0, x1) = xs
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &x| (a.min(x), b.max(x)));
    let (y0, y1) = ys
        .iter()
        .fold((f64::MAX, f64::MIN), |(a, b), &y| (a.min(y), b.max(y)));
    let mut s = format!(
        "<svg class=\"plot\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">\
         <text x=\"{l}\" y=\"12\" font-size=\"11\">{}</text>",
        esc(title)
    );
    if ys.is_empty() || xs.is_empty() {
        s.push_str("<text x=\"60\" y=\"90\" font-size=\"11\">no data</text></svg>");
        return s;
    }
    let (y0, y1) = if y1 - y0 < 1e-12 {
        (y0 - 0.5, y1 + 0.5)
    } else {
        (y0, y1)
    };
    let x1 = if x1 - x0 < 1e-12 { x0 + 1.0 } else { x1 };
    let px = |x: f64| l + (x - x0) / (x1 - x0) * (w - l - r);
    let py = |y: f64| t + (1.0 - (y - y0) / (y1 - y0)) * (h - t - b);
    let label = |v: f64| {
        let v = if log_y { 10f64.powf(v) } else { v };
        if v.abs() >= 100.0 || (v != 0.0 && v.abs() < 0.01) {
            format!("{v:.1e}")
        } else {
            format!("{v:.2}")
        }
    };
    let _ = write!(
        s,
        "<rect x=\"{l}\" y=\"{t}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#999\"/>\
         <text x=\"2\" y=\"{}\" font-size=\"9\">{}</text><text x=\"2\" y=\"{}\" font-size=\"9\">{}</text>\
         <text x=\"{l}\" y=\"{}\" font-size=\"9\">step {}</text><text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\">step {}</text>",
        w - l - r,
        h - t - b,
        t + 8.0,
        label(y1),
        h - b,
        label(y0),
        h - b + 12.0,
        x0,
        w - r,
        h - b + 12.0,
        x1
    );
    for (k, (name, v)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        // A gap (None) ends one polyline and the next value starts another.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![vec![]];
        for (x, y) in xs.iter().zip(v) {
            match y.map(tr).filter(|y| y.is_finite()) {
                Some(y) => runs.last_mut().expect("one run").push((px(*x), py(y))),
                None => runs.push(vec![]),
            }
        }
        for run in runs.iter().filter(|r| !r.is_empty()) {
            let pts: Vec<String> = run.iter().map(|(x, y)| format!("{x:.1},{y:.1}")).collect();
            let _ = write!(
                s,
                "<polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"1.5\" points=\"{}\"/>",
                pts.join(" ")
            );
        }
        let _ = write!(
            s,
            "<text x=\"{}\" y=\"{}\" font-size=\"10\" fill=\"{colour}\">{}</text>",
            w - r - 60.0,
            t + 12.0 + 11.0 * k as f64,
            esc(name)
        );
    }
    s.push_str("</svg>");
    s
}

/// DGSA's scale maps S_t of one image (first, middle, last step; `restore::dump`), each with
/// its step and range; with S ≡ 1 a line saying so instead of flat pictures.
fn scale_cells(
    im: &Value,
    stages: Option<&Value>,
    stage_dir: Option<&Path>,
    pictures: &mut usize,
) -> String {
    let scale = im["trace"]["scale"].as_str().unwrap_or("");
    let na = |text: &str| {
        format!(
            "<figure><span class=\"na\">{}</span><figcaption>S_t</figcaption></figure>",
            esc(text)
        )
    };
    if scale.starts_with("S ≡ 1") {
        return na(&format!("{scale}: no map to show"));
    }
    let maps = stages
        .and_then(|st| st["scale_maps"].as_array())
        .filter(|m| !m.is_empty());
    let (Some(maps), Some(dir)) = (maps, stage_dir) else {
        return na("S maps: not dumped (run restore with --html or --dump)");
    };
    maps.iter()
        .map(|m| {
            let file = m["file"].as_str().map(|f| dir.join(f));
            let cap = format!(
                "S at t={} ({:.3}–{:.3})",
                m["t"].as_u64().unwrap_or(0),
                m["min"].as_f64().unwrap_or(f64::NAN),
                m["max"].as_f64().unwrap_or(f64::NAN)
            );
            picture_cell(&cap, file.as_deref().filter(|p| p.exists()), pictures)
        })
        .collect()
}

/// The per-step curves of one image from its `stages.json`: (σ plot, loss plot).
fn step_plots(stages: &Value) -> Option<(String, String)> {
    let steps = stages["steps"].as_array()?;
    // Sampling runs from high t to low: plot in the order the steps ran (1-based).
    let xs: Vec<f64> = (1..=steps.len()).map(|k| k as f64).collect();
    let n = steps
        .iter()
        .filter_map(|s| s["sigma"].as_array().map(Vec::len))
        .max()
        .unwrap_or(0);
    let sigma: Vec<(String, Vec<Option<f64>>)> = (0..n)
        .map(|k| {
            (
                format!("σ{}", k + 1),
                steps.iter().map(|s| s["sigma"][k].as_f64()).collect(),
            )
        })
        .collect();
    let loss = vec![(
        "loss".to_string(),
        steps.iter().map(|s| s["loss"].as_f64()).collect::<Vec<_>>(),
    )];
    let first_t = steps.first().and_then(|s| s["t"].as_u64()).unwrap_or(0);
    let last_t = steps.last().and_then(|s| s["t"].as_u64()).unwrap_or(0);
    let title = |what: &str| format!("{what} per step (t {first_t} → {last_t})");
    Some((
        svg_plot(&title("σ_i"), &xs, &sigma, false),
        svg_plot(&title("guidance loss (log)"), &xs, &loss, true),
    ))
}

const STYLE: &str = "body{font-family:sans-serif;margin:16px;color:#222}\
table{border-collapse:collapse}td,th{border-top:1px solid #ccc;padding:6px;vertical-align:top;text-align:left}\
figure{display:inline-block;margin:0 4px;text-align:center}figcaption{font-size:11px;color:#555}\
img.thumb{width:128px;height:128px;object-fit:contain;background:#eee;cursor:zoom-in;image-rendering:auto}\
.na{display:inline-block;width:128px;font-size:11px;color:#999}.failed{color:#b00}\
#big{display:none;position:fixed;inset:0;background:rgba(0,0,0,.85);align-items:center;justify-content:center;cursor:zoom-out}\
#big img{max-width:95vw;max-height:95vh;min-width:384px;image-rendering:pixelated}\
button{margin-right:6px}small{color:#666}";

const SCRIPT: &str = r#"
function sortRows(key, numeric, descending) {
  const body = document.getElementById('rows');
  const rows = Array.from(body.rows);
  rows.sort((a, b) => {
    const x = a.dataset[key], y = b.dataset[key];
    const c = numeric ? (parseFloat(x) || 0) - (parseFloat(y) || 0) : x.localeCompare(y);
    return descending ? -c : c;
  });
  rows.forEach(r => body.appendChild(r));
}
document.querySelectorAll('img.thumb').forEach(img => img.addEventListener('click', () => {
  const big = document.getElementById('big');
  big.querySelector('img').src = img.src;
  big.style.display = 'flex';
}));
document.getElementById('big').addEventListener('click', e => { e.currentTarget.style.display = 'none'; });
window.addEventListener('load', () => {
  const imgs = Array.from(document.querySelectorAll('img.thumb'));
  const decoded = imgs.filter(i => i.complete && i.naturalWidth > 0).length;
  const plots = Array.from(document.querySelectorAll('svg.plot'));
  const drawn = plots.filter(p => p.getBBox().width > 0 && p.querySelectorAll('polyline').length > 0).length;
  const errors = window.pageErrors.length ? ' script errors: ' + window.pageErrors.join(' | ') : ' no script errors';
  document.getElementById('check').textContent =
    'page check: ' + decoded + ' of ' + imgs.length + ' images decoded, ' + drawn + ' of ' + plots.length + ' plots drawn,' + errors;
});
"#;

/// Writes the page for the report at `report_path` (its dump folder `dump`) to `out`.
pub fn write_html(report_path: &Path, dump: Option<&Path>, out: &Path) -> Result<HtmlSummary> {
    let text = std::fs::read_to_string(report_path)
        .with_context(|| format!("reading {}", report_path.display()))?;
    let report: Value = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a JSON report", report_path.display()))?;
    let images = report["images"].as_array().with_context(|| {
        format!(
            "{}: not a dynface restore report (no images list)",
            report_path.display()
        )
    })?;
    let (mut pictures, mut plots) = (0usize, 0usize);
    let mut rows = String::new();
    for im in images {
        let input = PathBuf::from(im["input"].as_str().unwrap_or(""));
        let stem = stem_of(&input);
        let status = im["status"].as_str().unwrap_or("");
        let sigma_hat = im["trace"]["sigma_hat"].as_f64();
        let secs = &im["seconds"];
        let total: f64 = ["restorer", "estimate", "sample"]
            .iter()
            .filter_map(|k| secs[*k].as_f64())
            .sum();
        let stage_dir = dump.map(|d| d.join(&stem)).filter(|d| d.is_dir());
        let stages: Option<Value> = stage_dir
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("stages.json")).ok())
            .and_then(|t| serde_json::from_str(&t).ok());
        let mut cells = String::new();
        cells.push_str(&picture_cell("input", Some(&input), &mut pictures));
        let rm = stage_dir.as_ref().map(|d| d.join("rm.png"));
        cells.push_str(&picture_cell(
            "RM(y)",
            rm.as_deref().filter(|p| p.exists()),
            &mut pictures,
        ));
        let n_guid = im["trace"]["sigma_initial"].as_array().map_or(0, Vec::len);
        for k in 1..=n_guid {
            let g = stage_dir
                .as_ref()
                .map(|d| d.join(format!("guidance_{k}.png")));
            let cap = match im["trace"]["sigma_initial"][k - 1].as_f64() {
                Some(s) => format!("guidance {k} (σ {s:.2})"),
                None => format!("guidance {k}"),
            };
            cells.push_str(&picture_cell(
                &cap,
                g.as_deref().filter(|p| p.exists()),
                &mut pictures,
            ));
        }
        let output = im["output"].as_str().map(PathBuf::from);
        cells.push_str(&picture_cell(
            "restored",
            output.as_deref().filter(|p| p.exists()),
            &mut pictures,
        ));
        cells.push_str(&scale_cells(
            im,
            stages.as_ref(),
            stage_dir.as_deref(),
            &mut pictures,
        ));
        let curves = match stages.as_ref().and_then(step_plots) {
            Some((s, l)) => {
                plots += 2;
                format!("{s}<br>{l}")
            }
            None => {
                "<span class=\"na\">no per-step data (run restore with --html or --dump)</span>"
                    .into()
            }
        };
        let trace = &im["trace"];
        let fmt_list = |v: &Value| {
            v.as_array()
                .map(|a| {
                    a.iter()
                        .map(|x| x.as_f64().map_or("?".into(), |f| format!("{f:.2}")))
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_default()
        };
        let mut info = format!(
            "<b>{}</b><br><span class=\"{}\">{}</span>",
            esc(&stem),
            if status == "restored" { "" } else { "failed" },
            esc(status)
        );
        if let Some(s) = sigma_hat {
            let _ = write!(
                info,
                "<br>σ̂ {s:.3}<br><small>{}</small><br>σ_i {} → {}<br>start steps {}",
                esc(trace["estimator"].as_str().unwrap_or("")),
                fmt_list(&trace["sigma_initial"]),
                fmt_list(&trace["sigma_final"]),
                esc(&trace["start_steps"].to_string())
            );
        }
        if let Some(e) = im["error"].as_str() {
            let _ = write!(info, "<br><small class=\"failed\">{}</small>", esc(e));
        }
        if secs.is_object() {
            let _ = write!(
                info,
                "<br><small>seconds (batch): restorer {:.2}, estimate {:.2}, sample {:.2}</small>",
                secs["restorer"].as_f64().unwrap_or(0.0),
                secs["estimate"].as_f64().unwrap_or(0.0),
                secs["sample"].as_f64().unwrap_or(0.0)
            );
        }
        for n in im["notes"].as_array().into_iter().flatten() {
            let _ = write!(info, "<br><small>{}</small>", esc(n.as_str().unwrap_or("")));
        }
        let _ = writeln!(
            rows,
            "<tr data-name=\"{}\" data-sigma=\"{}\" data-seconds=\"{total}\"><td>{info}</td><td>{cells}</td><td>{curves}</td></tr>",
            esc(&stem),
            sigma_hat.unwrap_or(-1.0)
        );
    }
    let field = |k: &str| {
        esc(report[k]
            .as_str()
            .map_or_else(|| report[k].to_string(), str::to_string)
            .as_str())
    };
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>dynface report: {title}</title>\
         <script>window.pageErrors=[];window.addEventListener('error',e=>window.pageErrors.push(e.message));</script>\
         <style>{STYLE}</style></head><body>\
         <h1>dynface restore report</h1>\
         <p>{n} images: restored {restored}, skipped {skipped}, failed {failed}, not run {not_run}; \
         device {device}; preset {preset}; sampler {sampler}; {seconds:.1} s. <small>{title}</small></p>\
         <p>sort by <button onclick=\"sortRows('sigma',true,true)\">σ̂</button>\
         <button onclick=\"sortRows('seconds',true,true)\">time</button>\
         <button onclick=\"sortRows('name',false,false)\">name</button>\
         <small>click a picture to enlarge it</small></p>\
         <table><thead><tr><th>image</th><th>input · RM(y) · guidance · restored · S</th><th>σ_i and loss per step</th></tr></thead>\
         <tbody id=\"rows\">\n{rows}</tbody></table>\
         <div id=\"big\"><img alt=\"enlarged\"></div>\
         <p id=\"check\">page check: not run (scripts disabled?)</p>\
         <script>{SCRIPT}</script></body></html>\n",
        title = esc(&report_path.display().to_string()),
        n = images.len(),
        restored = report["restored"],
        skipped = report["skipped"],
        failed = report["failed"],
        not_run = report["not_run"],
        device = field("device"),
        preset = field("preset"),
        sampler = field("sampler"),
        seconds = report["seconds"].as_f64().unwrap_or(0.0),
    );
    crate::atomic_file::write_atomic(out, page.as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    Ok(HtmlSummary {
        path: out.to_path_buf(),
        images: images.len(),
        pictures,
        plots,
    })
}

/// `dynface report html`.
pub fn run_html(args: &HtmlOptions) -> Result<HtmlSummary> {
    let dir = args
        .report
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let dump = args.dump.clone().or_else(|| {
        let d = dir.join("stages");
        d.is_dir().then_some(d)
    });
    let out = args
        .output
        .clone()
        .unwrap_or_else(|| dir.join("report.html"));
    let s = write_html(&args.report, dump.as_deref(), &out)?;
    eprintln!(
        "html report: {} ({} images, {} pictures, {} plots)",
        s.path.display(),
        s.images,
        s.pictures,
        s.plots
    );
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd]), "//79");
    }

    #[test]
    fn plots_break_lines_at_gaps_and_escape_names() {
        let xs = [0.0, 1.0, 2.0, 3.0];
        let svg = svg_plot(
            "a<b",
            &xs,
            &[("s".into(), vec![Some(1.0), None, Some(2.0), Some(3.0)])],
            false,
        );
        assert_eq!(svg.matches("<polyline").count(), 2, "{svg}");
        assert!(svg.contains("a&lt;b"));
        assert!(svg_plot("x", &xs, &[("s".into(), vec![None; 4])], true).contains("no data"));
    }
}
