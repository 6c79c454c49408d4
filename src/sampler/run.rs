//! The sampling loop.

use super::config::{Eta, SamplerConfig, StepKind, UpdateOn};
use super::graph::{
    names, DenoiserInputs, DeviceUpdate, GraphOptions, GuidedGraph, ScaleBuilder, UpdateKind,
};
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
use std::time::Instant;

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
    pub timing: RunTiming,
    /// S_t at each image's first, middle and last step, when asked for
    /// ([`Sampler::set_scale_snapshots`]) and S comes from the step graph.
    pub scale_maps: Vec<super::snapshot::ScaleSnapshot>,
}

/// Where a run's wall time went.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RunTiming {
    /// The whole sampling loop, seconds.
    pub total: f64,
    /// Inside the step graph's runs (or replays). On asynchronous backends (CUDA) this is only
    /// the time to issue the work; there `total` is the figure to compare.
    pub graph: f64,
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
    pub(super) cfg: SamplerConfig,
    pub(super) weights: Vec<f64>,
    pub(super) schedule: Schedule,
    pub(super) gg: GuidedGraph,
    pub(super) exec: Executor<B>,
    /// Called after each step with (steps done, steps in this run): progress bars.
    pub(super) progress: Option<Box<dyn FnMut(usize, usize)>>,
    pub(super) capture: CaptureState,
    /// Read S_t back at a few steps of each image ([`super::snapshot`]).
    pub(super) snapshots: bool,
}

