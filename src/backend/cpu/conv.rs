//! 2-D convolution lowered to gemm, in one of two ways (see `ConvAlgo`):
//!
//! - stride-1 convolutions with many output positions per output channel use the shifted
//!   form of `conv_shifted` (one product per kernel tap over a padded input, no im2col);
//! - the rest use tiled im2col + gemm. The column buffer covers a band of output rows at a
//!   time, so memory stays bounded at 512². The input gradient forms the columns of a block
//!   of input channels per task (Wᵀ·dy) and scatters them (col2im) while they are in L2;
//!   the weight gradient accumulates dY·colᵀ over bands and images.
//!
//! Pointwise (1×1, stride 1, pad 0) convolutions are a single product either way.

use super::conv_shifted::{Shifted, TapWeights};
use super::matmul::gemm_into;
use super::scratch::scratch;
use crate::graph::Conv2dParams;
use crate::tensor::Scalar;
use rayon::prelude::*;

/// Elements of the column buffer per band.
const COL_BUDGET: usize = 1 << 21;

/// Bytes of one task's column block in the input gradient. Measured at 512 ch, 16²
/// (FLOP per CPU-second against gemm, 3 alternating runs each): 64 KiB 62–68 %,
/// 128 KiB 75 %, 256 KiB 71–74 %, 512 KiB 68–73 %, 1 MiB 64–66 %.
const BLOCK_BYTES: usize = 1 << 17;

#[derive(Clone, Copy, Debug)]
pub struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub o: usize,
    pub kh: usize,
    pub kw: usize,
    pub oh: usize,
    pub ow: usize,
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub algo: ConvAlgo,
}

/// How a convolution is lowered to matrix products.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ConvAlgo {
    /// Shifted products where they pay off, im2col elsewhere.
    #[default]
    Auto,
    /// Columns (im2col / col2im) then one product per band.
    Im2col,
    /// One product per kernel tap over a padded input (stride 1 only).
    Shifted,
}

impl ConvGeom {
    pub fn new(x: &[usize], w: &[usize], p: &Conv2dParams) -> Self {
        let oh = (x[2] + 2 * p.pad - w[2]) / p.stride + 1;
        let ow = (x[3] + 2 * p.pad - w[3]) / p.stride + 1;
        ConvGeom {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            o: w[0],
            kh: w[2],
            kw: w[3],
            oh,
            ow,
            stride: p.stride,
            pad: p.pad,
            groups: p.groups,
            algo: ConvAlgo::Auto,
        }
    }
    fn cg(&self) -> usize {
        self.c / self.groups
    }
    fn og(&self) -> usize {
        self.o / self.groups
    }
    fn kdim(&self) -> usize {
        self.cg() * self.kh * self.kw
    }
    fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }
    /// Stride-1 convolutions whose padding fits the shifted layout skip im2col, when
    /// that pays: the shifted form regathers the weights (taps·cg·og elements) where
    /// im2col gathers the input (taps·cg·positions), so it wins when positions outnumber
    /// the channels produced (`out_ch`: og forward, cg for the input gradient).
    fn shifted_applies(&self, out_ch: usize, positions: usize) -> bool {
        let feasible = self.stride == 1
            && !self.is_pointwise()
            && self.pad < self.kh
            && self.pad < self.kw
            && Shifted::applies(self.kh, self.kw, self.pad, self.pad, self.h, self.w);
        feasible
            && match self.algo {
                ConvAlgo::Auto => out_ch <= positions,
                ConvAlgo::Shifted => true,
                ConvAlgo::Im2col => false,
            }
    }
    /// The same geometry lowered with `algo` (for tests and benchmarks; `Auto` is the
    /// default). `Shifted` falls back to im2col where the shifted form does not apply.
    pub fn with_algo(mut self, algo: ConvAlgo) -> Self {
        self.algo = algo;
        self
    }
    /// The forward pass of one image and group in the shifted formulation.
    fn shifted_forward(&self) -> (Shifted, TapWeights) {
        let s = Shifted {
            c: self.cg(),
            m: self.og(),
            h: self.h,
            w: self.w,
            kh: self.kh,
            kw: self.kw,
            ph: self.pad,
            pw: self.pad,
        };
        // W[o, c, ki, kj]: tap (ki, kj) is the [og, cg] matrix at offset ki·kw + kj.
        let tw = TapWeights {
            origin: 0,
            tap_i: self.kw as isize,
            tap_j: 1,
            rs: self.kdim(),
            cs: self.kh * self.kw,
        };
        (s, tw)
    }
    /// The input gradient as a forward convolution of dy with the flipped, transposed
    /// kernel: dx[c] = Σ_o dy[o] ⋆ W[o, c, kh−1−ki, kw−1−kj], padding k−1−pad.
    fn shifted_backward_input(&self) -> (Shifted, TapWeights) {
        let s = Shifted {
            c: self.og(),
            m: self.cg(),
            h: self.oh,
            w: self.ow,
            kh: self.kh,
            kw: self.kw,
            ph: self.kh - 1 - self.pad,
            pw: self.kw - 1 - self.pad,
        };
        let tw = TapWeights {
            origin: self.kh * self.kw - 1,
            tap_i: -(self.kw as isize),
            tap_j: -1,
            rs: self.kh * self.kw,
            cs: self.kdim(),
        };
        (s, tw)
    }
    /// Output rows per band.
    fn band(&self) -> usize {
        (COL_BUDGET / (self.kdim() * self.ow).max(1)).clamp(1, self.oh)
    }
}

