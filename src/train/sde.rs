//! `dynface train sde`: stage 1 of the standard estimator (METHOD.md Eq. 10/22) — the SDE
//! alone, regressing σ from true Gaussian blurs k_σ ⊛ x of HQ face crops, σ ~ U[0.1, 15],
//! with the L1 loss |σ̂ − σ|.
//!
//! One planned graph per run (forward in training-mode batch norm, loss, reverse mode to
//! every weight); the host keeps the weights, applies clipping, AdamW, the schedule, the
//! running-statistics update and the EMA. Checkpoints every N steps hold all of that, and
//! every batch is a function of (seed, step), so `--resume` continues bit-exactly.

use super::data::{load_faces, split_files, validation_set, BlurBatches, Prefetch};
use super::export;
use super::optim::{AdamWConfig, Params};
use super::stage::{self, LoopSettings, Record, Stage, StepOut, TrainSummary};
pub use super::stage::{RunOptions, CHECKPOINT, METRICS, PLOT};
use crate::backend::cpu::CpuBackend;
use crate::dblm::estimate::{spearman, BlurLevelEstimator};
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{autodiff::grad, Graph, NodeId, Op};
use crate::models::sde::{self, BnBatchStats, SdeConfig};
use crate::tensor::{random, Tensor};
use anyhow::{bail, Context, Result};
use rand_distr::{Distribution, Normal};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const WEIGHTS: &str = "sde.safetensors";
pub const MODEL_CONFIG: &str = "sde.json";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SdeTrainConfig {
    /// HQ faces (PNG/JPEG).
    pub train_dir: PathBuf,
    /// Held-out faces; absent (or equal to `train_dir`): every `holdout_every`-th face of
    /// `train_dir` by name is held out instead.
    pub val_dir: Option<PathBuf>,
    pub holdout_every: usize,
    /// Side of the random square crops.
    pub crop: usize,
    pub batch: usize,
    pub steps: u64,
    pub sigma_min: f32,
    pub sigma_max: f32,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: u64,
    pub adamw: AdamWConfig,
    /// Global gradient-norm limit (0: no clipping).
    pub clip_norm: f64,
    /// Weight EMA decay; the EMA is what validation measures and what is exported.
    pub ema_decay: f64,
    /// Batch-norm running-statistics momentum (PyTorch's convention: new = (1−m)·old + m·batch).
    pub bn_momentum: f64,
    pub model: SdeConfig,
    /// Initial bias of the σ head: the middle of the σ range, so training starts near it.
    pub init_sigma: f32,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub val_every: u64,
    /// σ of the validation blurs (each held-out face at each).
    pub val_sigmas: Vec<f32>,
    /// Batches made ahead on the worker thread.
    pub prefetch: usize,
    /// Before validating and exporting, the batch-norm running statistics are recomputed for
    /// the weights being evaluated as the average over this many fixed training batches
    /// (0: use the running averages as trained). The EMA weights never produced running
    /// statistics of their own, and a small batch's momentum averages lag the weights.
    pub bn_recalibrate_batches: usize,
}

impl Default for SdeTrainConfig {
    fn default() -> Self {
        SdeTrainConfig {
            train_dir: PathBuf::from("faces/hq"),
            val_dir: None,
            holdout_every: 4,
            crop: 256,
            batch: 8,
            steps: 2000,
            sigma_min: 0.1,
            sigma_max: 15.0,
            lr: 1e-3,
            min_lr: 1e-5,
            warmup: 50,
            adamw: AdamWConfig::default(),
            clip_norm: 5.0,
            ema_decay: 0.99,
            bn_momentum: 0.1,
            model: SdeConfig::default(),
            init_sigma: 7.5,
            seed: 0,
            checkpoint_every: 100,
            val_every: 100,
            val_sigmas: vec![0.5, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 12.0, 15.0],
            prefetch: 2,
            bn_recalibrate_batches: 8,
        }
    }
}

impl SdeTrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.batch < 2 {
            bail!("batch must be at least 2 (training batch norm needs a batch)");
        }
        if self.crop < 8 || self.steps == 0 || self.checkpoint_every == 0 || self.val_every == 0 {
            bail!("crop ≥ 8 and steps, checkpoint_every, val_every ≥ 1 are required");
        }
        if !(self.sigma_min > 0.0 && self.sigma_min <= self.sigma_max) {
            bail!("need 0 < sigma_min ≤ sigma_max");
        }
        if !(0.0..1.0).contains(&self.ema_decay) || !(0.0..=1.0).contains(&self.bn_momentum) {
            bail!("ema_decay must be in [0, 1) and bn_momentum in [0, 1]");
        }
        if self.val_sigmas.is_empty() {
            bail!("val_sigmas must not be empty");
        }
        Ok(())
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        super::stage::read_config(path, "sde", Self::validate)
    }
}

