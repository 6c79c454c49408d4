//! `dynface train se`: stage 2 of the standard estimator (METHOD.md Eq. 10/22) — TM and
//! SDE end to end on Eq. 16 degraded pairs, with the loss
//! L1(ỹ, k_{σ*} ⊛ x) + λ·|σ̂ − σ*|, ỹ = TM(y), σ̂ = SDE(ỹ), σ* from the frozen restorer
//! (Eq. 19, computed in the data pipeline on the worker thread).
//!
//! TM has SwinIR's architecture and starts from the model set's restorer RM (or a given
//! file); the SDE from `train sde`'s output (or fresh). The output is an estimator file with
//! keys `tm.*` and `sde.*` and a `models.json` that uses it.

use super::data::{load_faces, split_files, DegradedPairs, Prefetch};
use super::export;
use super::labels::{labelled_pairs, LabelledBatch, RestorerWeights, SigmaStarConfig};
use super::optim::{AdamWConfig, Params};
use super::sde::{init_weights as sde_init_weights, update_running_stats, SdeTrainConfig};
use super::stage::{self, LoopSettings, Record, RunOptions, Stage, StepOut, TrainSummary};
use crate::backend::cpu::CpuBackend;
use crate::dblm::spearman;
use crate::degrade::DegradeConfig;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{autodiff::grad, Graph, NodeId, Op};
use crate::models::sde::{self, BnBatchStats, SdeConfig};
use crate::models::swinir::{self, SwinIRConfig};
use crate::models::WeightMap;
use crate::restore::models::{load_weights, EstimatorEntry, ModelSet};
use crate::tensor::Tensor;
use anyhow::{anyhow, bail, Context, Result};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const WEIGHTS: &str = "estimator.safetensors";
const BUFFERS: [&str; 2] = ["*attn_mask", "*relative_position_index"];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeTrainConfig {
    /// The model set whose restorer labels σ* and seeds TM (and whose image size is the crop).
    pub models: PathBuf,
    pub train_dir: PathBuf,
    pub val_dir: Option<PathBuf>,
    pub holdout_every: usize,
    pub batch: usize,
    pub steps: u64,
    /// λ of Eq. 22 (**choice**: the paper gives none; σ is in pixels, images on [0, 1]).
    pub lambda: f64,
    pub degrade: DegradeConfig,
    pub sigma_star: SigmaStarConfig,
    /// TM's starting weights (SwinIR keys); absent: the model set's restorer.
    pub tm_init: Option<PathBuf>,
    /// The SDE's architecture; absent: the model set's estimator's, else the paper's.
    pub sde: Option<SdeConfig>,
    /// The SDE's starting weights (`train sde`'s `sde.safetensors`); absent: fresh.
    pub sde_init: Option<PathBuf>,
    pub init_sigma: f32,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: u64,
    pub adamw: AdamWConfig,
    pub clip_norm: f64,
    pub ema_decay: f64,
    pub bn_momentum: f64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub val_every: u64,
    /// Fixed validation batches of held-out faces.
    pub val_batches: usize,
    pub prefetch: usize,
    /// Every step trains on the batch of step 0 (the overfitting check).
    pub overfit_one_batch: bool,
}

impl Default for SeTrainConfig {
    fn default() -> Self {
        SeTrainConfig {
            models: PathBuf::from("weights"),
            train_dir: PathBuf::from("faces/hq"),
            val_dir: None,
            holdout_every: 4,
            batch: 4,
            steps: 2000,
            lambda: 0.01,
            degrade: DegradeConfig::default(),
            sigma_star: SigmaStarConfig::default(),
            tm_init: None,
            sde: None,
            sde_init: None,
            init_sigma: 7.5,
            lr: 2e-4,
            min_lr: 1e-6,
            warmup: 50,
            adamw: AdamWConfig::default(),
            clip_norm: 1.0,
            ema_decay: 0.999,
            bn_momentum: 0.1,
            seed: 0,
            checkpoint_every: 100,
            val_every: 100,
            val_batches: 4,
            prefetch: 2,
            overfit_one_batch: false,
        }
    }
}

