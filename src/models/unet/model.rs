//! The whole ADM UNet as graph nodes: timestep embedding, encoder (input_blocks), middle
//! block, decoder (output_blocks) with skip concatenation, output head. Module indices and
//! weight names follow guided-diffusion's `UNetModel` exactly, so the state dict of
//! DifFace's FFHQ 512 model (less its `module.` prefix) binds by name.

use super::attention::attention_block;
use super::config::UNetConfig;
use super::layers::{conv, linear, norm_act};
use super::resample::{resample_block, Resample};
use super::resblock::resblock;
use crate::graph::{Graph, GraphError, NodeId, Result};
use crate::tensor::numel;

/// Appends the UNet to `g`: `x [B, in_channels, H, W]`, `t [B]` (timesteps as raw step
/// indices) → `[B, out_channels, H, W]`. H and W must be divisible by 2^(levels−1); the
/// attention placement follows `cfg.image_size` whatever H and W are.
pub fn build_unet(g: &mut Graph, cfg: &UNetConfig, x: NodeId, t: NodeId) -> Result<NodeId> {
    cfg.validate()
        .map_err(|e| GraphError::Other(e.to_string()))?;
    check_inputs(g, cfg, x, t)?;

    let emb = g.scope("time_embed", |g| -> Result<NodeId> {
        let te = g.timestep_embedding(t, cfg.model_channels)?;
        let e = linear(g, "time_embed.0", te, cfg.emb_dim())?;
        let e = g.silu(e)?;
        linear(g, "time_embed.2", e, cfg.emb_dim())
    })?;
    let emb_act = g.silu(emb)?;

    let levels = cfg.levels();
    let mut skips: Vec<NodeId> = vec![];
    let mut blk = 0usize;
    let mut h = conv(g, "input_blocks.0.0", x, cfg.width(0), 3, 1)?;
    skips.push(h);
    blk += 1;
    let mut size = cfg.image_size;
    for level in 0..levels {
        for _ in 0..cfg.num_res_blocks[level] {
            let p = format!("input_blocks.{blk}");
            h = resblock(
                g,
                cfg,
                &format!("{p}.0"),
                h,
                emb_act,
                cfg.width(level),
                None,
            )?;
            if cfg.has_attention(size) {
                h = attention_block(g, cfg, &format!("{p}.1"), h, false)?;
            }
            skips.push(h);
            blk += 1;
        }
        if level != levels - 1 {
            let p = format!("input_blocks.{blk}.0");
            let ch = g.shape(h)[1];
            h = if cfg.resblock_updown {
                resblock(g, cfg, &p, h, emb_act, ch, Some(Resample::Down))?
            } else {
                resample_block(g, &p, h, Resample::Down, cfg.conv_resample)?
            };
            skips.push(h);
            blk += 1;
            size /= 2;
        }
    }

    let ch = g.shape(h)[1];
    h = resblock(g, cfg, "middle_block.0", h, emb_act, ch, None)?;
    h = attention_block(g, cfg, "middle_block.1", h, false)?;
    h = resblock(g, cfg, "middle_block.2", h, emb_act, ch, None)?;

    let mut blk = 0usize;
    for level in (0..levels).rev() {
        let n = cfg.num_res_blocks[level];
        for i in 0..=n {
            let p = format!("output_blocks.{blk}");
            let skip = skips.pop().ok_or_else(|| {
                GraphError::Other("UNet wiring: skip stack ran out (internal error)".into())
            })?;
            let cat = g.concat(&[h, skip], 1)?;
            h = resblock(
                g,
                cfg,
                &format!("{p}.0"),
                cat,
                emb_act,
                cfg.width(level),
                None,
            )?;
            let mut m = 1;
            if cfg.has_attention(size) {
                h = attention_block(g, cfg, &format!("{p}.{m}"), h, true)?;
                m += 1;
            }
            if level > 0 && i == n {
                let q = format!("{p}.{m}");
                let ch = g.shape(h)[1];
                h = if cfg.resblock_updown {
                    resblock(g, cfg, &q, h, emb_act, ch, Some(Resample::Up))?
                } else {
                    resample_block(g, &q, h, Resample::Up, cfg.conv_resample)?
                };
                size *= 2;
            }
            blk += 1;
        }
    }

    g.scope("out", |g| {
        let h = norm_act(g, "out.0", h, None)?;
        conv(g, "out.2", h, cfg.out_channels, 3, 1)
    })
}

fn check_inputs(g: &Graph, cfg: &UNetConfig, x: NodeId, t: NodeId) -> Result<()> {
    let xs = g.shape(x).to_vec();
    let ts = g.shape(t).to_vec();
    let factor = 1usize << (cfg.levels() - 1);
    let ok_x = xs.len() == 4
        && xs[1] == cfg.in_channels
        && xs[2].is_multiple_of(factor)
        && xs[3].is_multiple_of(factor)
        && xs[2] > 0
        && xs[3] > 0;
    if !ok_x {
        return Err(GraphError::Other(format!(
            "UNet input x has shape {xs:?}; expected [B, {}, H, W] with H, W positive multiples of {factor}",
            cfg.in_channels
        )));
    }
    if ts != [xs[0]] {
        return Err(GraphError::Other(format!(
            "UNet timesteps t have shape {ts:?}; expected [{}] (one per image)",
            xs[0]
        )));
    }
    Ok(())
}

/// The weight list (checkpoint key, shape) in the reference's state-dict order.
pub fn unet_spec(cfg: &UNetConfig) -> Result<Vec<(String, Vec<usize>)>> {
    let mut g = Graph::new();
    // Weights do not depend on the spatial size: build at the smallest valid one.
    let s = 1usize << (cfg.levels() - 1);
    let x = g.input("x", &[1, cfg.in_channels, s, s]);
    let t = g.input("t", &[1]);
    build_unet(&mut g, cfg, x, t)?;
    Ok(g.constants())
}

/// Number of scalar parameters of a weight list.
pub fn parameter_count(spec: &[(String, Vec<usize>)]) -> usize {
    spec.iter().map(|(_, s)| numel(s)).sum()
}

/// A built UNet graph with its named inputs: `x`, `t`, and with a gradient, `cotangent`.
pub struct UNetGraph {
    pub graph: Graph,
    pub x: NodeId,
    pub t: NodeId,
    pub out: NodeId,
    /// The input gradient ⟨out, cotangent⟩/∂x, when built with one.
    pub grad_x: Option<NodeId>,
}

impl UNetGraph {
    /// The UNet on a `[batch, in_channels, height, width]` input; `with_grad` appends the
    /// reverse pass for ∂⟨out, cotangent⟩/∂x with `cotangent` a graph input.
    pub fn new(
        cfg: &UNetConfig,
        batch: usize,
        height: usize,
        width: usize,
        with_grad: bool,
    ) -> Result<Self> {
        let mut g = Graph::new();
        let x = g.input("x", &[batch, cfg.in_channels, height, width]);
        let t = g.input("t", &[batch]);
        let out = build_unet(&mut g, cfg, x, t)?;
        let grad_x = if with_grad {
            let shape = g.shape(out).to_vec();
            let cot = g.input("cotangent", &shape);
            Some(crate::graph::autodiff::grad(&mut g, &[(out, cot)], &[x])?[0])
        } else {
            None
        };
        Ok(UNetGraph {
            graph: g,
            x,
            t,
            out,
            grad_x,
        })
    }

    /// The nodes to compute: the output, then the gradient if any.
    pub fn outputs(&self) -> Vec<NodeId> {
        std::iter::once(self.out).chain(self.grad_x).collect()
    }
}
