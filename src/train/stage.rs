//! The loop every `dynface train` stage shares: open or resume the run, take prefetched
//! batches in step order, clip, AdamW with warm-up + cosine, EMA, log each step (JSONL,
//! progress bar with loss and throughput), validate every N steps, checkpoint atomically
//! every N steps. A stage supplies only what differs: its graph's loss and gradients for a
//! batch, any host-side update after the optimiser (batch-norm running statistics), and its
//! validation figures ([`Stage`]).
//!
//! Every batch is a function of (seed, step) and the host owns every number that changes
//! between steps, so `--resume` from a checkpoint gives the same losses and weights as an
//! uninterrupted run (on the CPU backend).

use super::checkpoint::{self, TrainState};
use super::data::Prefetch;
use super::log;
use super::optim::{clip_global_norm, ema_update, AdamW, AdamWConfig, Params, Schedule};
use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};
use std::path::Path;
use std::time::Instant;

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const METRICS: &str = "metrics.jsonl";
pub const PLOT: &str = "loss.svg";

/// Fields of a metrics record.
pub type Record = Map<String, Value>;

/// The optimiser and bookkeeping settings of a stage's config.
#[derive(Clone, Debug)]
pub struct LoopSettings {
    pub steps: u64,
    pub batch: usize,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: u64,
    pub adamw: AdamWConfig,
    pub clip_norm: f64,
    pub ema_decay: f64,
    pub checkpoint_every: u64,
    pub val_every: u64,
    /// Title of `loss.svg`.
    pub loss_title: &'static str,
}

/// Options of one invocation (the config says what to train; these say how to run it).
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    pub resume: bool,
    /// Stop after this many steps in total, as if killed: nothing is written past the last
    /// periodic checkpoint (for resume tests).
    pub stop_after: Option<u64>,
    /// `train sde`: also score the training-free estimator (oracle restorer) at the end.
    pub compare_training_free: bool,
    pub quiet: bool,
}

/// One step's result: the loss, the gradient of every trained parameter (named as in the
/// host's `Params`), and stage-specific figures for the log (e.g. the loss's terms).
pub struct StepOut {
    pub loss: f64,
    pub grads: Params,
    pub extra: Record,
}

pub trait Stage {
    type Batch: Send + 'static;
    /// Forward and backward on `batch` with weights `model`.
    fn step(&mut self, model: &Params, batch: Self::Batch) -> Result<StepOut>;
    /// After the optimiser's update of `model` (e.g. running statistics of this step).
    fn after_update(&mut self, _model: &mut Params) -> Result<()> {
        Ok(())
    }
    /// Validation figures of `weights` (logged with a `val_` prefix, or `val_raw_` for the
    /// non-EMA weights); `None` when there is no validation set.
    fn validate(&mut self, weights: &Params, raw: bool) -> Result<Option<Record>>;
}

/// Opens `out` for a run: a fresh state from `init`, or with `resume` the checkpoint there
/// (refused when it was written with another config). The log is cut to the checkpoint.
pub fn open(
    out: &Path,
    cfg_pretty: &str,
    cfg_text: &str,
    adamw: &AdamWConfig,
    resume: bool,
    init: impl FnOnce() -> Result<Params>,
) -> Result<TrainState> {
    std::fs::create_dir_all(out)
        .with_context(|| format!("cannot create output folder {}", out.display()))?;
    let ckpt_path = out.join(CHECKPOINT);
    let metrics = out.join(METRICS);
    let state = if resume && ckpt_path.exists() {
        let (st, saved) = checkpoint::load(&ckpt_path, adamw.clone())?;
        if saved != cfg_text {
            bail!(
                "{}: written with a different config; resume with the same config or train into a new folder",
                ckpt_path.display()
            );
        }
        log::truncate_after(&metrics, st.step)?;
        st
    } else {
        if ckpt_path.exists() && !resume {
            bail!(
                "{} exists: pass --resume to continue it, or choose another output folder",
                ckpt_path.display()
            );
        }
        if metrics.exists() {
            std::fs::remove_file(&metrics)?;
        }
        let model = init()?;
        TrainState {
            step: 0,
            ema: model.clone(),
            model,
            opt: AdamW::new(adamw.clone()),
        }
    };
    crate::atomic_file::write_atomic(&out.join("config.json"), cfg_pretty.as_bytes())?;
    Ok(state)
}

#[derive(Debug)]
pub struct LoopSummary {
    pub steps_run: u64,
    pub seconds: f64,
    /// The last validation of the EMA weights.
    pub last_val: Option<Record>,
}

/// What `dynface train …` returns: the steps run by this invocation, the step reached, and
/// the last validation of the EMA weights in the stage's own terms.
#[derive(Debug)]
pub struct TrainSummary<V> {
    pub steps_run: u64,
    pub final_step: u64,
    pub seconds: f64,
    pub seconds_per_step: f64,
    pub last_val: Option<V>,
}

