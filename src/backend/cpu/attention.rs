//! Fused attention, forward and backward, blocked by 64 queries (or keys) so that no score
//! matrix larger than 64 × T exists at once; rayon over (batch·heads) × blocks. Each block's
//! products go through the same `gemm_into` as the op-by-op `MatMul`s, with the operands'
//! own strides, and the block's softmax through the same row code as `Softmax`, so the
//! forward gives the op-by-op composite's result element for element (tests/ops.rs).
//!
//! Backward (FlashAttention's): per query i, L_i = log Σ_j exp(s_ij) and
//! D_i = Σ_c dO_ic·O_ic (= Σ_j P_ij·dP_ij); then P_ij = exp(s_ij − L_i),
//! dS = P ∘ (dO·Vᵀ − D), dQ = scale·dS·K, dK = scale·dSᵀ·Q, dV = Pᵀ·dO.

use super::matmul::gemm_into;
use super::norm::softmax;
use crate::backend::{BResult, BackendError};
use crate::graph::{AttnDims, AttnInput, AttnLayout};
use crate::tensor::Scalar;
use rayon::prelude::*;

/// Queries (forward, dQ) or keys (dK, dV) per block.
const BLOCK: usize = 64;

/// Strides of one batch entry's logical `[tokens, width]` matrix.
#[derive(Clone, Copy)]
struct Mat {
    rs: usize,
    cs: usize,
    len: usize,
}

impl Mat {
    fn new(channels_major: bool, tokens: usize, width: usize) -> Self {
        let (rs, cs) = if channels_major {
            (1, tokens)
        } else {
            (width, 1)
        };
        Mat {
            rs,
            cs,
            len: tokens * width,
        }
    }
}

struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

/// Writes the contiguous `rows × width` block `blk` as rows `r0..` of the matrix `m` of batch
/// entry `b` in `y`. Blocks of different tasks cover disjoint elements.
fn scatter<T: Scalar>(y: &SendPtr<T>, m: Mat, b: usize, r0: usize, width: usize, blk: &[T]) {
    for (r, row) in blk.chunks(width).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            // SAFETY: (b, r0 + r, c) lies inside y (shape checked by the op's shape rule),
            // and each element is written by exactly one task.
            unsafe { *y.0.add(b * m.len + (r0 + r) * m.rs + c * m.cs) = v };
        }
    }
}

struct Operands<'a, T> {
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    qm: Mat,
    km: Mat,
    vm: Mat,
    om: Mat,
    n: AttnDims,
    scale: T,
}

