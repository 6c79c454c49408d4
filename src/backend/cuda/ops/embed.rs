//! `kernels/embed.cu`: the sinusoidal timestep embedding.

use super::{grid1, i64of, OpArgs};
use crate::backend::cuda::abi::TimestepEmbedding;
use crate::backend::BResult;

pub(super) fn timestep_embedding(a: &OpArgs, dim: usize, max_period: f32) -> BResult<()> {
    let b = a.s(0)[0];
    if a.n() == 0 {
        return Ok(());
    }
    TimestepEmbedding {
        t: a.x(0),
        y: a.y(),
        batch: i64of(b),
        dim: i64of(dim),
        log_max_period: (max_period as f64).ln(),
    }
    .launch(a.be, grid1(b * dim / 2))
}