impl ConvGeom {
    /// Input row read by output row `r` at kernel row `ki`, if inside the image.
    fn in_row(&self, r: usize, ki: usize) -> Option<usize> {
        let iy = (r * self.stride + ki).checked_sub(self.pad)?;
        (iy < self.h).then_some(iy)
    }
    /// Output columns `lo..hi` whose input column at kernel column `kj` is inside the
    /// image; the input column of output column q is `q·stride + kj − pad`.
    fn valid_cols(&self, kj: usize) -> (usize, usize) {
        let lo = self.pad.saturating_sub(kj).div_ceil(self.stride);
        let hi = if self.w + self.pad > kj {
            ((self.w + self.pad - kj - 1) / self.stride + 1).min(self.ow)
        } else {
            0
        };
        (lo.min(hi), hi)
    }
}

/// Fills col[(ci·kh+ki)·kw+kj, r·ow+q] for output rows `r0..r0+rows` of channels
/// `c0..c0+cg`, one output row segment at a time (a plain copy at stride 1).
fn im2col<T: Scalar>(g: &ConvGeom, x_img: &[T], c0: usize, r0: usize, rows: usize, col: &mut [T]) {
    let p = rows * g.ow;
    col[..g.kdim() * p]
        .par_chunks_mut(g.kh * g.kw * p)
        .enumerate()
        .for_each(|(ci, cc)| {
            let plane = &x_img[(c0 + ci) * g.h * g.w..(c0 + ci + 1) * g.h * g.w];
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let dst = &mut cc[(ki * g.kw + kj) * p..(ki * g.kw + kj + 1) * p];
                    let (lo, hi) = g.valid_cols(kj);
                    for (r, row) in dst.chunks_exact_mut(g.ow).enumerate() {
                        let Some(iy) = g.in_row(r0 + r, ki) else {
                            row.fill(T::zero());
                            continue;
                        };
                        row[..lo].fill(T::zero());
                        row[hi..].fill(T::zero());
                        let src = &plane[iy * g.w..(iy + 1) * g.w];
                        let start = lo * g.stride + kj - g.pad;
                        if g.stride == 1 {
                            row[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
                        } else {
                            for (v, &s) in row[lo..hi]
                                .iter_mut()
                                .zip(src[start..].iter().step_by(g.stride))
                            {
                                *v = s;
                            }
                        }
                    }
                }
            }
        });
}

/// Adds one channel's columns `cc` (kh·kw rows of `rows·ow`) back into its image plane:
/// the adjoint of im2col.
fn col2im_plane<T: Scalar>(g: &ConvGeom, cc: &[T], r0: usize, rows: usize, plane: &mut [T]) {
    let p = rows * g.ow;
    for ki in 0..g.kh {
        for kj in 0..g.kw {
            let src = &cc[(ki * g.kw + kj) * p..(ki * g.kw + kj + 1) * p];
            let (lo, hi) = g.valid_cols(kj);
            if lo >= hi {
                continue;
            }
            for (r, row) in src.chunks_exact(g.ow).enumerate() {
                let Some(iy) = g.in_row(r0 + r, ki) else {
                    continue;
                };
                let dst = &mut plane[iy * g.w..(iy + 1) * g.w];
                let start = lo * g.stride + kj - g.pad;
                if g.stride == 1 {
                    // A separate loop without step_by, so it vectorises.
                    for (d, &s) in dst[start..start + hi - lo].iter_mut().zip(&row[lo..hi]) {
                        *d += s;
                    }
                } else {
                    for (d, &s) in dst[start..].iter_mut().step_by(g.stride).zip(&row[lo..hi]) {
                        *d += s;
                    }
                }
            }
        }
    }
}