/// Whether the device step has been recorded for replay.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum CaptureState {
    /// Not tried yet (the first step runs uncaptured, then records).
    Pending,
    Recorded,
    /// Off, unsupported, or recording failed (the message says why); steps run uncaptured.
    Off(String),
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
        Self::with_scale(backend, cfg, shape, denoiser, None, consts)
    }

    /// As [`Sampler::new`], with S_t (Eq. 13) built into the step graph by `scale` (DGSA):
    /// the device update needs it there; the host update reads it back. `consts` supplies
    /// the denoiser's and the scale map's weights.
    pub fn with_scale<F>(
        backend: B,
        cfg: SamplerConfig,
        shape: [usize; 4],
        denoiser: F,
        scale: Option<ScaleBuilder>,
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
        if scale.is_some() && cfg.num_guidance == 0 {
            return Err(SamplerError::Config(
                "a scale map needs guidance (num_guidance ≥ 1)".into(),
            ));
        }
        let update = (cfg.update_on == UpdateOn::Device).then(|| DeviceUpdate {
            kind: match (cfg.step_kind(), cfg.variance.needs_model_channels()) {
                (StepKind::Ddim, _) => UpdateKind::Ddim,
                (StepKind::Ddpm, false) => UpdateKind::DdpmFixed,
                (StepKind::Ddpm, true) => UpdateKind::DdpmLearned,
            },
            refine_sigma: cfg.zeta_sigma > 0.0,
            sigma_min: cfg.sigma_min as f32,
            sigma_max: cfg.sigma_max as f32,
        });
        let opts = GraphOptions {
            num_guidance: cfg.num_guidance,
            clip_x0: cfg.clip_x0,
            fast_guidance: cfg.fast_guidance,
            update,
        };
        // The denoiser's output channels decide whether the learned variance is possible;
        // record them so that a graph error from the device update's slice of channels
        // C..2C is reported as the configuration problem it is.
        let mut out_c = 0;
        let denoiser = |g: &mut Graph, i: &DenoiserInputs| {
            let y = denoiser(g, i)?;
            out_c = g.shape(y)[1];
            Ok(y)
        };
        let built = GuidedGraph::build_with(shape, &opts, denoiser, scale);
        if cfg.step_kind() == StepKind::Ddpm
            && cfg.variance.needs_model_channels()
            && out_c != 0
            && out_c != 2 * shape[1]
        {
            return Err(SamplerError::Config(format!(
                "learned-range variance needs a denoiser with {} output channels, this one has {out_c}; \
                 use variance fixed_small / fixed_large or a DDIM sampler",
                2 * shape[1]
            )));
        }
        let gg = built?;
        let mut exec = Executor::new(backend, &gg.graph, &gg.outputs(), PlanOptions::default())?;
        exec.bind_all(consts)?;
        Ok(Sampler {
            cfg,
            weights,
            schedule,
            gg,
            exec,
            progress: None,
            capture: CaptureState::Pending,
            snapshots: false,
        })
    }

    /// Whether later runs read S_t back at each image's first, middle and last step
    /// (`SampleOutput::scale_maps`; only where S is in the step graph). S is an output of the
    /// step graph either way, so this changes nothing the steps compute.
    pub fn set_scale_snapshots(&mut self, on: bool) {
        self.snapshots = on;
    }

    /// The snapshots due at chain position `k` (images whose first, middle or last step it
    /// is), read from the graph's outputs of the step just run; `scale` is S_t if the caller
    /// read it already.
    pub(super) fn snapshots_at(
        &self,
        k: usize,
        start_pos: &[usize],
        running: impl Fn(usize) -> bool,
        scale: Option<&Tensor<f64>>,
        out: &mut Vec<super::snapshot::ScaleSnapshot>,
    ) -> Result<()> {
        let Some(node) = self.gg.scale.filter(|_| self.snapshots) else {
            return Ok(());
        };
        let due: Vec<usize> = (0..start_pos.len())
            .filter(|&s| {
                running(s) && super::snapshot::snapshot_positions(start_pos[s]).contains(&k)
            })
            .collect();
        if due.is_empty() {
            return Ok(());
        }
        let read;
        let scale = match scale {
            Some(s) => s,
            None => {
                read = self.read(node)?;
                &read
            }
        };
        let x0 = self.read(self.gg.x0)?;
        let [_, c, h, w] = self.shape();
        let per = c * h * w;
        for s in due {
            out.push(super::snapshot::ScaleSnapshot {
                image: s,
                t: self.schedule.timesteps[k],
                scale: scale.data[s * per..(s + 1) * per].to_vec(),
                x0: x0.data[s * per..(s + 1) * per].to_vec(),
            });
        }
        Ok(())
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

    pub(super) fn shape(&self) -> [usize; 4] {
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
    pub(super) fn set_inputs(
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

    pub(super) fn read(&self, id: NodeId) -> Result<Tensor<f64>> {
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

    /// Which images take step `k`, which guidance acts on each, and the effective weights.
    pub(super) fn activity(
        &self,
        k: usize,
        start_pos: &[usize],
        guidance: Option<&Guidance>,
    ) -> Activity {
        let n = self.cfg.num_guidance;
        let b = start_pos.len();
        let t = self.schedule.timesteps[k];
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
        Activity {
            running,
            active,
            weight,
        }
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
        if self.gg.x_next.is_some() {
            self.set_neutral_update()?;
        }
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
        let streams: Vec<u64> = (0..b as u64).collect();
        self.run_loop(
            seed,
            &streams,
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
        let streams: Vec<u64> = (0..self.shape()[0] as u64).collect();
        self.sample_streams(guidance, scale, seed, &streams)
    }

    /// [`Sampler::sample`] with the random stream of each image given: image b draws all its
    /// noise from ChaCha8(`seed`, stream `streams[b]`), so an image gives the same result in
    /// any batch and at any position when it keeps its stream (`sample` uses stream b).
    pub fn sample_streams(
        &mut self,
        guidance: &Guidance,
        scale: &mut dyn ScaleMap,
        seed: u64,
        streams: &[u64],
    ) -> Result<SampleOutput> {
        if streams.len() != self.shape()[0] {
            return Err(SamplerError::Input(format!(
                "{} random streams for a batch of {}",
                streams.len(),
                self.shape()[0]
            )));
        }
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
        self.run_loop(seed, streams, &start_pos, &eta, Some(guidance), scale)
    }

    fn run_loop(
        &mut self,
        seed: u64,
        streams: &[u64],
        start_pos: &[usize],
        eta: &[f64],
        guidance: Option<&Guidance>,
        scale: &mut dyn ScaleMap,
    ) -> Result<SampleOutput> {
        if self.gg.scale.is_some() && !scale.is_unit() {
            return Err(SamplerError::Config(
                "this sampler has a scale map in its step graph; pass UnitScale, not a second one"
                    .into(),
            ));
        }
        match self.cfg.update_on {
            UpdateOn::Device if !scale.is_unit() => Err(SamplerError::Config(
                "a host-side scale map needs x̂₀ on the host every step: use update_on = host, \
                 or build the map into the step graph (Sampler::with_scale)"
                    .into(),
            )),
            UpdateOn::Device => self.run_device(seed, streams, start_pos, eta, guidance),
            UpdateOn::Host => self.run_host(seed, streams, start_pos, eta, guidance, scale),
        }
    }

    /// The reference path: the graph gives x̂₀, ∇ and ∂σ, the host does the update in f64.
    fn run_host(
        &mut self,
        seed: u64,
        streams: &[u64],
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
        let mut rngs = image_rngs(seed, streams);
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
        let mut scale_maps = vec![];
        let t_run = Instant::now();
        let mut graph = 0.0;
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
                            xs[j] = start_value(a, yv[j], z[j]);
                        }
                    }
                }
            }
            let Activity {
                running,
                active,
                weight,
            } = self.activity(k, start_pos, guidance);
            self.set_inputs(&x, k, (k == top).then_some(y.as_slice()), &sigma, &weight)?;
            let t_graph = Instant::now();
            self.exec.run()?;
            graph += t_graph.elapsed().as_secs_f64();
            let vals =
                self.values(kind == StepKind::Ddpm && self.cfg.variance.needs_model_channels())?;
            let any_guided = active.iter().flatten().any(|&v| v);
            let s_map = match (any_guided, self.gg.scale) {
                (false, _) => None,
                (true, Some(node)) => Some(self.read(node)?),
                (true, None) => {
                    let g = guidance.expect("active guidance implies guidance");
                    scale
                        .scale(&ScaleContext {
                            guidance: &g.images,
                            x0: &vals.x0,
                            t,
                        })
                        .map_err(SamplerError::Scale)?
                }
            };
            if let Some(sm) = &s_map {
                if sm.shape != shape {
                    return Err(SamplerError::Input(format!(
                        "scale map has shape {:?}, expected {shape:?}",
                        sm.shape
                    )));
                }
            }
            if any_guided && self.gg.scale.is_some() {
                self.snapshots_at(
                    k,
                    start_pos,
                    |s| running[s],
                    s_map.as_ref(),
                    &mut scale_maps,
                )?;
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
            timing: RunTiming {
                total: t_run.elapsed().as_secs_f64(),
                graph,
            },
            scale_maps,
        })
    }
}