impl SeTrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.batch < 2 {
            bail!("batch must be at least 2 (training batch norm needs a batch)");
        }
        if self.steps == 0 || self.checkpoint_every == 0 || self.val_every == 0 {
            bail!("steps, checkpoint_every and val_every must be ≥ 1");
        }
        if !(self.lambda.is_finite() && self.lambda >= 0.0) {
            bail!("lambda must be finite and ≥ 0");
        }
        if !(0.0..1.0).contains(&self.ema_decay) || !(0.0..=1.0).contains(&self.bn_momentum) {
            bail!("ema_decay must be in [0, 1) and bn_momentum in [0, 1]");
        }
        if self.sigma_star.grid.is_empty() {
            bail!("sigma_star.grid must not be empty");
        }
        Ok(())
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        super::stage::read_config(path, "se", Self::validate)
    }

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
            loss_title: "training loss (Eq. 22: TM L1 + λ·|σ̂ − σ*|)",
        }
    }
}

/// TM's and SDE's weights as the host keeps them (`tm.*` in checkpoint form, `sde.*`) ↔ the
/// graph's constants (SwinIR's derived relative-position biases, the SDE prefixed).
struct SeWeights {
    tm: SwinIRConfig,
    side: usize,
}

impl SeWeights {
    /// The graph's constants for host weights `p`.
    fn bind(&self, p: &Params) -> Result<WeightMap> {
        let mut m: WeightMap = p
            .iter()
            .filter_map(|(k, v)| k.strip_prefix("tm.").map(|k| (k.to_string(), v.clone())))
            .collect();
        swinir::derive_weights(&self.tm, &mut m, self.side, self.side)
            .map_err(|e| anyhow!("TM: {e}"))?;
        m.extend(swinir::builtin_constants());
        m.extend(
            p.iter()
                .filter(|(k, _)| k.starts_with("sde."))
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        Ok(m)
    }

    /// Whether a graph constant is trained (buffers and fixed constants are not).
    fn trained(name: &str) -> bool {
        !(name.ends_with("attn_mask") || name == "swinir.rgb_mean")
    }

    /// Adds the gradient of graph constant `name` to the host gradients: the derived
    /// `[heads, N, N]` bias scatters back onto its `[(2w−1)², heads]` table.
    fn add_grad(&self, grads: &mut Params, p: &Params, name: &str, g: Tensor<f32>) -> Result<()> {
        if name.starts_with("sde.") {
            grads.insert(name.to_string(), g);
            return Ok(());
        }
        let Some(block) = name.strip_suffix(".attn.relative_position_bias") else {
            grads.insert(format!("tm.{name}"), g);
            return Ok(());
        };
        let key = format!("tm.{block}.attn.relative_position_bias_table");
        let table = p.get(&key).with_context(|| format!("missing {key}"))?;
        let (rows, heads) = (table.shape[0], table.shape[1]);
        let ws = ((rows as f64).sqrt().round() as usize).div_ceil(2);
        let idx = swinir::relative_position_index(ws);
        let n2 = idx.len();
        let gt = grads
            .entry(key)
            .or_insert_with(|| Tensor::zeros(&[rows, heads]));
        for (ij, &t) in idx.iter().enumerate() {
            for hd in 0..heads {
                gt.data[t * heads + hd] += g.data[hd * n2 + ij];
            }
        }
        Ok(())
    }
}

struct SeGraph {
    graph: Graph,
    loss: NodeId,
    l1: NodeId,
    sigma_l1: NodeId,
    pred: NodeId,
    grads: Vec<(String, NodeId)>,
    stats: Vec<BnBatchStats>,
}

/// Eq. 22 on a batch; `train`: batch norm in training mode and the weight gradients.
fn se_graph(
    tm: &SwinIRConfig,
    sde_cfg: &SdeConfig,
    b: usize,
    s: usize,
    lambda: f64,
    train: bool,
) -> Result<SeGraph> {
    let mut g = Graph::new();
    let x = g.input("lq", &[b, 3, s, s]);
    let target = g.input("target", &[b, 3, s, s]);
    let sstar = g.input("sigma_star", &[b]);
    let ty = swinir::build(&mut g, tm, x)?;
    let ty = g.clamp(ty, 0.0, 1.0)?;
    let d = g.sub(ty, target)?;
    // |d| as LeakyReLU with slope −1: exact, and its VJP is sign(d).
    let a = g.leaky_relu(d, -1.0)?;
    let l1 = g.mean(a, &[0, 1, 2, 3], false)?;
    let (pred, stats) = if train {
        sde::build_train(&mut g, sde_cfg, ty, "sde.")?
    } else {
        (sde::build(&mut g, sde_cfg, ty, "sde.")?, vec![])
    };
    let e = g.sub(pred, sstar)?;
    let e = g.leaky_relu(e, -1.0)?;
    let sigma_l1 = g.mean(e, &[0], false)?;
    let le = g.scale(sigma_l1, lambda as f32)?;
    let loss = g.add(l1, le)?;
    let mut grads = vec![];
    if train {
        let weights: Vec<(String, NodeId)> = g
            .nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| match &n.op {
                Op::Const { name } if SeWeights::trained(name) => Some((name.clone(), NodeId(i))),
                _ => None,
            })
            .collect();
        let one = g.fill(1.0, &[]);
        let ids: Vec<NodeId> = weights.iter().map(|w| w.1).collect();
        let gs = grad(&mut g, &[(loss, one)], &ids)?;
        grads = weights.into_iter().map(|w| w.0).zip(gs).collect();
    }
    Ok(SeGraph {
        graph: g,
        loss,
        l1,
        sigma_l1,
        pred,
        grads,
        stats,
    })
}