/// Input gradient of one image and group through columns: dcol = Wᵀ·dy, then col2im.
/// Each task owns a block of input channels: it forms only those channels' rows of dcol,
/// a band of output rows at a time, and scatters them while they are still in cache.
fn backward_input_cols<T: Scalar>(g: &ConvGeom, dyg: &[T], wg: &[T], dxg: &mut [T]) {
    let threads = rayon::current_num_threads();
    let (cg, kd, kk) = (g.cg(), g.kdim(), g.kh * g.kw);
    let (hw, plane_out) = (g.h * g.w, g.oh * g.ow);
    if cg == 0 || hw == 0 {
        return;
    }
    let elem = std::mem::size_of::<T>();
    // Rows per band and channels per block so one block's dcol stays within L2.
    let band = (BLOCK_BYTES / (kk * g.ow * elem)).clamp(1, g.oh);
    let per_block = (BLOCK_BYTES / (kk * band * g.ow * elem)).clamp(1, cg);
    let blocks = cg.div_ceil(per_block).next_multiple_of(threads).min(cg);
    let cb = cg.div_ceil(blocks);
    dxg.par_chunks_mut(cb * hw)
        .enumerate()
        .for_each(|(bi, dxb)| {
            let c0 = bi * cb;
            let nc = dxb.len() / hw;
            dxb.fill(T::zero());
            // The product overwrites each band's columns before col2im reads them.
            let mut col = scratch::<T>(nc * kk * band * g.ow);
            let mut r0 = 0;
            while r0 < g.oh {
                let rows = band.min(g.oh - r0);
                let p = rows * g.ow;
                let col = &mut col[..nc * kk * p];
                // Rows c0·kk.. of Wᵀ: W is [og, kd] row-major.
                gemm_into(
                    nc * kk,
                    p,
                    g.og(),
                    &wg[c0 * kk..],
                    1,
                    kd,
                    &dyg[r0 * g.ow..],
                    plane_out,
                    1,
                    col,
                    p,
                    1,
                    false,
                    1,
                );
                for (plane, cc) in dxb.chunks_exact_mut(hw).zip(col.chunks_exact(kk * p)) {
                    col2im_plane(g, cc, r0, rows, plane);
                }
                r0 += rows;
            }
        });
}

