//! The one graph the sampler runs at every step: denoiser → ε → x̂₀ → blurs → weighted
//! guidance loss → gradients. Everything that changes between steps (timestep, schedule
//! coefficients, guidance images, σ_i, weights) is a graph input, so the graph is built,
//! planned and bound once.

use crate::graph::{autodiff::grad, Graph, NodeId, Precision, Result};

/// Input names of the sampler graph.
pub mod names {
    pub const X: &str = "x_t";
    pub const T: &str = "t";
    pub const ALPHA_BAR: &str = "alpha_bar";
    /// 1/√ᾱ_t, per sample `[B]`.
    pub const RECIP_SQRT_AB: &str = "recip_sqrt_alpha_bar";
    /// √(1/ᾱ_t − 1), per sample `[B]`.
    pub const RECIPM1_SQRT_AB: &str = "recipm1_sqrt_alpha_bar";
    pub fn y(i: usize) -> String {
        format!("guide_y{i}")
    }
    pub fn sigma(i: usize) -> String {
        format!("guide_sigma{i}")
    }
    pub fn weight(i: usize) -> String {
        format!("guide_w{i}")
    }

    // The device step's inputs (only in graphs built with an update, see `DeviceUpdate`).
    // Images first seen at this step start from `x_init`: x_in = keep·x_t + start·x_init.
    pub const X_INIT: &str = "x_init";
    pub const START: &str = "start";
    pub const KEEP: &str = "keep";
    /// The step's standard normal draws `[B,C,H,W]` (zero at the last step).
    pub const NOISE: &str = "noise";
    /// 1 for images that take this step, 0 for those not started yet (`hold` = 1 − `run`).
    pub const RUN: &str = "run";
    pub const HOLD: &str = "hold";
    /// DDIM: √ᾱ_{k−1} and the ε weight; `noise_scale` is σ (DDIM) or the fixed DDPM std.
    pub const SQRT_AB_PREV: &str = "sqrt_alpha_bar_prev";
    pub const DIR: &str = "ddim_dir";
    pub const NOISE_SCALE: &str = "noise_scale";
    /// DDPM posterior mean coefficients c₀ (of x̂₀) and c_t (of x_t).
    pub const MEAN_C0: &str = "mean_c0";
    pub const MEAN_CT: &str = "mean_ct";
    /// Learned-range bounds log β_k and log β̃_k.
    pub const LOG_BETA: &str = "log_beta";
    pub const LOG_BETA_TILDE: &str = "log_beta_tilde";
    /// ζ for images guided at this step, else 0.
    pub const ZETA: &str = "zeta";
    /// ζ_σ, and per guidance 1/0 masks of the images whose σ_i is refined at this step.
    pub const ZETA_SIGMA: &str = "zeta_sigma";
    pub fn sigma_on(i: usize) -> String {
        format!("sigma_on{i}")
    }
    pub fn sigma_off(i: usize) -> String {
        format!("sigma_off{i}")
    }
}

/// What an in-graph scale map (DGSA) may read: the guidance images ŷ_i in the model's
/// [−1, 1] range, this step's x̂₀, the original step index `t [B]` and ᾱ_t `[B]`.
#[derive(Clone, Debug)]
pub struct ScaleInputs {
    pub guidance: Vec<NodeId>,
    pub x0: NodeId,
    pub t: NodeId,
    pub alpha_bar: NodeId,
}

/// A graph-building scale map: returns S_t `[B,C,H,W]` (Eq. 13).
pub type ScaleBuilder<'a> = Box<dyn FnOnce(&mut Graph, &ScaleInputs) -> Result<NodeId> + 'a>;

/// Which reverse step the device update performs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UpdateKind {
    Ddim,
    /// DDPM with a fixed std per image (`noise_scale`).
    DdpmFixed,
    /// DDPM with the learned-range std from the denoiser's channels C..2C.
    DdpmLearned,
}

/// The reverse step, guidance step and σ refinement as graph ops (the device step): x_t
/// and σ_i never leave the backend during a run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DeviceUpdate {
    pub kind: UpdateKind,
    /// σ_i are refined (ζ_σ > 0).
    pub refine_sigma: bool,
    /// The graph's clamp takes f32 bounds: σ_min / σ_max rounded to f32.
    pub sigma_min: f32,
    pub sigma_max: f32,
}

/// Everything `GuidedGraph::build_with` needs besides the denoiser.
#[derive(Clone, Copy, Debug)]
pub struct GraphOptions {
    pub num_guidance: usize,
    pub clip_x0: bool,
    pub fast_guidance: bool,
    /// `Some`: add the device step; `None`: the host does the update (the reference path).
    pub update: Option<DeviceUpdate>,
}

