//! The restoration of one batch, METHOD.md §1: RM → σ̂ → N guidance images → DSST start
//! steps → guided sampler (DGSA when its weights exist, else S ≡ 1) → restored image.
//! Every network is a graph built and planned once per batch size and reused.

use super::models::LoadedModels;
use crate::backend::Backend;
use crate::dblm::{BlurLevelEstimator, Dblm, GuidanceConfig, StandardEstimator};
use crate::graph::Graph;
use crate::models::{dgsa, unet::build_unet};
use crate::sampler::{Guidance, SampleOutput, Sampler, SamplerConfig, ScaleBuilder, ScaleInputs};
use crate::tensor::Tensor;
use anyhow::{anyhow, Result};
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

/// Key prefix of DGSA's weights inside the sampler's step graph.
const DGSA_PREFIX: &str = "dgsa.";

pub struct Pipeline<B: Backend + Clone> {
    batch: usize,
    size: usize,
    /// RM, σ̂ and the guidance blurs.
    dblm: Dblm<B>,
    /// DGSA is in the sampler's step graph (its weights under the `dgsa.` prefix).
    dgsa: bool,
    scale: &'static str,
    sampler: Sampler<B>,
    sampler_cfg: SamplerConfig,
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
        let estimator = match (&m.set.estimator, &m.estimator) {
            (Some(e), Some(w)) => Some(StandardEstimator {
                tm: &e.tm,
                sde: &e.sde,
                weights: w,
            }),
            _ => None,
        };
        let dblm = Dblm::new(
            backend.clone(),
            shape,
            (&m.set.restorer.config, &m.restorer),
            estimator,
            sampler_cfg.num_guidance,
        )?;
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
            dblm,
            dgsa: has_dgsa,
            scale: scale_desc,
            sampler,
            sampler_cfg,
        })
    }

    /// The largest single arena this pipeline holds (its networks' plans): what a device
    /// must be able to allocate in one piece for this batch size.
    pub fn largest_arena_bytes(&self) -> usize {
        self.dblm
            .largest_arena_bytes()
            .max(self.sampler.arena_bytes())
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    pub fn set_estimator(&mut self, e: BlurLevelEstimator) {
        self.dblm.set_estimator(e);
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

    /// Whether batches keep S_t at each image's first, middle and last step
    /// (`BatchResult::sample.scale_maps`, for `--dump`); the restored images do not change.
    pub fn set_scale_snapshots(&mut self, on: bool) {
        self.sampler.set_scale_snapshots(on);
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
        let d = self.dblm.restore_and_estimate(lq)?;
        let mut times = StageTimes {
            restorer: d.restorer_seconds,
            estimate: d.estimate_seconds,
            sample: 0.0,
        };
        let (rm, sigma_hat, estimator) = (d.rm, d.sigma_hat, d.estimator);
        let guidance_cfg = GuidanceConfig {
            num_guidance: self.sampler_cfg.num_guidance,
            sigma_min: self.sampler_cfg.sigma_min,
            sigma_max: self.sampler_cfg.sigma_max,
        };
        // sigma[i][b] from DBLM, start[i][b] from the DSST table (Eq. 23).
        let sigma = guidance_cfg.sigmas(&sigma_hat);
        let n = guidance_cfg.num_guidance;
        let start: Vec<Vec<usize>> = sigma
            .iter()
            .map(|s| s.iter().map(|&v| m.dsst.lookup(v)).collect())
            .collect();
        let guidance_f32 = self.dblm.guidance_images(&rm, &sigma)?;
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