/// Fresh weights: He-normal convolutions, fan-in-scaled linears, identity batch norm, the
/// last layer small with its bias at `init_sigma`.
pub fn init_weights(cfg: &SdeTrainConfig) -> Params {
    let mut rng = random::rng(cfg.seed ^ 0x5de_1417);
    let spec = sde::checkpoint_spec(&cfg.model, 3);
    let mut p = Params::new();
    for (name, shape) in spec {
        let t = if name.ends_with("running_var") || name.ends_with("bn.weight") {
            Tensor::full(&shape, 1.0)
        } else if name.ends_with("running_mean") || name.ends_with("bn.bias") {
            Tensor::zeros(&shape)
        } else if name == "head.2.bias" {
            Tensor::full(&shape, cfg.init_sigma)
        } else if name.ends_with(".bias") {
            Tensor::zeros(&shape)
        } else {
            let fan_in: usize = shape[1..].iter().product();
            let gain = if name.contains("conv") { 2.0 } else { 1.0 };
            let mut std = (gain / fan_in as f64).sqrt();
            if name == "head.2.weight" {
                std *= 0.1;
            }
            let n = Normal::new(0.0, std).expect("finite std");
            let data = (0..shape.iter().product())
                .map(|_| n.sample(&mut rng) as f32)
                .collect();
            Tensor::new(shape, data)
        };
        p.insert(name, t);
    }
    p
}

/// The training graph: σ̂ in training mode, the L1 loss, and the gradient of every weight.
struct TrainGraph {
    graph: Graph,
    loss: NodeId,
    pred: NodeId,
    /// (weight name, gradient node).
    grads: Vec<(String, NodeId)>,
    stats: Vec<BnBatchStats>,
}

fn train_graph(cfg: &SdeTrainConfig) -> Result<TrainGraph> {
    let (b, s) = (cfg.batch, cfg.crop);
    let mut g = Graph::new();
    let x = g.input("x", &[b, 3, s, s]);
    let target = g.input("sigma", &[b]);
    let (pred, stats) = sde::build_train(&mut g, &cfg.model, x, "")?;
    let d = g.sub(pred, target)?;
    // |d| as LeakyReLU with slope −1: exact, and its VJP is sign(d).
    let a = g.leaky_relu(d, -1.0)?;
    let loss = g.mean(a, &[0], false)?;
    let weights: Vec<(String, NodeId)> = g
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.op {
            Op::Const { name } => Some((name.clone(), NodeId(i))),
            _ => None,
        })
        .collect();
    let one = g.fill(1.0, &[]);
    let ids: Vec<NodeId> = weights.iter().map(|w| w.1).collect();
    let gs = grad(&mut g, &[(loss, one)], &ids)?;
    let grads = weights.into_iter().map(|w| w.0).zip(gs).collect();
    Ok(TrainGraph {
        graph: g,
        loss,
        pred,
        grads,
        stats,
    })
}

/// σ̂ of the eval-mode SDE for images `[n, 3, s, s]`, run in batches of `batch`.
pub struct SdePredictor {
    ex: Executor<CpuBackend<f32>>,
    out: NodeId,
    batch: usize,
    side: usize,
}

impl SdePredictor {
    pub fn new(model: &SdeConfig, batch: usize, side: usize) -> Result<Self> {
        let mut g = Graph::new();
        let x = g.input("x", &[batch, 3, side, side]);
        let out = sde::build(&mut g, model, x, "")?;
        let ex = Executor::new(CpuBackend::<f32>::new(), &g, &[out], PlanOptions::default())?;
        Ok(SdePredictor {
            ex,
            out,
            batch,
            side,
        })
    }

    pub fn predict(&mut self, weights: &Params, images: &[&[f32]]) -> Result<Vec<f32>> {
        self.ex.bind_all(|n| weights.get(n).cloned())?;
        let per = 3 * self.side * self.side;
        let mut out = vec![];
        for chunk in images.chunks(self.batch) {
            let mut x = Vec::with_capacity(self.batch * per);
            for k in 0..self.batch {
                // A short last chunk is padded by repeating its first image (eval-mode batch
                // norm treats images independently, so padding changes nothing else).
                x.extend_from_slice(chunk.get(k).unwrap_or(&chunk[0]));
            }
            let t = Tensor::new(vec![self.batch, 3, self.side, self.side], x);
            self.ex.set_input("x", &t)?;
            self.ex.run()?;
            let y = self.ex.output(self.out)?;
            out.extend_from_slice(&y.data[..chunk.len()]);
        }
        Ok(out)
    }
}

