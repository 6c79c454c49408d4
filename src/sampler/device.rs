//! The device step: the whole DPS step (denoiser, guidance gradient, reverse step, guidance
//! step, σ refinement) is one run of the step graph, and x_t and σ_i stay on the backend for
//! the whole run (each step's outputs are copied onto its inputs there). Per step the host
//! uploads the noise and a few `[B]` scalars and reads back the loss and σ_i for the trace.
//! On backends that record graphs (CUDA) the step is recorded after its first run and then
//! replayed.
//!
//! The noise comes from the same per-image ChaCha8 streams, in the same order, as on the host
//! path, so both paths compute the same sample: on the f64 CPU backend bit for bit (the graph
//! mirrors the host arithmetic op for op, see `graph::GuidedGraph::add_update`), except that
//! σ is clamped at σ_min/σ_max rounded to f32 (the graph's clamp takes f32 bounds).

use super::graph::names;
use super::run::{
    image_rngs, start_value, to_model_range, CaptureState, Guidance, RunTiming, SampleOutput,
    StepTrace,
};
use super::step::{ddpm_fixed_std, learned_range_bounds, DdimCoefs};
use super::{Result, Sampler, StepKind};
use crate::backend::Backend;
use crate::tensor::{Scalar, Tensor};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use rayon::prelude::*;
use std::time::Instant;

/// The host-side draws of one step, already in the backend's element type.
struct Draws<E> {
    /// Start images √ᾱ·ŷ + √(1−ᾱ)·z (or z unguided) for images that start at this step,
    /// zeros elsewhere; `None` when no image starts.
    init: Option<Vec<E>>,
    /// The step noise of running images (zeros for the others and at the last step).
    noise: Vec<E>,
}

impl<B: Backend> Sampler<B> {
    /// Sets a per-image `[B]` input.
    fn set_b(&mut self, name: &str, v: &[f64]) -> Result<()> {
        let t = Tensor::new(
            vec![v.len()],
            v.iter().map(|&x| B::Elem::of_f64(x)).collect(),
        );
        self.exec.set_input(name, &t)?;
        Ok(())
    }

    /// Whether the step graph has input `name` (the update's inputs depend on the step kind).
    fn has_input(&self, name: &str) -> bool {
        self.gg.graph.find_input(name).is_some()
    }

    /// Update inputs that make the step graph's update a no-op (x_in = x_t, nothing moves):
    /// for `evaluate`, which only reads x̂₀, ∇ and ∂σ.
    pub(super) fn set_neutral_update(&mut self) -> Result<()> {
        let shape = self.shape();
        let b = shape[0];
        let zeros = Tensor::<B::Elem>::zeros(&shape);
        self.exec.set_input(names::X_INIT, &zeros)?;
        self.exec.set_input(names::NOISE, &zeros)?;
        let (z, o) = (vec![0.0; b], vec![1.0; b]);
        self.set_b(names::START, &z)?;
        self.set_b(names::KEEP, &o)?;
        self.set_b(names::RUN, &z)?;
        self.set_b(names::HOLD, &o)?;
        for name in [
            names::SQRT_AB_PREV,
            names::DIR,
            names::NOISE_SCALE,
            names::MEAN_C0,
            names::MEAN_CT,
            names::LOG_BETA,
            names::LOG_BETA_TILDE,
            names::ZETA,
            names::ZETA_SIGMA,
        ] {
            if self.has_input(name) {
                self.set_b(name, &z)?;
            }
        }
        for i in 0..self.cfg.num_guidance {
            if self.has_input(&names::sigma_on(i)) {
                self.set_b(&names::sigma_on(i), &z)?;
                self.set_b(&names::sigma_off(i), &o)?;
            }
        }
        Ok(())
    }

    /// Draws step `k`'s noise (and start images) for every image from its own stream, in
    /// parallel over images; each stream sees the same sequence as on the host path.
    fn draw(
        &self,
        k: usize,
        start_pos: &[usize],
        rngs: &mut [ChaCha8Rng],
        first: &[Option<&[f64]>],
    ) -> Draws<B::Elem> {
        let [_, c, h, w] = self.shape();
        let per = c * h * w;
        let b = start_pos.len();
        let a = self.schedule.alphas_cumprod[k];
        let any_start = start_pos.contains(&k);
        let mut noise = vec![B::Elem::default(); b * per];
        let mut init = vec![B::Elem::default(); if any_start { b * per } else { 0 }];
        let mut init_chunks: Vec<&mut [B::Elem]> = if any_start {
            init.chunks_mut(per).collect()
        } else {
            (0..b).map(|_| Default::default()).collect()
        };
        rngs.par_iter_mut()
            .zip(noise.par_chunks_mut(per))
            .zip(init_chunks.par_iter_mut())
            .enumerate()
            .for_each(|(s, ((r, nz), xi))| {
                if start_pos[s] == k {
                    let z: Vec<f64> = (0..per).map(|_| StandardNormal.sample(r)).collect();
                    match first[s] {
                        None => {
                            for j in 0..per {
                                xi[j] = B::Elem::of_f64(z[j]);
                            }
                        }
                        Some(yv) => {
                            for j in 0..per {
                                xi[j] = B::Elem::of_f64(start_value(a, yv[j], z[j]));
                            }
                        }
                    }
                }
                // The last step adds no noise (the host path draws and ignores it).
                if start_pos[s] >= k && k > 0 {
                    for v in nz.iter_mut() {
                        let z: f64 = StandardNormal.sample(r);
                        *v = B::Elem::of_f64(z);
                    }
                }
            });
        Draws {
            init: any_start.then_some(init),
            noise,
        }
    }

