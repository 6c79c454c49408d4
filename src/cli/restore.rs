//! `dynface restore INPUTS... -o DIR`: files, folders and globs; batching; resume; progress
//! bars; a JSON report; one bad file is reported and the rest still run; outputs are written
//! atomically and inputs are never overwritten.

use crate::restore::images::{load_input, save_output, InputImage};
use crate::restore::models::{check_files, load_models, ModelSet};
use crate::restore::pipeline::{ImageTrace, Pipeline, StageTimes};
use crate::backend::cpu::CpuBackend;
use crate::backend::cuda::{CudaOptions, Precision};
use crate::backend::Backend;
use crate::degrade::load::{collect_inputs, stem_of};
use crate::degrade::seed::mix64;
use crate::tensor::Tensor;
use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use serde::Serialize;
use std::collections::VecDeque;
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
    /// the UNet, so each step skips the UNet's backward pass); some fidelity lost. Its speed
    /// on a GPU is not measured yet.
    Fast,
}

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
    /// auto (a usable GPU, else the CPU), cpu, or cuda[:N].
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Convolution and matrix-product operands on the GPU: fp32, or bf16 on tensor cores
    /// (fp32 accumulation, ~2e-3 relative error per product). The CPU computes in fp32 only: bf16 with a CPU
    /// device (also `auto` without a GPU) is an error.
    #[arg(long, value_enum, default_value = "fp32")]
    pub precision: Precision,
    #[arg(long, default_value = "full")]
    pub preset: Preset,
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
    pub step_on: Option<crate::sampler::UpdateOn>,
    /// Restore images whose output already exists (default: skip them, so reruns resume).
    #[arg(long)]
    pub overwrite: bool,
    /// Write every stage's intermediates (RM output, guidance images, σ/t, step trace) here.
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
    pub shard: crate::restore::shard::ShardArgs,
    #[command(flatten)]
    pub photos: crate::face::photo_run::PhotoArgs,
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
    /// Whole photos: the detected faces and what became of each.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub photo: Option<crate::face::photo_run::PhotoReport>,
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
    /// Images not attempted because the run stopped (device lost, disk full).
    pub not_run: usize,
    /// Why the run stopped early, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stopped: Option<String>,
    pub seconds: f64,
    /// The part of the input list this run restored (`--shard`, or the scheduler's).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shard: Option<crate::restore::shard::ShardInfo>,
}

impl RunReport {
    pub fn exit_code(&self) -> i32 {
        i32::from(self.failed > 0 || self.not_run > 0)
    }
}

impl ImageReport {
    pub(crate) fn new(input: &Path, seed: u64, status: &str) -> Self {
        ImageReport {
            input: input.to_path_buf(),
            output: None,
            status: status.to_string(),
            seed,
            trace: None,
            notes: vec![],
            seconds: None,
            error: None,
            photo: None,
        }
    }

    pub(crate) fn with_output(mut self, out: PathBuf) -> Self {
        self.output = Some(out);
        self
    }

    /// Marks the image failed (whatever the status was) with `error`.
    pub(crate) fn with_error(mut self, error: String) -> Self {
        if self.status != "not run" {
            self.status = "failed".into();
        }
        self.error = Some(error);
        self
    }
}

/// One image still to restore.
struct Job {
    input: PathBuf,
    out: PathBuf,
}

/// How a failed batch affects the rest of the run.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    /// Retry with a smaller batch.
    OutOfMemory,
    /// Nothing more can run on this device: stop, keeping what is done.
    DeviceLost,
    /// This batch failed; the next may run.
    Other,
}

