//! `dynface restore INPUTS... -o DIR`: files, folders and globs; batching; resume; progress
//! bars; a JSON report; one bad file is reported and the rest still run; outputs are written
//! atomically and inputs are never overwritten.

use super::images::{load_input, save_output, InputImage};
use super::models::{check_files, load_models, ModelSet};
use super::pipeline::{ImageTrace, Pipeline, StageTimes};
use crate::backend::cpu::CpuBackend;
use crate::backend::Backend;
use crate::degrade::load::{collect_inputs, stem_of};
use crate::degrade::seed::mix64;
use crate::tensor::Tensor;
use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Preset {
    /// The paper's full method: N = 3 guidance images, DGSA when its weights exist.
    Full,
    /// The paper's setting C: S ≡ 1 even when DGSA weights exist.
    NoDgsa,
    /// One guidance image (N = 1).
    Single,
    /// Our fast guidance: gradient with respect to x̂₀ only (no backpropagation through
    /// the UNet): about twice the speed, some fidelity lost.
    Fast,
}

#[derive(clap::Args, Clone, Debug)]
pub struct RestoreArgs {
    /// Images, folders of images, or glob patterns.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output folder (created); outputs are PNGs named after the inputs.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Weights folder: `models.json` and the files it names, or the official checkpoints.
    #[arg(long, default_value = "weights")]
    pub weights: PathBuf,
    /// auto (a usable GPU, else the CPU), cpu, or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value = "full")]
    pub preset: Preset,
    /// Images per batch.
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Base seed; each image's seed is derived from it and the file name.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Sampler override, e.g. ddim250 or ddim50 (default: the model set's).
    #[arg(long)]
    pub sampler: Option<String>,
    /// Where the sampler's per-step update runs: device (the default: x_t stays on the
    /// backend) or host (the f64 reference path).
    #[arg(long, value_enum)]
    pub step_on: Option<crate::sampler::UpdateOn>,
    /// Restore images whose output already exists (default: skip them, so reruns resume).
    #[arg(long)]
    pub overwrite: bool,
    /// Write every stage's intermediates (RM output, guidance images, σ/t, step trace) here.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Report file (default: OUTPUT/report.json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Do not download missing official checkpoints; fail with where to put them.
    #[arg(long)]
    pub no_download: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
}

#[derive(Clone, Debug, Serialize)]
pub struct ImageReport {
    pub input: PathBuf,
    pub output: Option<PathBuf>,
    pub status: String,
    pub seed: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<ImageTrace>,
    pub notes: Vec<String>,
    pub seconds: Option<StageTimes>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize)]
pub struct RunReport {
    pub device: String,
    pub weights: PathBuf,
    pub preset: Preset,
    pub sampler: String,
    /// Where the sampler's update ran: "host", or "device" with whether the step graph was
    /// replayed from a recording (and why not).
    pub step: String,
    pub batch: usize,
    pub images: Vec<ImageReport>,
    pub restored: usize,
    pub skipped: usize,
    pub failed: usize,
    pub seconds: f64,
}

impl RunReport {
    pub fn exit_code(&self) -> i32 {
        i32::from(self.failed > 0)
    }
}

/// Expands files, folders and glob patterns into image paths (sorted, deduplicated).
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<PathBuf>> {
    let mut paths = vec![];
    for s in inputs {
        if s.contains(['*', '?', '[']) && !Path::new(s).exists() {
            let matches: Vec<PathBuf> = glob::glob(s)
                .with_context(|| format!("bad glob pattern {s}"))?
                .filter_map(|p| p.ok())
                .collect();
            if matches.is_empty() {
                bail!("{s}: no file matches this pattern");
            }
            paths.extend(matches);
        } else {
            paths.push(PathBuf::from(s));
        }
    }
    let mut v = collect_inputs(&paths)?;
    v.sort();
    v.dedup();
    Ok(v)
}

fn image_seed(base: u64, stem: &str) -> u64 {
    mix64(base ^ mix64(crate::degrade::seed::fnv1a64(stem.as_bytes())))
}

