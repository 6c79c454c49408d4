//! The batch loop of `dynface restore` over aligned crops, on one device or a device list:
//! one worker per device, each with its own backend and pipelines, pulling batches from one
//! [`WorkQueue`]. Worker 0 runs on the calling thread (so a one-device run is the one loop it
//! always was, with the backend the caller already built); the others on scoped threads,
//! each building its backend there (a CUDA context stays on its thread).
//!
//! Faults (ARCHITECTURE.md, Faults in a batch run) are handled per worker: out of memory
//! halves that worker's batch and gives the images back; a lost device stops only its
//! worker, its batch goes back to the queue for the others, and when the last device is
//! lost the run stops as a one-device run does (the batch failed, the rest not run); any
//! other error fails the batch and the worker goes on. Each image's noise is its own seeded
//! stream, so its bytes do not depend on the device or the batch that restored it.

use super::fault::{fault_kind, Fault};
use super::images::{load_input, save_output, InputImage};
use super::inputs::image_seed;
use super::models::LoadedModels;
use super::pipeline::Pipeline;
use super::queue::{Indexed, WorkQueue};
use super::report::{ImageReport, LostDevice};
use crate::backend::Backend;
use crate::degrade::load::stem_of;
use crate::sampler::SamplerConfig;
use crate::tensor::Tensor;
use anyhow::Result;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// One image still to restore.
#[derive(Clone, Debug)]
pub struct Job {
    pub input: PathBuf,
    pub out: PathBuf,
}

/// What every worker shares.
pub struct BatchRun<'a> {
    pub models: &'a LoadedModels,
    pub cfg: &'a SamplerConfig,
    pub use_dgsa: bool,
    /// The batch size asked for (a worker lowers its own on out of memory).
    pub batch: usize,
    pub base_seed: u64,
    /// Where the outputs go (the free-space check).
    pub out_dir: &'a Path,
    pub dump: Option<&'a Path>,
    /// Batches run so far over the whole run, photos included (`DYNFACE_FAULT_BATCH`).
    pub batches_run: &'a AtomicU64,
}

/// What a run tells its user while it goes (the CLI's progress bars and messages).
pub trait Observer: Sync {
    fn log(&self, line: &str);
    fn images_done(&self, n: usize);
    fn batch_started(&self, device: &str, names: &[String]);
    /// The step-progress callback for worker `w`'s pipelines.
    fn step_progress(&self, w: usize) -> Option<Box<dyn FnMut(usize, usize)>>;
}

/// A device with what it already holds: its label for the report, the backend, pipelines
/// built earlier in the run (the whole-photo path's).
pub struct DeviceWorker<B: Backend + Clone> {
    pub label: String,
    pub backend: B,
    pub pipelines: Vec<Pipeline<B>>,
}

/// What the queue's workers did.
pub struct QueueOutcome {
    /// One per job, in input order.
    pub reports: Vec<ImageReport>,
    pub stopped: Option<String>,
    pub lost: Vec<LostDevice>,
    /// The first device's step description (from a pipeline that ran), if any ran.
    pub step: Option<String>,
}

#[derive(Default)]
struct WorkerEnd {
    reports: Vec<Indexed<ImageReport>>,
    lost: Option<(Instant, LostDevice)>,
    step: Option<String>,
}

