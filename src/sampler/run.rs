//! The sampling loop.

use super::config::{Eta, SamplerConfig, StepKind};
use super::graph::{names, DenoiserInputs, GuidedGraph};
use super::scale::{ScaleContext, ScaleMap};
use super::{step, Result, SamplerError};
use crate::backend::Backend;
use crate::diffusion::Schedule;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::{Graph, NodeId};
use crate::tensor::{Scalar, Tensor};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

/// The guidance of one batch.
#[derive(Clone, Debug)]
pub struct Guidance {
    /// ŷ_i, each `[B,C,H,W]` in [0, 1] (mapped to [−1, 1] inside, where x̂₀ lives).
    pub images: Vec<Tensor<f64>>,
    /// Initial σ_i per sample: `sigma[i][b]` (pixels).
    pub sigma: Vec<Vec<f64>>,
    /// Start step t_i per sample, as an ORIGINAL step index: guidance i acts at steps t ≤ t_i.
    pub start: Vec<Vec<usize>>,
}

/// One step of a run.
#[derive(Clone, Debug)]
pub struct StepTrace {
    /// Original step index.
    pub t: usize,
    /// Weighted guidance loss summed over the batch (active guidance only).
    pub loss: Option<f64>,
    /// σ_i per sample after this step's refinement.
    pub sigma: Vec<Vec<f64>>,
}

#[derive(Clone, Debug)]
pub struct SampleOutput {
    /// The final sample `[B,C,H,W]` in the model's [−1, 1] range (not clamped).
    pub x: Tensor<f64>,
    /// Final σ_i per sample.
    pub sigma: Vec<Vec<f64>>,
    pub trace: Vec<StepTrace>,
}

/// The graph's outputs at one point, in f64.
#[derive(Clone, Debug)]
pub struct StepValues {
    pub model_out: Tensor<f64>,
    pub x0: Tensor<f64>,
    pub norms: Vec<Tensor<f64>>,
    pub loss: Option<f64>,
    pub grad: Option<Tensor<f64>>,
    pub dsigma: Vec<Tensor<f64>>,
}

pub struct Sampler<B: Backend> {
    cfg: SamplerConfig,
    weights: Vec<f64>,
    schedule: Schedule,
    gg: GuidedGraph,
    exec: Executor<B>,
    /// Called after each step with (steps done, steps in this run): progress bars.
    progress: Option<Box<dyn FnMut(usize, usize)>>,
}

impl<B: Backend> Sampler<B> {
    /// Builds, plans and binds the step graph once. `consts` supplies the denoiser's weights.
    pub fn new<F>(
        backend: B,
        cfg: SamplerConfig,
        shape: [usize; 4],
        denoiser: F,
        consts: impl Fn(&str) -> Option<Tensor<f32>>,
    ) -> Result<Self>
    where
        F: FnOnce(&mut Graph, &DenoiserInputs) -> crate::graph::Result<NodeId>,
    {
        cfg.validate()?;
        if shape.contains(&0) {
            return Err(SamplerError::Input(format!(
                "image shape {shape:?} has an empty axis"
            )));
        }
        let weights = cfg.weights()?;
        let schedule = Schedule::for_spec(&cfg.schedule, &cfg.sampler)?;
        let gg = GuidedGraph::build(
            shape,
            cfg.num_guidance,
            cfg.clip_x0,
            cfg.fast_guidance,
            denoiser,
        )?;
        let out_c = gg.graph.shape(gg.model_out)[1];
        if cfg.step_kind() == StepKind::Ddpm
            && cfg.variance.needs_model_channels()
            && out_c != 2 * shape[1]
        {
            return Err(SamplerError::Config(format!(
                "learned-range variance needs a denoiser with {} output channels, this one has {out_c}; \
                 use variance fixed_small / fixed_large or a DDIM sampler",
                2 * shape[1]
            )));
        }
        let mut exec = Executor::new(backend, &gg.graph, &gg.outputs(), PlanOptions::default())?;
        exec.bind_all(consts)?;
        Ok(Sampler {
            cfg,
            weights,
            schedule,
            gg,
            exec,
            progress: None,
        })
    }

    /// Reports (steps done, steps in this run) after every step of later runs.
    /// Bytes of the sampler's arena (the UNet forward + gradient plan).
    pub fn arena_bytes(&self) -> usize {
        self.exec.peak_bytes()
    }

    pub fn set_progress(&mut self, f: Option<Box<dyn FnMut(usize, usize)>>) {
        self.progress = f;
    }

    pub fn schedule(&self) -> &Schedule {
        &self.schedule
    }

    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    pub fn graph(&self) -> &GuidedGraph {
        &self.gg
    }

