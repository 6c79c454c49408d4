//! DGSA, the dynamic guidance scaling adjuster (paper Table 5): concat(ŷ, x̂₀) → conv 6→64,
//! ELU → conv 64→64, ELU → conv 64→3, clamped to [0, 1]. **choice** (METHOD.md §5): the
//! timestep enters as a sinusoidal embedding → Linear, added per channel after the first conv.

use crate::graph::{Graph, NodeId, Result};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DgsaConfig {
    pub width: usize,
    pub emb_dim: usize,
    pub elu_alpha: f32,
}

impl Default for DgsaConfig {
    fn default() -> Self {
        DgsaConfig {
            width: 64,
            emb_dim: 64,
            elu_alpha: 1.0,
        }
    }
}

pub fn checkpoint_spec(cfg: &DgsaConfig) -> Vec<(String, Vec<usize>)> {
    let w = cfg.width;
    vec![
        ("conv1.weight".into(), vec![w, 6, 3, 3]),
        ("conv1.bias".into(), vec![w]),
        ("time_embed.weight".into(), vec![w, cfg.emb_dim]),
        ("time_embed.bias".into(), vec![w]),
        ("conv2.weight".into(), vec![w, w, 3, 3]),
        ("conv2.bias".into(), vec![w]),
        ("conv3.weight".into(), vec![3, w, 3, 3]),
        ("conv3.bias".into(), vec![3]),
    ]
}

/// S `[B, 3, H, W]` ∈ [0, 1] from guidance `y` and the current estimate `x0` (both
/// `[B, 3, H, W]`) at timesteps `t` `[B]`.
pub fn build(
    g: &mut Graph,
    cfg: &DgsaConfig,
    y: NodeId,
    x0: NodeId,
    t: NodeId,
    prefix: &str,
) -> Result<NodeId> {
    let k = |s: &str| format!("{prefix}{s}");
    let w = cfg.width;
    let b = g.shape(y)[0];
    let inp = g.concat(&[y, x0], 1)?;
    let w1 = g.constant(&k("conv1.weight"), &[w, 6, 3, 3]);
    let b1 = g.constant(&k("conv1.bias"), &[w]);
    let h = g.conv2d(inp, w1, Some(b1), 1, 1, 1)?;
    let emb = g.timestep_embedding(t, cfg.emb_dim)?;
    let we = g.constant(&k("time_embed.weight"), &[w, cfg.emb_dim]);
    let be = g.constant(&k("time_embed.bias"), &[w]);
    let e = g.linear(emb, we, Some(be))?;
    let e = g.reshape(e, &[b, w, 1, 1])?;
    let h = g.add(h, e)?;
    let h = g.elu(h, cfg.elu_alpha)?;
    let w2 = g.constant(&k("conv2.weight"), &[w, w, 3, 3]);
    let b2 = g.constant(&k("conv2.bias"), &[w]);
    let h = g.conv2d(h, w2, Some(b2), 1, 1, 1)?;
    let h = g.elu(h, cfg.elu_alpha)?;
    let w3 = g.constant(&k("conv3.weight"), &[3, w, 3, 3]);
    let b3 = g.constant(&k("conv3.bias"), &[3]);
    let s = g.conv2d(h, w3, Some(b3), 1, 1, 1)?;
    g.clamp(s, 0.0, 1.0)
}
