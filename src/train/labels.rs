//! What the later stages need from the frozen DBLM, computed in the data pipeline on the
//! worker thread (so the training step never waits for it): RM(y) from the restorer, the
//! σ* label of each pair (METHOD.md Eq. 19, `crate::dblm::sigma_star`) with its target
//! k_{σ*} ⊛ x for SE's TM, and σ̂ with the guidance ŷ = k_σ̂ ⊛ RM(y) for DGSA's stage 2.

use super::data::{DegradedPairs, MakeBatch, PairBatch};
use crate::backend::cpu::CpuBackend;
use crate::blur::blur_forward;
use crate::dblm::sigma_star::{default_grid, sigma_star, Distance, DEFAULT_EPS};
use crate::dblm::BlurLevelEstimator;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{Graph, NodeId};
use crate::models::{sde::SdeConfig, swinir, swinir::SwinIRConfig, WeightMap};
use crate::tensor::Tensor;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Eq. 19's search (METHOD.md's **choice**: d = MAE on [0, 1], ε = 0.01, grid 0.1…15.0).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SigmaStarConfig {
    pub grid: Vec<f32>,
    pub eps: f32,
    pub distance: Distance,
}

impl Default for SigmaStarConfig {
    fn default() -> Self {
        SigmaStarConfig {
            grid: default_grid(),
            eps: DEFAULT_EPS,
            distance: Distance::Mae,
        }
    }
}

/// A network `[B, 3, S, S] → [B, k]` planned on the CPU backend with its weights bound.
pub struct Net {
    ex: Executor<CpuBackend<f32>>,
    out: NodeId,
    shape: Vec<usize>,
}

impl Net {
    pub fn new(
        shape: [usize; 4],
        weights: &WeightMap,
        build: impl FnOnce(&mut Graph, NodeId) -> crate::graph::Result<NodeId>,
    ) -> Result<Self> {
        let mut g = Graph::new();
        let x = g.input("x", &shape);
        let out = build(&mut g, x)?;
        let mut ex = Executor::new(CpuBackend::<f32>::new(), &g, &[out], PlanOptions::default())?;
        ex.bind_all(|k| weights.get(k).cloned())?;
        Ok(Net {
            ex,
            out,
            shape: shape.to_vec(),
        })
    }

    /// The restorer RM, output clamped to [0, 1] as the pipeline does.
    pub fn restorer(cfg: &SwinIRConfig, w: &WeightMap, b: usize, s: usize) -> Result<Self> {
        Net::new([b, 3, s, s], w, |g, x| {
            let y = swinir::build(g, cfg, x)?;
            g.clamp(y, 0.0, 1.0)
        })
        .context("restorer")
    }

    /// SE = SDE ∘ TM in eval mode, σ̂ clamped to [0.1, 15] as the pipeline does.
    pub fn estimator(
        tm: &SwinIRConfig,
        sde: &SdeConfig,
        w: &WeightMap,
        b: usize,
        s: usize,
    ) -> Result<Self> {
        Net::new([b, 3, s, s], w, |g, x| {
            let ty = swinir::build(g, tm, x)?;
            let ty = g.clamp(ty, 0.0, 1.0)?;
            let sig = crate::models::sde::build(g, sde, ty, "sde.")?;
            g.clamp(sig, 0.1, 15.0)
        })
        .context("standard estimator")
    }

    pub fn run(&mut self, x: &[f32]) -> Result<Vec<f32>> {
        self.ex
            .set_input("x", &Tensor::new(self.shape.clone(), x.to_vec()))?;
        self.ex.run()?;
        Ok(self.ex.output(self.out)?.data)
    }
}

/// A degraded pair with what the DBLM makes of it. Images are `[B, 3, S, S]` on [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct LabelledBatch {
    pub step: u64,
    pub lq: Vec<f32>,
    pub hq: Vec<f32>,
    pub rm: Vec<f32>,
    /// σ* per sample (Eq. 19).
    pub sigma_star: Vec<f32>,
    /// k_{σ*} ⊛ x per sample: TM's target in Eq. 22.
    pub target: Vec<f32>,
}