/// x_start = √ᾱ·(2ŷ−1) + √(1−ᾱ)·z: a guidance value ŷ in [0, 1] noised to the start step.
pub(super) fn start_value(alpha_bar: f64, y: f64, z: f64) -> f64 {
    alpha_bar.sqrt() * (2.0 * y - 1.0) + (1.0 - alpha_bar).sqrt() * z
}

/// One step's per-image flags.
pub(super) struct Activity {
    pub running: Vec<bool>,
    /// `active[i][b]`: guidance i acts on image b.
    pub active: Vec<Vec<bool>>,
    /// `weight[i][b]`: w_i where active, else 0.
    pub weight: Vec<Vec<f64>>,
}

/// One ChaCha8 stream per image, so an image's draws do not depend on the batch around it.
pub(super) fn image_rngs(seed: u64, streams: &[u64]) -> Vec<ChaCha8Rng> {
    streams
        .iter()
        .map(|&s| {
            let mut r = ChaCha8Rng::seed_from_u64(seed);
            r.set_stream(s);
            r
        })
        .collect()
}

/// [0, 1] → [−1, 1] in the backend's element type.
pub(super) fn to_model_range<E: Scalar>(t: &Tensor<f64>) -> Vec<E> {
    t.data.iter().map(|&v| E::of_f64(2.0 * v - 1.0)).collect()
}

/// Channels C..2C of sample `s` of a `[B, 2C, H, W]` output.
fn variance_channels(out: &Tensor<f64>, s: usize, c: usize, hw: usize) -> Vec<f64> {
    let start = (s * 2 * c + c) * hw;
    out.data[start..start + c * hw].to_vec()
}