/// What a denoiser graph may read: the noisy image `x [B,C,H,W]`, the ORIGINAL step index
/// `t [B]` (as float) and `ᾱ_t [B]` (for analytic denoisers; a UNet ignores it).
#[derive(Clone, Copy, Debug)]
pub struct DenoiserInputs {
    pub x: NodeId,
    pub t: NodeId,
    pub alpha_bar: NodeId,
}

/// Node ids of the built graph.
#[derive(Clone, Debug)]
pub struct GuidedGraph {
    pub graph: Graph,
    pub shape: [usize; 4],
    /// Denoiser output `[B, C or 2C, H, W]`.
    pub model_out: NodeId,
    pub x0: NodeId,
    /// Per-guidance norms ‖ŷ_i − k_{σ_i} ⊛ x̂₀‖₂, each `[B]`.
    pub norms: Vec<NodeId>,
    /// Σ_i Σ_b w_{i,b}·norm_{i,b} (scalar), when there is guidance.
    pub loss: Option<NodeId>,
    /// ∂loss/∂x_t, or ∂loss/∂x̂₀ in fast mode.
    pub grad: Option<NodeId>,
    /// ∂norm_i/∂σ_i, each `[B]` (unweighted: Eq. 7 refines each σ_i on its own norm).
    pub dsigma: Vec<NodeId>,
    /// S_t of an in-graph scale map.
    pub scale: Option<NodeId>,
    /// Device step: x_{t−1} `[B,C,H,W]` (unchanged for images not started yet).
    pub x_next: Option<NodeId>,
    /// Device step: refined σ_i, each `[B]`.
    pub sigma_next: Vec<NodeId>,
}

impl GuidedGraph {
    pub fn outputs(&self) -> Vec<NodeId> {
        let mut v = vec![self.model_out, self.x0];
        v.extend(&self.norms);
        v.extend(self.loss);
        v.extend(self.grad);
        v.extend(&self.dsigma);
        v.extend(self.scale);
        v.extend(self.x_next);
        v.extend(&self.sigma_next);
        v
    }

    /// Builds the graph for `num_guidance` guidance images on images of `shape`, with the
    /// host doing the update.
    pub fn build<F>(
        shape: [usize; 4],
        num_guidance: usize,
        clip_x0: bool,
        fast_guidance: bool,
        denoiser: F,
    ) -> Result<Self>
    where
        F: FnOnce(&mut Graph, &DenoiserInputs) -> Result<NodeId>,
    {
        let opts = GraphOptions {
            num_guidance,
            clip_x0,
            fast_guidance,
            update: None,
        };
        Self::build_with(shape, &opts, denoiser, None)
    }

