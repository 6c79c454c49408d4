//! `dynface degrade`: degrade a batch of images with Eq. 16 and record the draws.

use crate::atomic_file::write_atomic;
use crate::degrade::load::{collect_inputs, load_rgb8, stem_of};
use crate::degrade::params::{Choice, DegradeConfig, DegradeParams};
use crate::degrade::pipeline::degrade_image;
use crate::degrade::seed::{image_rng, image_seed, Stream};
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
    /// The command's own defaults (the Eq. 16 ranges) for `inputs` → `out` at `seed`, taken
    /// from the argument parser so library callers and the CLI cannot drift apart.
    pub fn new(inputs: Vec<PathBuf>, out: PathBuf, seed: u64) -> Self {
        use clap::Parser;
        #[derive(Parser)]
        struct Cmd {
            #[command(flatten)]
            a: DegradeArgs,
        }
        let mut argv: Vec<std::ffi::OsString> =
            vec!["degrade".into(), "-o".into(), out.into_os_string()];
        argv.extend(inputs.into_iter().map(PathBuf::into_os_string));
        let mut a = Cmd::parse_from(argv).a;
        a.seed = seed;
        a
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb, RgbImage, Rgba};

    fn scratch_dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("dynface-degrade-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn textured(seed: u32, w: u32, h: u32) -> RgbImage {
        RgbImage::from_fn(w, h, |x, y| {
            let v = (x * 7 + y * 13 + seed * 31) % 251;
            Rgb([v as u8, (v * 3 % 251) as u8, ((x ^ y) * 5 % 251) as u8])
        })
    }

    fn args(inputs: Vec<PathBuf>, out: PathBuf) -> DegradeArgs {
        DegradeArgs::new(inputs, out, 7)
    }

    #[test]
    fn outputs_are_reproducible_and_independent_of_the_batch() {
        let dir = scratch_dir("repro");
        let inp = dir.join("in");
        std::fs::create_dir_all(&inp).unwrap();
        for i in 0..3 {
            textured(i, 48, 48)
                .save(inp.join(format!("img{i}.png")))
                .unwrap();
        }
        let (o1, o2, o3) = (dir.join("o1"), dir.join("o2"), dir.join("o3"));
        let s1 = run_degrade(&args(vec![inp.clone()], o1.clone())).unwrap();
        assert_eq!((s1.images.len(), s1.exit_code()), (3, 0));
        run_degrade(&args(vec![inp.clone()], o2.clone())).unwrap();
        run_degrade(&args(vec![inp.join("img1.png")], o3.clone())).unwrap();
        for i in 0..3 {
            let name = format!("img{i}.png");
            let a = std::fs::read(o1.join(&name)).unwrap();
            assert_eq!(
                a,
                std::fs::read(o2.join(&name)).unwrap(),
                "{name} differs between runs"
            );
            assert_ne!(
                a,
                std::fs::read(inp.join(&name)).unwrap(),
                "{name} was not degraded"
            );
        }
        assert_eq!(
            std::fs::read(o1.join("img1.png")).unwrap(),
            std::fs::read(o3.join("img1.png")).unwrap()
        );
        // Another seed draws differently.
        let o4 = dir.join("o4");
        let mut a4 = args(vec![inp.clone()], o4.clone());
        a4.seed = 8;
        let s4 = run_degrade(&a4).unwrap();
        assert_ne!(s1.images[0].params, s4.images[0].params);
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(o1.join("degrade.json")).unwrap()).unwrap();
        assert_eq!(json["images"].as_array().unwrap().len(), 3);
        assert!(json["images"][0]["params"]["sigma"].as_f64().is_some());
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn all_stages_off_copies_pixels() {
        let dir = scratch_dir("off");
        let img = textured(4, 20, 20);
        let f = dir.join("a.png");
        img.save(&f).unwrap();
        let mut a = args(vec![f], dir.join("out"));
        (a.sigma, a.scale, a.noise, a.no_jpeg) = (Some(0.0), Some(1.0), Some(0.0), true);
        run_degrade(&a).unwrap();
        assert_eq!(image::open(dir.join("out/a.png")).unwrap().to_rgb8(), img);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_inputs_are_converted_or_reported_and_the_batch_goes_on() {
        let dir = scratch_dir("bad");
        let inp = dir.join("in");
        std::fs::create_dir_all(&inp).unwrap();
        std::fs::write(inp.join("broken.png"), b"not an image").unwrap();
        ImageBuffer::<Luma<u16>, Vec<u16>>::from_fn(16, 16, |x, y| {
            Luma([(x * 4000 + y * 9) as u16])
        })
        .save(inp.join("gray16.png"))
        .unwrap();
        ImageBuffer::<Rgba<u8>, Vec<u8>>::from_fn(16, 16, |x, y| {
            Rgba([x as u8 * 9, y as u8 * 9, 100, 128])
        })
        .save(inp.join("alpha.png"))
        .unwrap();
        textured(1, 30, 20).save(inp.join("wide.png")).unwrap();
        textured(2, 16, 16).save(inp.join("dup.png")).unwrap();
        textured(3, 16, 16).save(inp.join("dup.jpg")).unwrap();
        let s = run_degrade(&args(vec![inp.clone()], dir.join("out"))).unwrap();
        assert_eq!(s.exit_code(), 1);
        let failed: Vec<String> = s.failed.iter().map(|f| f.error.clone()).collect();
        assert_eq!(failed.len(), 2, "{failed:?}");
        assert!(
            failed.iter().any(|e| e.contains("broken.png")),
            "{failed:?}"
        );
        assert!(
            failed
                .iter()
                .any(|e| e.contains("dup.png is already taken")),
            "{failed:?}"
        );
        let notes = |stem: &str| {
            s.images
                .iter()
                .find(|r| stem_of(&r.input) == stem)
                .unwrap()
                .notes
                .join("; ")
        };
        assert!(notes("gray16").contains("16-bit") && notes("gray16").contains("grayscale"));
        assert!(notes("alpha").contains("alpha"));
        assert!(notes("wide").contains("not square"));
        let out = image::open(dir.join("out/wide.png")).unwrap();
        assert_eq!((out.width(), out.height()), (30, 20));
        let json = std::fs::read_to_string(dir.join("out/degrade.json")).unwrap();
        assert!(json.contains("broken.png"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn aniso_draws_are_recorded_and_change_the_output() {
        let dir = scratch_dir("aniso");
        let f = dir.join("a.png");
        textured(6, 40, 40).save(&f).unwrap();
        let mut a = args(vec![f.clone()], dir.join("iso"));
        (a.scale, a.noise, a.no_jpeg) = (Some(1.0), Some(0.0), true);
        let iso = run_degrade(&a).unwrap();
        a.aniso = true;
        a.out = dir.join("aniso");
        let an = run_degrade(&a).unwrap();
        let (pi, pa) = (&iso.images[0].params, &an.images[0].params);
        assert_eq!(pi.sigma, pa.sigma, "σ_x is the isotropic draw");
        assert!(pi.sigma_y.is_none() && pa.sigma_y.is_some() && pa.theta.is_some());
        let read = |d: &str| image::open(dir.join(d).join("a.png")).unwrap().to_rgb8();
        assert_ne!(read("iso"), read("aniso"));
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn refuses_to_overwrite_inputs() {
        let dir = scratch_dir("overwrite");
        let img = textured(5, 16, 16);
        img.save(dir.join("face.png")).unwrap();
        let err = run_degrade(&args(vec![dir.clone()], dir.clone())).unwrap_err();
        assert!(err.to_string().contains("would overwrite input"), "{err}");
        assert_eq!(image::open(dir.join("face.png")).unwrap().to_rgb8(), img);
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn bad_ranges_and_missing_inputs_are_errors() {
        let dir = scratch_dir("ranges");
        let mut a = args(vec![dir.join("nope.png")], dir.join("out"));
        assert!(run_degrade(&a)
            .unwrap_err()
            .to_string()
            .contains("nope.png"));
        a.scale_range = (2.0, 1.0);
        assert!(run_degrade(&a).unwrap_err().to_string().contains("scale"));
        assert!(parse_pair("3").is_err());
        assert_eq!(parse_pair("0.5, 2").unwrap(), (0.5, 2.0));
        std::fs::remove_dir_all(&dir).ok();
    }
}
