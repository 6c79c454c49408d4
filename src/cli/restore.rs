//! `dynface restore INPUTS... -o DIR`: files, folders and globs; batching; resume; progress
//! bars; a JSON report; one bad file is reported and the rest still run; outputs are written
//! atomically and inputs are never overwritten.

use super::values::{DetectorArg, FitArg, PrecisionArg, PresetArg, UpdateOnArg};
use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::{CudaOptions, Precision};
use crate::backend::device::{self, Devices, BF16_ON_CPU};
use crate::backend::Backend;
use crate::degrade::load::stem_of;
use crate::face::photo_run::PhotoOptions;
use crate::restore::inputs::{expand_inputs, image_seed, output_name};
use crate::restore::models::{check_files, load_models, ModelSet};
use crate::restore::pipeline::Pipeline;
use crate::restore::preset::Preset;
use crate::restore::report::{ImageReport, RunReport};
use crate::restore::shard::{ShardInfo, ShardOptions};
use crate::restore::workers::{pipeline_for, run_devices, BatchRun, DeviceWorker, Job, Observer};
use crate::tensor::Tensor;
use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

#[derive(clap::Args, Clone, Debug)]
pub struct RestoreArgs {
    /// Images, folders of images, or glob patterns.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// Output folder (created); outputs are named after the inputs: PNG for aligned crops,
    /// the input's own format for whole photos (with their faces in OUTPUT/faces/).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Weights folder: `models.json` and the files it names, or the official checkpoints.
    #[arg(long, default_value = "weights")]
    pub weights: PathBuf,
    /// auto (a usable GPU, else the CPU), cpu, cuda[:N], or several devices for one run:
    /// cuda:all or cuda:0,1,... (one worker per GPU pulling batches from one queue; a lost
    /// GPU's batch goes to the others). cpu,cpu,... runs CPU workers on the same cores (for
    /// tests of the multi-device logic: no faster than cpu).
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Convolution and matrix-product operands on the GPU: fp32, or bf16 on tensor cores
    /// (fp32 accumulation, ~2e-3 relative error per product). The CPU computes in fp32 only: bf16 with a CPU
    /// device (also `auto` without a GPU) is an error.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: PrecisionArg,
    #[arg(long, default_value = "full")]
    pub preset: PresetArg,
    /// DDIM stochasticity η: a number ≥ 0, or sigma/10 (η = σ̂/10 per image, the authors'
    /// choice). Default: the model set's (0.5 unless its models.json says otherwise).
    #[arg(long, value_parser = crate::restore::preset::parse_eta)]
    pub eta: Option<crate::sampler::Eta>,
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
    pub step_on: Option<UpdateOnArg>,
    /// Restore images whose output already exists (default: skip them, so reruns resume).
    #[arg(long)]
    pub overwrite: bool,
    /// Write every stage's intermediates (RM output, guidance images, σ/t, step trace, DGSA's
    /// scale maps at each image's first, middle and last step) here.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page beside it (report.html):
    /// pictures, σ and loss per step; the intermediates it shows are kept in OUTPUT/stages
    /// unless --dump names another folder.
    #[arg(long)]
    pub html: bool,
    /// Write a Chrome trace-event JSON of the run (Perfetto, chrome://tracing): a slice per
    /// op of every graph run (synchronised after each op, so slower), per batch.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Report file (default: OUTPUT/report.json).
    #[arg(long)]
    pub report: Option<PathBuf>,
    /// Do not download missing official checkpoints; fail with where to put them.
    #[arg(long)]
    pub no_download: bool,
    /// No progress bars.
    #[arg(long)]
    pub quiet: bool,
    #[command(flatten)]
    pub shard: ShardArgs,
    #[command(flatten)]
    pub photos: PhotoArgs,
}

