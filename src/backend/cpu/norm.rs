//! Group norm, layer norm and softmax, forward and backward. Statistics are accumulated in
//! f64 (the reference must not depend on summation order at 512²), in eight fixed lanes so
//! the loops vectorise; the element loops run in f64 too, with the branch-free exp of
//! `vmath` (a libm call per element kept them scalar) and compiled for AVX2 where present.

use super::vmath::{run, sigmoid, Kernel};
use crate::tensor::Scalar;
use rayon::prelude::*;

const LANES: usize = 8;

/// Rows of length `d` per rayon task: short rows (180 channels, 64 keys) one per task spent
/// more time in scheduling than in arithmetic.
fn rows_per_task(d: usize) -> usize {
    (8192 / d.max(1)).max(1)
}

/// Σ v[i] (or Σ (v[i] − c)² with `centre` c) in f64 over `LANES` interleaved partial sums,
/// added in a fixed order.
struct LaneSum<'a, T> {
    v: &'a [T],
    centre: Option<f64>,
}

impl<T: Scalar> Kernel for LaneSum<'_, T> {
    type Out = f64;
    #[inline(always)]
    fn run(self) -> f64 {
        let mut acc = [0.0f64; LANES];
        let f = |a: f64| match self.centre {
            Some(c) => (a - c) * (a - c),
            None => a,
        };
        let mut chunks = self.v.chunks_exact(LANES);
        for c in &mut chunks {
            for i in 0..LANES {
                acc[i] += f(c[i].as_f64());
            }
        }
        for (i, &r) in chunks.remainder().iter().enumerate() {
            acc[i] += f(r.as_f64());
        }
        acc.iter().sum()
    }
}

/// (mean, 1/sqrt(var+eps)) of a slice, biased variance as PyTorch normalises.
fn stats<T: Scalar>(v: &[T], eps: f32) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = run(LaneSum { v, centre: None }) / n;
    let var = run(LaneSum {
        v,
        centre: Some(mean),
    }) / n;
    (mean, 1.0 / (var + eps as f64).sqrt())
}

/// y = (x − mean)·inv·γ + β over one channel.
struct NormRow<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    mean: f64,
    inv: f64,
    ga: f64,
    be: f64,
}

impl<T: Scalar> Kernel for NormRow<'_, T> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        for (o, &v) in self.y.iter_mut().zip(self.x) {
            *o = T::of_f64((v.as_f64() - self.mean) * self.inv * self.ga + self.be);
        }
    }
}

/// A channel's factors of the fused op: (γ, β, 1 + scale, shift).
type Factors = (f64, f64, f64, f64);

/// y = silu(v), v = ((x − mean)·inv·γ + β)·(1 + scale) + shift over one channel.
struct SiluRow<'a, T> {
    x: &'a [T],
    y: &'a mut [T],
    mean: f64,
    inv: f64,
    f: Factors,
}

impl<T: Scalar> Kernel for SiluRow<'_, T> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        let (ga, be, sc, sh) = self.f;
        for (o, &xv) in self.y.iter_mut().zip(self.x) {
            let v = ((xv.as_f64() - self.mean) * self.inv * ga + be) * sc + sh;
            *o = T::of_f64(v * sigmoid(v));
        }
    }
}

/// (x̂, dx̂) of one element of the fused op: dx̂ = dy·silu'(v)·γ·(1 + scale).
#[inline(always)]
fn silu_grad_at(xv: f64, dyv: f64, mean: f64, inv: f64, f: Factors) -> (f64, f64) {
    let (ga, be, sc, sh) = f;
    let xh = (xv - mean) * inv;
    let v = (xh * ga + be) * sc + sh;
    let sg = sigmoid(v);
    let dv = dyv * sg * (1.0 + v * (1.0 - sg));
    (xh, dv * ga * sc)
}

/// Adds one channel's Σ dx̂ and Σ dx̂·x̂ into `LANES` partial sums.
struct SiluGradSums<'a, T> {
    x: &'a [T],
    dy: &'a [T],
    mean: f64,
    inv: f64,
    f: Factors,
    m1: &'a mut [f64; LANES],
    m2: &'a mut [f64; LANES],
}