/// Makes sure the weights are there: the official set is downloaded on first use.
fn ensure_weights(args: &RestoreArgs) -> Result<()> {
    let set = ModelSet::load(&args.weights)?;
    if check_files(&set, &args.weights).is_ok() {
        return Ok(());
    }
    let official = !args.weights.join(super::models::MODELS_FILE).exists();
    if official && !args.no_download {
        eprintln!(
            "official checkpoints missing in {}: downloading them once",
            args.weights.display()
        );
        let dl = crate::weights::DownloadArgs {
            names: vec![],
            dir: args.weights.clone(),
            manifest: None,
            no_convert: false,
        };
        if let Err(e) = crate::weights::run_download(&dl) {
            // The precise per-file message says where each file comes from and goes.
            let detail = check_files(&set, &args.weights)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            bail!("could not download the checkpoints: {e:#}\n{detail}");
        }
    }
    check_files(&set, &args.weights)
}

pub fn run_restore(args: &RestoreArgs) -> Result<RunReport> {
    if args.batch == 0 {
        bail!("--batch must be at least 1");
    }
    let files = expand_inputs(&args.inputs)?;
    if files.is_empty() {
        bail!("no input images found in {:?}", args.inputs);
    }
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("cannot create output folder {}", args.output.display()))?;
    let out_dir = args.output.canonicalize()?;
    for f in &files {
        if f.parent().and_then(|p| p.canonicalize().ok()).as_deref() == Some(out_dir.as_path())
            && f.extension().is_some_and(|e| e == "png")
        {
            bail!("{}: the output folder holds the inputs; choose another -o so no input is overwritten", f.display());
        }
    }
    ensure_weights(args)?;
    let device = super::device::resolve(&args.device)?;
    eprintln!("device: {}", device.describe());
    match device {
        super::device::Device::Cpu => run_on(CpuBackend::<f32>::new(), "cpu".into(), args, &files),
        super::device::Device::Cuda(name) => {
            let be = crate::backend::cuda::CudaBackend::new()
                .map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
            run_on(std::rc::Rc::new(be), format!("cuda: {name}"), args, &files)
        }
    }
}