/// Recomputes batch-norm running statistics for given weights: the train-mode forward on
/// fixed batches, per layer the mean of the batch means and of the unbiased batch variances
/// (PyTorch's cumulative average).
pub struct BnCalibrator {
    ex: Executor<CpuBackend<f32>>,
    stats: Vec<BnBatchStats>,
    batches: Vec<super::data::Batch>,
    shape: Vec<usize>,
}

impl BnCalibrator {
    pub fn new(cfg: &SdeTrainConfig, src: &BlurBatches) -> Result<Self> {
        let (b, s) = (cfg.batch, cfg.crop);
        let mut g = Graph::new();
        let x = g.input("x", &[b, 3, s, s]);
        let (_, stats) = sde::build_train(&mut g, &cfg.model, x, "")?;
        let outs: Vec<NodeId> = stats.iter().flat_map(|st| [st.mean, st.var]).collect();
        let ex = Executor::new(CpuBackend::<f32>::new(), &g, &outs, PlanOptions::default())?;
        // Their own stream, disjoint from the training steps'.
        let fixed = BlurBatches {
            seed: src.seed ^ 0xb41c_a11b,
            ..src.clone()
        };
        let batches = (0..cfg.bn_recalibrate_batches as u64)
            .map(|k| fixed.make(k))
            .collect();
        Ok(BnCalibrator {
            ex,
            stats,
            batches,
            shape: vec![b, 3, s, s],
        })
    }

    pub fn apply(&mut self, weights: &Params) -> Result<Params> {
        let mut out = weights.clone();
        if self.batches.is_empty() {
            return Ok(out);
        }
        self.ex.bind_all(|n| weights.get(n).cloned())?;
        let mut sums: Vec<(Vec<f64>, Vec<f64>)> = self
            .stats
            .iter()
            .map(|st| {
                let c = self.ex.graph().shape(st.mean)[0];
                (vec![0.0; c], vec![0.0; c])
            })
            .collect();
        for b in &self.batches {
            self.ex
                .set_input("x", &Tensor::new(self.shape.clone(), b.x.clone()))?;
            self.ex.run()?;
            for (st, (m, v)) in self.stats.iter().zip(sums.iter_mut()) {
                let unbias = st.count as f64 / (st.count as f64 - 1.0).max(1.0);
                let (bm, bv) = (self.ex.output(st.mean)?, self.ex.output(st.var)?);
                m.iter_mut()
                    .zip(&bm.data)
                    .for_each(|(a, &x)| *a += x as f64);
                v.iter_mut()
                    .zip(&bv.data)
                    .for_each(|(a, &x)| *a += x as f64 * unbias);
            }
        }
        let k = self.batches.len() as f64;
        for (st, (m, v)) in self.stats.iter().zip(sums) {
            let n = m.len();
            out.insert(
                st.mean_key.clone(),
                Tensor::new(vec![n], m.iter().map(|a| (a / k) as f32).collect()),
            );
            out.insert(
                st.var_key.clone(),
                Tensor::new(vec![n], v.iter().map(|a| (a / k) as f32).collect()),
            );
        }
        Ok(out)
    }
}

/// MAE and Spearman ρ of predictions against the true σ.
#[derive(Clone, Debug, Serialize)]
pub struct SigmaScore {
    pub mae: f64,
    pub spearman: f64,
    pub n: usize,
}

pub fn score(pred: &[f32], truth: &[f32]) -> SigmaScore {
    let p: Vec<f64> = pred.iter().map(|&v| v as f64).collect();
    let t: Vec<f64> = truth.iter().map(|&v| v as f64).collect();
    let mae = p.iter().zip(&t).map(|(a, b)| (a - b).abs()).sum::<f64>() / p.len().max(1) as f64;
    SigmaScore {
        mae,
        spearman: spearman(&p, &t),
        n: p.len(),
    }
}

pub type SdeTrainSummary = TrainSummary<SigmaScore>;

impl SdeTrainConfig {
    pub fn loop_settings(&self) -> LoopSettings {
        LoopSettings {
            steps: self.steps,
            batch: self.batch,
            lr: self.lr,
            min_lr: self.min_lr,
            warmup: self.warmup,
            adamw: self.adamw.clone(),
            clip_norm: self.clip_norm,
            ema_decay: self.ema_decay,
            checkpoint_every: self.checkpoint_every,
            val_every: self.val_every,
            loss_title: "training loss (L1, σ in pixels)",
        }
    }
}