fn plan(sg: &SeGraph) -> Result<Executor<CpuBackend<f32>>> {
    let mut outs = vec![sg.loss, sg.l1, sg.sigma_l1, sg.pred];
    outs.extend(sg.grads.iter().map(|g| g.1));
    outs.extend(sg.stats.iter().flat_map(|s| [s.mean, s.var]));
    Ok(Executor::new(
        CpuBackend::<f32>::new(),
        &sg.graph,
        &outs,
        PlanOptions::default(),
    )?)
}

fn set_batch(
    ex: &mut Executor<CpuBackend<f32>>,
    b: &LabelledBatch,
    n: usize,
    s: usize,
) -> Result<()> {
    let sh = vec![n, 3, s, s];
    ex.set_input("lq", &Tensor::new(sh.clone(), b.lq.clone()))?;
    ex.set_input("target", &Tensor::new(sh, b.target.clone()))?;
    ex.set_input("sigma_star", &Tensor::new(vec![n], b.sigma_star.clone()))?;
    Ok(())
}

struct SeStage {
    cfg: SeTrainConfig,
    side: usize,
    w: SeWeights,
    train: SeGraph,
    ex: Executor<CpuBackend<f32>>,
    eval: SeGraph,
    eval_ex: Executor<CpuBackend<f32>>,
    val: Vec<LabelledBatch>,
}

impl Stage for SeStage {
    type Batch = LabelledBatch;

    fn step(&mut self, model: &Params, batch: LabelledBatch) -> Result<StepOut> {
        let m = self.w.bind(model)?;
        self.ex.bind_all(|n| m.get(n).cloned())?;
        set_batch(&mut self.ex, &batch, self.cfg.batch, self.side)?;
        self.ex.run()?;
        let scalar = |id| -> Result<f64> { Ok(self.ex.output(id)?.data[0] as f64) };
        let (loss, l1, sl1) = (
            scalar(self.train.loss)?,
            scalar(self.train.l1)?,
            scalar(self.train.sigma_l1)?,
        );
        let mut grads = Params::new();
        for (name, id) in &self.train.grads {
            let g = self.ex.output(*id)?;
            self.w.add_grad(&mut grads, model, name, g)?;
        }
        let mut extra = Record::new();
        extra.insert("tm_l1".into(), json!(l1));
        extra.insert("sigma_l1".into(), json!(sl1));
        let mean_star =
            batch.sigma_star.iter().map(|&v| v as f64).sum::<f64>() / batch.sigma_star.len() as f64;
        extra.insert("mean_sigma_star".into(), json!(mean_star));
        Ok(StepOut { loss, grads, extra })
    }

    fn after_update(&mut self, model: &mut Params) -> Result<()> {
        update_running_stats(&self.ex, &self.train.stats, model, self.cfg.bn_momentum)
    }

