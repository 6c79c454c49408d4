//! `dynface train dgsa`: DGSA's loss (METHOD.md Eq. 14/24) with the prior frozen.
//!
//! Per sample: an HQ crop x, a timestep t drawn at random, x_t = √ᾱ_t·x + √(1−ᾱ_t)·ε, the
//! guidance ŷ (stage 1: a true blur k_σ ⊛ x, σ ~ U; stage 2: the frozen DBLM's
//! k_σ̂ ⊛ RM(y) of an Eq. 16 degradation y, σ̂ from the model set's SE or the training-free
//! estimate). One graph: the sampler's own step graph gives x̂₀(x_t), the guidance gradient
//! ∇ = ∇_{x_t}‖ŷ − k_σ ⊛ x̂₀‖₂ and S_t = DGSA(ŷ, x̂₀, t); then x̃_t = x_t − ζ·S_t ⊙ ∇, the
//! UNet again on x̃_t, x̂₀(x̃_t), and the SWT subband L1 against x ([`super::swt`]), plus
//! λ·DISTS(x̂₀(x̃_t), x) ([`crate::models::dists`], mean over the batch) when its VGG16
//! weights and α/β are given ([`super::dists_weights`]). Gradients flow only to DGSA's
//! weights (∇ does not depend on them); DISTS's VGG is frozen, only its input gradient is
//! built.
//!
//! Without the DISTS files the SWT term alone is the loss (METHOD.md's **choice** without
//! VGG16 weights), and the run says so on stderr.

use super::data::{
    blurred_window, load_faces, sample_rng, split_files, DegradedPairs, Face, MakeBatch, Prefetch,
};
use super::dists_weights::{self, VggSource};
use super::export;
use super::labels::{Net, RestorerWeights, SigmaHat};
use super::optim::{AdamWConfig, Params};
use super::stage::{self, LoopSettings, Record, RunOptions, Stage, StepOut, TrainSummary};
use super::swt::{haar_filters, swt_l1, HAAR};
use crate::backend::cpu::CpuBackend;
use crate::blur::blur_forward;
use crate::dblm::BlurLevelEstimator;
use crate::degrade::DegradeConfig;
use crate::diffusion::schedule::Schedule;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{autodiff::grad, Graph, NodeId, Op};
use crate::models::dgsa::{self, DgsaConfig};
use crate::models::unet::{build_unet, UNetConfig};
use crate::models::WeightMap;
use crate::restore::models::{load_weights, NetEntry};
use crate::sampler::graph::{names, GraphOptions, GuidedGraph, ScaleBuilder, ScaleInputs};
use crate::tensor::{random, Tensor};
use anyhow::{bail, Context, Result};
use rand::Rng;
use rand_distr::{Distribution, Normal, StandardNormal};
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub const WEIGHTS: &str = "dgsa.safetensors";
const PREFIX: &str = "dgsa.";
/// DISTS's constants in the loss graph (VGG16, α/β, window, normalisation).
const DISTS_PREFIX: &str = "dists.";