    fn shape(&self) -> [usize; 4] {
        self.gg.shape
    }

    fn check_guidance(&self, gd: &Guidance) -> Result<()> {
        let n = self.cfg.num_guidance;
        let b = self.shape()[0];
        let bad = |m: String| Err(SamplerError::Input(m));
        if gd.images.len() != n || gd.sigma.len() != n || gd.start.len() != n {
            return bad(format!(
                "guidance has {} images, {} σ lists, {} start lists; the config says {n}",
                gd.images.len(),
                gd.sigma.len(),
                gd.start.len()
            ));
        }
        for i in 0..n {
            if gd.images[i].shape != self.shape() {
                return bad(format!(
                    "guidance image {i} has shape {:?}, expected {:?}",
                    gd.images[i].shape,
                    self.shape()
                ));
            }
            if gd.sigma[i].len() != b || gd.start[i].len() != b {
                return bad(format!(
                    "guidance {i}: {} σ values and {} start steps for a batch of {b}",
                    gd.sigma[i].len(),
                    gd.start[i].len()
                ));
            }
            if let Some(s) = gd.sigma[i].iter().find(|s| !(s.is_finite() && **s > 0.0)) {
                return bad(format!("guidance {i}: σ = {s} must be finite and > 0"));
            }
            if let Some(t) = gd.start[i]
                .iter()
                .find(|&&t| t >= self.schedule.original_steps)
            {
                return bad(format!(
                    "guidance {i}: start step {t} is beyond the {}-step chain",
                    self.schedule.original_steps
                ));
            }
        }
        Ok(())
    }

    /// Writes every per-step input. `y` are guidance images already in [−1, 1].
    fn set_inputs(
        &mut self,
        x: &[f64],
        k: usize,
        y: Option<&[Vec<B::Elem>]>,
        sigma: &[Vec<f64>],
        weight: &[Vec<f64>],
    ) -> Result<()> {
        let shape = self.shape();
        let b = shape[0];
        let a = self.schedule.alphas_cumprod[k];
        let t = self.schedule.timesteps[k] as f64;
        let vec1 = |v: f64| Tensor::new(vec![b], vec![B::Elem::of_f64(v); b]);
        let xs = Tensor::new(
            shape.to_vec(),
            x.iter().map(|&v| B::Elem::of_f64(v)).collect(),
        );
        self.exec.set_input(names::X, &xs)?;
        self.exec.set_input(names::T, &vec1(t))?;
        self.exec.set_input(names::ALPHA_BAR, &vec1(a))?;
        self.exec
            .set_input(names::RECIP_SQRT_AB, &vec1((1.0 / a).sqrt()))?;
        self.exec
            .set_input(names::RECIPM1_SQRT_AB, &vec1((1.0 / a - 1.0).sqrt()))?;
        let from =
            |v: &[f64]| Tensor::new(vec![b], v.iter().map(|&s| B::Elem::of_f64(s)).collect());
        for i in 0..self.cfg.num_guidance {
            // The guidance images are constant over a run: their input regions persist in
            // the arena, so they are uploaded once, not every step.
            if let Some(y) = y {
                self.exec
                    .set_input(&names::y(i), &Tensor::new(shape.to_vec(), y[i].clone()))?;
            }
            self.exec.set_input(&names::sigma(i), &from(&sigma[i]))?;
            self.exec.set_input(&names::weight(i), &from(&weight[i]))?;
        }
        Ok(())
    }

    fn read(&self, id: NodeId) -> Result<Tensor<f64>> {
        Ok(self.exec.output(id)?.cast())
    }

    /// The step's outputs on the host; the denoiser's raw output only when `model_out` (it is
    /// the largest and only DDPM with learned variance reads it).
    fn values(&self, model_out: bool) -> Result<StepValues> {
        let gg = &self.gg;
        Ok(StepValues {
            model_out: if model_out {
                self.read(gg.model_out)?
            } else {
                Tensor::new(vec![0], vec![])
            },
            x0: self.read(gg.x0)?,
            norms: gg
                .norms
                .iter()
                .map(|&n| self.read(n))
                .collect::<Result<_>>()?,
            loss: match gg.loss {
                Some(l) => Some(self.read(l)?.data[0]),
                None => None,
            },
            grad: gg.grad.map(|g| self.read(g)).transpose()?,
            dsigma: gg
                .dsigma
                .iter()
                .map(|&n| self.read(n))
                .collect::<Result<_>>()?,
        })
    }