    /// Builds the step graph; with `opts.update` the whole step (reverse step, guidance
    /// step, σ refinement) is in it, and with `scale` S_t comes from graph ops.
    pub fn build_with<F>(
        shape: [usize; 4],
        opts: &GraphOptions,
        denoiser: F,
        scale: Option<ScaleBuilder>,
    ) -> Result<Self>
    where
        F: FnOnce(&mut Graph, &DenoiserInputs) -> Result<NodeId>,
    {
        let GraphOptions {
            num_guidance,
            clip_x0,
            fast_guidance,
            update,
        } = *opts;
        let [b, c, h, w] = shape;
        let mut g = Graph::new();
        let x_state = g.input(names::X, &shape);
        let t = g.input(names::T, &[b]);
        let alpha_bar = g.input(names::ALPHA_BAR, &[b]);
        // The denoiser's input. On the device, images starting at this step take x_init
        // (masks are exactly 0 or 1, so the other image passes through bit for bit).
        let x = match update {
            None => x_state,
            Some(_) => g.scope("start", |g| -> Result<NodeId> {
                let init = g.input(names::X_INIT, &shape);
                let start = per_image(g, names::START, b)?;
                let keep = per_image(g, names::KEEP, b)?;
                let a = g.mul(x_state, keep)?;
                let i = g.mul(init, start)?;
                g.add(a, i)
            })?,
        };
        let ins = DenoiserInputs { x, t, alpha_bar };
        let model_out = g.scope("denoiser", |g| denoiser(g, &ins))?;
        let out_shape = g.shape(model_out).to_vec();
        if out_shape.len() != 4
            || out_shape[0] != b
            || out_shape[2..] != [h, w]
            || (out_shape[1] != c && out_shape[1] != 2 * c)
        {
            return Err(crate::graph::GraphError::Other(format!(
                "denoiser output has shape {out_shape:?}; expected [{b}, {c} or {}, {h}, {w}]",
                2 * c
            )));
        }
        let (x0, recip) = g.scope("x0", |g| -> Result<(NodeId, (NodeId, NodeId))> {
            let eps = g.slice(model_out, 1, 0, c)?;
            let c1 = g.input(names::RECIP_SQRT_AB, &[b]);
            let c2 = g.input(names::RECIPM1_SQRT_AB, &[b]);
            let c1 = g.reshape(c1, &[b, 1, 1, 1])?;
            let c2 = g.reshape(c2, &[b, 1, 1, 1])?;
            let a = g.mul(x, c1)?;
            let e = g.mul(eps, c2)?;
            let raw = g.sub(a, e)?;
            let x0 = if clip_x0 {
                g.clamp(raw, -1.0, 1.0)?
            } else {
                raw
            };
            Ok((x0, (c1, c2)))
        })?;
        let mut gg = GuidedGraph {
            graph: Graph::new(),
            shape,
            model_out,
            x0,
            norms: vec![],
            loss: None,
            grad: None,
            dsigma: vec![],
            scale: None,
            x_next: None,
            sigma_next: vec![],
        };
        let mut ys = vec![];
        let mut sigmas = vec![];
        if num_guidance > 0 {
            // The guidance loss, its blurs and (through `grad`, which gives backward nodes
            // their forward node's mark) its gradient stay fp32 when the UNet runs bf16: the
            // residual ŷ − k_σ ⊛ x̂₀ is a small difference of two images, and its norm and
            // ∂/∂σ (Eq. 5, 7) would lose most of their digits to bf16 operands (2⁻⁹).
            let (loss, norm_sum) = g.with_precision(Precision::Fp32, |g| -> Result<_> {
                let mut weighted = vec![];
                for i in 0..num_guidance {
                    let n = g.scope(&format!("guide{i}"), |g| -> Result<_> {
                        let y = g.input(&names::y(i), &shape);
                        let s = g.input(&names::sigma(i), &[b]);
                        let wt = g.input(&names::weight(i), &[b]);
                        let blurred = g.gaussian_blur(x0, s)?;
                        let r = g.sub(y, blurred)?;
                        let n = g.l2_norm(r, &[1, 2, 3], false)?;
                        let wn = g.mul(n, wt)?;
                        Ok((y, n, s, wn))
                    })?;
                    let (y, n, s, wn) = (n.0, n.1, n.2, n.3);
                    ys.push(y);
                    gg.norms.push(n);
                    sigmas.push(s);
                    weighted.push(wn);
                }
                let loss = sum_nodes(g, &weighted)?;
                let loss = g.sum_all(loss)?;
                let norm_sum = sum_nodes(g, &gg.norms)?;
                Ok((loss, g.sum_all(norm_sum)?))
            })?;
            // Outside the fp32 scope: the UNet's backward nodes follow the UNet's own
            // (unmarked: the run's) precision.
            let one = g.fill(1.0, &[]);
            let wrt = if fast_guidance { x0 } else { x };
            gg.grad = Some(grad(&mut g, &[(loss, one)], &[wrt])?[0]);
            let one = g.fill(1.0, &[]);
            gg.dsigma = grad(&mut g, &[(norm_sum, one)], &sigmas)?;
            gg.loss = Some(loss);
        }
        if let Some(build_scale) = scale {
            let si = ScaleInputs {
                guidance: ys,
                x0,
                t,
                alpha_bar,
            };
            // DGSA stays fp32 under a bf16 UNet: S_t ∈ [0,1] scales the guidance gradient
            // per pixel (Eq. 13), so its rounding would become the step's rounding, and the
            // network is small next to the UNet, so fp32 costs little.
            let s = g.with_precision(Precision::Fp32, |g| {
                g.scope("scale", |g| build_scale(g, &si))
            })?;
            if g.shape(s) != shape {
                return Err(crate::graph::GraphError::Other(format!(
                    "scale map has shape {:?}; expected {shape:?}",
                    g.shape(s)
                )));
            }
            gg.scale = Some(s);
        }
        if let Some(up) = update {
            g.scope("update", |g| gg.add_update(g, &up, x, recip, &sigmas))?;
        }
        gg.graph = g;
        Ok(gg)
    }

