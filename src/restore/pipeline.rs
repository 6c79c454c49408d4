//! The restoration of one batch, METHOD.md §1: RM → σ̂ → N guidance images → DSST start
//! steps → guided sampler (DGSA when its weights exist, else S ≡ 1) → restored image.
//! Every network is a graph built and planned once per batch size and reused.

use super::models::LoadedModels;
use crate::backend::Backend;
use crate::blur::blur_forward;
use crate::dblm::BlurLevelEstimator;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{Graph, NodeId};
use crate::models::{dgsa, sde, swinir, unet::build_unet, WeightMap};
use crate::sampler::{
    guidance_sigmas, Guidance, SampleOutput, Sampler, SamplerConfig, ScaleBuilder, ScaleInputs,
};
use crate::tensor::{Scalar, Tensor};
use anyhow::{anyhow, Context, Result};
use std::time::Instant;

/// What the pipeline decided and measured for one image of a batch.
#[derive(Clone, Debug, serde::Serialize)]
pub struct ImageTrace {
    pub sigma_hat: f64,
    pub estimator: &'static str,
    pub sigma_initial: Vec<f64>,
    pub sigma_final: Vec<f64>,
    pub start_steps: Vec<usize>,
    pub dgsa: bool,
    /// Which scale map S the guidance used, and why (see [`scale_description`]).
    pub scale: &'static str,
}

/// The report's words for the S a pipeline uses: trained DGSA, or S ≡ 1 and why.
pub fn scale_description(has_weights: bool, use_dgsa: bool) -> &'static str {
    match (has_weights, use_dgsa) {
        (true, true) => "DGSA (trained weights of the model set)",
        (true, false) => "S ≡ 1 (--preset no-dgsa; the model set has DGSA weights)",
        (false, _) => "S ≡ 1 (the model set has no DGSA weights)",
    }
}

/// Per-stage wall time of one batch, in seconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct StageTimes {
    pub restorer: f64,
    pub estimate: f64,
    pub sample: f64,
}

pub struct BatchResult {
    /// Restored images `[B, 3, S, S]` in [0, 1].
    pub restored: Tensor<f32>,
    /// RM(y) `[B, 3, S, S]` in [0, 1].
    pub rm: Tensor<f32>,
    /// Guidance images ŷ_i, each `[B, 3, S, S]` in [0, 1].
    pub guidance: Vec<Tensor<f32>>,
    pub traces: Vec<ImageTrace>,
    pub times: StageTimes,
    pub sample: SampleOutput,
}

fn to_elem<E: Scalar>(t: &Tensor<f32>) -> Tensor<E> {
    Tensor::new(
        t.shape.clone(),
        t.data.iter().map(|&v| E::of_f32(v)).collect(),
    )
}

fn to_f32<E: Scalar>(t: &Tensor<E>) -> Tensor<f32> {
    Tensor::new(t.shape.clone(), t.data.iter().map(|v| v.as_f32()).collect())
}

