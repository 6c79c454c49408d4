//! `kernels/norm.cu`: group norm, layer norm, their gradients, and the fused
//! GroupNorm → [FiLM] → SiLU.

use super::{grid1, grid_x, i64of, OpArgs};
use crate::backend::cuda::abi::{
    DevPtr, GroupNormBwd, GroupNormBwdGamma, GroupNormFwd, GroupNormSiluBwd, GroupNormSiluFwd,
    LayerNormBwd, LayerNormBwdGamma, LayerNormFwd, RowStats, RowStatsKernel, RowStatsWarp,
};
use crate::backend::{BResult, BackendError};
use crate::tensor::numel;

/// (images, channels, spatial size) of input 0, [N, C, ...].
fn ncs(a: &OpArgs) -> (usize, usize, usize) {
    let s = a.s(0);
    (s[0], s[1], s[2..].iter().product())
}

/// Group norm (`backward`: its input gradient): one block of 512 per (image, group).
pub(super) fn group_norm(a: &OpArgs, groups: usize, eps: f32, backward: bool) -> BResult<()> {
    let (n, c, spatial) = ncs(a);
    let grid = grid_x(n * groups, 512);
    let (groups, cg, spatial) = (i64of(groups), i64of(c / groups), i64of(spatial));
    if backward {
        GroupNormBwd {
            x: a.x(0),
            gamma: a.x(1),
            dy: a.x(2),
            dx: a.y(),
            groups,
            cg,
            spatial,
            eps,
        }
        .launch(a.be, grid)
    } else {
        GroupNormFwd {
            x: a.x(0),
            gamma: a.x(1),
            beta: a.x(2),
            y: a.y(),
            groups,
            cg,
            spatial,
            eps,
        }
        .launch(a.be, grid)
    }
}

/// Scratch of the group statistics (mean, 1/σ per image and group) of input `x`.
pub(super) fn group_stats_len(x: &[usize], groups: usize) -> usize {
    x[0] * groups * 2
}

/// Scratch of the row statistics (mean, 1/σ per row) of input `x`.
pub(super) fn row_stats_len(x: &[usize]) -> usize {
    let d = *x.last().unwrap();
    numel(x) / d.max(1) * 2
}

pub(super) fn group_norm_backward_gamma(a: &OpArgs, groups: usize, eps: f32) -> BResult<()> {
    let (n, c, spatial) = ncs(a);
    let rows = n * groups;
    let stats = a.scratch(group_stats_len(a.s(0), groups))?;
    RowStats {
        x: a.x(0),
        stats,
        len: i64of(c / groups * spatial),
        eps,
    }
    .launch(a.be, RowStatsKernel::row_stats_block, grid_x(rows, 512))?;
    GroupNormBwdGamma {
        x: a.x(0),
        dy: a.x(1),
        stats: stats.input(),
        dgamma: a.y(),
        n: i64of(n),
        c: i64of(c),
        groups: i64of(groups),
        spatial: i64of(spatial),
    }
    .launch(a.be, grid_x(c, 256))
}

/// GroupNorm → [FiLM scale-shift] → SiLU (`backward`: its input gradient), one block of 512
/// per (image, group).
pub(super) fn group_norm_silu(
    a: &OpArgs,
    groups: usize,
    eps: f32,
    scale_shift: bool,
    backward: bool,
) -> BResult<()> {
    let (n, c, spatial) = ncs(a);
    let cg = c / groups;
    if cg * spatial > u32::MAX as usize {
        return Err(BackendError::Unsupported(format!(
            "group norm + SiLU: a group of {} values exceeds the kernel's 32-bit index",
            cg * spatial
        )));
    }
    if a.n() == 0 {
        return Ok(());
    }
    // Without scale-shift the kernel never reads these pointers.
    let (scale, shift) = if scale_shift {
        (a.x(3), a.x(4))
    } else {
        (DevPtr::null(), DevPtr::null())
    };
    let grid = grid_x(n * groups, 512);
    let (has_ss, groups, cg, spatial) =
        (scale_shift as i32, i64of(groups), i64of(cg), i64of(spatial));
    if backward {
        GroupNormSiluBwd {
            x: a.x(0),
            gamma: a.x(1),
            beta: a.x(2),
            scale,
            shift,
            dy: a.x(if scale_shift { 5 } else { 3 }),
            dx: a.y(),
            groups,
            cg,
            spatial,
            has_ss,
            eps,
        }
        .launch(a.be, grid)
    } else {
        GroupNormSiluFwd {
            x: a.x(0),
            gamma: a.x(1),
            beta: a.x(2),
            scale,
            shift,
            y: a.y(),
            groups,
            cg,
            spatial,
            has_ss,
            eps,
        }
        .launch(a.be, grid)
    }
}

/// (rows, row length) of input 0 (norm over the last axis).
fn rows(a: &OpArgs) -> (usize, usize) {
    let d = *a.s(0).last().unwrap();
    (numel(a.s(0)) / d.max(1), d)
}

/// Layer norm (`backward`: its input gradient), one warp per row.
pub(super) fn layer_norm(a: &OpArgs, eps: f32, backward: bool) -> BResult<()> {
    let (r, d) = rows(a);
    let grid = grid_x(r.div_ceil(8), 256);
    let (rows, d) = (i64of(r), i64of(d));
    if backward {
        LayerNormBwd {
            x: a.x(0),
            gamma: a.x(1),
            dy: a.x(2),
            dx: a.y(),
            rows,
            d,
            eps,
        }
        .launch(a.be, grid)
    } else {
        LayerNormFwd {
            x: a.x(0),
            gamma: a.x(1),
            beta: a.x(2),
            y: a.y(),
            rows,
            d,
            eps,
        }
        .launch(a.be, grid)
    }
}

pub(super) fn layer_norm_backward_gamma(a: &OpArgs, eps: f32) -> BResult<()> {
    let (r, d) = rows(a);
    let stats = a.scratch(row_stats_len(a.s(0)))?;
    RowStatsWarp {
        x: a.x(0),
        stats,
        rows: i64of(r),
        d: i64of(d),
        eps,
    }
    .launch(a.be, grid_x(r.div_ceil(8), 256))?;
    LayerNormBwdGamma {
        x: a.x(0),
        dy: a.x(1),
        stats: stats.input(),
        dgamma: a.y(),
        rows: i64of(r),
        d: i64of(d),
    }
    .launch(a.be, grid1(d))
}