    fn validate(&mut self, weights: &Params, _raw: bool) -> Result<Option<Record>> {
        if self.val.is_empty() {
            return Ok(None);
        }
        let m = self.w.bind(weights)?;
        self.eval_ex.bind_all(|n| m.get(n).cloned())?;
        let (mut loss, mut l1, mut pred, mut truth) = (0.0, 0.0, vec![], vec![]);
        for b in &self.val {
            set_batch(&mut self.eval_ex, b, self.cfg.batch, self.side)?;
            self.eval_ex.run()?;
            loss += self.eval_ex.output(self.eval.loss)?.data[0] as f64;
            l1 += self.eval_ex.output(self.eval.l1)?.data[0] as f64;
            pred.extend(
                self.eval_ex
                    .output(self.eval.pred)?
                    .data
                    .iter()
                    .map(|&v| v as f64),
            );
            truth.extend(b.sigma_star.iter().map(|&v| v as f64));
        }
        let k = self.val.len() as f64;
        let mae = pred
            .iter()
            .zip(&truth)
            .map(|(a, b)| (a - b).abs())
            .sum::<f64>()
            / pred.len() as f64;
        let mut r = Record::new();
        r.insert("loss".into(), json!(loss / k));
        r.insert("tm_l1".into(), json!(l1 / k));
        r.insert("mae".into(), json!(mae));
        r.insert("spearman".into(), json!(spearman(&pred, &truth)));
        r.insert("n".into(), json!(pred.len()));
        Ok(Some(r))
    }
}

/// The starting weights: TM from `tm_init` or the restorer, SDE from `sde_init` or fresh.
fn init_weights(
    cfg: &SeTrainConfig,
    set: &ModelSet,
    sde_cfg: &SdeConfig,
    restorer: &WeightMap,
) -> Result<Params> {
    let s = set.image_size;
    let tm_spec = swinir::checkpoint_spec(&set.restorer.config, s, s);
    let tm_src = match &cfg.tm_init {
        Some(p) => load_weights(p, &tm_spec, &BUFFERS)?,
        None => restorer.clone(),
    };
    let mut p = Params::new();
    for (k, _) in &tm_spec {
        if k.ends_with("attn_mask") || k.ends_with("relative_position_index") {
            continue;
        }
        let t = tm_src.get(k).with_context(|| format!("TM init: no {k}"))?;
        p.insert(format!("tm.{k}"), t.clone());
    }
    let sde_w: Params = match &cfg.sde_init {
        Some(path) => load_weights(path, &sde::checkpoint_spec(sde_cfg, 3), &[])?
            .into_iter()
            .collect(),
        None => sde_init_weights(&SdeTrainConfig {
            model: sde_cfg.clone(),
            init_sigma: cfg.init_sigma,
            seed: cfg.seed,
            ..SdeTrainConfig::default()
        }),
    };
    p.extend(sde_w.into_iter().map(|(k, v)| (format!("sde.{k}"), v)));
    Ok(p)
}

/// Multiply-accumulates of one training step (forward and backward of the training graph,
/// read off the graph by `models::unet::cost`), from the model set's `models.json` alone.
pub fn step_macs(cfg: &SeTrainConfig) -> Result<u64> {
    let set = ModelSet::load(&cfg.models)?;
    let sde_cfg = cfg
        .sde
        .clone()
        .or_else(|| set.estimator.as_ref().map(|e| e.sde.clone()))
        .unwrap_or_default();
    let sg = se_graph(
        &set.restorer.config,
        &sde_cfg,
        cfg.batch,
        set.image_size,
        cfg.lambda,
        true,
    )?;
    let mut outs = vec![sg.loss];
    outs.extend(sg.grads.iter().map(|g| g.1));
    Ok(crate::models::unet::cost::graph_macs(&sg.graph, &outs).total())
}

pub type SeTrainSummary = TrainSummary<Record>;