    /// Appends the device step. Each line mirrors the host step (`step.rs`, `run.rs`) op for
    /// op with the same f64 coefficients, so on the f64 CPU backend both give the same bits.
    fn add_update(
        &mut self,
        g: &mut Graph,
        up: &DeviceUpdate,
        x: NodeId,
        (ra, rm1): (NodeId, NodeId),
        sigmas: &[NodeId],
    ) -> Result<()> {
        let [b, c, ..] = self.shape;
        let noise = g.input(names::NOISE, &self.shape);
        let x0 = self.x0;
        // x' (Eq. 6)
        let stepped = match up.kind {
            UpdateKind::Ddim => {
                let sqa = per_image(g, names::SQRT_AB_PREV, b)?;
                let dir = per_image(g, names::DIR, b)?;
                let sig = per_image(g, names::NOISE_SCALE, b)?;
                let e = g.mul(x, ra)?;
                let e = g.sub(e, x0)?;
                let eps = g.div(e, rm1)?;
                let m = g.mul(x0, sqa)?;
                let d = g.mul(eps, dir)?;
                let z = g.mul(noise, sig)?;
                let s = g.add(m, d)?;
                g.add(s, z)?
            }
            UpdateKind::DdpmFixed | UpdateKind::DdpmLearned => {
                let c0 = per_image(g, names::MEAN_C0, b)?;
                let ct = per_image(g, names::MEAN_CT, b)?;
                let m0 = g.mul(x0, c0)?;
                let mt = g.mul(x, ct)?;
                let mean = g.add(m0, mt)?;
                let z = if up.kind == UpdateKind::DdpmFixed {
                    let std = per_image(g, names::NOISE_SCALE, b)?;
                    g.mul(noise, std)?
                } else {
                    let v = g.slice(self.model_out, 1, c, c)?;
                    let max_log = per_image(g, names::LOG_BETA, b)?;
                    let min_log = per_image(g, names::LOG_BETA_TILDE, b)?;
                    // frac = (v + 1)/2; log σ² = frac·log β + (1 − frac)·log β̃
                    let frac = g.affine(v, 0.5, 0.5)?;
                    let one_minus = g.affine(frac, -1.0, 1.0)?;
                    let hi = g.mul(frac, max_log)?;
                    let lo = g.mul(one_minus, min_log)?;
                    let logvar = g.add(hi, lo)?;
                    let half = g.affine(logvar, 0.5, 0.0)?;
                    let std = g.unary(crate::graph::UnaryOp::Exp, half)?;
                    g.mul(std, noise)?
                };
                g.add(mean, z)?
            }
        };
        // x' − ζ·S ⊙ ∇ (Eq. 5/13); ζ is 0 for images no guidance acts on yet.
        let guided = match self.grad {
            Some(gr) => {
                let zeta = per_image(g, names::ZETA, b)?;
                let coef = match self.scale {
                    Some(s) => g.mul(s, zeta)?,
                    None => zeta,
                };
                let step = g.mul(gr, coef)?;
                g.sub(stepped, step)?
            }
            None => stepped,
        };
        let run = per_image(g, names::RUN, b)?;
        let hold = per_image(g, names::HOLD, b)?;
        let moved = g.mul(guided, run)?;
        let kept = g.mul(x, hold)?;
        self.x_next = Some(g.add(moved, kept)?);
        // σ_i ← clamp(σ_i − ζ_σ·∂norm_i/∂σ_i) where guidance i acts (Eq. 7).
        if up.refine_sigma {
            let zs = g.input(names::ZETA_SIGMA, &[b]);
            for (i, (&s, &d)) in sigmas.iter().zip(&self.dsigma).enumerate() {
                let on = g.input(&names::sigma_on(i), &[b]);
                let off = g.input(&names::sigma_off(i), &[b]);
                let step = g.mul(d, zs)?;
                let moved = g.sub(s, step)?;
                let moved = g.clamp(moved, up.sigma_min, up.sigma_max)?;
                let a = g.mul(moved, on)?;
                let k = g.mul(s, off)?;
                self.sigma_next.push(g.add(a, k)?);
            }
        }
        Ok(())
    }
}

/// A per-image `[B]` input broadcastable over `[B,C,H,W]`.
fn per_image(g: &mut Graph, name: &str, b: usize) -> Result<NodeId> {
    let v = g.input(name, &[b]);
    g.reshape(v, &[b, 1, 1, 1])
}

fn sum_nodes(g: &mut Graph, xs: &[NodeId]) -> Result<NodeId> {
    let mut acc = xs[0];
    for &x in &xs[1..] {
        acc = g.add(acc, x)?;
    }
    Ok(acc)
}