pub fn conv2d_forward<T: Scalar>(g: &ConvGeom, x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T]) {
    if g.shifted_applies(g.og(), g.oh * g.ow) {
        let (s, tw) = g.shifted_forward();
        let (cg, og, kd) = (g.cg(), g.og(), g.kdim());
        let (xin, yout) = (cg * g.h * g.w, og * g.oh * g.ow);
        for ni in 0..g.n {
            for gi in 0..g.groups {
                let xo = (ni * g.groups + gi) * xin;
                let yo = (ni * g.groups + gi) * yout;
                s.run(
                    &x[xo..xo + xin],
                    &w[gi * og * kd..(gi + 1) * og * kd],
                    tw,
                    bias.map(|b| &b[gi * og..(gi + 1) * og]),
                    &mut y[yo..yo + yout],
                );
            }
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let (cg, og, kd) = (g.cg(), g.og(), g.kdim());
    let plane_out = g.oh * g.ow;
    let band = g.band();
    // im2col writes every element it hands to the product: stale scratch is fine.
    let mut col = scratch::<T>(if g.is_pointwise() {
        0
    } else {
        kd * band * g.ow
    });
    for ni in 0..g.n {
        let x_img = &x[ni * g.c * g.h * g.w..(ni + 1) * g.c * g.h * g.w];
        let y_img = &mut y[ni * g.o * plane_out..(ni + 1) * g.o * plane_out];
        for gi in 0..g.groups {
            let wg = &w[gi * og * kd..(gi + 1) * og * kd];
            let yg = &mut y_img[gi * og * plane_out..(gi + 1) * og * plane_out];
            if g.is_pointwise() {
                let xg = &x_img[gi * cg * plane_out..(gi + 1) * cg * plane_out];
                gemm_into(
                    og, plane_out, kd, wg, kd, 1, xg, plane_out, 1, yg, plane_out, 1, false,
                    threads,
                );
                continue;
            }
            let mut r0 = 0;
            while r0 < g.oh {
                let rows = band.min(g.oh - r0);
                let p = rows * g.ow;
                im2col(g, x_img, gi * cg, r0, rows, &mut col);
                gemm_into(
                    og,
                    p,
                    kd,
                    wg,
                    kd,
                    1,
                    &col[..kd * p],
                    p,
                    1,
                    &mut yg[r0 * g.ow..],
                    plane_out,
                    1,
                    false,
                    threads,
                );
                r0 += rows;
            }
        }
        if let Some(b) = bias {
            y_img
                .par_chunks_mut(plane_out)
                .zip(b.par_iter())
                .for_each(|(plane, &bv)| {
                    plane.iter_mut().for_each(|v| *v += bv);
                });
        }
    }
}

pub fn conv2d_backward_input<T: Scalar>(g: &ConvGeom, dy: &[T], w: &[T], dx: &mut [T]) {
    if g.shifted_applies(g.cg(), g.h * g.w) {
        let (s, tw) = g.shifted_backward_input();
        let (cg, og, kd) = (g.cg(), g.og(), g.kdim());
        let (xin, yout) = (cg * g.h * g.w, og * g.oh * g.ow);
        for ni in 0..g.n {
            for gi in 0..g.groups {
                let xo = (ni * g.groups + gi) * xin;
                let yo = (ni * g.groups + gi) * yout;
                s.run(
                    &dy[yo..yo + yout],
                    &w[gi * og * kd..(gi + 1) * og * kd],
                    tw,
                    None,
                    &mut dx[xo..xo + xin],
                );
            }
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let (cg, og, kd) = (g.cg(), g.og(), g.kdim());
    let plane_out = g.oh * g.ow;
    for ni in 0..g.n {
        let dy_img = &dy[ni * g.o * plane_out..(ni + 1) * g.o * plane_out];
        let dx_img = &mut dx[ni * g.c * g.h * g.w..(ni + 1) * g.c * g.h * g.w];
        for gi in 0..g.groups {
            let wg = &w[gi * og * kd..(gi + 1) * og * kd];
            let dyg = &dy_img[gi * og * plane_out..(gi + 1) * og * plane_out];
            let dxg = &mut dx_img[gi * cg * g.h * g.w..(gi + 1) * cg * g.h * g.w];
            if g.is_pointwise() {
                // dx = Wᵀ·dy: W is [og, kd] row-major, so Wᵀ has row stride 1, col stride kd.
                gemm_into(
                    kd, plane_out, og, wg, 1, kd, dyg, plane_out, 1, dxg, plane_out, 1, false,
                    threads,
                );
            } else {
                backward_input_cols(g, dyg, wg, dxg);
            }
        }
    }
}

pub fn conv2d_backward_weight<T: Scalar>(g: &ConvGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    let threads = rayon::current_num_threads();
    if g.shifted_applies(g.og(), g.oh * g.ow) {
        let (s, _) = g.shifted_forward();
        let (cg, og, kd) = (g.cg(), g.og(), g.kdim());
        let (xin, yout) = (cg * g.h * g.w, og * g.oh * g.ow);
        // One position range per thread, times the taps, gives every thread work.
        let chunks = threads.max(1);
        let mut partial = scratch::<T>(s.partial_len(chunks));
        for gi in 0..g.groups {
            for ni in 0..g.n {
                let xo = (ni * g.groups + gi) * xin;
                let yo = (ni * g.groups + gi) * yout;
                s.weight_grad_partial(
                    &x[xo..xo + xin],
                    &dy[yo..yo + yout],
                    &mut partial,
                    chunks,
                    ni > 0,
                );
            }
            s.weight_grad_reduce(&partial, chunks, &mut dw[gi * og * kd..(gi + 1) * og * kd]);
        }
        return;
    }
    let (cg, og, kd) = (g.cg(), g.og(), g.kdim());
    let plane_out = g.oh * g.ow;
    let band = g.band();
    // im2col writes every element it hands to the product: stale scratch is fine.
    let mut col = scratch::<T>(if g.is_pointwise() {
        0
    } else {
        kd * band * g.ow
    });
    let mut first = vec![true; g.groups];
    for ni in 0..g.n {
        let x_img = &x[ni * g.c * g.h * g.w..(ni + 1) * g.c * g.h * g.w];
        let dy_img = &dy[ni * g.o * plane_out..(ni + 1) * g.o * plane_out];
        for gi in 0..g.groups {
            let dwg = &mut dw[gi * og * kd..(gi + 1) * og * kd];
            let dyg = &dy_img[gi * og * plane_out..(gi + 1) * og * plane_out];
            if g.is_pointwise() {
                let xg = &x_img[gi * cg * plane_out..(gi + 1) * cg * plane_out];
                // dW = dY·Xᵀ
                gemm_into(
                    og, kd, plane_out, dyg, plane_out, 1, xg, 1, plane_out, dwg, kd, 1, !first[gi],
                    threads,
                );
                first[gi] = false;
                continue;
            }
            let mut r0 = 0;
            while r0 < g.oh {
                let rows = band.min(g.oh - r0);
                let p = rows * g.ow;
                im2col(g, x_img, gi * cg, r0, rows, &mut col);
                gemm_into(
                    og,
                    kd,
                    p,
                    &dyg[r0 * g.ow..],
                    plane_out,
                    1,
                    &col[..kd * p],
                    1,
                    p,
                    dwg,
                    kd,
                    1,
                    !first[gi],
                    threads,
                );
                first[gi] = false;
                r0 += rows;
            }
        }
    }
}