/// Which guidance images train DGSA (METHOD.md: 20,000 iterations of the first, then 7,000
/// of the second starting from the first's weights).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Guide {
    /// Stage 1: ŷ = k_σ ⊛ x, σ ~ U[sigma_min, sigma_max].
    TrueBlur,
    /// Stage 2: ŷ = k_σ̂ ⊛ RM(y) of an Eq. 16 degradation y (the DBLM frozen).
    Dblm,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DgsaTrainConfig {
    /// The model set: the frozen prior (UNet, schedule), image size, and for stage 2 the DBLM.
    pub models: PathBuf,
    pub train_dir: PathBuf,
    pub val_dir: Option<PathBuf>,
    pub holdout_every: usize,
    pub guide: Guide,
    /// DGSA's architecture; absent: the model set's DGSA's, else the paper's.
    pub dgsa: Option<DgsaConfig>,
    /// Starting weights (stage 2 continues stage 1's `dgsa.safetensors`); absent: fresh.
    pub init: Option<PathBuf>,
    /// Fresh weights start with the last convolution's bias here: 1 gives S ≈ 1 (the
    /// paper's setting C) before training, lower values a weaker guidance.
    pub init_scale: f32,
    /// λ of the SWT subbands LL, LH, HL, HH (METHOD.md).
    pub lambda: [f32; 4],
    /// DISTS's VGG16 weights: torchvision's `vgg16-397923af.pth` (or a safetensors file
    /// with its `features.N.*` keys). With `dists_alpha_beta`, the loss adds λ·DISTS.
    pub dists_weights: Option<PathBuf>,
    /// DISTS-pytorch 0.1's α/β: its wheel, the `weights.pt` inside, or that file as
    /// safetensors (SHA-256 pinned).
    pub dists_alpha_beta: Option<PathBuf>,
    /// λ of the DISTS term (METHOD.md Eq. 24 adds it with weight 1).
    pub dists_lambda: f32,
    /// ζ of x̃_t = x_t − ζ·S_t ⊙ ∇; absent: the model set's sampler ζ.
    pub zeta: Option<f64>,
    /// t is drawn uniformly from these original steps (inclusive).
    pub t_min: usize,
    pub t_max: usize,
    pub sigma_min: f32,
    pub sigma_max: f32,
    pub degrade: DegradeConfig,
    pub batch: usize,
    pub steps: u64,
    pub lr: f64,
    pub min_lr: f64,
    pub warmup: u64,
    pub adamw: AdamWConfig,
    pub clip_norm: f64,
    pub ema_decay: f64,
    pub seed: u64,
    pub checkpoint_every: u64,
    pub val_every: u64,
    pub val_batches: usize,
    pub prefetch: usize,
    /// Every step trains on the batch of step 0 (the overfitting check).
    pub overfit_one_batch: bool,
}

impl Default for DgsaTrainConfig {
    fn default() -> Self {
        DgsaTrainConfig {
            models: PathBuf::from("weights"),
            train_dir: PathBuf::from("faces/hq"),
            val_dir: None,
            holdout_every: 4,
            guide: Guide::TrueBlur,
            dgsa: None,
            init: None,
            init_scale: 1.0,
            lambda: [0.0, 0.01, 0.01, 0.05],
            dists_weights: None,
            dists_alpha_beta: None,
            dists_lambda: 1.0,
            zeta: None,
            t_min: 0,
            t_max: 999,
            sigma_min: 0.1,
            sigma_max: 15.0,
            degrade: DegradeConfig::default(),
            batch: 2,
            steps: 20_000,
            lr: 1e-4,
            min_lr: 1e-6,
            warmup: 100,
            adamw: AdamWConfig::default(),
            clip_norm: 1.0,
            ema_decay: 0.999,
            seed: 0,
            checkpoint_every: 500,
            val_every: 500,
            val_batches: 4,
            prefetch: 2,
            overfit_one_batch: false,
        }
    }
}

impl DgsaTrainConfig {
    pub fn validate(&self) -> Result<()> {
        if self.batch == 0 || self.steps == 0 || self.checkpoint_every == 0 || self.val_every == 0 {
            bail!("batch, steps, checkpoint_every and val_every must be ≥ 1");
        }
        if self.t_min > self.t_max {
            bail!("need t_min ≤ t_max");
        }
        if !(self.sigma_min > 0.0 && self.sigma_min <= self.sigma_max) {
            bail!("need 0 < sigma_min ≤ sigma_max");
        }
        if self.lambda.iter().any(|l| !(l.is_finite() && *l >= 0.0)) {
            bail!("lambda must be finite and ≥ 0");
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            bail!("ema_decay must be in [0, 1)");
        }
        match (&self.dists_weights, &self.dists_alpha_beta) {
            (Some(p), None) => bail!(
                "dists_weights ({}) needs dists_alpha_beta too; {}",
                p.display(),
                dists_weights::how_to_get()
            ),
            (None, Some(p)) => bail!(
                "dists_alpha_beta ({}) needs dists_weights (VGG16) too; {}",
                p.display(),
                dists_weights::how_to_get()
            ),
            _ => {}
        }
        if !(self.dists_lambda.is_finite() && self.dists_lambda >= 0.0) {
            bail!("dists_lambda must be finite and ≥ 0");
        }
        Ok(())
    }