    /// Writes step `k`'s per-image scalars.
    fn set_step_scalars(
        &mut self,
        k: usize,
        start_pos: &[usize],
        eta: &[f64],
        guidance: Option<&Guidance>,
    ) -> Result<()> {
        let b = start_pos.len();
        let n = self.cfg.num_guidance;
        let act = self.activity(k, start_pos, guidance);
        let flag = |on: bool| if on { 1.0 } else { 0.0 };
        let start: Vec<f64> = start_pos.iter().map(|&p| flag(p == k)).collect();
        let keep: Vec<f64> = start.iter().map(|v| 1.0 - v).collect();
        let run: Vec<f64> = act.running.iter().map(|&r| flag(r)).collect();
        let hold: Vec<f64> = run.iter().map(|v| 1.0 - v).collect();
        self.set_b(names::START, &start)?;
        self.set_b(names::KEEP, &keep)?;
        self.set_b(names::RUN, &run)?;
        self.set_b(names::HOLD, &hold)?;
        let a = self.schedule.alphas_cumprod[k];
        let t = self.schedule.timesteps[k] as f64;
        self.set_b(names::T, &vec![t; b])?;
        self.set_b(names::ALPHA_BAR, &vec![a; b])?;
        match self.cfg.step_kind() {
            StepKind::Ddim => {
                let co: Vec<DdimCoefs> = eta
                    .iter()
                    .map(|&e| DdimCoefs::new(&self.schedule, k, e))
                    .collect();
                let pick = |f: fn(&DdimCoefs) -> f64| co.iter().map(f).collect::<Vec<f64>>();
                self.set_b(names::RECIP_SQRT_AB, &pick(|c| c.recip_sqrt_a))?;
                self.set_b(names::RECIPM1_SQRT_AB, &pick(|c| c.recipm1_sqrt_a))?;
                self.set_b(names::SQRT_AB_PREV, &pick(|c| c.sqrt_a_prev))?;
                self.set_b(names::DIR, &pick(|c| c.dir))?;
                self.set_b(names::NOISE_SCALE, &pick(|c| c.sigma))?;
            }
            StepKind::Ddpm => {
                // The same expressions as `set_inputs` (x̂₀) and `step::ddpm` (the step).
                self.set_b(names::RECIP_SQRT_AB, &vec![(1.0 / a).sqrt(); b])?;
                self.set_b(names::RECIPM1_SQRT_AB, &vec![(1.0 / a - 1.0).sqrt(); b])?;
                let (c0, ct) = self.schedule.posterior_mean_coefs(k);
                self.set_b(names::MEAN_C0, &vec![c0; b])?;
                self.set_b(names::MEAN_CT, &vec![ct; b])?;
                match ddpm_fixed_std(&self.schedule, k, self.cfg.variance) {
                    Some(std) => self.set_b(names::NOISE_SCALE, &vec![std; b])?,
                    None => {
                        let (hi, lo) = learned_range_bounds(&self.schedule, k);
                        self.set_b(names::LOG_BETA, &vec![hi; b])?;
                        self.set_b(names::LOG_BETA_TILDE, &vec![lo; b])?;
                    }
                }
            }
        }
        for i in 0..n {
            self.set_b(&names::weight(i), &act.weight[i])?;
        }
        if n > 0 {
            let zeta: Vec<f64> = (0..b)
                .map(|s| {
                    if (0..n).any(|i| act.active[i][s]) {
                        self.cfg.zeta
                    } else {
                        0.0
                    }
                })
                .collect();
            self.set_b(names::ZETA, &zeta)?;
        }
        if !self.gg.sigma_next.is_empty() {
            self.set_b(names::ZETA_SIGMA, &vec![self.cfg.zeta_sigma; b])?;
            for i in 0..n {
                let on: Vec<f64> = act.active[i].iter().map(|&a| flag(a)).collect();
                let off: Vec<f64> = on.iter().map(|v| 1.0 - v).collect();
                self.set_b(&names::sigma_on(i), &on)?;
                self.set_b(&names::sigma_off(i), &off)?;
            }
        }
        Ok(())
    }