/// Plans `build`'s graph on `backend` and binds `weights`.
fn executor<B: Backend>(
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

/// Key prefix of DGSA's weights inside the sampler's step graph.
const DGSA_PREFIX: &str = "dgsa.";

pub struct Pipeline<B: Backend + Clone> {
    batch: usize,
    size: usize,
    restorer: (Executor<B>, NodeId),
    estimator: Option<(Executor<B>, NodeId)>,
    /// DGSA is in the sampler's step graph (its weights under the `dgsa.` prefix).
    dgsa: bool,
    scale: &'static str,
    sampler: Sampler<B>,
    sampler_cfg: SamplerConfig,
    blur_estimator: BlurLevelEstimator,
}

impl<B: Backend + Clone> Pipeline<B> {
    /// Builds and plans every network for batches of `batch` images.
    pub fn new(
        backend: B,
        m: &LoadedModels,
        sampler_cfg: SamplerConfig,
        use_dgsa: bool,
        batch: usize,
    ) -> Result<Self> {
        let s = m.set.image_size;
        let shape = [batch, 3, s, s];
        let rcfg = m.set.restorer.config.clone();
        let restorer = executor(backend.clone(), &m.restorer, |g| {
            let x = g.input("x", &shape);
            let y = swinir::build(g, &rcfg, x)?;
            g.clamp(y, 0.0, 1.0)
        })
        .context("restorer")?;
        let estimator = match (&m.set.estimator, &m.estimator) {
            (Some(e), Some(w)) => Some(
                executor(backend.clone(), w, |g| {
                    let x = g.input("x", &shape);
                    let ty = swinir::build(g, &e.tm, x)?;
                    let ty = g.clamp(ty, 0.0, 1.0)?;
                    let sig = sde::build(g, &e.sde, ty, "sde.")?;
                    g.clamp(sig, 0.1, 15.0)
                })
                .context("standard estimator")?,
            ),
            _ => None,
        };
        // DGSA is built into the sampler's step graph: S_t = DGSA(ŷ₁, x̂₀, t) with ŷ₁ and x̂₀
        // in the model's [−1, 1] range, computed where the update is (on the device by
        // default) without a trip through the host.
        let dgsa = match (&m.set.dgsa, &m.dgsa, use_dgsa) {
            (Some(d), Some(w), true) => Some((d.config.clone(), w)),
            _ => None,
        };
        let has_dgsa = dgsa.is_some();
        let scale_desc = scale_description(m.dgsa.is_some() && m.set.dgsa.is_some(), use_dgsa);
        let scale: Option<ScaleBuilder> = dgsa.as_ref().map(|(cfg, _)| {
            let cfg = cfg.clone();
            Box::new(move |g: &mut Graph, si: &ScaleInputs| {
                dgsa::build(g, &cfg, si.guidance[0], si.x0, si.t, DGSA_PREFIX)
            }) as ScaleBuilder
        });
        let ucfg = m.unet_config.clone();
        let sampler = Sampler::with_scale(
            backend,
            sampler_cfg.clone(),
            shape,
            |g, inp| build_unet(g, &ucfg, inp.x, inp.t),
            scale,
            |k| match (k.strip_prefix(DGSA_PREFIX), &dgsa) {
                (Some(dk), Some((_, w))) => w.get(dk).cloned(),
                _ => m.unet.get(k).cloned(),
            },
        )
        .map_err(|e| anyhow::Error::new(e).context("sampler"))?;
        Ok(Pipeline {
            batch,
            size: s,
            restorer,
            estimator,
            dgsa: has_dgsa,
            scale: scale_desc,
            sampler,
            sampler_cfg,
            blur_estimator: BlurLevelEstimator::default(),
        })
    }

    /// The largest single arena this pipeline holds (its networks' plans): what a device
    /// must be able to allocate in one piece for this batch size.
    pub fn largest_arena_bytes(&self) -> usize {
        [Some(&self.restorer), self.estimator.as_ref()]
            .into_iter()
            .flatten()
            .map(|(ex, _)| ex.peak_bytes())
            .chain([self.sampler.arena_bytes()])
            .max()
            .unwrap_or(0)
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn set_estimator(&mut self, e: BlurLevelEstimator) {
        self.blur_estimator = e;
    }

    /// Where the sampler's update runs, and whether its step graph is replayed.
    pub fn step_description(&self) -> String {
        match self.sampler_cfg.update_on {
            crate::sampler::UpdateOn::Host => "host".into(),
            crate::sampler::UpdateOn::Device => match self.sampler.capture_status() {
                Ok(()) => "device (recorded step graph, replayed)".into(),
                Err(why) => format!("device (step graph run uncaptured: {why})"),
            },
        }
    }

    pub fn set_step_progress(&mut self, f: Option<Box<dyn FnMut(usize, usize)>>) {
        self.sampler.set_progress(f);
    }

    /// Restores `lq` `[B, 3, S, S]` in [0, 1].
    /// Image i's noise is ChaCha8 stream `seeds[i]` (one fixed key), so an image restores
    /// the same way alone or in any batch.
    pub fn restore(
        &mut self,
        lq: &Tensor<f32>,
        m: &LoadedModels,
        seeds: &[u64],
    ) -> Result<BatchResult> {
        let (b, s) = (self.batch, self.size);
        if seeds.len() != b {
            return Err(anyhow!("{} seeds for a batch of {b} images", seeds.len()));
        }
        if lq.shape != [b, 3, s, s] {
            return Err(anyhow!(
                "batch has shape {:?}, the pipeline was built for {:?}",
                lq.shape,
                [b, 3, s, s]
            ));
        }
        let mut times = StageTimes::default();
        let t0 = Instant::now();
        let (ex, out) = &mut self.restorer;
        ex.set_input("x", &to_elem(lq))?;
        ex.run().context("restorer")?;
        let rm = to_f32(&ex.output(*out)?);
        times.restorer = t0.elapsed().as_secs_f64();

        let t0 = Instant::now();
        let per = 3 * s * s;
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
                        [3, s, s],
                    )? as f64);
                }
                (v, "training-free (RM vs input agreement)")
            }
        };
        times.estimate = t0.elapsed().as_secs_f64();

        let n = self.sampler_cfg.num_guidance;
        let (lo, hi) = (self.sampler_cfg.sigma_min, self.sampler_cfg.sigma_max);
        // sigma[i][b], start[i][b]
        let mut sigma = vec![vec![0.0; b]; n];
        let mut start = vec![vec![0usize; b]; n];
        for (bi, &sh) in sigma_hat.iter().enumerate() {
            for (i, si) in guidance_sigmas(sh.clamp(lo, hi), n).into_iter().enumerate() {
                sigma[i][bi] = si.clamp(lo, hi);
                start[i][bi] = m.dsst.lookup(sigma[i][bi]);
            }
        }
        let mut guidance_f32 = vec![];
        for sig in &sigma {
            let mut y = vec![0.0f32; rm.data.len()];
            let sv: Vec<f32> = sig.iter().map(|&v| v as f32).collect();
            blur_forward(&rm.data, &sv, [b, 3, s, s], &mut y);
            guidance_f32.push(Tensor::new(vec![b, 3, s, s], y));
        }
        let guidance = Guidance {
            images: guidance_f32.iter().map(|t| t.cast::<f64>()).collect(),
            sigma: sigma.clone(),
            start: start.clone(),
        };
        let t0 = Instant::now();
        let sample = self
            .sampler
            .sample_streams(&guidance, &mut crate::sampler::UnitScale, 0, seeds)
            .map_err(|e| anyhow::Error::new(e).context("sampling"))?;
        times.sample = t0.elapsed().as_secs_f64();
        let restored = Tensor::new(
            sample.x.shape.clone(),
            sample
                .x
                .data
                .iter()
                .map(|&v| ((v + 1.0) / 2.0).clamp(0.0, 1.0) as f32)
                .collect(),
        );
        let traces = (0..b)
            .map(|bi| ImageTrace {
                sigma_hat: sigma_hat[bi],
                estimator,
                sigma_initial: (0..n).map(|i| sigma[i][bi]).collect(),
                sigma_final: (0..n).map(|i| sample.sigma[i][bi]).collect(),
                start_steps: (0..n).map(|i| start[i][bi]).collect(),
                dgsa: self.dgsa,
                scale: self.scale,
            })
            .collect();
        Ok(BatchResult {
            restored,
            rm,
            guidance: guidance_f32,
            traces,
            times,
            sample,
        })
    }
}