    pub fn from_file(path: &Path) -> Result<Self> {
        super::stage::read_config(path, "dgsa", Self::validate)
    }

    /// The loss has the DISTS term (both of its files given).
    pub fn uses_dists(&self) -> bool {
        self.dists_weights.is_some() && self.dists_alpha_beta.is_some()
    }

    /// The DISTS term's λ, when the loss has it.
    fn dists_term(&self) -> Option<f32> {
        self.uses_dists().then_some(self.dists_lambda)
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
            loss_title: if self.uses_dists() {
                "training loss (Eq. 24: SWT subband L1 + λ·DISTS)"
            } else {
                "training loss (Eq. 24: SWT subband L1)"
            },
        }
    }
}

/// One training batch: images `[B, 3, S, S]` on [0, 1], the guidance blur's σ, t and ε.
#[derive(Clone, Debug, PartialEq)]
pub struct DgsaBatch {
    pub step: u64,
    pub hq: Vec<f32>,
    pub guide: Vec<f32>,
    pub sigma: Vec<f32>,
    pub t: Vec<usize>,
    pub noise: Vec<f32>,
}

/// t and ε of sample `i` of `step`, from their own stream (disjoint from the image's).
fn draw_t_noise(cfg: &DgsaTrainConfig, step: u64, i: usize, n: usize) -> (usize, Vec<f32>) {
    let mut rng = sample_rng(cfg.seed ^ 0x7_d6a5, step, i);
    let t = rng.gen_range(cfg.t_min..=cfg.t_max);
    let noise = (0..n)
        .map(|_| StandardNormal.sample(&mut rng))
        .collect::<Vec<f32>>();
    (t, noise)
}

/// Stage 1's batch: crops and their true blurs.
fn true_blur_batch(cfg: &DgsaTrainConfig, faces: &[Face], s: usize, step: u64) -> DgsaBatch {
    let mut b = DgsaBatch {
        step,
        hq: vec![],
        guide: vec![],
        sigma: vec![],
        t: vec![],
        noise: vec![],
    };
    for i in 0..cfg.batch {
        let mut rng = sample_rng(cfg.seed, step, i);
        let f = &faces[rng.gen_range(0..faces.len())];
        let top = rng.gen_range(0..=f.h - s);
        let left = rng.gen_range(0..=f.w - s);
        let flip = rng.gen_bool(0.5);
        let sg = rng.gen_range(cfg.sigma_min..=cfg.sigma_max);
        b.hq.extend(blurred_window(f, top, left, s, 0.0, flip));
        b.guide.extend(blurred_window(f, top, left, s, sg, flip));
        b.sigma.push(sg);
        let (t, n) = draw_t_noise(cfg, step, i, 3 * s * s);
        b.t.push(t);
        b.noise.extend(n);
    }
    b
}

/// The frozen DBLM of stage 2 (planned on the worker thread).
struct Dblm {
    pairs: DegradedPairs,
    rm: Net,
    sigma_hat: SigmaHat,
}

impl Dblm {
    fn batch(&mut self, cfg: &DgsaTrainConfig, step: u64) -> Result<DgsaBatch> {
        let s = self.pairs.crop;
        let p = self.pairs.make(step)?;
        let rm = self.rm.run(&p.lq)?;
        let lo_hi = |v: f32| v.clamp(cfg.sigma_min, cfg.sigma_max);
        let sigma: Vec<f32> = self
            .sigma_hat
            .estimate(&p.lq, &rm, s)?
            .into_iter()
            .map(lo_hi)
            .collect();
        let mut guide = vec![0f32; rm.len()];
        blur_forward(&rm, &sigma, [cfg.batch, 3, s, s], &mut guide);
        let (mut t, mut noise) = (vec![], vec![]);
        for i in 0..cfg.batch {
            let (ti, n) = draw_t_noise(cfg, step, i, 3 * s * s);
            t.push(ti);
            noise.extend(n);
        }
        Ok(DgsaBatch {
            step,
            hq: p.hq,
            guide,
            sigma,
            t,
            noise,
        })
    }
}