/// Whole-photo options of `dynface restore`. Faces are restored and pasted back; the rest
/// of the photo (the background) is kept as it is: there is no background upscaler.
#[derive(clap::Args, Clone, Debug)]
pub struct PhotoArgs {
    /// Treat every input as an aligned face crop (resized to the network size and back).
    #[arg(long, conflicts_with = "detect")]
    pub aligned: bool,
    /// Detect and align faces in every input, even one at the network size. By default an
    /// input at the network size (512² for the official set) is taken as an aligned crop and
    /// any other as a whole photo: its faces are restored and pasted back, the rest (the
    /// background) is kept as it is (there is no background upscaler).
    #[arg(long)]
    pub detect: bool,
    #[arg(long, value_enum, default_value = "mtcnn")]
    pub detector: DetectorArg,
    /// The detector's weights (default: WEIGHTS/mtcnn.safetensors, a facenet-pytorch wheel
    /// or a folder with its pnet.pt, rnet.pt, onet.pt also works; for RetinaFace
    /// WEIGHTS/detection_Resnet50_Final.safetensors, or facexlib's .pth of either variant).
    #[arg(long)]
    pub detector_weights: Option<PathBuf>,
    /// Faces whose box is smaller than this (shorter side, pixels) are skipped and reported.
    #[arg(long, default_value_t = 20.0)]
    pub min_face_size: f32,
    /// How the five landmarks are fitted to the template: least squares, or facexlib's LMEDS
    /// (robust to one bad landmark).
    #[arg(long, value_enum, default_value = "lstsq")]
    pub align_fit: FitArg,
    /// Restore only the face nearest the photo's centre.
    #[arg(long)]
    pub only_center_face: bool,
    /// Restore at most this many faces per photo, the largest first.
    #[arg(long)]
    pub max_faces: Option<usize>,
    /// Quality of JPEG outputs (JPEG inputs give JPEG outputs, PNG gives PNG).
    #[arg(long, default_value_t = 95, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub jpeg_quality: u8,
}

impl PhotoArgs {
    pub fn options(&self) -> PhotoOptions {
        PhotoOptions {
            aligned: self.aligned,
            detect: self.detect,
            detector: self.detector.into(),
            detector_weights: self.detector_weights.clone(),
            min_face_size: self.min_face_size,
            align_fit: self.align_fit.into(),
            only_center_face: self.only_center_face,
            max_faces: self.max_faces,
            jpeg_quality: self.jpeg_quality,
        }
    }
}

/// The sharding flags of `dynface restore`.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ShardArgs {
    /// Restore only part I of N (0-based) of the sorted inputs, e.g. 2/8. Default: the
    /// scheduler's task index and count when one is found (Slurm array, Kubernetes Indexed
    /// Job, Cloud Run, AWS Batch), else the whole list. `--shard 0/1` turns sharding off.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<String>,
    /// The number of parts where the scheduler tells only the index (Kubernetes Indexed Job:
    /// the Job's `completions`; AWS Batch: the array size). Also env DYNFACE_SHARD_COUNT.
    #[arg(long, value_name = "N")]
    pub shard_count: Option<u32>,
    /// List the images this run (or shard) would restore or skip, then stop.
    #[arg(long)]
    pub dry_run: bool,
}

impl ShardArgs {
    pub fn options(&self) -> ShardOptions {
        ShardOptions {
            shard: self.shard.clone(),
            shard_count: self.shard_count,
        }
    }
}

/// `--dry-run`: prints, one line per image on stdout, what a run would do with it (restore it
/// to OUTPUT, or skip it because OUTPUT exists), and returns a report of that plan (not
/// written anywhere; nothing is created).
pub fn dry_run(files: &[PathBuf], args: &RestoreArgs, shard: Option<ShardInfo>) -> RunReport {
    // The run's own split: a whole photo keeps its format's extension, an aligned crop is a PNG.
    let size = ModelSet::load(&args.weights).map_or(512, |m| m.image_size);
    let (photos, _) = crate::face::photo_run::split_inputs(
        files,
        &args.photos.options(),
        size,
        &args.weights,
        &|l: &str| eprintln!("{l}"),
    );
    let mut images = vec![];
    for f in files {
        let out = if photos.contains(f) {
            crate::face::photo::output_path(&args.output, f)
        } else {
            args.output.join(output_name(f))
        };
        let seed = image_seed(args.seed, &stem_of(f));
        let skip = out.exists() && !args.overwrite;
        if skip {
            println!("skip\t{}\t{} exists", f.display(), out.display());
        } else {
            println!("restore\t{}\t{}", f.display(), out.display());
        }
        let status = if skip {
            "skipped (output exists; --overwrite to redo)"
        } else {
            "to restore"
        };
        images.push(ImageReport::new(f, seed, status).with_output(out));
    }
    let skipped = images
        .iter()
        .filter(|r| r.status.starts_with("skipped"))
        .count();
    eprintln!(
        "dry run{}: {} to restore, {skipped} to skip",
        shard
            .as_ref()
            .map(|s| format!(" of {}", s.label()))
            .unwrap_or_default(),
        images.len() - skipped
    );
    RunReport {
        device: "none (dry run)".into(),
        weights: args.weights.clone(),
        preset: args.preset.into(),
        sampler: args.sampler.clone().unwrap_or_default(),
        step: "dry run".into(),
        batch: args.batch,
        restored: 0,
        skipped,
        failed: 0,
        not_run: 0,
        stopped: None,
        images,
        seconds: 0.0,
        shard,
        lost_devices: vec![],
    }
}