pub(crate) fn fault_kind(e: &anyhow::Error) -> Fault {
    use crate::backend::BackendError;
    use crate::exec::ExecError;
    let backend = e.chain().find_map(|c| {
        c.downcast_ref::<BackendError>()
            .or_else(|| match c.downcast_ref::<ExecError>() {
                Some(ExecError::Op { source, .. }) => Some(source),
                Some(ExecError::Backend(b)) => Some(b),
                _ => None,
            })
    });
    match backend {
        Some(BackendError::OutOfMemory(_)) => Fault::OutOfMemory,
        Some(BackendError::DeviceLost(_)) => Fault::DeviceLost,
        _ => Fault::Other,
    }
}

/// The cached pipeline for batch size `b`, built on first use.
fn pipeline_for<B: Backend + Clone>(
    pipelines: &mut Vec<Pipeline<B>>,
    b: usize,
    build: impl FnOnce() -> Result<Pipeline<B>>,
) -> Result<&mut Pipeline<B>> {
    if let Some(i) = pipelines.iter().position(|p| p.batch() == b) {
        return Ok(&mut pipelines[i]);
    }
    pipelines.push(build()?);
    Ok(pipelines.last_mut().expect("just pushed"))
}

fn push_failed(
    reports: &mut Vec<ImageReport>,
    chunk: &[(Job, InputImage)],
    seeds: &[u64],
    e: &str,
) {
    for ((job, img), &seed) in chunk.iter().zip(seeds) {
        let mut r = ImageReport::new(&job.input, seed, "failed").with_error(e.to_string());
        r.notes = img.notes.clone();
        reports.push(r);
    }
}