pub fn run(cfg: &SeTrainConfig, out: &Path, opts: &RunOptions) -> Result<SeTrainSummary> {
    cfg.validate()?;
    let models = crate::restore::load_models(&cfg.models)?;
    let set = models.set.clone();
    let s = set.image_size;
    let sde_cfg = cfg
        .sde
        .clone()
        .or_else(|| set.estimator.as_ref().map(|e| e.sde.clone()))
        .unwrap_or_default();
    let restorer = RestorerWeights {
        cfg: set.restorer.config.clone(),
        weights: Arc::new(models.restorer),
    };
    let cfg_text = serde_json::to_string(cfg)?;
    let mut state = stage::open(
        out,
        &serde_json::to_string_pretty(cfg)?,
        &cfg_text,
        &cfg.adamw,
        opts.resume,
        || init_weights(cfg, &set, &sde_cfg, &restorer.weights),
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
        .find(|f| f.h < s || f.w < s)
    {
        bail!(
            "{}: {}×{} is smaller than the model set's image size {s} (TM trains on crops of that size)",
            f.stem,
            f.w,
            f.h
        );
    }
    let pairs = DegradedPairs {
        faces: Arc::new(train_faces),
        crop: s,
        batch: cfg.batch,
        degrade: cfg.degrade.clone(),
        seed: cfg.seed,
    };
    let mut val = vec![];
    if !val_faces.is_empty() && cfg.val_batches > 0 {
        let vp = DegradedPairs {
            faces: Arc::new(val_faces),
            seed: cfg.seed ^ 0x5e_7a11d,
            ..pairs.clone()
        };
        let mut make = labelled_pairs(vp, restorer.clone(), cfg.sigma_star.clone())()?;
        for k in 0..cfg.val_batches as u64 {
            val.push(make(k)?);
        }
    }
    let w = SeWeights {
        tm: set.restorer.config.clone(),
        side: s,
    };
    let train = se_graph(&w.tm, &sde_cfg, cfg.batch, s, cfg.lambda, true)?;
    let eval = se_graph(&w.tm, &sde_cfg, cfg.batch, s, cfg.lambda, false)?;
    let mut st = SeStage {
        ex: plan(&train)?,
        eval_ex: plan(&eval)?,
        cfg: cfg.clone(),
        side: s,
        w,
        train,
        eval,
        val,
    };
    let end = opts.stop_after.map_or(cfg.steps, |x| x.min(cfg.steps));
    let fixed = cfg.overfit_one_batch;
    let make = labelled_pairs(pairs, restorer, cfg.sigma_star.clone());
    let init = move || -> Result<super::data::MakeBatch<LabelledBatch>> {
        let mut inner = make()?;
        Ok(Box::new(move |step| {
            let mut b = inner(if fixed { 0 } else { step })?;
            b.step = step;
            Ok(b)
        }))
    };
    let mut prefetch = Prefetch::spawn_with(init, state.step, end, cfg.prefetch);
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
        export::write_weights(&state.ema, out, WEIGHTS, "dynface train se", state.step)?;
        let tm = set.restorer.config.clone();
        export::write_model_set(&cfg.models, out, |m| {
            m.estimator = Some(EstimatorEntry {
                tm,
                sde: sde_cfg.clone(),
                weights: WEIGHTS.into(),
            })
        })?;
        let report = json!({
            "steps": state.step,
            "seconds_this_run": sum.seconds,
            "validation": sum.last_val,
        });
        export::write_report(out, &report)?;
    }
    let last = sum.last_val.clone();
    Ok(sum.finish(state.step, last))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    /// Two Swin blocks (the second shifted) on an 8² input: 4² features, window 2.
    fn tiny_tm() -> SwinIRConfig {
        SwinIRConfig {
            in_chans: 3,
            embed_dim: 4,
            depths: vec![2],
            num_heads: vec![2],
            window_size: 2,
            mlp_ratio: 2.0,
            upscale: 2,
            unshuffle: true,
            img_range: 1.0,
            upsampler: "nearest+conv".into(),
            patch_norm: true,
        }
    }

    /// The gradient of Eq. 22 with respect to the host's weights — a relative-position
    /// table (reached through the derived bias and the scatter), a TM convolution and an
    /// SDE weight — against central finite differences of the loss, in f64.
    #[test]
    fn se_loss_gradients_reach_the_host_weights_including_the_position_tables() {
        let (b, s) = (2, 8);
        let tm = tiny_tm();
        let sde_cfg = SdeConfig {
            layers: vec![(4, 1), (4, 2)],
            hidden: 4,
            ..SdeConfig::default()
        };
        let mut rng = random::rng(5);
        let mut p = Params::new();
        for (k, shape) in swinir::checkpoint_spec(&tm, s, s) {
            if k.ends_with("attn_mask") || k.ends_with("relative_position_index") {
                continue;
            }
            // Small weights keep TM's output inside the clamp's [0, 1], where it has a gradient.
            let t = random::uniform::<f32>(&mut rng, &shape, -0.1, 0.1);
            p.insert(format!("tm.{k}"), t);
        }
        let sde_w = sde_init_weights(&SdeTrainConfig {
            model: sde_cfg.clone(),
            ..SdeTrainConfig::default()
        });
        p.extend(sde_w.into_iter().map(|(k, v)| (format!("sde.{k}"), v)));
        let w = SeWeights {
            tm: tm.clone(),
            side: s,
        };
        let sg = se_graph(&tm, &sde_cfg, b, s, 0.5, true).unwrap();
        let mut outs = vec![sg.loss];
        outs.extend(sg.grads.iter().map(|g| g.1));
        let mut ex = Executor::new(
            CpuBackend::<f64>::new(),
            &sg.graph,
            &outs,
            PlanOptions::default(),
        )
        .unwrap();
        let img =
            |r: &mut rand_chacha::ChaCha8Rng| random::uniform::<f64>(r, &[b, 3, s, s], 0.1, 0.9);
        ex.set_input("lq", &img(&mut rng)).unwrap();
        ex.set_input("target", &img(&mut rng)).unwrap();
        ex.set_input("sigma_star", &Tensor::new(vec![b], vec![2.0, 9.0]))
            .unwrap();
        let loss_at = |q: &Params, ex: &mut Executor<CpuBackend<f64>>| -> f64 {
            let m = w.bind(q).unwrap();
            ex.bind_all(|n| m.get(n).cloned()).unwrap();
            ex.run().unwrap();
            ex.output(sg.loss).unwrap().data[0]
        };
        loss_at(&p, &mut ex);
        let mut grads = Params::new();
        for (name, id) in &sg.grads {
            let g = ex.output(*id).unwrap();
            let g32 = Tensor::new(g.shape.clone(), g.data.iter().map(|&v| v as f32).collect());
            w.add_grad(&mut grads, &p, name, g32).unwrap();
        }
        // [(2·2 − 1)², 2 heads]: entry 8 is row 4 (the zero offset), head 0; 3 is row 1, head 1.
        let table = |blk: usize| {
            format!("tm.layers.0.residual_group.blocks.{blk}.attn.relative_position_bias_table")
        };
        let (t0, t1) = (table(0), table(1));
        let conv = p
            .keys()
            .find(|k| k.starts_with("tm.conv") && k.ends_with(".weight"))
            .unwrap()
            .clone();
        // Steps: the tables' gradients are ~1e-8, so a step of 1e-3 keeps the loss change
        // far above f64 rounding; the weights' are large, so 1e-5 crosses no |·| or clamp
        // kink (at 1e-3 one was crossed: 7e-4).
        let checks = [
            (t0.as_str(), 8usize, 1e-3f32),
            (t1.as_str(), 8, 1e-3),
            (t1.as_str(), 3, 1e-3),
            (conv.as_str(), 7, 1e-5),
            ("sde.features.0.conv.weight", 3, 1e-5),
        ];
        let mut worst = 0f64;
        for (key, i, h) in checks {
            let mut plus = p.clone();
            plus.get_mut(key).unwrap().data[i] += h;
            let mut minus = p.clone();
            minus.get_mut(key).unwrap().data[i] -= h;
            let (lp, lm) = (loss_at(&plus, &mut ex), loss_at(&minus, &mut ex));
            // The step actually taken in f32.
            let dh = (plus[key].data[i] - minus[key].data[i]) as f64;
            let fd = (lp - lm) / dh;
            let an = grads[key].data[i] as f64;
            let rel = (fd - an).abs() / fd.abs().max(1e-30);
            eprintln!("{key}[{i}]: analytic {an:.6e}, fd {fd:.6e}, rel {rel:.2e}");
            assert!(an != 0.0, "{key}[{i}] has no gradient");
            worst = worst.max(rel);
        }
        // Measured: ≤ 2.0e-6 relative (tables), ≤ 4e-8 (weights).
        assert!(worst <= 2e-5, "worst relative error {worst:.2e}");
    }
}
