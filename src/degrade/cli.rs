//! `dynface degrade`: degrade a batch of images with Eq. 16 and record the draws.

use super::load::{collect_inputs, load_rgb8, stem_of};
use super::params::{Choice, DegradeConfig, DegradeParams};
use super::pipeline::degrade_image;
use super::seed::{image_rng, image_seed, Stream};
use crate::atomic_file::write_atomic;
use anyhow::{bail, Context, Result};
use rayon::prelude::*;
use serde::Serialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn parse_pair(s: &str) -> Result<(f64, f64), String> {
    let (a, b) = s
        .split_once(',')
        .ok_or_else(|| format!("`{s}`: expected two numbers `lo,hi`"))?;
    let p = |t: &str| t.trim().parse::<f64>().map_err(|e| format!("`{t}`: {e}"));
    Ok((p(a)?, p(b)?))
}

#[derive(clap::Args, Debug, Clone)]
pub struct DegradeArgs {
    /// Input images or folders of PNG/JPEG images (folders are not searched recursively)
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Output folder (created if missing): `<stem>.png` per image and `degrade.json`
    #[arg(short = 'o', long = "out")]
    pub out: PathBuf,
    /// Seed; each image's draws depend only on the seed and its file stem
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Range of the blur σ (pixels)
    #[arg(long, value_parser = parse_pair, default_value = "0.1,15")]
    pub sigma_range: (f64, f64),
    /// Range of the resize factor r
    #[arg(long, value_parser = parse_pair, default_value = "0.8,32")]
    pub scale_range: (f64, f64),
    /// Range of the noise std δ (0–255 scale)
    #[arg(long, value_parser = parse_pair, default_value = "0,20")]
    pub noise_range: (f64, f64),
    /// Range of the JPEG quality q
    #[arg(long, value_parser = parse_pair, default_value = "30,100")]
    pub jpeg_range: (f64, f64),
    /// Fixed blur σ (0 turns the blur off)
    #[arg(long)]
    pub sigma: Option<f64>,
    /// Fixed resize factor (1 turns resizing off)
    #[arg(long)]
    pub scale: Option<f64>,
    /// Fixed noise std (0 turns noise off)
    #[arg(long)]
    pub noise: Option<f64>,
    /// Fixed JPEG quality
    #[arg(long, conflicts_with = "no_jpeg")]
    pub jpeg: Option<f64>,
    /// Skip the JPEG stage
    #[arg(long)]
    pub no_jpeg: bool,
    /// Rotated anisotropic Gaussian kernels (σ_x, σ_y from the σ choice, random angle)
    #[arg(long)]
    pub aniso: bool,
}

impl DegradeArgs {
    pub fn config(&self) -> DegradeConfig {
        let pick = |fixed: Option<f64>, (lo, hi): (f64, f64)| match fixed {
            Some(v) => Choice::Fixed(v),
            None => Choice::Range(lo, hi),
        };
        DegradeConfig {
            seed: self.seed,
            sigma: pick(self.sigma, self.sigma_range),
            scale: pick(self.scale, self.scale_range),
            noise: pick(self.noise, self.noise_range),
            jpeg: if self.no_jpeg {
                Choice::Off
            } else {
                pick(self.jpeg, self.jpeg_range)
            },
            aniso: self.aniso,
        }
    }
}

/// One degraded image, as listed in degrade.json.
#[derive(Clone, Debug, Serialize)]
pub struct ImageRecord {
    pub input: PathBuf,
    pub output: PathBuf,
    /// Seed of this image's parameter stream (derived from the run seed and the stem).
    pub image_seed: u64,
    pub params: DegradeParams,
    /// Size after ↓_r, [width, height].
    pub reduced_size: [u32; 2],
    pub notes: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub input: PathBuf,
    pub error: String,
}

/// What a run did.
#[derive(Clone, Debug, Serialize)]
pub struct DegradeSummary {
    pub config: DegradeConfig,
    pub images: Vec<ImageRecord>,
    pub failed: Vec<Failure>,
    #[serde(skip)]
    pub json: PathBuf,
}

impl DegradeSummary {
    /// Process exit code: non-zero when any image failed.
    pub fn exit_code(&self) -> i32 {
        i32::from(!self.failed.is_empty())
    }
}

