//! `kernels/layout.cu`: copies through stride arrays (broadcast, concat, slice, pad, permute,
//! pixel (un)shuffle) and roll.

use super::{grid1, i64of, OpArgs};
use crate::backend::cuda::abi::{DevMut, DevPtr, FillZero, Roll, Strided, StridedCopy, MAXR};
use crate::backend::{BResult, BackendError};
use crate::tensor::{broadcast_strides, numel, strides};

/// The `Strided` view of `dims` with the strides `sa` and `sb`.
pub(super) fn strided(dims: &[usize], sa: &[usize], sb: &[usize]) -> BResult<Strided> {
    if dims.len() > MAXR {
        return Err(BackendError::Unsupported(format!(
            "rank {} exceeds the CUDA kernels' limit of {MAXR} (shape {dims:?})",
            dims.len()
        )));
    }
    let mut s = Strided {
        rank: dims.len() as i32,
        ..Default::default()
    };
    for i in 0..dims.len() {
        s.dims[i] = dims[i] as i64;
        s.sa[i] = sa[i] as i64;
        s.sb[i] = sb[i] as i64;
    }
    Ok(s)
}

/// y[offB(i)] = x[offA(i)] over `dims`.
fn strided_copy(
    a: &OpArgs,
    x: DevPtr<f32>,
    y: DevMut<f32>,
    dims: &[usize],
    sa: &[usize],
    sb: &[usize],
) -> BResult<()> {
    let n = numel(dims);
    if n == 0 {
        return Ok(());
    }
    let s = strided(dims, sa, sb)?;
    StridedCopy {
        x,
        y,
        n: i64of(n),
        s,
    }
    .launch(a.be, grid1(n))
}

pub(super) fn broadcast_to(a: &OpArgs) -> BResult<()> {
    let ys = a.ys();
    strided_copy(
        a,
        a.x(0),
        a.y(),
        ys,
        &broadcast_strides(a.s(0), ys),
        &strides(ys),
    )
}

/// (product of the axes before `axis`, product of those after) of `shape`.
fn outer_inner(shape: &[usize], axis: usize) -> (usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis + 1..].iter().product(),
    )
}

pub(super) fn concat(a: &OpArgs, axis: usize) -> BResult<()> {
    let ys = a.ys();
    let (outer, inner) = outer_inner(ys, axis);
    let row = ys[axis] * inner;
    let mut at = 0usize;
    for i in 0..a.ins.len() {
        let len = a.s(i)[axis] * inner;
        strided_copy(
            a,
            a.x(i),
            a.y().offset(at),
            &[outer, len],
            &[len, 1],
            &[row, 1],
        )?;
        at += len;
    }
    Ok(())
}

pub(super) fn slice(a: &OpArgs, axis: usize, start: usize) -> BResult<()> {
    let sx = a.s(0);
    let (outer, inner) = outer_inner(sx, axis);
    let (full, len) = (sx[axis] * inner, a.ys()[axis] * inner);
    let x = a.x(0).offset(start * inner);
    strided_copy(a, x, a.y(), &[outer, len], &[full, 1], &[len, 1])
}

pub(super) fn pad(a: &OpArgs, axis: usize, start: usize) -> BResult<()> {
    let sx = a.s(0);
    let (outer, inner) = outer_inner(sx, axis);
    let (len, full) = (sx[axis] * inner, a.ys()[axis] * inner);
    let n = a.n();
    if n > 0 {
        FillZero {
            y: a.y(),
            n: i64of(n),
        }
        .launch(a.be, grid1(n))?;
    }
    let y = a.y().offset(start * inner);
    strided_copy(a, a.x(0), y, &[outer, len], &[len, 1], &[full, 1])
}

pub(super) fn permute(a: &OpArgs, perm: &[usize]) -> BResult<()> {
    let st = strides(a.s(0));
    let src: Vec<usize> = perm.iter().map(|&ax| st[ax]).collect();
    strided_copy(a, a.x(0), a.y(), a.ys(), &src, &strides(a.ys()))
}

pub(super) fn roll(a: &OpArgs, shifts: &[(usize, isize)]) -> BResult<()> {
    let (sx, n) = (a.s(0), a.n());
    if n == 0 {
        return Ok(());
    }
    let sh: Vec<usize> = (0..sx.len())
        .map(|ax| {
            let len = sx[ax] as isize;
            let t: isize = shifts.iter().filter(|s| s.0 == ax).map(|s| s.1).sum();
            (((t % len) + len) % len) as usize
        })
        .collect();
    let s = strided(sx, &strides(sx), &sh)?;
    Roll {
        x: a.x(0),
        y: a.y(),
        n: i64of(n),
        s,
    }
    .launch(a.be, grid1(n))
}

/// Copies input 0, viewed as `view`, in the axis order `perm` (pixel (un)shuffle).
fn permuted_view(a: &OpArgs, view: [usize; 6], perm: [usize; 6]) -> BResult<()> {
    let st = strides(&view);
    let dims: Vec<usize> = perm.iter().map(|&ax| view[ax]).collect();
    let src: Vec<usize> = perm.iter().map(|&ax| st[ax]).collect();
    strided_copy(a, a.x(0), a.y(), &dims, &src, &strides(&dims))
}

pub(super) fn pixel_shuffle(a: &OpArgs, r: usize) -> BResult<()> {
    let sx = a.s(0);
    let (n, c, h, w) = (sx[0], sx[1] / (r * r), sx[2], sx[3]);
    permuted_view(a, [n, c, r, r, h, w], [0, 1, 4, 2, 5, 3])
}

pub(super) fn pixel_unshuffle(a: &OpArgs, r: usize) -> BResult<()> {
    let sx = a.s(0);
    let (n, c, h, w) = (sx[0], sx[1], sx[2] / r, sx[3] / r);
    permuted_view(a, [n, c, h, r, w, r], [0, 1, 3, 5, 2, 4])
}