/// σ* of each pair of `p` given RM's output `rm`, and the targets k_{σ*} ⊛ x.
pub fn label(
    p: PairBatch,
    rm: Vec<f32>,
    side: usize,
    cfg: &SigmaStarConfig,
) -> Result<LabelledBatch> {
    let per = 3 * side * side;
    let b = p.hq.len() / per;
    let mut sigma = Vec::with_capacity(b);
    for i in 0..b {
        let r = i * per..(i + 1) * per;
        sigma.push(sigma_star(
            &rm[r.clone()],
            &p.hq[r],
            [3, side, side],
            &cfg.grid,
            cfg.eps,
            cfg.distance,
        )?);
    }
    let mut target = vec![0f32; p.hq.len()];
    blur_forward(&p.hq, &sigma, [b, 3, side, side], &mut target);
    Ok(LabelledBatch {
        step: p.step,
        lq: p.lq,
        hq: p.hq,
        rm,
        sigma_star: sigma,
        target,
    })
}

/// The restorer's config and weights (derived for the crop side), shared with workers.
#[derive(Clone)]
pub struct RestorerWeights {
    pub cfg: SwinIRConfig,
    pub weights: Arc<WeightMap>,
}

/// The batch maker of labelled pairs: Eq. 16 pairs, RM on them, σ* and targets. The
/// restorer is planned inside `init`, on the worker thread.
pub fn labelled_pairs(
    pairs: DegradedPairs,
    rm: RestorerWeights,
    cfg: SigmaStarConfig,
) -> impl FnOnce() -> Result<MakeBatch<LabelledBatch>> + Send + 'static {
    move || {
        let s = pairs.crop;
        let mut net = Net::restorer(&rm.cfg, &rm.weights, pairs.batch, s)?;
        Ok(Box::new(move |step| {
            let p = pairs.make(step)?;
            let out = net.run(&p.lq)?;
            label(p, out, s, &cfg)
        }) as MakeBatch<LabelledBatch>)
    }
}

/// σ̂ for DGSA's stage 2: SE when the model set has one, else the training-free estimate.
pub enum SigmaHat {
    Standard(Box<Net>),
    TrainingFree(BlurLevelEstimator),
}

impl SigmaHat {
    pub fn name(&self) -> &'static str {
        match self {
            SigmaHat::Standard(_) => "standard estimator (TM + SDE)",
            SigmaHat::TrainingFree(_) => "training-free (RM vs input agreement)",
        }
    }

    pub fn estimate(&mut self, lq: &[f32], rm: &[f32], side: usize) -> Result<Vec<f32>> {
        match self {
            SigmaHat::Standard(n) => n.run(lq),
            SigmaHat::TrainingFree(e) => {
                let per = 3 * side * side;
                (0..lq.len() / per)
                    .map(|i| {
                        let r = i * per..(i + 1) * per;
                        Ok(e.estimate(&rm[r.clone()], &lq[r], [3, side, side])?)
                    })
                    .collect()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    /// A restorer that returns the HQ image exactly needs no blur: σ* is the grid's
    /// smallest value; one that adds noise needs more; the targets are k_{σ*} ⊛ x.
    #[test]
    fn labels_follow_eq19_and_targets_are_the_hq_blurred_at_sigma_star() {
        let s = 16;
        let hq = random::uniform::<f32>(&mut random::rng(3), &[2, 3, s, s], 0.0, 1.0).data;
        let noise = random::uniform::<f32>(&mut random::rng(4), &[3, s, s], -0.3, 0.3).data;
        let mut rm = hq.clone();
        for (a, n) in rm[3 * s * s..].iter_mut().zip(&noise) {
            *a += n;
        }
        let pairs = PairBatch {
            step: 7,
            lq: hq.clone(),
            hq: hq.clone(),
            params: vec![],
        };
        let cfg = SigmaStarConfig::default();
        let l = label(pairs, rm, s, &cfg).unwrap();
        assert_eq!(l.sigma_star[0], cfg.grid[0]);
        assert!(l.sigma_star[1] > cfg.grid[0], "{:?}", l.sigma_star);
        let mut want = vec![0f32; hq.len()];
        blur_forward(&hq, &l.sigma_star, [2, 3, s, s], &mut want);
        assert_eq!(l.target, want);
        assert_eq!(l.step, 7);
    }
}
