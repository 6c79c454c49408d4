//! `kernels/blur.cu`: the Gaussian blur with one σ per image, its adjoint and ∂/∂σ, as
//! separable passes (rows, then columns).

use super::{grid1, i64of, OpArgs};
use crate::backend::cuda::abi::{BlurMode, BlurPass, DevMut, DevPtr, DotFinish, DotPartials, Grid};
use crate::backend::{BResult, BackendError};
use crate::tensor::numel;

/// The axis a pass runs along: rows (along W) or columns (along H).
#[derive(Clone, Copy)]
enum Axis {
    Rows = 0,
    Columns = 1,
}

/// One 1-D pass of `mode` along `axis` over the [B, C, H, W] planes of `s`, into `dst`
/// (added to it when `accumulate`).
#[allow(clippy::too_many_arguments)]
fn pass(
    a: &OpArgs,
    src: DevPtr<f32>,
    dst: DevMut<f32>,
    s: &[usize],
    axis: Axis,
    mode: BlurMode,
    accumulate: bool,
) -> BResult<()> {
    let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
    let planes = b * c;
    if planes == 0 || h * w == 0 {
        return Ok(());
    }
    if planes > 65535 {
        return Err(BackendError::Unsupported(format!(
            "blur over {planes} planes (> 65535) in one launch"
        )));
    }
    let grid = Grid {
        blocks: (
            (h * w).div_ceil(256).clamp(1, 1024) as u32,
            planes as u32,
            1,
        ),
        threads: 256,
    };
    BlurPass {
        in_: src,
        out: dst,
        sigma: a.x(1),
        c: i64of(c),
        h: i64of(h),
        w: i64of(w),
        axis: axis as i32,
        mode,
        accumulate: accumulate as i32,
    }
    .launch(a.be, grid)
}

/// Two passes of `mode` through a scratch image: `first` axis, then the other.
fn separable(a: &OpArgs, first: Axis, mode: BlurMode) -> BResult<()> {
    let (ys, n) = (a.ys(), a.n());
    let t = a.scratch(n)?;
    let second = match first {
        Axis::Rows => Axis::Columns,
        Axis::Columns => Axis::Rows,
    };
    pass(a, a.x(0), t, ys, first, mode, false)?;
    pass(a, t.input(), a.y(), ys, second, mode, false)
}

pub(super) fn blur(a: &OpArgs) -> BResult<()> {
    separable(a, Axis::Rows, BlurMode::G)
}

/// (C·R)ᵀ = Rᵀ·Cᵀ: columns first.
pub(super) fn blur_adjoint(a: &OpArgs) -> BResult<()> {
    separable(a, Axis::Columns, BlurMode::Adj)
}

/// (chunks per image, scratch elements) of ∂/∂σ over `x`: two images, then the f64 partial
/// dot products.
fn dsigma_layout(x: &[usize]) -> (usize, usize) {
    let n = numel(x);
    let b = x[0];
    let chunks = (n / b.max(1)).div_ceil(256 * 16).clamp(1, 1024);
    (chunks, 2 * n + 2 * b * chunks)
}

pub(super) fn dsigma_scratch_len(x: &[usize]) -> usize {
    dsigma_layout(x).1
}

/// Per image b: ∂/∂σ_b ⟨C_g R_g x, g⟩ = ⟨C_dg R_g x + C_g R_dg x, g⟩ (rows R, columns C);
/// inputs x, σ, g.
pub(super) fn blur_dsigma(a: &OpArgs) -> BResult<()> {
    let s = a.s(0);
    let n = numel(s);
    let b = s[0];
    let per_image = n / b.max(1);
    let (chunks, len) = dsigma_layout(s);
    let ws = a.scratch(len)?;
    let (t, u) = (ws, ws.offset(n));
    let partial: DevMut<f64> = DevMut::at(ws.offset(2 * n).addr());
    let x = a.x(0);
    pass(a, x, t, s, Axis::Rows, BlurMode::G, false)?;
    pass(a, t.input(), u, s, Axis::Columns, BlurMode::Dg, false)?;
    pass(a, x, t, s, Axis::Rows, BlurMode::Dg, false)?;
    pass(a, t.input(), u, s, Axis::Columns, BlurMode::G, true)?;
    let grid = Grid {
        blocks: (chunks as u32, b as u32, 1),
        threads: 256,
    };
    DotPartials {
        a: u.input(),
        g: a.x(2),
        partial,
        per_image: i64of(per_image),
    }
    .launch(a.be, grid)?;
    DotFinish {
        partial: partial.input(),
        out: a.y(),
        batch: i64of(b),
        chunks: i64of(chunks),
    }
    .launch(a.be, grid1(b))
}