/// Deletes the hidden temporaries (`.NAME.png.tmpPID`) that a killed run leaves beside its
/// outputs; they are never valid outputs. With `only` (a shard's output names), temporaries
/// of other names are left alone: they may belong to another shard still writing them.
/// Returns how many were removed.
fn remove_stale_temporaries(dir: &Path, only: Option<&[String]>) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mine = format!(".tmp{}", std::process::id());
    entries
        .filter_map(|e| e.ok())
        .filter(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            crate::atomic_file::is_temporary_name(&name)
                && !name.ends_with(&mine)
                && only.is_none_or(|names| {
                    names.iter().any(|n| name.starts_with(&format!(".{n}.tmp")))
                })
        })
        .filter(|e| std::fs::remove_file(e.path()).is_ok())
        .count()
}

/// Makes sure the weights are there: the official set is downloaded on first use.
fn ensure_weights(args: &RestoreArgs) -> Result<()> {
    let set = ModelSet::load(&args.weights)?;
    if check_files(&set, &args.weights).is_ok() {
        return Ok(());
    }
    let official = !args
        .weights
        .join(crate::restore::models::MODELS_FILE)
        .exists();
    if official && !args.no_download {
        eprintln!(
            "official checkpoints missing in {}: downloading them once",
            args.weights.display()
        );
        let dl = super::weights::DownloadArgs {
            names: vec![],
            dir: args.weights.clone(),
            manifest: None,
            no_convert: false,
        };
        if let Err(e) = super::weights::run_download(&dl) {
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
    let precision = Precision::from(args.precision);
    if precision == Precision::Bf16 && args.device.eq_ignore_ascii_case("cpu") {
        bail!("{}", BF16_ON_CPU);
    }
    let files = expand_inputs(&args.inputs)?;
    if files.is_empty() {
        bail!("no input images found in {:?}", args.inputs);
    }
    let (files, shard) = crate::restore::shard::apply(&args.shard.options(), files)?;
    if args.shard.dry_run {
        return Ok(dry_run(&files, args, shard));
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
    let devices = device::resolve(&args.device).map_err(|e| anyhow::anyhow!(e))?;
    if let Devices::Cpu { note: Some(n), .. } = &devices {
        eprintln!("{n}");
    }
    eprintln!("device: {}, precision {}", devices.describe(), precision);
    let labels = devices.labels();
    match &devices {
        Devices::Cpu { .. } => {
            if precision == Precision::Bf16 {
                bail!("--device {}: {}", args.device, BF16_ON_CPU);
            }
            let name = if labels.len() == 1 {
                "cpu".to_string()
            } else {
                format!("{} (CPU workers sharing the threads)", labels.join(", "))
            };
            run_on(
                &labels,
                name,
                |_| Ok(CpuBackend::<f32>::new()),
                args,
                &files,
                shard,
            )
        }
        Devices::Cuda(infos) => {
            let opts = CudaOptions {
                precision,
                ..Default::default()
            };
            let mut name = infos
                .iter()
                .map(|i| {
                    if infos.len() == 1 {
                        format!("cuda: {i}")
                    } else {
                        format!("cuda:{}: {i}", i.ordinal)
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            if precision == Precision::Bf16 {
                name.push_str(" (bf16 tensor-core convs and products)");
            }
            let make = |w: usize| {
                crate::backend::cuda::CudaBackend::on_device(infos[w].ordinal, opts.clone())
                    .map(std::rc::Rc::new)
                    .map_err(|e| anyhow::anyhow!("--device {}: {e}", labels[w]))
            };
            run_on(&labels, name, make, args, &files, shard)
        }
    }
}

/// The CLI's side of a batch run: the progress bars (one step bar per device) and messages
/// printed above them.
struct Progress {
    mp: MultiProgress,
    images: ProgressBar,
    steps: Vec<ProgressBar>,
}

impl Progress {
    fn new(quiet: bool, images: usize, labels: &[String]) -> Self {
        let mp = if quiet {
            MultiProgress::with_draw_target(indicatif::ProgressDrawTarget::hidden())
        } else {
            MultiProgress::new()
        };
        let bar = mp.add(ProgressBar::new(images as u64));
        bar.set_style(
            ProgressStyle::with_template("images {bar:30} {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let steps = labels
            .iter()
            .map(|l| {
                let sb = mp.add(ProgressBar::new(0));
                sb.set_style(
                    ProgressStyle::with_template("{prefix:6} {bar:30} {pos}/{len} {per_sec}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar()),
                );
                sb.set_prefix(if labels.len() == 1 {
                    "steps".to_string()
                } else {
                    l.clone()
                });
                sb
            })
            .collect();
        Progress {
            mp,
            images: bar,
            steps,
        }
    }
}

impl Observer for Progress {
    fn log(&self, line: &str) {
        self.mp.suspend(|| eprintln!("{line}"));
    }

    fn images_done(&self, n: usize) {
        self.images.inc(n as u64);
    }

    fn batch_started(&self, device: &str, names: &[String]) {
        if self.steps.len() == 1 {
            self.images.set_message(names.join(", "));
        } else {
            self.images
                .set_message(format!("{device}: {}", names.join(", ")));
        }
    }

    fn step_progress(&self, w: usize) -> Option<Box<dyn FnMut(usize, usize)>> {
        let sb = self.steps[w].clone();
        Some(Box::new(move |done, total| {
            sb.set_length(total as u64);
            sb.set_position(done as u64);
        }))
    }
}

/// Runs the restore on the devices named by `labels` (`make(i)` builds device i's backend;
/// device 0's here, the others' on their workers' threads).
fn run_on<B, F>(
    labels: &[String],
    device_name: String,
    make: F,
    args: &RestoreArgs,
    files: &[PathBuf],
    shard: Option<ShardInfo>,
) -> Result<RunReport>
where
    B: Backend + Clone,
    F: Fn(usize) -> Result<B> + Sync,
{
    let backend = make(0)?;
    let t_run = Instant::now();
    if args.trace.is_some() {
        crate::trace::start(crate::trace::DEFAULT_LIMIT);
    }
    let models = load_models(&args.weights)?;
    let mut cfg = models.set.sampler_config();
    if let Some(s) = &args.sampler {
        cfg.sampler = s.clone();
    }
    if let Some(u) = args.step_on {
        cfg.update_on = u.into();
    }
    if let Some(e) = args.eta {
        cfg.eta = e;
    }
    let preset = Preset::from(args.preset);
    for n in crate::restore::preset::missing_weight_notes(preset, &models.set, &args.weights) {
        eprintln!("note: {n}");
    }
    match preset {
        Preset::Full | Preset::NoDgsa => {}
        Preset::Single => {
            cfg.num_guidance = 1;
            cfg.weights = None;
        }
        Preset::Fast => cfg.fast_guidance = true,
    }
    let use_dgsa = preset != Preset::NoDgsa;
    let s = models.set.image_size;
    let progress = Progress::new(args.quiet, files.len(), labels);
    let mp = &progress.mp;
    let images_bar = &progress.images;

    let own_names: Option<Vec<String>> = shard.as_ref().map(|sh| {
        let mut v: Vec<String> = files.iter().map(|f| output_name(f)).collect();
        v.push(sh.report_name());
        v
    });
    let removed = remove_stale_temporaries(&args.output, own_names.as_deref());
    if removed > 0 {
        mp.suspend(|| {
            eprintln!(
                "removed {removed} partial output(s) left by an interrupted run in {}",
                args.output.display()
            )
        });
    }
    let dump = args
        .dump
        .clone()
        .or_else(|| args.html.then(|| args.output.join("stages")));
    let mut reports: Vec<ImageReport> = vec![];
    // Whole photos (faces detected, aligned, pasted back) take their own path below.
    let photo_opts = args.photos.options();
    let (photos, files) =
        crate::face::photo_run::split_inputs(files, &photo_opts, s, &args.weights, &|l: &str| {
            mp.suspend(|| eprintln!("{l}"))
        });
    // Images are decoded batch by batch (a folder of thousands never sits in memory at once).
    let mut queue: Vec<Job> = vec![];
    for f in &files {
        let stem = stem_of(f);
        let out = args.output.join(output_name(f));
        let seed = image_seed(args.seed, &stem);
        if out.exists() && !args.overwrite {
            reports.push(
                ImageReport::new(f, seed, "skipped (output exists; --overwrite to redo)")
                    .with_output(out),
            );
            images_bar.inc(1);
            continue;
        }
        queue.push(Job {
            input: f.clone(),
            out,
        });
    }
    let batches_run = AtomicU64::new(0);
    let mut stopped: Option<String> = None;
    let mut pipelines: Vec<Pipeline<B>> = vec![];
    // Whole photos run on the first device (their faces are batched across photos there).
    if !photos.is_empty() {
        let mut restore_faces = |x: &Tensor<f32>, seeds: &[u64]| {
            let n = batches_run.fetch_add(1, Ordering::SeqCst) + 1;
            crate::backend::fault::check_batch(n)?;
            let b = seeds.len();
            let p = pipeline_for(&mut pipelines, b, || {
                Pipeline::new(backend.clone(), &models, cfg.clone(), use_dgsa, b)
            })?;
            p.restore(x, &models, seeds)
        };
        let log = |l: &str| mp.suspend(|| eprintln!("{l}"));
        let run = crate::face::photo_run::PhotoRun {
            args: &photo_opts,
            out_dir: &args.output,
            weights_dir: &args.weights,
            dump: args.dump.as_deref(),
            overwrite: args.overwrite,
            size: s,
            batch: args.batch,
            seed_of: &|f: &Path| image_seed(args.seed, &stem_of(f)),
            log: &log,
        };
        let (done, why) = crate::face::photo_run::restore_photos(
            backend.clone(),
            &run,
            &photos,
            &mut restore_faces,
        )?;
        images_bar.inc(done.len() as u64);
        reports.extend(done);
        stopped = why;
    }
    let mut step = pipelines.first().map(|p| p.step_description());
    let mut lost_devices = vec![];
    if stopped.is_none() {
        let run = BatchRun {
            models: &models,
            cfg: &cfg,
            use_dgsa,
            batch: args.batch,
            base_seed: args.seed,
            out_dir: &args.output,
            dump: dump.as_deref(),
            batches_run: &batches_run,
        };
        let first = DeviceWorker {
            label: labels[0].clone(),
            backend,
            pipelines,
        };
        let done = run_devices(&run, queue, first, &labels[1..], make, &progress);
        reports.extend(done.reports);
        stopped = done.stopped;
        lost_devices = done.lost;
        step = done.step.or(step);
    } else {
        let why = stopped.clone().unwrap_or_default();
        for job in queue {
            let seed = image_seed(args.seed, &stem_of(&job.input));
            reports.push(ImageReport::new(&job.input, seed, "not run").with_error(why.clone()));
        }
    }
    if let Some(why) = &stopped {
        mp.suspend(|| eprintln!("error: stopped: {why}"));
    }
    for sb in &progress.steps {
        sb.finish_and_clear();
    }
    images_bar.finish();
    let count = |st: &str| reports.iter().filter(|r| r.status.starts_with(st)).count();
    let report = RunReport {
        device: device_name,
        weights: args.weights.clone(),
        preset,
        sampler: cfg.sampler.clone(),
        step: step.unwrap_or_else(|| "no batch ran".into()),
        batch: args.batch,
        restored: count("restored"),
        skipped: count("skipped"),
        failed: count("failed"),
        not_run: count("not run"),
        stopped,
        images: reports,
        seconds: t_run.elapsed().as_secs_f64(),
        shard,
        lost_devices,
    };
    let rpath = args.report.clone().unwrap_or_else(|| {
        let name = report.shard.as_ref().map(|s| s.report_name());
        args.output.join(name.as_deref().unwrap_or("report.json"))
    });
    crate::atomic_file::write_atomic(&rpath, serde_json::to_string_pretty(&report)?.as_bytes())
        .with_context(|| format!("writing report {}", rpath.display()))?;
    if args.html {
        let page = rpath.with_extension("html");
        let h = crate::report::html::write_html(&rpath, dump.as_deref(), &page)?;
        eprintln!(
            "html report: {} ({} pictures, {} plots)",
            page.display(),
            h.pictures,
            h.plots
        );
    }
    if let Some(p) = &args.trace {
        let meta = serde_json::json!({ "what": "dynface restore", "device": report.device });
        let t = crate::trace::finish(p, meta)?;
        eprintln!("trace: {} ({} slices)", p.display(), t.slices);
    }
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
