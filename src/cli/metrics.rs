//! `dynface metrics`: PSNR and SSIM of every image in one folder against the
//! image with the same file stem in a reference folder.

use crate::atomic_file::write_atomic;
use crate::degrade::load::{collect_inputs, load_rgb8, stem_of};
use crate::metrics::{psnr, ssim};
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone)]
pub struct MetricsArgs {
    /// Folder of reference (ground-truth) images
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// Folder of images to score, paired with the references by file stem
    #[arg(long = "in")]
    pub input: PathBuf,
    /// Write the per-image figures and means to this JSON file
    #[arg(long)]
    pub json: Option<PathBuf>,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageScore {
    pub name: String,
    /// dB; serialised as null when the images are identical (+∞)
    pub psnr: f64,
    pub ssim: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct MetricsReport {
    pub images: Vec<ImageScore>,
    /// Mean of the per-image PSNR over the finite values.
    pub mean_psnr: f64,
    pub mean_ssim: f64,
    /// Stems present on one side only.
    pub unpaired: Vec<String>,
    /// Pairs that could not be scored, with the reason.
    pub failed: Vec<(String, String)>,
}

fn by_stem(dir: &Path) -> Result<BTreeMap<String, PathBuf>> {
    if !dir.is_dir() {
        bail!("{}: not a folder", dir.display());
    }
    let mut m = BTreeMap::new();
    for f in collect_inputs(&[dir.to_path_buf()])? {
        if let Some(prev) = m.insert(stem_of(&f), f.clone()) {
            bail!(
                "{} and {} share a file stem; pairing would be ambiguous",
                prev.display(),
                f.display()
            );
        }
    }
    Ok(m)
}

/// Scores one pair of files.
pub fn score_pair(reference: &Path, test: &Path) -> Result<(f64, f64)> {
    let a = load_rgb8(reference)?.rgb;
    let b = load_rgb8(test)?.rgb;
    let ctx = || format!("{} vs {}", test.display(), reference.display());
    Ok((
        psnr(&a, &b).with_context(ctx)?,
        ssim(&a, &b).with_context(ctx)?,
    ))
}

/// Pairs the folders by stem, scores every pair, prints a table and the means,
/// and writes JSON when asked. Fails when no pair could be scored.
pub fn run_metrics(args: &MetricsArgs) -> Result<MetricsReport> {
    let refs = by_stem(&args.reference)?;
    let tests = by_stem(&args.input)?;
    let mut unpaired: Vec<String> = refs
        .keys()
        .filter(|k| !tests.contains_key(*k))
        .cloned()
        .collect();
    unpaired.extend(tests.keys().filter(|k| !refs.contains_key(*k)).cloned());
    let pairs: Vec<(&String, &PathBuf, &PathBuf)> = refs
        .iter()
        .filter_map(|(k, r)| tests.get(k).map(|t| (k, r, t)))
        .collect();
    let results: Vec<Result<(f64, f64)>> =
        pairs.par_iter().map(|(_, r, t)| score_pair(r, t)).collect();

    let mut images = Vec::new();
    let mut failed = Vec::new();
    for ((name, _, _), r) in pairs.iter().zip(results) {
        match r {
            Ok((p, s)) => images.push(ImageScore {
                name: (*name).clone(),
                psnr: p,
                ssim: s,
            }),
            Err(e) => failed.push(((*name).clone(), format!("{e:#}"))),
        }
    }
    if images.is_empty() {
        bail!(
            "metrics: no image pair could be scored ({} in {}, {} in {}, {} failed)",
            refs.len(),
            args.reference.display(),
            tests.len(),
            args.input.display(),
            failed.len()
        );
    }
    let finite: Vec<f64> = images
        .iter()
        .map(|i| i.psnr)
        .filter(|p| p.is_finite())
        .collect();
    let mean_psnr = if finite.is_empty() {
        f64::INFINITY
    } else {
        finite.iter().sum::<f64>() / finite.len() as f64
    };
    let mean_ssim = images.iter().map(|i| i.ssim).sum::<f64>() / images.len() as f64;
    let report = MetricsReport {
        images,
        mean_psnr,
        mean_ssim,
        unpaired,
        failed,
    };
    print_table(&report);
    if let Some(path) = &args.json {
        write_atomic(path, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    Ok(report)
}

fn print_table(r: &MetricsReport) {
    let width = r
        .images
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    println!("{:<width$}  {:>9}  {:>7}", "image", "PSNR(dB)", "SSIM");
    for i in &r.images {
        println!("{:<width$}  {:>9.4}  {:>7.4}", i.name, i.psnr, i.ssim);
    }
    println!(
        "{:<width$}  {:>9.4}  {:>7.4}",
        "mean", r.mean_psnr, r.mean_ssim
    );
    for u in &r.unpaired {
        println!("unpaired: {u}");
    }
    for (n, e) in &r.failed {
        println!("failed: {n}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/metrics")
    }

    /// Values written by tools/reference/ssim_fixture.py with scikit-image.
    #[test]
    fn matches_scikit_image_fixture() {
        let dir = fixture_dir();
        let expected: serde_json::Value = serde_json::from_slice(
            &std::fs::read(dir.join("expected.json")).expect("fixture expected.json"),
        )
        .unwrap();
        let pairs = expected["pairs"].as_array().unwrap();
        assert_eq!(pairs.len(), 3);
        for p in pairs {
            let (ps, ss) = score_pair(
                &dir.join(p["ref"].as_str().unwrap()),
                &dir.join(p["test"].as_str().unwrap()),
            )
            .unwrap();
            let (pe, se) = (p["psnr"].as_f64().unwrap(), p["ssim"].as_f64().unwrap());
            eprintln!(
                "{}: ΔPSNR {:.2e} dB, ΔSSIM {:.2e}",
                p["test"],
                ps - pe,
                ss - se
            );
            assert!(
                (ps - pe).abs() < 1e-3,
                "{}: PSNR {ps} vs scikit-image {pe}",
                p["test"]
            );
            assert!(
                (ss - se).abs() < 1e-4,
                "{}: SSIM {ss} vs scikit-image {se}",
                p["test"]
            );
        }
    }

    #[test]
    fn pairs_by_stem_and_reports_the_rest() {
        let base = std::env::temp_dir().join(format!("dynface-metrics-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        let (rd, td) = (base.join("ref"), base.join("in"));
        std::fs::create_dir_all(&rd).unwrap();
        std::fs::create_dir_all(&td).unwrap();
        let fx = fixture_dir();
        std::fs::copy(fx.join("pair0_ref.png"), rd.join("a.png")).unwrap();
        std::fs::copy(fx.join("pair0_test.png"), td.join("a.png")).unwrap();
        std::fs::copy(fx.join("pair1_ref.png"), rd.join("b.png")).unwrap();
        std::fs::copy(fx.join("pair1_ref.png"), td.join("b.png")).unwrap();
        std::fs::copy(fx.join("pair2_ref.png"), rd.join("only_ref.png")).unwrap();
        std::fs::write(td.join("c.png"), b"junk").unwrap();
        std::fs::copy(fx.join("pair2_ref.png"), rd.join("c.png")).unwrap();
        let json = base.join("m.json");
        let args = MetricsArgs {
            reference: rd,
            input: td,
            json: Some(json.clone()),
        };
        let r = run_metrics(&args).unwrap();
        assert_eq!(r.images.len(), 2);
        assert_eq!(r.unpaired, ["only_ref"]);
        assert_eq!(r.failed.len(), 1);
        assert!(r.failed[0].1.contains("c.png"));
        assert!(r.images[1].psnr.is_infinite());
        assert!((r.mean_psnr - r.images[0].psnr).abs() < 1e-12);
        assert!((r.mean_ssim - (r.images[0].ssim + 1.0) / 2.0).abs() < 1e-12);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
        assert!(v["images"][1]["psnr"].is_null());
        std::fs::remove_dir_all(&base).ok();
    }
}