/// Refuses to run when an output would overwrite one of the inputs.
fn check_no_overwrite(files: &[PathBuf], out: &Path) -> Result<()> {
    let out_c = out
        .canonicalize()
        .with_context(|| format!("{}: cannot resolve", out.display()))?;
    for f in files {
        let parent = f
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let same_dir = parent.canonicalize().map(|p| p == out_c).unwrap_or(false);
        if same_dir && f.file_name() == Some(format!("{}.png", stem_of(f)).as_ref()) {
            bail!(
                "refusing to run: output {} would overwrite input {}; choose another output folder",
                out.join(format!("{}.png", stem_of(f))).display(),
                f.display()
            );
        }
        if same_dir && f.file_name() == Some("degrade.json".as_ref()) {
            bail!(
                "refusing to run: {} would be overwritten by the run record",
                f.display()
            );
        }
    }
    Ok(())
}

fn process_one(path: &Path, out_dir: &Path, cfg: &DegradeConfig) -> Result<ImageRecord> {
    let loaded = load_rgb8(path)?;
    let stem = stem_of(path);
    let params = cfg.draw(&mut image_rng(cfg.seed, &stem, Stream::Params));
    let (img, (dw, dh)) = degrade_image(
        &loaded.rgb,
        &params,
        &mut image_rng(cfg.seed, &stem, Stream::Noise),
    )
    .with_context(|| path.display().to_string())?;
    let output = out_dir.join(format!("{stem}.png"));
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .with_context(|| format!("{}: PNG encoding", output.display()))?;
    write_atomic(&output, &png)?;
    Ok(ImageRecord {
        input: path.to_path_buf(),
        output,
        image_seed: image_seed(cfg.seed, &stem, Stream::Params),
        params,
        reduced_size: [dw, dh],
        notes: loaded.notes,
    })
}

fn describe(p: &DegradeParams) -> String {
    let f = |v: Option<f64>| v.map_or("off".to_string(), |v| format!("{v:.2}"));
    let mut s = format!(
        "σ={} r={} δ={} q={}",
        f(p.sigma),
        f(p.scale),
        f(p.noise),
        p.jpeg_quality.map_or("off".into(), |q| q.to_string())
    );
    if let (Some(sy), Some(t)) = (p.sigma_y, p.theta) {
        s += &format!(" σy={sy:.2} θ={t:.2}");
    }
    s
}

/// Degrades every input into `args.out`, writes `degrade.json` there, and returns
/// the summary. Unreadable images are reported and skipped; the run goes on.
pub fn run_degrade(args: &DegradeArgs) -> Result<DegradeSummary> {
    let cfg = args.config();
    cfg.validate()
        .map_err(|e| anyhow::anyhow!("degrade: {e}"))?;
    let files = collect_inputs(&args.inputs)?;
    if files.is_empty() {
        bail!("degrade: no PNG/JPEG images found in the inputs");
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    check_no_overwrite(&files, &args.out)?;

    // Two inputs with one stem would write one output: the first keeps it.
    let mut owner: HashMap<String, &PathBuf> = HashMap::new();
    let jobs: Vec<(&PathBuf, Option<String>)> = files
        .iter()
        .map(|f| {
            let stem = stem_of(f);
            match owner.get(&stem) {
                Some(first) => (
                    f,
                    Some(format!(
                        "output {stem}.png is already taken by {}",
                        first.display()
                    )),
                ),
                None => {
                    owner.insert(stem, f);
                    (f, None)
                }
            }
        })
        .collect();

    let n = jobs.len();
    let done = AtomicUsize::new(0);
    let results: Vec<Result<ImageRecord>> = jobs
        .par_iter()
        .map(|(f, clash)| {
            let r = match clash {
                Some(msg) => Err(anyhow::anyhow!("{}: {msg}", f.display())),
                None => process_one(f, &args.out, &cfg),
            };
            let k = done.fetch_add(1, Ordering::Relaxed) + 1;
            match &r {
                Ok(rec) => {
                    let notes = if rec.notes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", rec.notes.join("; "))
                    };
                    eprintln!("[{k}/{n}] {} {}{notes}", f.display(), describe(&rec.params));
                }
                Err(e) => eprintln!("[{k}/{n}] FAILED {e:#}"),
            }
            r
        })
        .collect();

    let mut images = Vec::new();
    let mut failed = Vec::new();
    for ((f, _), r) in jobs.iter().zip(results) {
        match r {
            Ok(rec) => images.push(rec),
            Err(e) => failed.push(Failure {
                input: (*f).clone(),
                error: format!("{e:#}"),
            }),
        }
    }
    let json = args.out.join("degrade.json");
    let summary = DegradeSummary {
        config: cfg,
        images,
        failed,
        json: json.clone(),
    };
    let text = serde_json::to_string_pretty(&summary)?;
    write_atomic(&json, text.as_bytes())?;
    eprintln!(
        "degrade: {} written, {} failed; parameters in {}",
        summary.images.len(),
        summary.failed.len(),
        json.display()
    );
    Ok(summary)
}