/// What the worker needs to build its batch maker.
#[derive(Clone)]
struct Source {
    cfg: DgsaTrainConfig,
    faces: Arc<Vec<Face>>,
    side: usize,
    seed: u64,
    /// Stage 2: the restorer and, when the set has one, SE's config and weights.
    rm: Option<RestorerWeights>,
    se: Option<(crate::restore::models::EstimatorEntry, Arc<WeightMap>)>,
}

impl Source {
    fn maker(self) -> Result<MakeBatch<DgsaBatch>> {
        let cfg = DgsaTrainConfig {
            seed: self.seed,
            ..self.cfg.clone()
        };
        let fixed = cfg.overfit_one_batch;
        let at = move |step: u64| if fixed { 0 } else { step };
        match cfg.guide {
            Guide::TrueBlur => {
                let (faces, s) = (self.faces, self.side);
                Ok(Box::new(move |step| {
                    let mut b = true_blur_batch(&cfg, &faces, s, at(step));
                    b.step = step;
                    Ok(b)
                }))
            }
            Guide::Dblm => {
                let rmw = self.rm.context("stage 2 needs the restorer")?;
                let (b, s) = (cfg.batch, self.side);
                let sigma_hat = match &self.se {
                    Some((e, w)) => {
                        SigmaHat::Standard(Box::new(Net::estimator(&e.tm, &e.sde, w, b, s)?))
                    }
                    None => SigmaHat::TrainingFree(BlurLevelEstimator::default()),
                };
                let mut d = Dblm {
                    pairs: DegradedPairs {
                        faces: self.faces,
                        crop: s,
                        batch: b,
                        degrade: cfg.degrade.clone(),
                        seed: self.seed,
                    },
                    rm: Net::restorer(&rmw.cfg, &rmw.weights, b, s)?,
                    sigma_hat,
                };
                Ok(Box::new(move |step| {
                    let mut out = d.batch(&cfg, at(step))?;
                    out.step = step;
                    Ok(out)
                }))
            }
        }
    }
}

struct DgsaGraph {
    graph: Graph,
    loss: NodeId,
    /// The loss's terms before weighting (`swt`, `dists`), for the metrics log.
    terms: Vec<(&'static str, NodeId)>,
    grads: Vec<(String, NodeId)>,
}

/// Eq. 24 on a batch, gradients to DGSA's weights only; `dists`: λ of the DISTS term.
fn dgsa_graph(
    ucfg: &UNetConfig,
    dcfg: &DgsaConfig,
    shape: [usize; 4],
    clip_x0: bool,
    lambda: [f32; 4],
    dists: Option<f32>,
) -> Result<DgsaGraph> {
    let [b, c, ..] = shape;
    let opts = GraphOptions {
        num_guidance: 1,
        clip_x0,
        fast_guidance: false,
        update: None,
    };
    let d2 = dcfg.clone();
    let scale: ScaleBuilder = Box::new(move |g: &mut Graph, si: &ScaleInputs| {
        dgsa::build(g, &d2, si.guidance[0], si.x0, si.t, PREFIX)
    });
    let gg = GuidedGraph::build_with(
        shape,
        &opts,
        |g, inp| build_unet(g, ucfg, inp.x, inp.t),
        Some(scale),
    )?;
    let (s_map, nabla) = (
        gg.scale.context("scale map")?,
        gg.grad.context("guidance gradient")?,
    );
    let mut g = gg.graph;
    let input = |g: &Graph, n: &str| g.find_input(n).with_context(|| format!("no input {n}"));
    let (x, t) = (input(&g, names::X)?, input(&g, names::T)?);
    let (ra, rm1) = (
        input(&g, names::RECIP_SQRT_AB)?,
        input(&g, names::RECIPM1_SQRT_AB)?,
    );
    let (loss, terms) = g.scope("dgsa_loss", |g| -> crate::graph::Result<_> {
        let zeta = g.input("dgsa_zeta", &[b]);
        let zeta = g.reshape(zeta, &[b, 1, 1, 1])?;
        let sg = g.mul(s_map, nabla)?;
        let sg = g.mul(sg, zeta)?;
        let xt = g.sub(x, sg)?;
        let out = build_unet(g, ucfg, xt, t)?;
        let eps = g.slice(out, 1, 0, c)?;
        let ra = g.reshape(ra, &[b, 1, 1, 1])?;
        let rm1 = g.reshape(rm1, &[b, 1, 1, 1])?;
        let a = g.mul(xt, ra)?;
        let e = g.mul(eps, rm1)?;
        let x0 = g.sub(a, e)?;
        let x0 = if clip_x0 { g.clamp(x0, -1.0, 1.0)? } else { x0 };
        let hq = g.input("hq", &shape);
        let d = g.sub(x0, hq)?;
        // The SWT term on [0, 1] images, as the other losses.
        let d = g.scale(d, 0.5)?;
        let swt = swt_l1(g, d, lambda)?;
        let mut terms = vec![("swt", swt)];
        let Some(lam) = dists else {
            return Ok((swt, terms));
        };
        // DISTS takes images on [0, 1].
        let a = g.affine(x0, 0.5, 0.5)?;
        let h = g.affine(hq, 0.5, 0.5)?;
        let per_image = crate::models::dists::build(g, a, h, DISTS_PREFIX)?;
        let dist = g.mean(per_image, &[0], false)?;
        terms.push(("dists", dist));
        let weighted = g.scale(dist, lam)?;
        Ok((g.add(swt, weighted)?, terms))
    })?;
    let weights: Vec<(String, NodeId)> = g
        .nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| match &n.op {
            Op::Const { name } if name.starts_with(PREFIX) => Some((name.clone(), NodeId(i))),
            _ => None,
        })
        .collect();
    let one = g.fill(1.0, &[]);
    let ids: Vec<NodeId> = weights.iter().map(|w| w.1).collect();
    let gs = grad(&mut g, &[(loss, one)], &ids)?;
    Ok(DgsaGraph {
        graph: g,
        loss,
        terms,
        grads: weights
            .into_iter()
            .map(|(n, _)| n[PREFIX.len()..].to_string())
            .zip(gs)
            .collect(),
    })
}