/// An upper bound on an output PNG's size: raw 8-bit RGB plus the format's overhead
/// (deflate's stored blocks at worst), so the disk check never under-asks.
fn output_bytes_bound(img: &InputImage) -> u64 {
    let raw = img.width as u64 * img.height as u64 * 3 + img.height as u64;
    raw + raw / 64 + 64 * 1024
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

/// The output file name of input `f`: its stem as a PNG.
pub fn output_name(f: &Path) -> String {
    format!("{}.png", stem_of(f))
}

pub(crate) fn image_seed(base: u64, stem: &str) -> u64 {
    mix64(base ^ mix64(crate::degrade::seed::fnv1a64(stem.as_bytes())))
}

/// Makes sure the weights are there: the official set is downloaded on first use.
fn ensure_weights(args: &RestoreArgs) -> Result<()> {
    let set = ModelSet::load(&args.weights)?;
    if check_files(&set, &args.weights).is_ok() {
        return Ok(());
    }
    let official = !args.weights.join(crate::restore::models::MODELS_FILE).exists();
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
    if args.precision == Precision::Bf16 && args.device.eq_ignore_ascii_case("cpu") {
        bail!("{}", crate::restore::device::BF16_ON_CPU);
    }
    let files = expand_inputs(&args.inputs)?;
    if files.is_empty() {
        bail!("no input images found in {:?}", args.inputs);
    }
    let (files, shard) = crate::restore::shard::apply(&args.shard, files)?;
    if args.shard.dry_run {
        return Ok(crate::restore::shard::dry_run(&files, args, shard));
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
    let device = crate::restore::device::resolve(&args.device)?;
    eprintln!(
        "device: {}, precision {}",
        device.describe(),
        args.precision
    );
    match device {
        crate::restore::device::Device::Cpu => {
            if args.precision == Precision::Bf16 {
                bail!("--device {}: {}", args.device, crate::restore::device::BF16_ON_CPU);
            }
            run_on(CpuBackend::<f32>::new(), "cpu".into(), args, &files, shard)
        }
        crate::restore::device::Device::Cuda(name) => {
            let opts = CudaOptions {
                precision: args.precision,
                ..Default::default()
            };
            let be = crate::backend::cuda::CudaBackend::with_options(opts)
                .map_err(|e| anyhow::anyhow!("--device cuda: {e}"))?;
            let label = match args.precision {
                Precision::Fp32 => format!("cuda: {name}"),
                Precision::Bf16 => format!("cuda: {name} (bf16 tensor-core convs and products)"),
            };
            run_on(std::rc::Rc::new(be), label, args, &files, shard)
        }
    }
}

fn run_on<B: Backend + Clone>(
    backend: B,
    device_name: String,
    args: &RestoreArgs,
    files: &[PathBuf],
    shard: Option<crate::restore::shard::ShardInfo>,
) -> Result<RunReport> {
    let t_run = Instant::now();
    if args.trace.is_some() {
        crate::trace::start(crate::trace::DEFAULT_LIMIT);
    }
    let models = load_models(&args.weights)?;
    let mut cfg = models.set.sampler.clone();
    if let Some(s) = &args.sampler {
        cfg.sampler = s.clone();
    }
    if let Some(u) = args.step_on {
        cfg.update_on = u;
    }
    if let Some(e) = args.eta {
        cfg.eta = e;
    }
    for n in crate::restore::preset::missing_weight_notes(args.preset, &models.set, &args.weights) {
        eprintln!("note: {n}");
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
    let (photos, files) =
        crate::face::photo_run::split_inputs(files, &args.photos, s, &args.weights, &|l: &str| {
            mp.suspend(|| eprintln!("{l}"))
        });
    // Images are decoded batch by batch (a folder of thousands never sits in memory at once).
    let mut queue: VecDeque<Job> = VecDeque::new();
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
        queue.push_back(Job {
            input: f.clone(),
            out,
        });
    }
    let mut batch = args.batch;
    let mut batches_run = 0u64;
    let mut stopped: Option<String> = None;
    let mut pipelines: Vec<Pipeline<B>> = vec![];
    if !photos.is_empty() {
        let mut restore_faces = |x: &Tensor<f32>, seeds: &[u64]| {
            batches_run += 1;
            crate::backend::fault::check_batch(batches_run)?;
            let b = seeds.len();
            let p = pipeline_for(&mut pipelines, b, || {
                Pipeline::new(backend.clone(), &models, cfg.clone(), use_dgsa, b)
            })?;
            p.restore(x, &models, seeds)
        };
        let log = |l: &str| mp.suspend(|| eprintln!("{l}"));
        let run = crate::face::photo_run::PhotoRun {
            args: &args.photos,
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
    while stopped.is_none() && !queue.is_empty() {
        let mut chunk: Vec<(Job, InputImage)> = vec![];
        while chunk.len() < batch {
            let Some(job) = queue.pop_front() else { break };
            match load_input(&job.input, s) {
                Ok(img) => {
                    // Conversions (resize, bit depth, alpha, EXIF...) are shown as they happen
                    // and kept in the report.
                    mp.suspend(|| {
                        for n in &img.notes {
                            eprintln!("warning: {}: {n}", job.input.display());
                        }
                    });
                    chunk.push((job, img))
                }
                Err(e) => {
                    mp.suspend(|| eprintln!("error: {e:#}"));
                    let seed = image_seed(args.seed, &stem_of(&job.input));
                    reports.push(
                        ImageReport::new(&job.input, seed, "failed").with_error(format!("{e:#}")),
                    );
                    images_bar.inc(1);
                }
            }
        }
        if chunk.is_empty() {
            continue;
        }
        let need: u64 = chunk.iter().map(|(_, img)| output_bytes_bound(img)).sum();
        if let Err(e) =
            crate::disk_space::ensure_free(&args.output, need, "the next batch's outputs")
        {
            stopped = Some(format!("{e:#}"));
            for (job, _) in chunk.into_iter().rev() {
                queue.push_front(job);
            }
            break;
        }
        let b = chunk.len();
        let names: Vec<String> = chunk.iter().map(|(j, _)| stem_of(&j.input)).collect();
        images_bar.set_message(names.join(", "));
        // Each image its own random stream: its result depends only on its name and the
        // base seed, not on the batch it is in (so an OOM back-off changes nothing either).
        let seeds: Vec<u64> = names.iter().map(|n| image_seed(args.seed, n)).collect();
        batches_run += 1;
        let t_batch = Instant::now();
        let result = crate::backend::fault::check_batch(batches_run)
            .map_err(anyhow::Error::new)
            .and_then(|()| {
                let p = pipeline_for(&mut pipelines, b, || {
                    let mut p = Pipeline::new(backend.clone(), &models, cfg.clone(), use_dgsa, b)?;
                    let sb = steps_bar.clone();
                    p.set_step_progress(Some(Box::new(move |done, total| {
                        sb.set_length(total as u64);
                        sb.set_position(done as u64);
                    })));
                    Ok(p)
                })?;
                let mut data = Vec::with_capacity(b * 3 * s * s);
                for (_, img) in &chunk {
                    data.extend_from_slice(&img.planes.data);
                }
                p.restore(&Tensor::new(vec![b, 3, s, s], data), &models, &seeds)
            });
        let batch_args = serde_json::json!({ "images": names, "ok": result.is_ok() });
        crate::trace::span("batch", "batch", t_batch, Instant::now(), batch_args);
        match result {
            Ok(res) => {
                for (i, (job, img)) in chunk.iter().enumerate() {
                    let per = 3 * s * s;
                    let plane = Tensor::new(
                        vec![3, s, s],
                        res.restored.data[i * per..(i + 1) * per].to_vec(),
                    );
                    let saved = save_output(&plane, img, &job.out);
                    if let Some(d) = &dump {
                        if let Err(e) = crate::restore::dump::dump_image(d, &names[i], i, &res, &models) {
                            mp.suspend(|| {
                                eprintln!("warning: dump for {}: {e:#}", job.input.display())
                            });
                        }
                    }
                    let mut r = ImageReport::new(&job.input, seeds[i], "restored");
                    match &saved {
                        Ok(()) => r = r.with_output(job.out.clone()),
                        Err(e) => {
                            let e = format!("writing {}: {e:#}", job.out.display());
                            mp.suspend(|| eprintln!("error: {e}"));
                            r = r.with_error(e);
                        }
                    }
                    r.trace = Some(res.traces[i].clone());
                    r.notes = img.notes.clone();
                    r.seconds = Some(res.times.clone());
                    reports.push(r);
                }
                images_bar.inc(b as u64);
            }
            Err(e) => match fault_kind(&e) {
                Fault::OutOfMemory if b > 1 => {
                    // Retry the same images in smaller batches; larger pipelines are dropped
                    // so their memory is free for the smaller ones.
                    batch = b / 2;
                    pipelines.retain(|p| p.batch() <= batch);
                    mp.suspend(|| {
                        eprintln!("warning: out of memory at batch {b} ({e:#}); retrying with batch {batch}")
                    });
                    for (job, _) in chunk.into_iter().rev() {
                        queue.push_front(job);
                    }
                }
                Fault::DeviceLost => {
                    mp.suspend(|| eprintln!("error: batch {}: {e:#}", names.join(", ")));
                    push_failed(&mut reports, &chunk, &seeds, &format!("{e:#}"));
                    images_bar.inc(b as u64);
                    stopped = Some(format!("the device was lost ({e:#}); rerun to resume"));
                    break;
                }
                _ => {
                    mp.suspend(|| eprintln!("error: batch {}: {e:#}", names.join(", ")));
                    push_failed(&mut reports, &chunk, &seeds, &format!("{e:#}"));
                    images_bar.inc(b as u64);
                }
            },
        }
    }
    if let Some(why) = &stopped {
        mp.suspend(|| eprintln!("error: stopped: {why}"));
        for job in queue.drain(..) {
            let seed = image_seed(args.seed, &stem_of(&job.input));
            reports.push(ImageReport::new(&job.input, seed, "not run").with_error(why.clone()));
        }
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
        not_run: count("not run"),
        stopped,
        images: reports,
        seconds: t_run.elapsed().as_secs_f64(),
        shard,
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