impl<'a, T: Scalar> Operands<'a, T> {
    fn new(
        l: AttnLayout,
        (q, k, v): (&'a [T], &'a [T], &'a [T]),
        s: &[&[usize]],
        scale: f32,
    ) -> BResult<Self> {
        let n = l
            .dims(s[0], s[1], s[2])
            .map_err(BackendError::Unsupported)?;
        Ok(Operands {
            q,
            k,
            v,
            qm: Mat::new(l.q, n.tq, n.d),
            km: Mat::new(l.k, n.tk, n.d),
            vm: Mat::new(l.v, n.tk, n.dv),
            om: Mat::new(l.o, n.tq, n.dv),
            n,
            scale: T::of_f32(scale),
        })
    }

    /// Scaled scores of queries `q0..q0+rows` against every key: `rows × tk`, row-major.
    fn scores(&self, b: usize, q0: usize, rows: usize, out: &mut [T]) {
        let (n, qm, km) = (self.n, self.qm, self.km);
        let qb = &self.q[b * qm.len + q0 * qm.rs..(b + 1) * qm.len];
        let kb = &self.k[b * km.len..(b + 1) * km.len];
        // Kᵀ: element (c, j) is k[j, c].
        gemm_into(
            rows, n.tk, n.d, qb, qm.rs, qm.cs, kb, km.cs, km.rs, out, n.tk, 1, false, 1,
        );
        out.iter_mut().for_each(|s| *s *= self.scale);
    }

    /// Scaled scores of keys `k0..k0+rows` against every query (the transposed block).
    fn scores_t(&self, b: usize, k0: usize, rows: usize, out: &mut [T]) {
        let (n, qm, km) = (self.n, self.qm, self.km);
        let kb = &self.k[b * km.len + k0 * km.rs..(b + 1) * km.len];
        let qb = &self.q[b * qm.len..(b + 1) * qm.len];
        gemm_into(
            rows, n.tq, n.d, kb, km.rs, km.cs, qb, qm.cs, qm.rs, out, n.tq, 1, false, 1,
        );
        out.iter_mut().for_each(|s| *s *= self.scale);
    }
}

pub fn forward<T: Scalar>(
    l: AttnLayout,
    x: &[&[T]],
    s: &[&[usize]],
    scale: f32,
    y: &mut [T],
) -> BResult<()> {
    let o = Operands::new(l, (x[0], x[1], x[2]), s, scale)?;
    let n = o.n;
    let blocks = n.tq.div_ceil(BLOCK);
    let yp = SendPtr(y.as_mut_ptr());
    (0..n.batch * blocks).into_par_iter().for_each(|task| {
        let (b, q0) = (task / blocks, (task % blocks) * BLOCK);
        let rows = BLOCK.min(n.tq - q0);
        let mut p = vec![T::zero(); rows * n.tk];
        let mut sc = vec![T::zero(); rows * n.tk];
        o.scores(b, q0, rows, &mut sc);
        softmax(&sc, &[rows, n.tk], &mut p);
        let vm = o.vm;
        let vb = &o.v[b * vm.len..(b + 1) * vm.len];
        let mut blk = vec![T::zero(); rows * n.dv];
        if l.o {
            // Oᵀ = Vᵀ·Pᵀ, the product the channels-major composite computes.
            gemm_into(
                n.dv, rows, n.tk, vb, vm.cs, vm.rs, &p, 1, n.tk, &mut blk, 1, n.dv, false, 1,
            );
        } else {
            gemm_into(
                rows, n.dv, n.tk, &p, n.tk, 1, vb, vm.rs, vm.cs, &mut blk, n.dv, 1, false, 1,
            );
        }
        scatter(&yp, o.om, b, q0, n.dv, &blk);
    });
    Ok(())
}

/// Per query: (log Σ_j exp(s_ij), Σ_c dO_ic·O_ic), row-major `[batch, tq]`.
fn stats<T: Scalar>(o: &Operands<T>, out: &[T], dout: &[T]) -> Vec<(T, T)> {
    let n = o.n;
    let om = o.om;
    let mut st = vec![(T::zero(), T::zero()); n.batch * n.tq];
    st.par_chunks_mut(n.tq).enumerate().for_each(|(b, sb)| {
        sb.par_chunks_mut(BLOCK)
            .enumerate()
            .for_each(|(blk, rows)| {
                let q0 = blk * BLOCK;
                let mut sc = vec![T::zero(); rows.len() * n.tk];
                o.scores(b, q0, rows.len(), &mut sc);
                for (r, (row, st)) in sc.chunks(n.tk).zip(rows.iter_mut()).enumerate() {
                    let m = row
                        .iter()
                        .fold(T::neg_infinity(), |a, &v| a.max(v))
                        .as_f64();
                    let sum: f64 = row.iter().map(|v| (v.as_f64() - m).exp()).sum();
                    let mut dot = 0.0f64;
                    for c in 0..n.dv {
                        let at = b * om.len + (q0 + r) * om.rs + c * om.cs;
                        dot += out[at].as_f64() * dout[at].as_f64();
                    }
                    *st = (T::of_f64(m + sum.ln()), T::of_f64(dot));
                }
            });
    });
    st
}

/// The gradient `wrt` of [`forward`]; inputs (q, k, v, o, do).
pub fn backward<T: Scalar>(
    l: AttnLayout,
    wrt: AttnInput,
    x: &[&[T]],
    s: &[&[usize]],
    scale: f32,
    y: &mut [T],
) -> BResult<()> {
    let o = Operands::new(l, (x[0], x[1], x[2]), s, scale)?;
    let (out, dout) = (x[3], x[4]);
    let st = stats(&o, out, dout);
    let n = o.n;
    let (om, vm, qm, km) = (o.om, o.vm, o.qm, o.km);
    let yp = SendPtr(y.as_mut_ptr());
    let rows_of = |t: usize| t.div_ceil(BLOCK);
    match wrt {
        AttnInput::Q => {
            let blocks = rows_of(n.tq);
            (0..n.batch * blocks).into_par_iter().for_each(|task| {
                let (b, q0) = (task / blocks, (task % blocks) * BLOCK);
                let rows = BLOCK.min(n.tq - q0);
                let mut p = vec![T::zero(); rows * n.tk];
                o.scores(b, q0, rows, &mut p);
                // dP = dO·Vᵀ for these queries.
                let mut dp = vec![T::zero(); rows * n.tk];
                let dob = &dout[b * om.len + q0 * om.rs..(b + 1) * om.len];
                let vb = &o.v[b * vm.len..(b + 1) * vm.len];
                gemm_into(
                    rows, n.tk, n.dv, dob, om.rs, om.cs, vb, vm.cs, vm.rs, &mut dp, n.tk, 1, false,
                    1,
                );
                for r in 0..rows {
                    let (lse, dd) = st[b * n.tq + q0 + r];
                    for j in 0..n.tk {
                        let i = r * n.tk + j;
                        let pij = (p[i] - lse).exp();
                        p[i] = pij * (dp[i] - dd) * o.scale;
                    }
                }
                let kb = &o.k[b * km.len..(b + 1) * km.len];
                let mut blk = vec![T::zero(); rows * n.d];
                gemm_into(
                    rows, n.d, n.tk, &p, n.tk, 1, kb, km.rs, km.cs, &mut blk, n.d, 1, false, 1,
                );
                scatter(&yp, qm, b, q0, n.d, &blk);
            });
        }
        AttnInput::K | AttnInput::V => {
            let blocks = rows_of(n.tk);
            (0..n.batch * blocks).into_par_iter().for_each(|task| {
                let (b, k0) = (task / blocks, (task % blocks) * BLOCK);
                let rows = BLOCK.min(n.tk - k0);
                // Pᵀ for these keys against every query.
                let mut pt = vec![T::zero(); rows * n.tq];
                o.scores_t(b, k0, rows, &mut pt);
                for r in 0..rows {
                    for i in 0..n.tq {
                        let e = &mut pt[r * n.tq + i];
                        *e = (*e - st[b * n.tq + i].0).exp();
                    }
                }
                let dob = &dout[b * om.len..(b + 1) * om.len];
                if wrt == AttnInput::V {
                    let mut blk = vec![T::zero(); rows * n.dv];
                    gemm_into(
                        rows, n.dv, n.tq, &pt, n.tq, 1, dob, om.rs, om.cs, &mut blk, n.dv, 1,
                        false, 1,
                    );
                    scatter(&yp, vm, b, k0, n.dv, &blk);
                    return;
                }
                // dPᵀ = V·dOᵀ for these keys.
                let mut dpt = vec![T::zero(); rows * n.tq];
                let vb = &o.v[b * vm.len + k0 * vm.rs..(b + 1) * vm.len];
                gemm_into(
                    rows, n.tq, n.dv, vb, vm.rs, vm.cs, dob, om.cs, om.rs, &mut dpt, n.tq, 1,
                    false, 1,
                );
                for r in 0..rows {
                    for i in 0..n.tq {
                        let e = r * n.tq + i;
                        pt[e] = pt[e] * (dpt[e] - st[b * n.tq + i].1) * o.scale;
                    }
                }
                let qb = &o.q[b * qm.len..(b + 1) * qm.len];
                let mut blk = vec![T::zero(); rows * n.d];
                gemm_into(
                    rows, n.d, n.tq, &pt, n.tq, 1, qb, qm.rs, qm.cs, &mut blk, n.d, 1, false, 1,
                );
                scatter(&yp, km, b, k0, n.d, &blk);
            });
        }
    }
    Ok(())
}