fn run_on<B: Backend + Clone>(
    backend: B,
    device_name: String,
    args: &RestoreArgs,
    files: &[PathBuf],
) -> Result<RunReport> {
    let t_run = Instant::now();
    let models = load_models(&args.weights)?;
    let mut cfg = models.set.sampler.clone();
    if let Some(s) = &args.sampler {
        cfg.sampler = s.clone();
    }
    if let Some(u) = args.step_on {
        cfg.update_on = u;
    }
    match args.preset {
        Preset::Full | Preset::NoDgsa => {}
        Preset::Single => {
            cfg.num_guidance = 1;
            cfg.weights = None;
        }
        Preset::Fast => cfg.fast_guidance = true,
    }
    let use_dgsa = args.preset != Preset::NoDgsa;
    let s = models.set.image_size;
    let mp = if args.quiet {
        MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
    } else {
        MultiProgress::new()
    };
    let images_bar = mp.add(ProgressBar::new(files.len() as u64));
    images_bar.set_style(
        ProgressStyle::with_template("images {bar:30} {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let steps_bar = mp.add(ProgressBar::new(0));
    steps_bar.set_style(
        ProgressStyle::with_template("steps  {bar:30} {pos}/{len} {per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );

    let mut reports: Vec<ImageReport> = vec![];
    // Decode first; a file that fails is reported and the rest go on.
    let mut todo: Vec<(PathBuf, PathBuf, InputImage)> = vec![];
    for f in files {
        let stem = stem_of(f);
        let out = args.output.join(format!("{stem}.png"));
        let seed = image_seed(args.seed, &stem);
        if out.exists() && !args.overwrite {
            reports.push(ImageReport {
                input: f.clone(),
                output: Some(out),
                status: "skipped (output exists; --overwrite to redo)".into(),
                seed,
                trace: None,
                notes: vec![],
                seconds: None,
                error: None,
            });
            images_bar.inc(1);
            continue;
        }
        match load_input(f, s) {
            Ok(img) => todo.push((f.clone(), out, img)),
            Err(e) => {
                mp.suspend(|| eprintln!("error: {e:#}"));
                reports.push(ImageReport {
                    input: f.clone(),
                    output: None,
                    status: "failed".into(),
                    seed,
                    trace: None,
                    notes: vec![],
                    seconds: None,
                    error: Some(format!("{e:#}")),
                });
                images_bar.inc(1);
            }
        }
    }
    let mut pipelines: Vec<Pipeline<B>> = vec![];
    for chunk in todo.chunks(args.batch) {
        let b = chunk.len();
        if !pipelines.iter().any(|p| p.batch() == b) {
            let mut p = Pipeline::new(backend.clone(), &models, cfg.clone(), use_dgsa, b)?;
            let sb = steps_bar.clone();
            p.set_step_progress(Some(Box::new(move |done, total| {
                sb.set_length(total as u64);
                sb.set_position(done as u64);
            })));
            pipelines.push(p);
        }
        let p = pipelines
            .iter_mut()
            .find(|p| p.batch() == b)
            .expect("built above");
        let names: Vec<String> = chunk.iter().map(|(f, _, _)| stem_of(f)).collect();
        images_bar.set_message(names.join(", "));
        // Each image its own random stream: its result depends only on its name and the
        // base seed, not on the batch it is in.
        let seeds: Vec<u64> = names.iter().map(|n| image_seed(args.seed, n)).collect();
        let mut data = Vec::with_capacity(b * 3 * s * s);
        for (_, _, img) in chunk {
            data.extend_from_slice(&img.planes.data);
        }
        let lq = Tensor::new(vec![b, 3, s, s], data);
        match p.restore(&lq, &models, &seeds) {
            Ok(res) => {
                for (i, (f, out, img)) in chunk.iter().enumerate() {
                    let per = 3 * s * s;
                    let plane = Tensor::new(
                        vec![3, s, s],
                        res.restored.data[i * per..(i + 1) * per].to_vec(),
                    );
                    let saved = save_output(&plane, img, out);
                    if let Some(d) = &args.dump {
                        if let Err(e) = super::dump::dump_image(d, &names[i], i, &res, &models) {
                            mp.suspend(|| eprintln!("warning: dump for {}: {e:#}", f.display()));
                        }
                    }
                    let (status, error) = match &saved {
                        Ok(()) => ("restored".to_string(), None),
                        Err(e) => (
                            "failed".to_string(),
                            Some(format!("writing {}: {e:#}", out.display())),
                        ),
                    };
                    if let Some(e) = &error {
                        mp.suspend(|| eprintln!("error: {e}"));
                    }
                    reports.push(ImageReport {
                        input: f.clone(),
                        output: saved.is_ok().then(|| out.clone()),
                        status,
                        seed: seeds[i],
                        trace: Some(res.traces[i].clone()),
                        notes: img.notes.clone(),
                        seconds: Some(res.times.clone()),
                        error,
                    });
                }
            }
            Err(e) => {
                mp.suspend(|| eprintln!("error: batch {}: {e:#}", names.join(", ")));
                for (i, (f, _, img)) in chunk.iter().enumerate() {
                    reports.push(ImageReport {
                        input: f.clone(),
                        output: None,
                        status: "failed".into(),
                        seed: seeds[i],
                        trace: None,
                        notes: img.notes.clone(),
                        seconds: None,
                        error: Some(format!("{e:#}")),
                    });
                }
            }
        }
        images_bar.inc(b as u64);
    }
    steps_bar.finish_and_clear();
    images_bar.finish();
    let count = |st: &str| reports.iter().filter(|r| r.status.starts_with(st)).count();
    let report = RunReport {
        device: device_name,
        weights: args.weights.clone(),
        preset: args.preset,
        sampler: cfg.sampler.clone(),
        step: pipelines
            .first()
            .map_or_else(|| "no batch ran".into(), |p| p.step_description()),
        batch: args.batch,
        restored: count("restored"),
        skipped: count("skipped"),
        failed: count("failed"),
        images: reports,
        seconds: t_run.elapsed().as_secs_f64(),
    };
    let rpath = args
        .report
        .clone()
        .unwrap_or_else(|| args.output.join("report.json"));
    crate::atomic_file::write_atomic(&rpath, serde_json::to_string_pretty(&report)?.as_bytes())
        .with_context(|| format!("writing report {}", rpath.display()))?;
    eprintln!(
        "restored {}, skipped {}, failed {} in {:.1} s; report: {}",
        report.restored,
        report.skipped,
        report.failed,
        report.seconds,
        rpath.display()
    );
    Ok(report)
}