/// What every run of the graph is fed besides DGSA's weights and the batch.
struct Feed {
    shape: [usize; 4],
    zeta: f64,
    /// ᾱ of every original step.
    alpha_bar: Vec<f64>,
    unet: WeightMap,
    /// DISTS's constants, keyed with [`DISTS_PREFIX`], when the loss has the term.
    dists: Option<WeightMap>,
}

impl Feed {
    fn bind(&self, ex: &mut Executor<CpuBackend<f32>>, p: &Params) -> Result<()> {
        ex.bind_all(|n| match n.strip_prefix(PREFIX) {
            Some(k) => p.get(k).cloned(),
            None if n == HAAR => Some(haar_filters()),
            None if n.starts_with(DISTS_PREFIX) => self.dists.as_ref()?.get(n).cloned(),
            None => self.unet.get(n).cloned(),
        })?;
        Ok(())
    }

    fn set_batch(&self, ex: &mut Executor<CpuBackend<f32>>, b: &DgsaBatch) -> Result<()> {
        let sh = self.shape.to_vec();
        let n = self.shape[0];
        let per = b.hq.len() / n;
        let to_pm = |v: &[f32]| v.iter().map(|&a| 2.0 * a - 1.0).collect::<Vec<f32>>();
        let hq = to_pm(&b.hq);
        let mut xt = vec![0f32; hq.len()];
        let (mut ab, mut ra, mut rm1) = (vec![], vec![], vec![]);
        for i in 0..n {
            let a = self.alpha_bar[b.t[i]];
            let (sa, sn) = (a.sqrt(), (1.0 - a).sqrt());
            for j in i * per..(i + 1) * per {
                xt[j] = (sa * hq[j] as f64 + sn * b.noise[j] as f64) as f32;
            }
            ab.push(a as f32);
            ra.push((1.0 / a).sqrt() as f32);
            rm1.push((1.0 / a - 1.0).sqrt() as f32);
        }
        let v = |d: Vec<f32>| Tensor::new(vec![n], d);
        ex.set_input(names::X, &Tensor::new(sh.clone(), xt))?;
        ex.set_input(names::T, &v(b.t.iter().map(|&t| t as f32).collect()))?;
        ex.set_input(names::ALPHA_BAR, &v(ab))?;
        ex.set_input(names::RECIP_SQRT_AB, &v(ra))?;
        ex.set_input(names::RECIPM1_SQRT_AB, &v(rm1))?;
        ex.set_input(&names::y(0), &Tensor::new(sh.clone(), to_pm(&b.guide)))?;
        ex.set_input(&names::sigma(0), &v(b.sigma.clone()))?;
        ex.set_input(&names::weight(0), &v(vec![1.0; n]))?;
        ex.set_input("dgsa_zeta", &v(vec![self.zeta as f32; n]))?;
        ex.set_input("hq", &Tensor::new(sh, hq))?;
        Ok(())
    }
}

