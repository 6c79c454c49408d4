//! The one graph the sampler runs at every step: denoiser → ε → x̂₀ → blurs → weighted
//! guidance loss → gradients. Everything that changes between steps (timestep, schedule
//! coefficients, guidance images, σ_i, weights) is a graph input, so the graph is built,
//! planned and bound once.

use crate::graph::{autodiff::grad, Graph, NodeId, Result};

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
}

impl GuidedGraph {
    pub fn outputs(&self) -> Vec<NodeId> {
        let mut v = vec![self.model_out, self.x0];
        v.extend(&self.norms);
        v.extend(self.loss);
        v.extend(self.grad);
        v.extend(&self.dsigma);
        v
    }

    /// Builds the graph for `num_guidance` guidance images on images of `shape`.
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
        let [b, c, h, w] = shape;
        let mut g = Graph::new();
        let x = g.input(names::X, &shape);
        let t = g.input(names::T, &[b]);
        let alpha_bar = g.input(names::ALPHA_BAR, &[b]);
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
        let x0 = g.scope("x0", |g| -> Result<NodeId> {
            let eps = g.slice(model_out, 1, 0, c)?;
            let c1 = g.input(names::RECIP_SQRT_AB, &[b]);
            let c2 = g.input(names::RECIPM1_SQRT_AB, &[b]);
            let c1 = g.reshape(c1, &[b, 1, 1, 1])?;
            let c2 = g.reshape(c2, &[b, 1, 1, 1])?;
            let a = g.mul(x, c1)?;
            let e = g.mul(eps, c2)?;
            let raw = g.sub(a, e)?;
            if clip_x0 {
                g.clamp(raw, -1.0, 1.0)
            } else {
                Ok(raw)
            }
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
        };
        if num_guidance > 0 {
            let mut sigmas = vec![];
            let mut weighted = vec![];
            for i in 0..num_guidance {
                let (n, s, wn) = g.scope(&format!("guide{i}"), |g| -> Result<_> {
                    let y = g.input(&names::y(i), &shape);
                    let s = g.input(&names::sigma(i), &[b]);
                    let wt = g.input(&names::weight(i), &[b]);
                    let blurred = g.gaussian_blur(x0, s)?;
                    let r = g.sub(y, blurred)?;
                    let n = g.l2_norm(r, &[1, 2, 3], false)?;
                    let wn = g.mul(n, wt)?;
                    Ok((n, s, wn))
                })?;
                gg.norms.push(n);
                sigmas.push(s);
                weighted.push(wn);
            }
            let loss = sum_nodes(&mut g, &weighted)?;
            let loss = g.sum_all(loss)?;
            let norm_sum = sum_nodes(&mut g, &gg.norms)?;
            let norm_sum = g.sum_all(norm_sum)?;
            let one = g.fill(1.0, &[]);
            let wrt = if fast_guidance { x0 } else { x };
            gg.grad = Some(grad(&mut g, &[(loss, one)], &[wrt])?[0]);
            let one = g.fill(1.0, &[]);
            gg.dsigma = grad(&mut g, &[(norm_sum, one)], &sigmas)?;
            gg.loss = Some(loss);
        }
        gg.graph = g;
        Ok(gg)
    }
}

fn sum_nodes(g: &mut Graph, xs: &[NodeId]) -> Result<NodeId> {
    let mut acc = xs[0];
    for &x in &xs[1..] {
        acc = g.add(acc, x)?;
    }
    Ok(acc)
}
