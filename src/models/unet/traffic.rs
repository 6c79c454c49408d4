//! Global-memory traffic read off a graph: bytes each executed op reads and writes, under
//! the pass structure of the CUDA kernels (`kernels/*.cu`). It exists to count what fusing
//! GroupNorm32 → (scale-shift) → SiLU removes, so it is exact where the two variants differ
//! (norms and element-wise ops) and a shared lower bound elsewhere: a convolution or matrix
//! product counts each operand once (its tile re-reads hit the same in both variants).

use super::config::UNetConfig;
use super::model::build_unet;
use super::resblock::resblock;
use crate::graph::autodiff::grad;
use crate::graph::{rewrite, Graph, NodeId, Op, Result};
use crate::tensor::numel;

/// Bytes of one element (the kernels compute in fp32).
const ELEM: u64 = 4;

/// Elements node `i` reads and writes. Each input is read once and the output written once,
/// except for the norms, whose kernels make extra passes over x (and dy):
/// `group_norm_fwd` 2 statistics passes + 1; `group_norm_bwd` 2 + 1 (the two means) + 1 for x
/// and 2 for dy; `row_stats_block` + `group_norm_bwd_gamma` 2 + 1 for x; the fused
/// `group_norm_silu_fwd` 1 + 1; `group_norm_silu_bwd` 1 + 1 + 1 for x and 2 for dy.
pub fn node_elements(g: &Graph, i: usize) -> u64 {
    let node = &g.nodes[i];
    let size = |k: usize| numel(g.shape(node.inputs[k])) as u64;
    let out = numel(&node.shape) as u64;
    let all_once: u64 = (0..node.inputs.len()).map(size).sum::<u64>() + out;
    match &node.op {
        Op::Input { .. } | Op::Const { .. } | Op::Reshape { .. } => 0,
        Op::Fill { .. } => out,
        Op::GroupNorm { .. } | Op::LayerNorm { .. } => all_once + 2 * size(0),
        Op::GroupNormBackward { .. } | Op::LayerNormBackward { .. } => {
            all_once + 3 * size(0) + size(2)
        }
        Op::GroupNormBackwardGamma { .. } | Op::LayerNormBackwardGamma { .. } => {
            all_once + 2 * size(0)
        }
        Op::GroupNormSilu { .. } => all_once + size(0),
        Op::GroupNormSiluBackward { scale_shift, .. } => {
            let dy = if *scale_shift { 5 } else { 3 };
            all_once + 2 * size(0) + size(dy)
        }
        _ => all_once,
    }
}

/// Bytes read and written by the nodes with index in `range` that `outputs` depend on.
pub fn traffic_bytes(g: &Graph, outputs: &[NodeId], range: std::ops::Range<usize>) -> u64 {
    let mut needed = vec![false; g.len()];
    for o in outputs {
        needed[o.0] = true;
    }
    let mut total = 0;
    for i in (0..g.len()).rev() {
        if !needed[i] {
            continue;
        }
        for j in &g.nodes[i].inputs {
            needed[j.0] = true;
        }
        if range.contains(&i) {
            total += node_elements(g, i) * ELEM;
        }
    }
    total
}

/// Forward and input-gradient traffic of one graph, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Traffic {
    pub forward: u64,
    /// The backward pass of ∂/∂x only, as DPS sampling asks (no weight gradients).
    pub backward: u64,
}

/// Traffic of `f(x)` and of its VJP with respect to x alone (cotangent an input); `fused`:
/// after the rewrite passes (every fusion accepted), as a backend that supports them runs it.
fn fwd_and_grad(g: &mut Graph, x: NodeId, y: NodeId, fused: bool) -> Result<Traffic> {
    let n_fwd = g.len();
    let shape = g.shape(y).to_vec();
    let ct = g.input("cotangent", &shape);
    let dx = grad(g, &[(y, ct)], &[x])?[0];
    if fused {
        rewrite::fuse(g, &[y, dx], &|_, _| true);
    }
    Ok(Traffic {
        forward: traffic_bytes(g, &[y], 0..n_fwd),
        backward: traffic_bytes(g, &[dx], n_fwd..g.len()),
    })
}

/// One res block of `cfg` at `level` (input and output width of that level, its feature size,
/// batch `batch`, no resampling).
pub fn res_block_traffic(
    cfg: &UNetConfig,
    level: usize,
    batch: usize,
    fused: bool,
) -> Result<Traffic> {
    let (c, size) = (cfg.width(level), cfg.level_sizes()[level]);
    let emb_dim = 4 * cfg.model_channels;
    let mut g = Graph::new();
    let x = g.input("x", &[batch, c, size, size]);
    let emb = g.input("emb_act", &[batch, emb_dim]);
    let y = resblock(&mut g, cfg, "block", x, emb, c, None)?;
    fwd_and_grad(&mut g, x, y, fused)
}