impl LoopSummary {
    pub fn finish<V>(self, final_step: u64, last_val: Option<V>) -> TrainSummary<V> {
        TrainSummary {
            steps_run: self.steps_run,
            final_step,
            seconds: self.seconds,
            seconds_per_step: self.seconds / self.steps_run.max(1) as f64,
            last_val,
        }
    }
}

fn prefixed(rec: &mut Value, prefix: &str, fields: &Record) {
    for (k, v) in fields {
        rec[format!("{prefix}{k}")] = v.clone();
    }
}

/// Runs steps `state.step .. min(stop_after, steps)`, with batches from `prefetch` (which
/// must start at `state.step`).
pub fn run_loop<S: Stage>(
    stage: &mut S,
    ls: &LoopSettings,
    state: &mut TrainState,
    prefetch: &mut Prefetch<S::Batch>,
    out: &Path,
    cfg_text: &str,
    opts: &RunOptions,
) -> Result<LoopSummary> {
    let metrics = out.join(METRICS);
    let ckpt_path = out.join(CHECKPOINT);
    let sched = Schedule {
        lr: ls.lr,
        min_lr: ls.min_lr,
        warmup: ls.warmup,
        total: ls.steps,
    };
    let end = opts.stop_after.map_or(ls.steps, |s| s.min(ls.steps));
    let bar = if opts.quiet {
        indicatif::ProgressBar::hidden()
    } else {
        indicatif::ProgressBar::new(ls.steps)
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{bar:30} {pos}/{len} steps {msg} [{elapsed}<{eta}]",
        )
        .expect("static template"),
    );
    bar.set_position(state.step);
    let t_start = Instant::now();
    let first = state.step;
    let mut last_val = None;
    if state.step == 0 {
        if let Some(v) = stage.validate(&state.ema, false)? {
            let mut rec = json!({"step": 0});
            prefixed(&mut rec, "val_", &v);
            log::append(&metrics, &rec)?;
        }
    }
    while state.step < end {
        let t0 = Instant::now();
        let batch = prefetch
            .next_batch()
            .context("the data worker stopped before the run ended")?
            .with_context(|| format!("making the batch of step {}", state.step))?;
        let wait = t0.elapsed().as_secs_f64();
        let StepOut {
            loss,
            mut grads,
            extra,
        } = stage.step(&state.model, batch)?;
        if !loss.is_finite() {
            bail!(
                "step {}: the loss is {loss}; stopping (last checkpoint kept)",
                state.step
            );
        }
        let gnorm = clip_global_norm(&mut grads, ls.clip_norm);
        if !gnorm.is_finite() {
            bail!(
                "step {}: the gradient norm is {gnorm}; stopping",
                state.step
            );
        }
        let lr = sched.at(state.step);
        state
            .opt
            .update(&mut state.model, &grads, lr)
            .map_err(anyhow::Error::msg)?;
        stage.after_update(&mut state.model)?;
        ema_update(&mut state.ema, &state.model, ls.ema_decay);
        state.step += 1;
        let dt = t0.elapsed().as_secs_f64();
        let mut rec = json!({
            "step": state.step - 1, "loss": loss, "lr": lr, "grad_norm": gnorm,
            "seconds": dt, "data_wait_s": wait, "images_per_s": ls.batch as f64 / dt,
        });
        prefixed(&mut rec, "", &extra);
        if state.step.is_multiple_of(ls.val_every) || state.step == ls.steps {
            if let Some(v) = stage.validate(&state.ema, false)? {
                prefixed(&mut rec, "val_", &v);
                last_val = Some(v);
            }
            // The raw (non-EMA) weights too: when the two disagree, the EMA horizon is
            // too long for the run, or the batch-norm running statistics lag.
            if ls.ema_decay > 0.0 {
                if let Some(v) = stage.validate(&state.model, true)? {
                    prefixed(&mut rec, "val_raw_", &v);
                }
            }
        }
        log::append(&metrics, &rec)?;
        bar.set_message(format!(
            "loss {loss:.4} | {:.2} img/s",
            ls.batch as f64 / dt
        ));
        bar.set_position(state.step);
        if state.step.is_multiple_of(ls.checkpoint_every) || state.step == ls.steps {
            checkpoint::save(&ckpt_path, state, cfg_text)?;
            log::write_loss_plot(&metrics, &out.join(PLOT), ls.loss_title)?;
        }
    }
    bar.finish_and_clear();
    Ok(LoopSummary {
        steps_run: state.step - first,
        seconds: t_start.elapsed().as_secs_f64(),
        last_val,
    })
}

/// A stage's JSON config from `path`, checked by `validate`; errors name the file and the stage.
pub fn read_config<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    stage: &str,
    validate: impl Fn(&T) -> anyhow::Result<()>,
) -> anyhow::Result<T> {
    use anyhow::Context;
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let c: T = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a valid `train {stage}` config", path.display()))?;
    validate(&c).with_context(|| format!("{}: invalid config", path.display()))?;
    Ok(c)
}
