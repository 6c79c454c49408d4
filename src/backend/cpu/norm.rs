//! Group norm, layer norm and softmax, forward and backward. Statistics are accumulated in
//! f64 (the reference must not depend on summation order at 512²).

use crate::tensor::Scalar;
use rayon::prelude::*;

/// (mean, 1/sqrt(var+eps)) of a slice, biased variance as PyTorch normalises.
fn stats<T: Scalar>(v: &[T], eps: f32) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().map(|a| a.as_f64()).sum::<f64>() / n;
    let var = v.iter().map(|a| (a.as_f64() - mean).powi(2)).sum::<f64>() / n;
    (mean, 1.0 / (var + eps as f64).sqrt())
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
                let (ga, be) = (gamma[g0 + ci].as_f64(), beta[g0 + ci].as_f64());
                let range = ci * spatial..(ci + 1) * spatial;
                for (o, &v) in yg[range.clone()].iter_mut().zip(&xg[range]) {
                    *o = T::of_f64((v.as_f64() - mean) * inv * ga + be);
                }
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

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
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
                let (ga, be) = (gamma[g0 + ci].as_f64(), beta[g0 + ci].as_f64());
                let (sc, sh) = film(ss, b * c + g0 + ci);
                let range = ci * spatial..(ci + 1) * spatial;
                for (o, &xv) in yg[range.clone()].iter_mut().zip(&xg[range]) {
                    let v = ((xv.as_f64() - mean) * inv * ga + be) * sc + sh;
                    *o = T::of_f64(v * sigmoid(v));
                }
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
            // (x̂, dx̂) of element k of channel ci of the group.
            let at = |ci: usize, k: usize| {
                let (ga, be) = (gamma[g0 + ci].as_f64(), beta[g0 + ci].as_f64());
                let (sc, sh) = film(ss, b * c + g0 + ci);
                let xh = (xg[k].as_f64() - mean) * inv;
                let v = (xh * ga + be) * sc + sh;
                let sg = sigmoid(v);
                let dv = dyg[k].as_f64() * sg * (1.0 + v * (1.0 - sg));
                (xh, dv * ga * sc)
            };
            let (mut m1, mut m2) = (0.0, 0.0);
            for ci in 0..cg {
                for k in ci * spatial..(ci + 1) * spatial {
                    let (xh, dxh) = at(ci, k);
                    m1 += dxh;
                    m2 += dxh * xh;
                }
            }
            m1 /= glen as f64;
            m2 /= glen as f64;
            for (k, o) in dxg.iter_mut().enumerate() {
                let (xh, dxh) = at(k / spatial, k);
                *o = T::of_f64(inv * (dxh - m1 - xh * m2));
            }
        });
}

pub fn layer_norm<T: Scalar>(x: &[T], s: &[usize], gamma: &[T], beta: &[T], eps: f32, y: &mut [T]) {
    let d = *s.last().unwrap();
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
        .for_each(|(yr, xr)| {
            let (mean, inv) = stats(xr, eps);
            for k in 0..d {
                yr[k] =
                    T::of_f64((xr[k].as_f64() - mean) * inv * gamma[k].as_f64() + beta[k].as_f64());
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
        .for_each(|(dxr, (xr, dyr))| {
            let (mean, inv) = stats(xr, eps);
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
    let mut acc = vec![0.0f64; d];
    for (xr, dyr) in x.chunks(d).zip(dy.chunks(d)) {
        let (mean, inv) = stats(xr, eps);
        for k in 0..d {
            acc[k] += dyr[k].as_f64() * (xr[k].as_f64() - mean) * inv;
        }
    }
    for k in 0..d {
        dgamma[k] = T::of_f64(acc[k]);
    }
}

pub fn softmax<T: Scalar>(x: &[T], s: &[usize], y: &mut [T]) {
    let d = *s.last().unwrap();
    y.par_chunks_mut(d)
        .zip(x.par_chunks(d))
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
