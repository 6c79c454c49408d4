//! Data movement: concat, slice, pad, permute, roll, pixel (un)shuffle.

use super::elementwise::PAR_MIN;
use crate::tensor::{numel, strides, Scalar};
use rayon::prelude::*;

pub fn concat<T: Scalar>(xs: &[&[T]], s: &[&[usize]], axis: usize, y: &mut [T], ys: &[usize]) {
    let outer: usize = ys[..axis].iter().product();
    let inner: usize = ys[axis + 1..].iter().product();
    let row = ys[axis] * inner;
    for o in 0..outer {
        let mut at = o * row;
        for (x, sx) in xs.iter().zip(s) {
            let len = sx[axis] * inner;
            y[at..at + len].copy_from_slice(&x[o * len..(o + 1) * len]);
            at += len;
        }
    }
}

pub fn slice<T: Scalar>(
    x: &[T],
    sx: &[usize],
    axis: usize,
    start: usize,
    y: &mut [T],
    ys: &[usize],
) {
    let outer: usize = sx[..axis].iter().product();
    let inner: usize = sx[axis + 1..].iter().product();
    let (full, len) = (sx[axis] * inner, ys[axis] * inner);
    for o in 0..outer {
        y[o * len..(o + 1) * len]
            .copy_from_slice(&x[o * full + start * inner..o * full + start * inner + len]);
    }
}

pub fn pad<T: Scalar>(x: &[T], sx: &[usize], axis: usize, start: usize, y: &mut [T], ys: &[usize]) {
    y.fill(T::zero());
    let outer: usize = sx[..axis].iter().product();
    let inner: usize = sx[axis + 1..].iter().product();
    let (len, full) = (sx[axis] * inner, ys[axis] * inner);
    for o in 0..outer {
        y[o * full + start * inner..o * full + start * inner + len]
            .copy_from_slice(&x[o * len..(o + 1) * len]);
    }
}

/// y = x with axes reordered so that y's axis i is x's axis perm[i].
pub fn permute<T: Scalar>(x: &[T], sx: &[usize], perm: &[usize], y: &mut [T]) {
    let ys: Vec<usize> = perm.iter().map(|&p| sx[p]).collect();
    let st = strides(sx);
    let src_st: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let r = ys.len();
    if r == 0 || numel(&ys) == 0 {
        y.copy_from_slice(x);
        return;
    }
    let inner = ys[r - 1];
    let is = src_st[r - 1];
    let kernel = |row: usize, out: &mut [T]| {
        let mut rem = row;
        let mut off = 0;
        for i in (0..r - 1).rev() {
            off += (rem % ys[i]) * src_st[i];
            rem /= ys[i];
        }
        for (j, v) in out.iter_mut().enumerate() {
            *v = x[off + j * is];
        }
    };
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(row, o)| kernel(row, o));
    } else {
        y.chunks_mut(inner)
            .enumerate()
            .for_each(|(row, o)| kernel(row, o));
    }
}

/// torch.roll: y[i] = x[(i − shift) mod n] along each listed axis.
pub fn roll<T: Scalar>(x: &[T], sx: &[usize], shifts: &[(usize, isize)], y: &mut [T]) {
    let r = sx.len();
    let st = strides(sx);
    // Source index along each axis for every destination index.
    let maps: Vec<Vec<usize>> = (0..r)
        .map(|a| {
            let n = sx[a] as isize;
            let sh: isize = shifts.iter().filter(|s| s.0 == a).map(|s| s.1).sum();
            (0..n).map(|i| (((i - sh) % n + n) % n) as usize).collect()
        })
        .collect();
    if r == 0 {
        y.copy_from_slice(x);
        return;
    }
    let inner = sx[r - 1];
    if inner == 0 {
        return;
    }
    let kernel = |row: usize, out: &mut [T]| {
        let mut rem = row;
        let mut off = 0;
        for a in (0..r - 1).rev() {
            off += maps[a][rem % sx[a]] * st[a];
            rem /= sx[a];
        }
        for (j, v) in out.iter_mut().enumerate() {
            *v = x[off + maps[r - 1][j]];
        }
    };
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(row, o)| kernel(row, o));
    } else {
        y.chunks_mut(inner)
            .enumerate()
            .for_each(|(row, o)| kernel(row, o));
    }
}

/// [N, C·r², H, W] → [N, C, H·r, W·r]
pub fn pixel_shuffle<T: Scalar>(x: &[T], sx: &[usize], r: usize, y: &mut [T]) {
    let (n, c, h, w) = (sx[0], sx[1] / (r * r), sx[2], sx[3]);
    permute(x, &[n, c, r, r, h, w], &[0, 1, 4, 2, 5, 3], y);
}

/// [N, C, H·r, W·r] → [N, C·r², H, W]
pub fn pixel_unshuffle<T: Scalar>(x: &[T], sx: &[usize], r: usize, y: &mut [T]) {
    let (n, c, h, w) = (sx[0], sx[1], sx[2] / r, sx[3] / r);
    permute(x, &[n, c, h, r, w, r], &[0, 1, 3, 5, 2, 4], y);
}
