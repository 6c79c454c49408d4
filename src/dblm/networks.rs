//! DBLM's networks for one batch shape, each a graph planned once on the pipeline's backend:
//! RM(y) (SwinIR, clamped to [0, 1]), σ̂ from the standard estimator SE = SDE ∘ TM (Eq. 10)
//! when its weights exist, else the training-free estimate on the host, and the guidance
//! blurs ŷ_i = k_{σ_i} ⊛ RM(y).

use super::estimate::BlurLevelEstimator;
use super::guidance::GuidanceBlur;
use crate::backend::Backend;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{Graph, NodeId};
use crate::models::sde::{self, SdeConfig};
use crate::models::swinir::{self, SwinIRConfig};
use crate::models::WeightMap;
use crate::tensor::{Scalar, Tensor};
use anyhow::{Context, Result};
use std::time::Instant;

/// The trained standard estimator: TM's and the SDE's configs and one weight map with keys
/// `tm.*`, `sde.*`.
pub struct StandardEstimator<'a> {
    pub tm: &'a SwinIRConfig,
    pub sde: &'a SdeConfig,
    pub weights: &'a WeightMap,
}

/// RM(y) and σ̂ of one batch.
pub struct DblmOutput {
    /// RM(y) `[B, 3, S, S]` in [0, 1].
    pub rm: Tensor<f32>,
    pub sigma_hat: Vec<f64>,
    /// Which estimate gave σ̂.
    pub estimator: &'static str,
    /// Seconds in the restorer and in the estimate.
    pub restorer_seconds: f64,
    pub estimate_seconds: f64,
}

pub(crate) fn to_elem<E: Scalar>(t: &Tensor<f32>) -> Tensor<E> {
    Tensor::new(
        t.shape.clone(),
        t.data.iter().map(|&v| E::of_f32(v)).collect(),
    )
}

pub(crate) fn to_f32<E: Scalar>(t: &Tensor<E>) -> Tensor<f32> {
    Tensor::new(t.shape.clone(), t.data.iter().map(|v| v.as_f32()).collect())
}

/// Plans `build`'s graph on `backend` and binds `weights`.
fn planned<B: Backend>(
    backend: B,
    weights: &WeightMap,
    build: impl FnOnce(&mut Graph) -> crate::graph::Result<NodeId>,
) -> Result<(Executor<B>, NodeId)> {
    let mut g = Graph::new();
    let out = build(&mut g)?;
    let mut ex = Executor::new(backend, &g, &[out], PlanOptions::default())?;
    ex.bind_all(|k| weights.get(k).cloned())?;
    Ok((ex, out))
}

pub struct Dblm<B: Backend + Clone> {
    shape: [usize; 4],
    restorer: (Executor<B>, NodeId),
    estimator: Option<(Executor<B>, NodeId)>,
    blur_estimator: BlurLevelEstimator,
    guidance: GuidanceBlur<B>,
}

impl<B: Backend + Clone> Dblm<B> {
    /// Builds and plans RM, SE (when given) and the blurs of `num_guidance` guidance images
    /// for batches of `shape` = `[B, 3, S, S]`.
    pub fn new(
        backend: B,
        shape: [usize; 4],
        restorer: (&SwinIRConfig, &WeightMap),
        estimator: Option<StandardEstimator<'_>>,
        num_guidance: usize,
    ) -> Result<Self> {
        let (rcfg, rw) = restorer;
        let restorer = planned(backend.clone(), rw, |g| {
            let x = g.input("x", &shape);
            let y = swinir::build(g, rcfg, x)?;
            g.clamp(y, 0.0, 1.0)
        })
        .context("restorer")?;
        let estimator = match estimator {
            Some(e) => Some(
                planned(backend.clone(), e.weights, |g| {
                    let x = g.input("x", &shape);
                    let ty = swinir::build(g, e.tm, x)?;
                    let ty = g.clamp(ty, 0.0, 1.0)?;
                    let sig = sde::build(g, e.sde, ty, "sde.")?;
                    g.clamp(sig, 0.1, 15.0)
                })
                .context("standard estimator")?,
            ),
            None => None,
        };
        let guidance = GuidanceBlur::new(backend, shape, num_guidance)
            .map_err(|e| anyhow::Error::new(e).context("guidance images"))?;
        Ok(Dblm {
            shape,
            restorer,
            estimator,
            blur_estimator: BlurLevelEstimator::default(),
            guidance,
        })
    }

    /// The largest arena of DBLM's plans.
    pub fn largest_arena_bytes(&self) -> usize {
        [Some(&self.restorer), self.estimator.as_ref()]
            .into_iter()
            .flatten()
            .map(|(ex, _)| ex.peak_bytes())
            .chain([self.guidance.peak_bytes()])
            .max()
            .unwrap_or(0)
    }

    /// The training-free estimate's settings (used when no SE is trained).
    pub fn set_estimator(&mut self, e: BlurLevelEstimator) {
        self.blur_estimator = e;
    }

    /// RM(y) and σ̂ for `lq` `[B, 3, S, S]` in [0, 1] (shape checked by the caller).
    pub fn restore_and_estimate(&mut self, lq: &Tensor<f32>) -> Result<DblmOutput> {
        let [b, c, h, w] = self.shape;
        let t0 = Instant::now();
        let (ex, out) = &mut self.restorer;
        ex.set_input("x", &to_elem(lq))?;
        ex.run().context("restorer")?;
        let rm = to_f32(&ex.output(*out)?);
        let restorer_seconds = t0.elapsed().as_secs_f64();

        let t0 = Instant::now();
        let per = c * h * w;
        let (sigma_hat, estimator): (Vec<f64>, &'static str) = match &mut self.estimator {
            Some((ex, out)) => {
                ex.set_input("x", &to_elem(lq))?;
                ex.run().context("standard estimator")?;
                (
                    ex.output(*out)?.data.iter().map(|v| v.as_f64()).collect(),
                    "standard estimator (TM + SDE)",
                )
            }
            None => {
                let mut v = vec![];
                for i in 0..b {
                    let r = i * per..(i + 1) * per;
                    v.push(self.blur_estimator.estimate(
                        &rm.data[r.clone()],
                        &lq.data[r],
                        [c, h, w],
                    )? as f64);
                }
                (v, "training-free (RM vs input agreement)")
            }
        };
        Ok(DblmOutput {
            rm,
            sigma_hat,
            estimator,
            restorer_seconds,
            estimate_seconds: t0.elapsed().as_secs_f64(),
        })
    }

    /// ŷ_i = k_{σ_i} ⊛ RM(y) on the backend, `sigma[i][b]` = σ_i of image b.
    pub fn guidance_images(
        &mut self,
        rm: &Tensor<f32>,
        sigma: &[Vec<f64>],
    ) -> Result<Vec<Tensor<f32>>> {
        let out = self
            .guidance
            .run(&to_elem(rm), sigma)
            .map_err(|e| anyhow::Error::new(e).context("guidance images"))?;
        Ok(out.iter().map(to_f32).collect())
    }
}
