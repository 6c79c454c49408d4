//! 2-D convolution as tiled im2col + gemm. The column buffer covers a band of output rows
//! at a time, so memory stays bounded at 512² while each gemm stays large enough to run at
//! the matrix-product rate. Backward-input is the transposed product followed by col2im;
//! backward-weight accumulates dY·colᵀ over bands and images.

use super::conv_shifted::{Shifted, TapWeights};
use super::matmul::gemm_into;
use crate::graph::Conv2dParams;
use crate::tensor::Scalar;
use rayon::prelude::*;

/// Elements of the column buffer per band.
const COL_BUDGET: usize = 1 << 21;

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
    /// Stride-1 convolutions whose padding fits the shifted layout skip im2col.
    fn shifted_applies(&self) -> bool {
        self.stride == 1
            && !self.is_pointwise()
            && Shifted::applies(self.kh, self.kw, self.pad, self.pad, self.h, self.w)
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

/// Fills col[(ci·kh+ki)·kw+kj, r·ow+q] for output rows `r0..r0+rows` of channels `c0..c0+cg`.
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
                    for r in 0..rows {
                        let iy = ((r0 + r) * g.stride + ki) as isize - g.pad as isize;
                        let row = &mut dst[r * g.ow..(r + 1) * g.ow];
                        if iy < 0 || iy >= g.h as isize {
                            row.fill(T::zero());
                            continue;
                        }
                        let src = &plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                        for (q, v) in row.iter_mut().enumerate() {
                            let ix = (q * g.stride + kj) as isize - g.pad as isize;
                            *v = if ix < 0 || ix >= g.w as isize {
                                T::zero()
                            } else {
                                src[ix as usize]
                            };
                        }
                    }
                }
            }
        });
}

/// Adds col back into the image planes (the adjoint of im2col).
fn col2im<T: Scalar>(g: &ConvGeom, col: &[T], c0: usize, r0: usize, rows: usize, dx_img: &mut [T]) {
    let p = rows * g.ow;
    let cg = g.cg();
    dx_img[c0 * g.h * g.w..(c0 + cg) * g.h * g.w]
        .par_chunks_mut(g.h * g.w)
        .enumerate()
        .for_each(|(ci, plane)| {
            let cc = &col[ci * g.kh * g.kw * p..(ci + 1) * g.kh * g.kw * p];
            for ki in 0..g.kh {
                for kj in 0..g.kw {
                    let src = &cc[(ki * g.kw + kj) * p..(ki * g.kw + kj + 1) * p];
                    for r in 0..rows {
                        let iy = ((r0 + r) * g.stride + ki) as isize - g.pad as isize;
                        if iy < 0 || iy >= g.h as isize {
                            continue;
                        }
                        let dst = &mut plane[iy as usize * g.w..(iy as usize + 1) * g.w];
                        for q in 0..g.ow {
                            let ix = (q * g.stride + kj) as isize - g.pad as isize;
                            if ix >= 0 && ix < g.w as isize {
                                dst[ix as usize] += src[r * g.ow + q];
                            }
                        }
                    }
                }
            }
        });
}

pub fn conv2d_forward<T: Scalar>(g: &ConvGeom, x: &[T], w: &[T], bias: Option<&[T]>, y: &mut [T]) {
    if g.shifted_applies() {
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
    let mut col = if g.is_pointwise() {
        vec![]
    } else {
        vec![T::zero(); kd * band * g.ow]
    };
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
    if g.shifted_applies() && g.pad < g.kh && g.pad < g.kw {
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
    let band = g.band();
    if !g.is_pointwise() {
        dx.par_chunks_mut(1 << 14).for_each(|c| c.fill(T::zero()));
    }
    let mut col = if g.is_pointwise() {
        vec![]
    } else {
        vec![T::zero(); kd * band * g.ow]
    };
    for ni in 0..g.n {
        let dy_img = &dy[ni * g.o * plane_out..(ni + 1) * g.o * plane_out];
        let dx_img = &mut dx[ni * g.c * g.h * g.w..(ni + 1) * g.c * g.h * g.w];
        for gi in 0..g.groups {
            let wg = &w[gi * og * kd..(gi + 1) * og * kd];
            let dyg = &dy_img[gi * og * plane_out..(gi + 1) * og * plane_out];
            if g.is_pointwise() {
                let dxg = &mut dx_img[gi * cg * plane_out..(gi + 1) * cg * plane_out];
                // dx = Wᵀ·dy: W is [og, kd] row-major, so Wᵀ has row stride 1, col stride kd.
                gemm_into(
                    kd, plane_out, og, wg, 1, kd, dyg, plane_out, 1, dxg, plane_out, 1, false,
                    threads,
                );
                continue;
            }
            let mut r0 = 0;
            while r0 < g.oh {
                let rows = band.min(g.oh - r0);
                let p = rows * g.ow;
                gemm_into(
                    kd,
                    p,
                    og,
                    wg,
                    1,
                    kd,
                    &dyg[r0 * g.ow..],
                    plane_out,
                    1,
                    &mut col[..kd * p],
                    p,
                    1,
                    false,
                    threads,
                );
                col2im(g, &col, gi * cg, r0, rows, dx_img);
                r0 += rows;
            }
        }
    }
}

pub fn conv2d_backward_weight<T: Scalar>(g: &ConvGeom, x: &[T], dy: &[T], dw: &mut [T]) {
    let threads = rayon::current_num_threads();
    let (cg, og, kd) = (g.cg(), g.og(), g.kdim());
    let plane_out = g.oh * g.ow;
    let band = g.band();
    let mut col = if g.is_pointwise() {
        vec![]
    } else {
        vec![T::zero(); kd * band * g.ow]
    };
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