struct DgsaStage {
    feed: Feed,
    graph: DgsaGraph,
    ex: Executor<CpuBackend<f32>>,
    eval: Executor<CpuBackend<f32>>,
    val: Vec<DgsaBatch>,
    /// The validation loss of S ≡ 1 (the baseline DGSA must beat), once computed.
    val_s1: Option<f64>,
}

impl DgsaStage {
    fn val_loss(&mut self, p: &Params) -> Result<f64> {
        self.feed.bind(&mut self.eval, p)?;
        let mut total = 0.0;
        for b in &self.val {
            self.feed.set_batch(&mut self.eval, b)?;
            self.eval.run()?;
            total += self.eval.output(self.graph.loss)?.data[0] as f64;
        }
        Ok(total / self.val.len() as f64)
    }
}

/// DGSA's weights with S ≡ 1 (last convolution zero, bias one, so the clamp gives 1): the
/// paper's setting C, the baseline of the validation.
fn unit_scale(p: &Params) -> Params {
    let mut q = p.clone();
    if let Some(w) = q.get_mut("conv3.weight") {
        w.data.iter_mut().for_each(|v| *v = 0.0);
    }
    if let Some(bb) = q.get_mut("conv3.bias") {
        bb.data.iter_mut().for_each(|v| *v = 1.0);
    }
    q
}

impl Stage for DgsaStage {
    type Batch = DgsaBatch;

    fn step(&mut self, model: &Params, batch: DgsaBatch) -> Result<StepOut> {
        self.feed.bind(&mut self.ex, model)?;
        self.feed.set_batch(&mut self.ex, &batch)?;
        self.ex.run()?;
        let loss = self.ex.output(self.graph.loss)?.data[0] as f64;
        let mut grads = Params::new();
        for (name, id) in &self.graph.grads {
            grads.insert(name.clone(), self.ex.output(*id)?);
        }
        let mut extra = Record::new();
        for (name, id) in &self.graph.terms {
            let v = self.ex.output(*id)?.data[0] as f64;
            extra.insert(format!("loss_{name}"), json!(v));
        }
        let mt = batch.t.iter().sum::<usize>() as f64 / batch.t.len() as f64;
        extra.insert("mean_t".into(), json!(mt));
        Ok(StepOut { loss, grads, extra })
    }

    fn validate(&mut self, weights: &Params, _raw: bool) -> Result<Option<Record>> {
        if self.val.is_empty() {
            return Ok(None);
        }
        if self.val_s1.is_none() {
            let s1 = unit_scale(weights);
            self.val_s1 = Some(self.val_loss(&s1)?);
        }
        let l = self.val_loss(weights)?;
        let mut r = Record::new();
        r.insert("loss".into(), json!(l));
        r.insert("loss_s1".into(), json!(self.val_s1));
        Ok(Some(r))
    }
}