    /// Runs the step graph once at chain position `k` (for checks and diagnostics).
    /// `guidance` images are in [0, 1]; `weight[i][b]` are the effective weights.
    pub fn evaluate(
        &mut self,
        x: &Tensor<f64>,
        k: usize,
        guidance: &[Tensor<f64>],
        sigma: &[Vec<f64>],
        weight: &[Vec<f64>],
    ) -> Result<StepValues> {
        if x.shape != self.shape() {
            return Err(SamplerError::Input(format!(
                "x has shape {:?}, expected {:?}",
                x.shape,
                self.shape()
            )));
        }
        if k >= self.schedule.len() {
            return Err(SamplerError::Input(format!(
                "chain position {k} beyond a {}-step chain",
                self.schedule.len()
            )));
        }
        let n = self.cfg.num_guidance;
        if guidance.len() != n || sigma.len() != n || weight.len() != n {
            return Err(SamplerError::Input(format!(
                "evaluate needs {n} guidance images, σ lists and weight lists"
            )));
        }
        let y: Vec<Vec<B::Elem>> = guidance.iter().map(to_model_range::<B::Elem>).collect();
        self.set_inputs(&x.data, k, Some(&y), sigma, weight)?;
        self.exec.run()?;
        self.values(true)
    }

    /// Unguided sampling from pure noise at the top of the chain (`num_guidance` must be 0).
    pub fn sample_unguided(&mut self, seed: u64) -> Result<SampleOutput> {
        if self.cfg.num_guidance != 0 {
            return Err(SamplerError::Config(
                "sample_unguided needs num_guidance = 0".into(),
            ));
        }
        let eta = match self.cfg.eta {
            Eta::Fixed(e) => e,
            Eta::SigmaHatOver10 => {
                return Err(SamplerError::Config(
                    "eta = σ̂/10 needs guidance to take σ̂ from".into(),
                ))
            }
        };
        let [b, ..] = self.shape();
        let top = self.schedule.len() - 1;
        self.run_loop(
            seed,
            &vec![top; b],
            &vec![eta; b],
            None,
            &mut super::UnitScale,
        )
    }

    /// Guided sampling (Eq. 5/13/15): each sample starts at its largest guidance start step
    /// (rounded down to the chain) from `√ᾱ·(2ŷ−1) + √(1−ᾱ)·z`, ŷ the guidance image with that
    /// start, and the first model call is at that same step.
    pub fn sample(
        &mut self,
        guidance: &Guidance,
        scale: &mut dyn ScaleMap,
        seed: u64,
    ) -> Result<SampleOutput> {
        if self.cfg.num_guidance == 0 {
            return Err(SamplerError::Config(
                "guided sampling needs num_guidance ≥ 1".into(),
            ));
        }
        self.check_guidance(guidance)?;
        let [b, ..] = self.shape();
        let mut start_pos = vec![0; b];
        let mut eta = vec![0.0; b];
        for s in 0..b {
            let t_max = (0..self.cfg.num_guidance)
                .map(|i| guidance.start[i][s])
                .max()
                .unwrap_or(0);
            start_pos[s] = self.schedule.position_at_or_below(t_max).ok_or_else(|| {
                SamplerError::Input(format!(
                    "sample {s}: start step {t_max} is below the chain's first step {}",
                    self.schedule.timesteps[0]
                ))
            })?;
            eta[s] = match self.cfg.eta {
                Eta::Fixed(e) => e,
                Eta::SigmaHatOver10 => guidance.sigma[0][s] / 10.0,
            };
        }
        self.run_loop(seed, &start_pos, &eta, Some(guidance), scale)
    }