impl<T: Scalar> Kernel for SiluGradSums<'_, T> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        let (mean, inv, f) = (self.mean, self.inv, self.f);
        // Local accumulators: through the `&mut` arrays the loop stayed scalar.
        let (mut m1, mut m2) = (*self.m1, *self.m2);
        let mut xc = self.x.chunks_exact(LANES);
        let mut dc = self.dy.chunks_exact(LANES);
        for (xv, dv) in (&mut xc).zip(&mut dc) {
            let mut xh = [0.0f64; LANES];
            let mut dxh = [0.0f64; LANES];
            for i in 0..LANES {
                (xh[i], dxh[i]) = silu_grad_at(xv[i].as_f64(), dv[i].as_f64(), mean, inv, f);
            }
            for i in 0..LANES {
                m1[i] += dxh[i];
                m2[i] += dxh[i] * xh[i];
            }
        }
        for (i, (xv, dv)) in xc.remainder().iter().zip(dc.remainder()).enumerate() {
            let (xh, dxh) = silu_grad_at(xv.as_f64(), dv.as_f64(), mean, inv, f);
            m1[i] += dxh;
            m2[i] += dxh * xh;
        }
        (*self.m1, *self.m2) = (m1, m2);
    }
}

/// dx = inv·(dx̂ − m1 − x̂·m2) over one channel.
struct SiluGradRow<'a, T> {
    x: &'a [T],
    dy: &'a [T],
    dx: &'a mut [T],
    mean: f64,
    inv: f64,
    f: Factors,
    m1: f64,
    m2: f64,
}

impl<T: Scalar> Kernel for SiluGradRow<'_, T> {
    type Out = ();
    #[inline(always)]
    fn run(self) {
        for ((o, xv), dv) in self.dx.iter_mut().zip(self.x).zip(self.dy) {
            let (xh, dxh) = silu_grad_at(xv.as_f64(), dv.as_f64(), self.mean, self.inv, self.f);
            *o = T::of_f64(self.inv * (dxh - self.m1 - xh * self.m2));
        }
    }
}

pub fn group_norm<T: Scalar>(
    x: &[T],
    s: &[usize],
    gamma: &[T],
    beta: &[T],
    groups: usize,
    eps: f32,
    y: &mut [T],
) {
    let c = s[1];
    let spatial: usize = s[2..].iter().product();
    let cg = c / groups;
    let glen = cg * spatial;
    y.par_chunks_mut(glen)
        .zip(x.par_chunks(glen))
        .enumerate()
        .for_each(|(gi, (yg, xg))| {
            let (mean, inv) = stats(xg, eps);
            let g0 = (gi % groups) * cg;
            for ci in 0..cg {
                let r = ci * spatial..(ci + 1) * spatial;
                run(NormRow {
                    x: &xg[r.clone()],
                    y: &mut yg[r],
                    mean,
                    inv,
                    ga: gamma[g0 + ci].as_f64(),
                    be: beta[g0 + ci].as_f64(),
                });
            }
        });
}

pub fn group_norm_backward<T: Scalar>(
    x: &[T],
    s: &[usize],
    gamma: &[T],
    dy: &[T],
    groups: usize,
    eps: f32,
    dx: &mut [T],
) {
    let c = s[1];
    let spatial: usize = s[2..].iter().product();
    let cg = c / groups;
    let glen = cg * spatial;
    dx.par_chunks_mut(glen)
        .zip(x.par_chunks(glen).zip(dy.par_chunks(glen)))
        .enumerate()
        .for_each(|(gi, (dxg, (xg, dyg)))| {
            let (mean, inv) = stats(xg, eps);
            let g0 = (gi % groups) * cg;
            // dx = inv·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)), dx̂ = dy·γ
            let (mut m1, mut m2) = (0.0, 0.0);
            for ci in 0..cg {
                let ga = gamma[g0 + ci].as_f64();
                for k in ci * spatial..(ci + 1) * spatial {
                    let dxh = dyg[k].as_f64() * ga;
                    m1 += dxh;
                    m2 += dxh * (xg[k].as_f64() - mean) * inv;
                }
            }
            m1 /= glen as f64;
            m2 /= glen as f64;
            for ci in 0..cg {
                let ga = gamma[g0 + ci].as_f64();
                for k in ci * spatial..(ci + 1) * spatial {
                    let xh = (xg[k].as_f64() - mean) * inv;
                    dxg[k] = T::of_f64(inv * (dyg[k].as_f64() * ga - m1 - xh * m2));
                }
            }
        });
}