/// Restores `jobs` on `first` (worker 0, this thread) and one worker per label of `others`
/// (worker i + 1 builds its backend with `make(i + 1)` on its own thread).
pub fn run_devices<B, F>(
    run: &BatchRun,
    jobs: Vec<Job>,
    first: DeviceWorker<B>,
    others: &[String],
    make: F,
    obs: &dyn Observer,
) -> QueueOutcome
where
    B: Backend + Clone,
    F: Fn(usize) -> Result<B> + Sync,
{
    let q = WorkQueue::new(jobs, 1 + others.len());
    let ends: Vec<WorkerEnd> = std::thread::scope(|sc| {
        let handles: Vec<_> = others
            .iter()
            .enumerate()
            .map(|(i, label)| {
                let (q, make) = (&q, &make);
                sc.spawn(move || {
                    let w = i + 1;
                    match make(w) {
                        Ok(backend) => {
                            let dev = DeviceWorker {
                                label: label.clone(),
                                backend,
                                pipelines: vec![],
                            };
                            work(w, dev, run, q, obs)
                        }
                        Err(e) => {
                            obs.log(&format!("error: {label}: cannot start: {e:#}"));
                            q.lose_idle(format!(
                                "no device could start (the last, {label}: {e:#})"
                            ));
                            WorkerEnd {
                                lost: Some((
                                    Instant::now(),
                                    LostDevice {
                                        device: label.clone(),
                                        batch: 0,
                                        error: format!("cannot start: {e:#}"),
                                        requeued: vec![],
                                    },
                                )),
                                ..Default::default()
                            }
                        }
                    }
                })
            })
            .collect();
        let mut ends = vec![work(0, first, run, &q, obs)];
        for h in handles {
            ends.push(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        ends
    });
    let stopped = q.stopped();
    let mut reports: Vec<Indexed<ImageReport>> = vec![];
    let mut lost = vec![];
    let mut step = None;
    for e in ends {
        reports.extend(e.reports);
        lost.extend(e.lost);
        step = step.or(e.step);
    }
    if let Some(why) = &stopped {
        for (i, job) in q.into_pending() {
            let seed = image_seed(run.base_seed, &stem_of(&job.input));
            reports.push((
                i,
                ImageReport::new(&job.input, seed, "not run").with_error(why.clone()),
            ));
        }
    }
    reports.sort_by_key(|(i, _)| *i);
    lost.sort_by_key(|(t, _)| *t);
    QueueOutcome {
        reports: reports.into_iter().map(|(_, r)| r).collect(),
        stopped,
        lost: lost.into_iter().map(|(_, l)| l).collect(),
        step,
    }
}

/// The cached pipeline for batch size `b`, built on first use.
pub fn pipeline_for<B: Backend + Clone>(
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

/// An upper bound on an output PNG's size: raw 8-bit RGB plus the format's overhead
/// (deflate's stored blocks at worst), so the disk check never under-asks.
fn output_bytes_bound(img: &InputImage) -> u64 {
    let raw = img.width as u64 * img.height as u64 * 3 + img.height as u64;
    raw + raw / 64 + 64 * 1024
}

type Loaded = (usize, Job, InputImage);

/// Takes one batch and decodes it (inputs that fail to load are reported and replaced from
/// the queue); `None` when the run is over for this worker.
fn next_batch(
    q: &WorkQueue<Job>,
    batch: usize,
    run: &BatchRun,
    label: &str,
    end: &mut WorkerEnd,
    obs: &dyn Observer,
) -> Option<Vec<Loaded>> {
    let s = run.models.set.image_size;
    let mut taken = q.take(batch)?;
    let mut chunk = vec![];
    loop {
        for (i, job) in taken {
            match load_input(&job.input, s) {
                Ok(img) => {
                    // Conversions (resize, bit depth, alpha, EXIF...) are shown as they
                    // happen and kept in the report.
                    for n in &img.notes {
                        obs.log(&format!("warning: {}: {n}", job.input.display()));
                    }
                    chunk.push((i, job, img));
                }
                Err(e) => {
                    obs.log(&format!("error: {e:#}"));
                    let seed = image_seed(run.base_seed, &stem_of(&job.input));
                    let mut r =
                        ImageReport::new(&job.input, seed, "failed").with_error(format!("{e:#}"));
                    r.device = Some(label.to_string());
                    end.reports.push((i, r));
                    obs.images_done(1);
                }
            }
        }
        if chunk.len() >= batch {
            return Some(chunk);
        }
        taken = q.take_more(batch - chunk.len());
        if taken.is_empty() {
            return Some(chunk);
        }
    }
}

fn jobs_of(chunk: Vec<Loaded>) -> Vec<Indexed<Job>> {
    chunk.into_iter().map(|(i, job, _)| (i, job)).collect()
}

fn push_failed(end: &mut WorkerEnd, chunk: &[Loaded], seeds: &[u64], label: &str, e: &str) {
    for ((i, job, img), &seed) in chunk.iter().zip(seeds) {
        let mut r = ImageReport::new(&job.input, seed, "failed").with_error(e.to_string());
        r.notes = img.notes.clone();
        r.device = Some(label.to_string());
        end.reports.push((*i, r));
    }
}

/// One worker's loop: batches from the queue until it is empty, stopped or the device lost.
fn work<B: Backend + Clone>(
    w: usize,
    mut dev: DeviceWorker<B>,
    run: &BatchRun,
    q: &WorkQueue<Job>,
    obs: &dyn Observer,
) -> WorkerEnd {
    let s = run.models.set.image_size;
    let label = dev.label.clone();
    let mut end = WorkerEnd::default();
    let mut batch = run.batch;
    let mut device_batches = 0u64;
    while let Some(chunk) = next_batch(q, batch, run, &label, &mut end, obs) {
        if chunk.is_empty() {
            q.finish();
            continue;
        }
        let need: u64 = chunk
            .iter()
            .map(|(_, _, img)| output_bytes_bound(img))
            .sum();
        if let Err(e) =
            crate::disk_space::ensure_free(run.out_dir, need, "the next batch's outputs")
        {
            q.stop(format!("{e:#}"));
            q.give_back(jobs_of(chunk));
            break;
        }
        let b = chunk.len();
        let names: Vec<String> = chunk.iter().map(|(_, j, _)| stem_of(&j.input)).collect();
        obs.batch_started(&label, &names);
        // Each image its own random stream: its result depends only on its name and the
        // base seed, not on the batch or the device it is in.
        let seeds: Vec<u64> = names.iter().map(|n| image_seed(run.base_seed, n)).collect();
        device_batches += 1;
        let run_batches = run.batches_run.fetch_add(1, Ordering::SeqCst) + 1;
        let t_batch = Instant::now();
        let result = crate::backend::fault::check_batch(run_batches)
            .and_then(|()| crate::backend::fault::check_device_batch(w, device_batches))
            .map_err(anyhow::Error::new)
            .and_then(|()| {
                let p = pipeline_for(&mut dev.pipelines, b, || {
                    let mut p = Pipeline::new(
                        dev.backend.clone(),
                        run.models,
                        run.cfg.clone(),
                        run.use_dgsa,
                        b,
                    )?;
                    p.set_step_progress(obs.step_progress(w));
                    p.set_scale_snapshots(run.dump.is_some());
                    Ok(p)
                })?;
                let mut data = Vec::with_capacity(b * 3 * s * s);
                for (_, _, img) in &chunk {
                    data.extend_from_slice(&img.planes.data);
                }
                p.restore(&Tensor::new(vec![b, 3, s, s], data), run.models, &seeds)
            });
        let batch_args =
            serde_json::json!({ "images": names, "ok": result.is_ok(), "device": label });
        crate::trace::span("batch", "batch", t_batch, Instant::now(), batch_args);
        match result {
            Ok(res) => {
                for (k, (i, job, img)) in chunk.iter().enumerate() {
                    let per = 3 * s * s;
                    let plane = Tensor::new(
                        vec![3, s, s],
                        res.restored.data[k * per..(k + 1) * per].to_vec(),
                    );
                    let saved = save_output(&plane, img, &job.out);
                    if let Some(d) = run.dump {
                        if let Err(e) =
                            crate::restore::dump::dump_image(d, &names[k], k, &res, run.models)
                        {
                            obs.log(&format!("warning: dump for {}: {e:#}", job.input.display()));
                        }
                    }
                    let mut r = ImageReport::new(&job.input, seeds[k], "restored");
                    match &saved {
                        Ok(()) => r = r.with_output(job.out.clone()),
                        Err(e) => {
                            let e = format!("writing {}: {e:#}", job.out.display());
                            obs.log(&format!("error: {e}"));
                            r = r.with_error(e);
                        }
                    }
                    r.device = Some(label.clone());
                    r.trace = Some(res.traces[k].clone());
                    r.notes = img.notes.clone();
                    r.seconds = Some(res.times.clone());
                    end.reports.push((*i, r));
                }
                q.finish();
                obs.images_done(b);
            }
            Err(e) => match fault_kind(&e) {
                Fault::OutOfMemory if b > 1 => {
                    // Retry the same images in smaller batches; larger pipelines are dropped
                    // so their memory is free for the smaller ones.
                    batch = b / 2;
                    dev.pipelines.retain(|p| p.batch() <= batch);
                    obs.log(&format!(
                        "warning: out of memory at batch {b} ({e:#}); retrying with batch {batch}"
                    ));
                    q.give_back(jobs_of(chunk));
                }
                Fault::DeviceLost => {
                    let err = format!("{e:#}");
                    obs.log(&format!("error: batch {}: {err}", names.join(", ")));
                    let why_last = if q.workers() == 1 {
                        format!("the device was lost ({err}); rerun to resume")
                    } else {
                        format!(
                            "all {} devices were lost (the last, {label}: {err}); rerun to resume",
                            q.workers()
                        )
                    };
                    let inputs: Vec<PathBuf> =
                        chunk.iter().map(|(_, j, _)| j.input.clone()).collect();
                    let notes: Vec<Vec<String>> =
                        chunk.iter().map(|(_, _, img)| img.notes.clone()).collect();
                    let requeued = match q.lose(jobs_of(chunk), why_last) {
                        Ok(()) => {
                            obs.log(&format!(
                                "warning: {label} is lost; its batch ({}) goes back to the queue for the other devices",
                                names.join(", ")
                            ));
                            inputs
                        }
                        Err(jobs) => {
                            for (((i, job), &seed), notes) in jobs.iter().zip(&seeds).zip(notes) {
                                let mut r = ImageReport::new(&job.input, seed, "failed")
                                    .with_error(err.clone());
                                r.notes = notes;
                                r.device = Some(label.clone());
                                end.reports.push((*i, r));
                            }
                            obs.images_done(b);
                            vec![]
                        }
                    };
                    end.lost = Some((
                        Instant::now(),
                        LostDevice {
                            device: label.clone(),
                            batch: device_batches,
                            error: err,
                            requeued,
                        },
                    ));
                    break;
                }
                _ => {
                    obs.log(&format!("error: batch {}: {e:#}", names.join(", ")));
                    push_failed(&mut end, &chunk, &seeds, &label, &format!("{e:#}"));
                    q.finish();
                    obs.images_done(b);
                }
            },
        }
    }
    end.step = dev.pipelines.first().map(|p| p.step_description());
    end
}