    fn run_loop(
        &mut self,
        seed: u64,
        start_pos: &[usize],
        eta: &[f64],
        guidance: Option<&Guidance>,
        scale: &mut dyn ScaleMap,
    ) -> Result<SampleOutput> {
        let shape = self.shape();
        let [b, c, h, w] = shape;
        let per = c * h * w;
        let n = self.cfg.num_guidance;
        let kind = self.cfg.step_kind();
        // One stream per sample, so a sample's draws do not depend on the batch around it.
        let mut rngs: Vec<ChaCha8Rng> = (0..b)
            .map(|s| {
                let mut r = ChaCha8Rng::seed_from_u64(seed);
                r.set_stream(s as u64);
                r
            })
            .collect();
        let draw = |r: &mut ChaCha8Rng| -> Vec<f64> {
            (0..per).map(|_| StandardNormal.sample(r)).collect()
        };
        let y: Vec<Vec<B::Elem>> = guidance
            .map(|g| g.images.iter().map(to_model_range::<B::Elem>).collect())
            .unwrap_or_default();
        let mut sigma: Vec<Vec<f64>> = guidance.map(|g| g.sigma.clone()).unwrap_or_default();
        let mut x = vec![0.0; b * per];
        let top = *start_pos.iter().max().unwrap_or(&0);
        let mut trace = Vec::with_capacity(top + 1);
        for k in (0..=top).rev() {
            let a = self.schedule.alphas_cumprod[k];
            let t = self.schedule.timesteps[k];
            for s in 0..b {
                if start_pos[s] != k {
                    continue;
                }
                let z = draw(&mut rngs[s]);
                let xs = &mut x[s * per..(s + 1) * per];
                match guidance {
                    None => xs.copy_from_slice(&z),
                    Some(g) => {
                        let first = (0..n).max_by_key(|&i| (g.start[i][s], n - i)).unwrap_or(0);
                        let yv = &g.images[first].data[s * per..(s + 1) * per];
                        for j in 0..per {
                            xs[j] = a.sqrt() * (2.0 * yv[j] - 1.0) + (1.0 - a).sqrt() * z[j];
                        }
                    }
                }
            }
            let running: Vec<bool> = start_pos.iter().map(|&p| p >= k).collect();
            // Effective weights: guidance i acts on sample s once t ≤ t_i.
            let active: Vec<Vec<bool>> = (0..n)
                .map(|i| {
                    (0..b)
                        .map(|s| running[s] && t <= guidance.map_or(0, |g| g.start[i][s]))
                        .collect()
                })
                .collect();
            let weight: Vec<Vec<f64>> = (0..n)
                .map(|i| {
                    (0..b)
                        .map(|s| if active[i][s] { self.weights[i] } else { 0.0 })
                        .collect()
                })
                .collect();
            self.set_inputs(&x, k, (k == top).then_some(y.as_slice()), &sigma, &weight)?;
            self.exec.run()?;
            let vals =
                self.values(kind == StepKind::Ddpm && self.cfg.variance.needs_model_channels())?;
            let any_guided = active.iter().flatten().any(|&v| v);
            let s_map = if any_guided {
                let g = guidance.expect("active guidance implies guidance");
                scale
                    .scale(&ScaleContext {
                        guidance: &g.images,
                        x0: &vals.x0,
                        t,
                    })
                    .map_err(SamplerError::Scale)?
            } else {
                None
            };
            if let Some(sm) = &s_map {
                if sm.shape != shape {
                    return Err(SamplerError::Input(format!(
                        "scale map has shape {:?}, expected {shape:?}",
                        sm.shape
                    )));
                }
            }
            for s in 0..b {
                if !running[s] {
                    continue;
                }
                let r = s * per..(s + 1) * per;
                let z = draw(&mut rngs[s]);
                let x0 = &vals.x0.data[r.clone()];
                let xs = &mut x[r.clone()];
                match kind {
                    StepKind::Ddim => step::ddim(&self.schedule, k, eta[s], xs, x0, &z),
                    StepKind::Ddpm => {
                        let v = if self.cfg.variance.needs_model_channels() {
                            Some(variance_channels(&vals.model_out, s, c, h * w))
                        } else {
                            None
                        };
                        step::ddpm(
                            &self.schedule,
                            k,
                            self.cfg.variance,
                            xs,
                            x0,
                            v.as_deref(),
                            &z,
                        )
                    }
                }
                if (0..n).any(|i| active[i][s]) {
                    let gr = &vals
                        .grad
                        .as_ref()
                        .expect("guided graph has a gradient")
                        .data[r.clone()];
                    for j in 0..per {
                        let sc = s_map.as_ref().map_or(1.0, |m| m.data[s * per + j]);
                        xs[j] -= self.cfg.zeta * sc * gr[j];
                    }
                }
                for i in 0..n {
                    if active[i][s] && self.cfg.zeta_sigma > 0.0 {
                        let d = vals.dsigma[i].data[s];
                        sigma[i][s] = (sigma[i][s] - self.cfg.zeta_sigma * d)
                            .clamp(self.cfg.sigma_min, self.cfg.sigma_max);
                    }
                }
            }
            trace.push(StepTrace {
                t,
                loss: vals.loss,
                sigma: sigma.clone(),
            });
            if let Some(p) = self.progress.as_mut() {
                p(top - k + 1, top + 1);
            }
        }
        Ok(SampleOutput {
            x: Tensor::new(shape.to_vec(), x),
            sigma,
            trace,
        })
    }
}

/// [0, 1] → [−1, 1] in the backend's element type.
fn to_model_range<E: Scalar>(t: &Tensor<f64>) -> Vec<E> {
    t.data.iter().map(|&v| E::of_f64(2.0 * v - 1.0)).collect()
}

/// Channels C..2C of sample `s` of a `[B, 2C, H, W]` output.
fn variance_channels(out: &Tensor<f64>, s: usize, c: usize, hw: usize) -> Vec<f64> {
    let start = (s * 2 * c + c) * hw;
    out.data[start..start + c * hw].to_vec()
}