pub fn group_norm_backward_gamma<T: Scalar>(
    x: &[T],
    s: &[usize],
    dy: &[T],
    groups: usize,
    eps: f32,
    dgamma: &mut [T],
) {
    let (n, c) = (s[0], s[1]);
    let spatial: usize = s[2..].iter().product();
    let cg = c / groups;
    let glen = cg * spatial;
    // Per (image, group) partial sums, then a fixed-order sum over images.
    let parts: Vec<Vec<f64>> = (0..n * groups)
        .into_par_iter()
        .map(|gi| {
            let xg = &x[gi * glen..(gi + 1) * glen];
            let dyg = &dy[gi * glen..(gi + 1) * glen];
            let (mean, inv) = stats(xg, eps);
            (0..cg)
                .map(|ci| {
                    (ci * spatial..(ci + 1) * spatial)
                        .map(|k| dyg[k].as_f64() * (xg[k].as_f64() - mean) * inv)
                        .sum()
                })
                .collect()
        })
        .collect();
    for (ch, d) in dgamma.iter_mut().enumerate().take(c) {
        let (g, ci) = (ch / cg, ch % cg);
        *d = T::of_f64((0..n).map(|ni| parts[ni * groups + g][ci]).sum());
    }
}

/// Per-(image, channel) FiLM factors (1 + scale, shift) of the fused op, or (1, 0) without.
fn film<T: Scalar>(ss: Option<(&[T], &[T])>, bc: usize) -> (f64, f64) {
    ss.map_or((1.0, 0.0), |(a, t)| (1.0 + a[bc].as_f64(), t[bc].as_f64()))
}

/// y = silu((x̂·γ + β)·(1 + scale) + shift), scale and shift `[B, C]` when given.
#[allow(clippy::too_many_arguments)]
pub fn group_norm_silu<T: Scalar>(
    x: &[T],
    s: &[usize],
    gamma: &[T],
    beta: &[T],
    ss: Option<(&[T], &[T])>,
    groups: usize,
    eps: f32,
    y: &mut [T],
) {
    let c = s[1];
    let spatial: usize = s[2..].iter().product();
    let cg = c / groups;
    let glen = cg * spatial;
    if glen == 0 {
        return; // an empty tensor: nothing to normalise (and no chunk size)
    }
    y.par_chunks_mut(glen)
        .zip(x.par_chunks(glen))
        .enumerate()
        .for_each(|(gi, (yg, xg))| {
            let (mean, inv) = stats(xg, eps);
            let (b, g0) = (gi / groups, (gi % groups) * cg);
            for ci in 0..cg {
                let (sc, sh) = film(ss, b * c + g0 + ci);
                let f = (gamma[g0 + ci].as_f64(), beta[g0 + ci].as_f64(), sc, sh);
                let r = ci * spatial..(ci + 1) * spatial;
                run(SiluRow {
                    x: &xg[r.clone()],
                    y: &mut yg[r],
                    mean,
                    inv,
                    f,
                });
            }
        });
}

/// dx of [`group_norm_silu`], recomputing x̂ and the SiLU argument from x: with
/// dx̂ = dy·silu'(v)·γ·(1 + scale), dx = inv·(dx̂ − mean(dx̂) − x̂·mean(dx̂·x̂)).
#[allow(clippy::too_many_arguments)]
pub fn group_norm_silu_backward<T: Scalar>(
    x: &[T],
    s: &[usize],
    gamma: &[T],
    beta: &[T],
    ss: Option<(&[T], &[T])>,
    dy: &[T],
    groups: usize,
    eps: f32,
    dx: &mut [T],
) {
    let c = s[1];
    let spatial: usize = s[2..].iter().product();
    let cg = c / groups;
    let glen = cg * spatial;
    if glen == 0 {
        return;
    }
    dx.par_chunks_mut(glen)
        .zip(x.par_chunks(glen).zip(dy.par_chunks(glen)))
        .enumerate()
        .for_each(|(gi, (dxg, (xg, dyg)))| {
            let (mean, inv) = stats(xg, eps);
            let (b, g0) = (gi / groups, (gi % groups) * cg);
            let factors = |ci: usize| {
                let (sc, sh) = film(ss, b * c + g0 + ci);
                (gamma[g0 + ci].as_f64(), beta[g0 + ci].as_f64(), sc, sh)
            };
            let (mut m1, mut m2) = ([0.0f64; LANES], [0.0f64; LANES]);
            for ci in 0..cg {
                let r = ci * spatial..(ci + 1) * spatial;
                run(SiluGradSums {
                    x: &xg[r.clone()],
                    dy: &dyg[r],
                    mean,
                    inv,
                    f: factors(ci),
                    m1: &mut m1,
                    m2: &mut m2,
                });
            }
            let m1 = m1.iter().sum::<f64>() / glen as f64;
            let m2 = m2.iter().sum::<f64>() / glen as f64;
            for ci in 0..cg {
                let r = ci * spatial..(ci + 1) * spatial;
                run(SiluGradRow {
                    x: &xg[r.clone()],
                    dy: &dyg[r.clone()],
                    dx: &mut dxg[r],
                    mean,
                    inv,
                    f: factors(ci),
                    m1,
                    m2,
                });
            }
        });
}