    /// Runs the step graph: the first time uncaptured, then (where the backend records
    /// graphs and the config allows) records it and replays it from then on.
    fn run_step(&mut self) -> Result<()> {
        if self.capture == CaptureState::Recorded {
            self.exec.replay()?;
            return Ok(());
        }
        self.exec.run()?;
        if self.capture == CaptureState::Pending {
            self.capture = if !self.cfg.capture {
                CaptureState::Off("capture is off in the sampler config".into())
            } else if !self.exec.backend.can_capture() {
                CaptureState::Off(format!(
                    "{} does not record graphs",
                    self.exec.backend.name()
                ))
            } else {
                // Recording does not execute: the step above stays the only run.
                match self.exec.record() {
                    Ok(()) => CaptureState::Recorded,
                    Err(e) => CaptureState::Off(format!("recording the step failed: {e}")),
                }
            };
        }
        Ok(())
    }

    /// Whether the step graph is replayed from a recording, and if not, why.
    pub fn capture_status(&self) -> std::result::Result<(), String> {
        match &self.capture {
            CaptureState::Recorded => Ok(()),
            CaptureState::Pending => Err("no step has run yet".into()),
            CaptureState::Off(why) => Err(why.clone()),
        }
    }

    pub(super) fn run_device(
        &mut self,
        seed: u64,
        streams: &[u64],
        start_pos: &[usize],
        eta: &[f64],
        guidance: Option<&Guidance>,
    ) -> Result<SampleOutput> {
        let shape = self.shape();
        let [b, c, h, w] = shape;
        let per = c * h * w;
        let n = self.cfg.num_guidance;
        let x_next = self.gg.x_next.expect("device graph has x_next");
        let mut rngs = image_rngs(seed, streams);
        // The guidance image each image starts from: the one with the largest start step.
        let first: Vec<Option<&[f64]>> = (0..b)
            .map(|s| {
                guidance.map(|g| {
                    let i = (0..n).max_by_key(|&i| (g.start[i][s], n - i)).unwrap_or(0);
                    &g.images[i].data[s * per..(s + 1) * per]
                })
            })
            .collect();
        let mut sigma: Vec<Vec<f64>> = guidance.map(|g| g.sigma.clone()).unwrap_or_default();
        // Run constants and the initial state: guidance images, σ_i, x_t = 0 (images join
        // through x_init at their start step; the zeros keep not-started images finite).
        self.exec
            .set_input(names::X, &Tensor::<B::Elem>::zeros(&shape))?;
        if let Some(g) = guidance {
            for i in 0..n {
                let y = Tensor::new(shape.to_vec(), to_model_range::<B::Elem>(&g.images[i]));
                self.exec.set_input(&names::y(i), &y)?;
                self.set_b(&names::sigma(i), &g.sigma[i])?;
            }
        }
        let top = *start_pos.iter().max().unwrap_or(&0);
        let mut trace = Vec::with_capacity(top + 1);
        let mut scale_maps = vec![];
        let t_run = Instant::now();
        let mut graph = 0.0;
        let mut draws = self.draw(top, start_pos, &mut rngs, &first);
        for k in (0..=top).rev() {
            if let Some(init) = &draws.init {
                self.exec
                    .set_input(names::X_INIT, &Tensor::new(shape.to_vec(), init.clone()))?;
            }
            self.exec
                .set_input(names::NOISE, &Tensor::new(shape.to_vec(), draws.noise))?;
            self.set_step_scalars(k, start_pos, eta, guidance)?;
            let t_graph = Instant::now();
            self.run_step()?;
            graph += t_graph.elapsed().as_secs_f64();
            // Read before x_t is fed back: S_t and x̂₀ are this step's outputs.
            self.snapshots_at(k, start_pos, |s| start_pos[s] >= k, None, &mut scale_maps)?;
            // The next step's draws overlap the device's work (runs are asynchronous there).
            draws = if k > 0 {
                self.draw(k - 1, start_pos, &mut rngs, &first)
            } else {
                Draws {
                    init: None,
                    noise: vec![],
                }
            };
            self.exec.copy_output_to_input(x_next, names::X)?;
            for (i, &s_next) in self.gg.sigma_next.clone().iter().enumerate() {
                self.exec.copy_output_to_input(s_next, &names::sigma(i))?;
                sigma[i] = self.read(s_next)?.data;
            }
            let loss = match self.gg.loss {
                Some(l) => Some(self.read(l)?.data[0]),
                None => None,
            };
            trace.push(StepTrace {
                t: self.schedule.timesteps[k],
                loss,
                sigma: sigma.clone(),
            });
            if let Some(p) = self.progress.as_mut() {
                p(top - k + 1, top + 1);
            }
        }
        let x = self.read(x_next)?;
        Ok(SampleOutput {
            x,
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