/// Fresh DGSA weights: He-normal convolutions and linear, zero biases except the last
/// convolution's, which starts at `scale` (1: S ≈ 1, setting C, before training).
pub fn init_weights(cfg: &DgsaConfig, seed: u64, scale: f32) -> Params {
    let mut rng = random::rng(seed ^ 0xd65a);
    let mut p = Params::new();
    for (name, shape) in dgsa::checkpoint_spec(cfg) {
        let t = if name == "conv3.bias" {
            Tensor::full(&shape, scale)
        } else if name.ends_with(".bias") {
            Tensor::zeros(&shape)
        } else {
            let fan_in: usize = shape[1..].iter().product();
            let std = (if name == "conv3.weight" { 0.1 } else { 2.0 } / fan_in as f64).sqrt();
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

/// Multiply-accumulates of one training step (two UNet forwards, the guidance gradient,
/// DISTS's two VGG16 passes and its input gradient when configured, and the backward to
/// DGSA's weights, read off the graph), from the model set's `models.json`.
pub fn step_macs(cfg: &DgsaTrainConfig) -> Result<u64> {
    let set = crate::restore::models::ModelSet::load(&cfg.models)?;
    let dcfg = cfg
        .dgsa
        .clone()
        .or_else(|| set.dgsa.as_ref().map(|d| d.config.clone()))
        .unwrap_or_default();
    let s = set.image_size;
    let g = dgsa_graph(
        &set.unet_config()?,
        &dcfg,
        [cfg.batch, 3, s, s],
        set.sampler.clip_x0,
        cfg.lambda,
        cfg.dists_term(),
    )?;
    let mut outs = vec![g.loss];
    outs.extend(g.grads.iter().map(|x| x.1));
    Ok(crate::models::unet::cost::graph_macs(&g.graph, &outs).total())
}

/// DISTS's constants and which VGG16 they hold, when the config gives both files.
fn load_dists(cfg: &DgsaTrainConfig, quiet: bool) -> Result<Option<(WeightMap, VggSource)>> {
    let (Some(vgg), Some(ab)) = (&cfg.dists_weights, &cfg.dists_alpha_beta) else {
        if !quiet {
            eprintln!(
                "note: no DISTS (dists_weights and dists_alpha_beta not given): the loss is the SWT subband L1 alone; {}",
                dists_weights::how_to_get()
            );
        }
        return Ok(None);
    };
    let (vgg, src) = dists_weights::load_vgg16(vgg).context("DISTS's VGG16 (dists_weights)")?;
    let ab = dists_weights::load_alpha_beta(ab).context("DISTS's α/β (dists_alpha_beta)")?;
    if !quiet {
        if !src.torchvision_imagenet {
            eprintln!(
                "warning: {} is not torchvision's ImageNet VGG16 (SHA-256 {}…, {} expected): \
                 the DISTS term is not the metric the paper trains with",
                src.path,
                &src.sha256[..8],
                dists_weights::VGG16_SHA256_PREFIX
            );
        }
        eprintln!("{}", loss_description(cfg, Some(&src)));
    }
    Ok(Some((
        dists_weights::dists_constants(vgg, ab, DISTS_PREFIX),
        src,
    )))
}

/// The loss in words, for stderr and the run's report.
fn loss_description(cfg: &DgsaTrainConfig, vgg: Option<&VggSource>) -> String {
    match vgg {
        None => "SWT subband L1 (no DISTS)".into(),
        Some(v) => format!(
            "SWT subband L1 + {}·DISTS (VGG16 {}: {})",
            cfg.dists_lambda,
            if v.torchvision_imagenet {
                "torchvision ImageNet"
            } else {
                "NOT torchvision's ImageNet weights"
            },
            v.path
        ),
    }
}

pub type DgsaTrainSummary = TrainSummary<Record>;

pub fn run(cfg: &DgsaTrainConfig, out: &Path, opts: &RunOptions) -> Result<DgsaTrainSummary> {
    cfg.validate()?;
    let dists = load_dists(cfg, opts.quiet)?;
    let models = crate::restore::load_models(&cfg.models)?;
    let set = models.set.clone();
    let s = set.image_size;
    let dcfg = cfg
        .dgsa
        .clone()
        .or_else(|| set.dgsa.as_ref().map(|d| d.config.clone()))
        .unwrap_or_default();
    let zeta = cfg.zeta.unwrap_or(set.sampler.zeta);
    let sched = Schedule::new(&set.sampler.schedule)?;
    if cfg.t_max >= sched.len() {
        bail!(
            "t_max {} is past the prior's schedule ({} steps)",
            cfg.t_max,
            sched.len()
        );
    }
    let cfg_text = serde_json::to_string(cfg)?;
    let mut state = stage::open(
        out,
        &serde_json::to_string_pretty(cfg)?,
        &cfg_text,
        &cfg.adamw,
        opts.resume,
        || match &cfg.init {
            Some(p) => Ok(load_weights(p, &dgsa::checkpoint_spec(&dcfg), &[])?
                .into_iter()
                .collect()),
            None => Ok(init_weights(&dcfg, cfg.seed, cfg.init_scale)),
        },
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
            "{}: {}×{} is smaller than the model set's image size {s}",
            f.stem,
            f.w,
            f.h
        );
    }
    let (rm, se) = match cfg.guide {
        Guide::TrueBlur => (None, None),
        Guide::Dblm => {
            let rm = RestorerWeights {
                cfg: set.restorer.config.clone(),
                weights: Arc::new(models.restorer),
            };
            let se = match (&set.estimator, models.estimator) {
                (Some(e), Some(w)) => Some((e.clone(), Arc::new(w))),
                _ => None,
            };
            if !opts.quiet {
                eprintln!(
                    "stage 2: σ̂ from the {}",
                    if se.is_some() {
                        "standard estimator (TM + SDE) of the model set"
                    } else {
                        "training-free estimate (the model set has no SE)"
                    }
                );
            }
            (Some(rm), se)
        }
    };
    let src = Source {
        cfg: cfg.clone(),
        faces: Arc::new(train_faces),
        side: s,
        seed: cfg.seed,
        rm,
        se,
    };
    let mut val = vec![];
    if !val_faces.is_empty() && cfg.val_batches > 0 {
        let vs = Source {
            faces: Arc::new(val_faces),
            seed: cfg.seed ^ 0x7a1_d65a,
            cfg: DgsaTrainConfig {
                overfit_one_batch: false,
                ..cfg.clone()
            },
            ..src.clone()
        };
        let mut make = vs.maker()?;
        for k in 0..cfg.val_batches as u64 {
            val.push(make(k)?);
        }
    }
    let ucfg = models.unet_config.clone();
    let shape = [cfg.batch, 3, s, s];
    let graph = dgsa_graph(
        &ucfg,
        &dcfg,
        shape,
        set.sampler.clip_x0,
        cfg.lambda,
        cfg.dists_term(),
    )?;
    let mut outs = vec![graph.loss];
    outs.extend(graph.grads.iter().map(|g| g.1));
    let terms = graph.terms.iter().map(|t| t.1);
    outs.extend(terms.filter(|&id| id != graph.loss));
    let backend = CpuBackend::<f32>::new;
    let ex = Executor::new(backend(), &graph.graph, &outs, PlanOptions::default())?;
    let eval = Executor::new(
        backend(),
        &graph.graph,
        &[graph.loss],
        PlanOptions::default(),
    )?;
    let mut st = DgsaStage {
        feed: Feed {
            shape,
            zeta,
            alpha_bar: sched.alphas_cumprod.clone(),
            unet: models.unet,
            dists: dists.as_ref().map(|d| d.0.clone()),
        },
        graph,
        ex,
        eval,
        val,
        val_s1: None,
    };
    let end = opts.stop_after.map_or(cfg.steps, |x| x.min(cfg.steps));
    let mut prefetch = Prefetch::spawn_with(move || src.maker(), state.step, end, cfg.prefetch);
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
        export::write_weights(&state.ema, out, WEIGHTS, "dynface train dgsa", state.step)?;
        export::write_model_set(&cfg.models, out, |m| {
            m.dgsa = Some(NetEntry {
                config: dcfg.clone(),
                weights: WEIGHTS.into(),
            })
        })?;
        let report = json!({
            "steps": state.step,
            "seconds_this_run": sum.seconds,
            "loss": loss_description(cfg, dists.as_ref().map(|d| &d.1)),
            "dists": dists.as_ref().map(|d| json!({
                "lambda": cfg.dists_lambda,
                "vgg16": d.1,
                "alpha_beta_sha256": dists_weights::ALPHA_BETA_SHA256,
            })),
            "validation": sum.last_val,
        });
        export::write_report(out, &report)?;
    }
    let last = sum.last_val.clone();
    Ok(sum.finish(state.step, last))
}