pub fn layer_norm<T: Scalar>(x: &[T], s: &[usize], gamma: &[T], beta: &[T], eps: f32, y: &mut [T]) {
    let d = *s.last().unwrap();
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .with_min_len(rows_per_task(d))
        .for_each(|(yr, xr)| {
            let (mean, inv) = stats(xr, eps);
            {
                for k in 0..d {
                    yr[k] = T::of_f64(
                        (xr[k].as_f64() - mean) * inv * gamma[k].as_f64() + beta[k].as_f64(),
                    );
                }
            }
        });
}

pub fn layer_norm_backward<T: Scalar>(
    x: &[T],
    s: &[usize],
    gamma: &[T],
    dy: &[T],
    eps: f32,
    dx: &mut [T],
) {
    let d = *s.last().unwrap();
    dx.par_chunks_mut(d)
        .zip(x.par_chunks(d).zip(dy.par_chunks(d)))
        .with_min_len(rows_per_task(d))
        .for_each(|(dxr, (xr, dyr))| {
            let (mean, inv) = stats(xr, eps);
            {
                let (mut m1, mut m2) = (0.0, 0.0);
                for k in 0..d {
                    let dxh = dyr[k].as_f64() * gamma[k].as_f64();
                    m1 += dxh;
                    m2 += dxh * (xr[k].as_f64() - mean) * inv;
                }
                m1 /= d as f64;
                m2 /= d as f64;
                for k in 0..d {
                    let xh = (xr[k].as_f64() - mean) * inv;
                    dxr[k] = T::of_f64(inv * (dyr[k].as_f64() * gamma[k].as_f64() - m1 - xh * m2));
                }
            }
        });
}

pub fn layer_norm_backward_gamma<T: Scalar>(
    x: &[T],
    s: &[usize],
    dy: &[T],
    eps: f32,
    dgamma: &mut [T],
) {
    let d = *s.last().unwrap();
    if d == 0 {
        return;
    }
    // Partial sums over fixed blocks of rows on all threads, then added in block order, so
    // the result does not depend on scheduling.
    const ROWS: usize = 256;
    let parts: Vec<Vec<f64>> = x
        .par_chunks(ROWS * d)
        .zip(dy.par_chunks(ROWS * d))
        .map(|(xb, dyb)| {
            let mut acc = vec![0.0f64; d];
            for (xr, dyr) in xb.chunks(d).zip(dyb.chunks(d)) {
                let (mean, inv) = stats(xr, eps);
                {
                    for k in 0..d {
                        acc[k] += dyr[k].as_f64() * (xr[k].as_f64() - mean) * inv;
                    }
                }
            }
            acc
        })
        .collect();
    for k in 0..d {
        dgamma[k] = T::of_f64(parts.iter().map(|p| p[k]).sum());
    }
}

pub fn softmax<T: Scalar>(x: &[T], s: &[usize], y: &mut [T]) {
    let d = *s.last().unwrap();
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .with_min_len(rows_per_task(d))
        .for_each(|(yr, xr)| {
            let m = xr.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            let mut sum = 0.0f64;
            for (o, &v) in yr.iter_mut().zip(xr) {
                let e = (v - m).exp();
                *o = e;
                sum += e.as_f64();
            }
            let inv = T::of_f64(1.0 / sum);
            yr.iter_mut().for_each(|o| *o *= inv);
        });
}

pub fn softmax_backward<T: Scalar>(y: &[T], dy: &[T], s: &[usize], dx: &mut [T]) {
    let d = *s.last().unwrap();
    dx.par_chunks_mut(d)
        .zip(y.par_chunks(d).zip(dy.par_chunks(d)))
        .with_min_len(rows_per_task(d))
        .for_each(|(dxr, (yr, dyr))| {
            let dot: f64 = yr
                .iter()
                .zip(dyr)
                .map(|(a, b)| a.as_f64() * b.as_f64())
                .sum();
            let dot = T::of_f64(dot);
            for k in 0..d {
                dxr[k] = yr[k] * (dyr[k] - dot);
            }
        });
}
