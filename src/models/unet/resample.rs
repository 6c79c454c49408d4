//! guided-diffusion's Downsample / Upsample. With a conv (`conv_resample`), down is a 3×3
//! stride-2 conv (`op`) and up is nearest ×2 followed by a 3×3 conv (`conv`); without, they
//! are 2×2 average pooling and nearest ×2 (also the parameter-free `h_upd`/`x_upd` of
//! up/down ResBlocks).

use super::layers::{conv, key};
use crate::graph::{Graph, NodeId, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Resample {
    Down,
    Up,
}

/// Parameter-free resampling.
pub fn resample_plain(g: &mut Graph, x: NodeId, dir: Resample) -> Result<NodeId> {
    match dir {
        Resample::Down => g.avg_pool2x(x),
        Resample::Up => g.upsample2x(x),
    }
}

/// The `Downsample`/`Upsample` module at `prefix` (channel count unchanged).
pub fn resample_block(
    g: &mut Graph,
    prefix: &str,
    x: NodeId,
    dir: Resample,
    with_conv: bool,
) -> Result<NodeId> {
    let ch = g.shape(x)[1];
    match (dir, with_conv) {
        (Resample::Down, true) => g.scope("down", |g| conv(g, &key(prefix, "op"), x, ch, 3, 2)),
        (Resample::Up, true) => g.scope("up", |g| {
            let u = g.upsample2x(x)?;
            conv(g, &key(prefix, "conv"), u, ch, 3, 1)
        }),
        (dir, false) => resample_plain(g, x, dir),
    }
}
