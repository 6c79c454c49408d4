//! `kernels/attention.cu`: row softmax (forward, backward) and the fused attention kernel.

use super::{i64of, OpArgs};
use crate::backend::cuda::abi::{
    AttentionFwdD64, DevMut, DevPtr, Grid, Launcher, SoftmaxBwd, SoftmaxFwd,
};
use crate::backend::{BResult, BackendError};
use crate::tensor::numel;

/// (rows, row length) of input 0, and the grid of one warp per row.
fn rows(a: &OpArgs) -> (usize, usize, Grid) {
    let d = *a.s(0).last().unwrap();
    let rows = numel(a.s(0)) / d.max(1);
    (rows, d, super::grid_x(rows.div_ceil(8), 256))
}

pub(super) fn softmax(a: &OpArgs) -> BResult<()> {
    let (r, d, grid) = rows(a);
    SoftmaxFwd {
        x: a.x(0),
        y: a.y(),
        rows: i64of(r),
        d: i64of(d),
    }
    .launch(a.be, grid)
}

pub(super) fn softmax_backward(a: &OpArgs) -> BResult<()> {
    let (r, d, grid) = rows(a);
    SoftmaxBwd {
        y: a.x(0),
        dy: a.x(1),
        dx: a.y(),
        rows: i64of(r),
        d: i64of(d),
    }
    .launch(a.be, grid)
}

/// Fused attention for head width 64: out = softmax(scale·q·kᵀ)·v, q [b, l, 64], k and v
/// [b, s, 64].
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_attention(
    be: &dyn Launcher,
    q: DevPtr<f32>,
    k: DevPtr<f32>,
    v: DevPtr<f32>,
    out: DevMut<f32>,
    (b, l, s): (usize, usize, usize),
    scale: f32,
) -> BResult<()> {
    if b > 65535 {
        return Err(BackendError::Unsupported(format!(
            "fused attention over {b} (> 65535) batches"
        )));
    }
    if s == 0 {
        return Err(BackendError::Unsupported(
            "fused attention with no keys".into(),
        ));
    }
    let grid = Grid {
        blocks: (l.div_ceil(64) as u32, b as u32, 1),
        threads: 256,
    };
    AttentionFwdD64 {
        q,
        k,
        v,
        out,
        l: i64of(l),
        s: i64of(s),
        scale,
    }
    .launch(be, grid)
}