/// The whole UNet: forward to ε and the gradient with respect to the noisy image.
pub fn unet_traffic(cfg: &UNetConfig, batch: usize, fused: bool) -> Result<Traffic> {
    let mut g = Graph::new();
    let s = cfg.image_size;
    let x = g.input("x", &[batch, cfg.in_channels, s, s]);
    let t = g.input("t", &[batch]);
    let y = build_unet(&mut g, cfg, x, t)?;
    fwd_and_grad(&mut g, x, y, fused)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The counts of the op kinds the fusion replaces, by hand, on a tiny graph.
    #[test]
    fn counts_norm_passes() {
        let mut g = Graph::new();
        let x = g.input("x", &[1, 4, 2, 2]); // 16 elements
        let ga = g.constant("gamma", &[4]);
        let be = g.constant("beta", &[4]);
        let s = g.input("scale", &[1, 4]);
        let t = g.input("shift", &[1, 4]);
        let gn = g.group_norm(x, ga, be, 2, 1e-5).unwrap();
        let fused = g.group_norm_silu(x, ga, be, Some((s, t)), 2, 1e-5).unwrap();
        // GN: x 3×, γ, β, y: 48 + 8 + 16; fused: x 2×, γ, β, scale, shift, y.
        assert_eq!(node_elements(&g, gn.0), 72);
        assert_eq!(node_elements(&g, fused.0), 32 + 8 + 8 + 16);
        let n = g.len();
        let ct = g.input("ct", &[1, 4, 2, 2]);
        let dx = grad(&mut g, &[(fused, ct)], &[x]).unwrap()[0];
        // x 3×, γ, β, scale, shift, dy 2×, dx.
        assert_eq!(
            traffic_bytes(&g, &[dx], n..g.len()),
            4 * (48 + 8 + 8 + 32 + 16)
        );
        assert_eq!(traffic_bytes(&g, &[fused], 0..n), 4 * 64);
    }

    /// At FFHQ-512 shapes (batch 1), the fused build moves 10 activation-sized passes fewer
    /// per scale-shift res block, forward and backward each; prints the table for the report.
    #[test]
    fn fusion_removes_memory_passes_at_ffhq512() {
        let cfg = UNetConfig::ffhq512();
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!("res block traffic, FFHQ-512, batch 1 (MiB: unfused → fused)");
        for level in 0..cfg.levels() {
            let (a, b) = (
                res_block_traffic(&cfg, level, 1, false).unwrap(),
                res_block_traffic(&cfg, level, 1, true).unwrap(),
            );
            let act = (cfg.width(level) * cfg.level_sizes()[level].pow(2)) as u64 * ELEM;
            println!(
                "level {level} ({}², {} ch): fwd {:.1} → {:.1}, bwd {:.1} → {:.1}",
                cfg.level_sizes()[level],
                cfg.width(level),
                mib(a.forward),
                mib(b.forward),
                mib(a.backward),
                mib(b.backward)
            );
            // in_layers 6 → 3 passes, out_layers 10 → 3 (forward); 10 → 6 and 12 → 6
            // (backward); besides, a few per-(image, channel) vectors (the 1 + scale).
            let small = 16 * cfg.width(level) as i64 * ELEM as i64;
            for (what, saved) in [
                ("forward", a.forward as i64 - b.forward as i64),
                ("backward", a.backward as i64 - b.backward as i64),
            ] {
                let off = saved - 10 * act as i64;
                assert!(off.abs() <= small, "level {level} {what}: saved {saved} B");
            }
        }
        let (a, b) = (
            unet_traffic(&cfg, 1, false).unwrap(),
            unet_traffic(&cfg, 1, true).unwrap(),
        );
        println!(
            "whole UNet: fwd {:.0} → {:.0} MiB ({:.1}% less), bwd {:.0} → {:.0} MiB ({:.1}% less)",
            mib(a.forward),
            mib(b.forward),
            100.0 * (1.0 - b.forward as f64 / a.forward as f64),
            mib(a.backward),
            mib(b.backward),
            100.0 * (1.0 - b.backward as f64 / a.backward as f64)
        );
        assert!(b.forward < a.forward && b.backward < a.backward);
    }
}