/// What the SDE stage adds to the shared loop: its graph, the running-statistics update,
/// and validation (MAE, Spearman ρ) of batch-norm-recalibrated weights.
struct SdeStage {
    cfg: SdeTrainConfig,
    ex: Executor<CpuBackend<f32>>,
    tg: TrainGraph,
    calib: BnCalibrator,
    predictor: SdePredictor,
    val: Vec<(String, f32, Vec<f32>)>,
    last: Option<SigmaScore>,
}

impl Stage for SdeStage {
    type Batch = super::data::Batch;

    fn step(&mut self, model: &Params, batch: Self::Batch) -> Result<StepOut> {
        let (b, s) = (self.cfg.batch, self.cfg.crop);
        self.ex.bind_all(|n| model.get(n).cloned())?;
        self.ex
            .set_input("x", &Tensor::new(vec![b, 3, s, s], batch.x))?;
        self.ex
            .set_input("sigma", &Tensor::new(vec![b], batch.sigma))?;
        self.ex.run()?;
        let loss = self.ex.output(self.tg.loss)?.data[0] as f64;
        let mut grads = Params::new();
        for (name, id) in &self.tg.grads {
            grads.insert(name.clone(), self.ex.output(*id)?);
        }
        Ok(StepOut {
            loss,
            grads,
            extra: Record::new(),
        })
    }

    fn after_update(&mut self, model: &mut Params) -> Result<()> {
        update_running_stats(&self.ex, &self.tg.stats, model, self.cfg.bn_momentum)
    }

    fn validate(&mut self, weights: &Params, raw: bool) -> Result<Option<Record>> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let imgs: Vec<&[f32]> = self.val.iter().map(|v| v.2.as_slice()).collect();
        let truth: Vec<f32> = self.val.iter().map(|v| v.1).collect();
        let w = self.calib.apply(weights)?;
        let sc = score(&self.predictor.predict(&w, &imgs)?, &truth);
        let mut r = Record::new();
        r.insert("mae".into(), json!(sc.mae));
        r.insert("spearman".into(), json!(sc.spearman));
        if !raw {
            r.insert("n".into(), json!(sc.n));
            self.last = Some(sc);
        }
        Ok(Some(r))
    }
}

/// Batch norm's running statistics after a training step: PyTorch's momentum rule with the
/// unbiased batch variance, from the batch statistics the step's graph output.
pub fn update_running_stats<B: crate::backend::Backend<Elem = f32>>(
    ex: &Executor<B>,
    stats: &[BnBatchStats],
    model: &mut Params,
    m: f64,
) -> Result<()> {
    for st in stats {
        let n = st.count;
        let (bm, bv) = (ex.output(st.mean)?, ex.output(st.var)?);
        let unbias = n as f64 / (n as f64 - 1.0).max(1.0);
        let rm = model.get_mut(&st.mean_key).context("running mean")?;
        for (r, &v) in rm.data.iter_mut().zip(&bm.data) {
            *r = ((1.0 - m) * *r as f64 + m * v as f64) as f32;
        }
        let rv = model.get_mut(&st.var_key).context("running var")?;
        for (r, &v) in rv.data.iter_mut().zip(&bv.data) {
            *r = ((1.0 - m) * *r as f64 + m * v as f64 * unbias) as f32;
        }
    }
    Ok(())
}

pub fn run(cfg: &SdeTrainConfig, out: &Path, opts: &RunOptions) -> Result<SdeTrainSummary> {
    cfg.validate()?;
    let cfg_text = serde_json::to_string(cfg)?;
    let mut state = stage::open(
        out,
        &serde_json::to_string_pretty(cfg)?,
        &cfg_text,
        &cfg.adamw,
        opts.resume,
        || Ok(init_weights(cfg)),
    )?;

    let (train_files, val_files) =
        split_files(&cfg.train_dir, cfg.val_dir.as_deref(), cfg.holdout_every)?;
    let train_faces = load_faces(&train_files)?;
    let val_faces = load_faces(&val_files)?;
    if train_faces.is_empty() {
        bail!("{}: no face decoded", cfg.train_dir.display());
    }
    if let Some(f) = train_faces
        .iter()
        .chain(&val_faces)
        .find(|f| f.h < cfg.crop || f.w < cfg.crop)
    {
        bail!(
            "{}: {}×{} is smaller than the crop {}",
            f.stem,
            f.w,
            f.h,
            cfg.crop
        );
    }
    let src = BlurBatches {
        faces: Arc::new(train_faces),
        crop: cfg.crop,
        batch: cfg.batch,
        sigma: (cfg.sigma_min, cfg.sigma_max),
        seed: cfg.seed,
    };
    let tg = train_graph(cfg)?;
    let mut outputs = vec![tg.loss, tg.pred];
    outputs.extend(tg.grads.iter().map(|g| g.1));
    outputs.extend(tg.stats.iter().flat_map(|s| [s.mean, s.var]));
    let ex = Executor::new(
        CpuBackend::<f32>::new(),
        &tg.graph,
        &outputs,
        PlanOptions::default(),
    )?;
    let mut st = SdeStage {
        cfg: cfg.clone(),
        ex,
        tg,
        calib: BnCalibrator::new(cfg, &src)?,
        predictor: SdePredictor::new(&cfg.model, cfg.batch, cfg.crop)?,
        val: validation_set(&val_faces, cfg.crop, &cfg.val_sigmas),
        last: None,
    };
    let end = opts.stop_after.map_or(cfg.steps, |s| s.min(cfg.steps));
    let mut prefetch = Prefetch::spawn(src, state.step, end, cfg.prefetch);
    let sum = stage::run_loop(
        &mut st,
        &cfg.loop_settings(),
        &mut state,
        &mut prefetch,
        out,
        &cfg_text,
        opts,
    )?;
    drop(prefetch);
    if state.step == cfg.steps {
        let weights = st.calib.apply(&state.ema)?;
        export::write_weights(&weights, out, WEIGHTS, "dynface train sde", state.step)?;
        crate::atomic_file::write_atomic(
            &out.join(MODEL_CONFIG),
            serde_json::to_string_pretty(&cfg.model)?.as_bytes(),
        )?;
        let mut report = json!({
            "steps": state.step,
            "seconds_this_run": sum.seconds,
            "sde": st.last,
        });
        if opts.compare_training_free && !st.val.is_empty() {
            report["training_free_oracle"] = json!(training_free_score(&val_faces, cfg)?);
        }
        report["items"] = json!(st.val.len());
        export::write_report(out, &report)?;
    }
    Ok(sum.finish(state.step, st.last))
}

/// The training-free σ̂ (`dblm::estimate`) on the same validation blurs, with the HQ face
/// itself as the restorer's output (an oracle RM): what it reaches at best.
pub fn training_free_score(
    val_faces: &[super::data::Face],
    cfg: &SdeTrainConfig,
) -> Result<SigmaScore> {
    let est = BlurLevelEstimator::default();
    let sharp = validation_set(val_faces, cfg.crop, &[0.0]);
    let blurred = validation_set(val_faces, cfg.crop, &cfg.val_sigmas);
    let k = cfg.val_sigmas.len();
    let mut pred = vec![];
    let mut truth = vec![];
    for (i, (_, s, y)) in blurred.iter().enumerate() {
        let x = &sharp[i / k].2;
        pred.push(est.estimate(x, y, [3, cfg.crop, cfg.crop])?);
        truth.push(*s);
    }
    Ok(score(&pred, &truth))
}

/// Multiply-adds of one SDE forward on a `side`² image (convolutions and linears; norms
/// and activations are memory-bound and left out). A training step costs about three
/// forwards per image (forward, input gradient, weight gradient).
pub fn forward_macs(cfg: &SdeConfig, side: usize) -> u64 {
    let (mut c, mut hw, mut macs) = (3u64, side as u64, 0u64);
    for &(o, stride) in &cfg.layers {
        // 3×3, pad 1: the output side is ceil(side / stride).
        hw = hw.div_ceil(stride as u64);
        macs += hw * hw * o as u64 * c * 9;
        c = o as u64;
    }
    let h = cfg.hidden as u64;
    macs + c * h + h * h + h
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counted by hand for the paper's SDE at 256²: 256²·9·(64·3 + 64·64) + 128²·9·(128·64 +
    /// 128·128) + 64²·9·(256·128 + 256·256) = 2 529 165 312 + 3 623 878 656 + 3 623 878 656,
    /// plus the head 256·256·2 + 256 = 131 328.
    #[test]
    fn forward_macs_of_the_paper_sde() {
        let want = 2_529_165_312u64 + 3_623_878_656 + 3_623_878_656 + 131_328;
        assert_eq!(forward_macs(&SdeConfig::default(), 256), want);
    }
}
