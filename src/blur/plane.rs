//! Separable 1-D passes over one [h, w] plane, and their adjoints.
//!
//! Forward passes read a reflect-padded copy through a precomputed index map, so the
//! tap loop is a plain axpy over contiguous memory (vectorisable). Adjoint passes
//! scatter into a padded buffer and then fold the pad back onto the pixels it was
//! read from: that fold is what makes the adjoint differ from the blur at borders.

use crate::tensor::Scalar;

/// `out += a · x`, element-wise.
#[inline]
fn axpy<T: Scalar>(out: &mut [T], a: T, x: &[T]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o += a * v;
    }
}

/// `out += a · (x + y)`, element-wise: one multiply for two mirrored taps.
#[inline]
fn axpy2<T: Scalar>(out: &mut [T], a: T, x: &[T], y: &[T]) {
    for ((o, &u), &v) in out.iter_mut().zip(x).zip(y) {
        *o += a * (u + v);
    }
}

/// `out = Σ_k taps[k] · src(k)` for a symmetric tap list (taps[k] = taps[2R − k],
/// true of g and dg/dσ alike), pairing mirrored taps to halve the multiplies.
#[inline]
fn sym_sum<'a, T: Scalar>(out: &mut [T], taps: &[T], src: impl Fn(usize) -> &'a [T]) {
    let last = taps.len() - 1;
    let r = last / 2;
    debug_assert!(taps.len() % 2 == 1 && (0..r).all(|k| taps[k] == taps[last - k]));
    out.fill(T::zero());
    for (k, &tk) in taps.iter().enumerate().take(r) {
        axpy2(out, tk, src(k), src(last - k));
    }
    axpy(out, taps[r], src(r));
}

/// Blur along each row: `out[y, p] = Σ_k taps[k] · x[y, map[p + k]]`,
/// with `map = padded_map(w, R)` and `taps.len() = 2R + 1`.
pub fn rows_forward<T: Scalar>(
    x: &[T],
    w: usize,
    taps: &[T],
    map: &[usize],
    scratch: &mut Vec<T>,
    out: &mut [T],
) {
    scratch.clear();
    scratch.resize(map.len(), T::zero());
    for (xr, or) in x.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
        for (b, &m) in scratch.iter_mut().zip(map) {
            *b = xr[m];
        }
        let line: &[T] = scratch;
        sym_sum(or, taps, |k| &line[k..k + w]);
    }
}

/// Adjoint of [`rows_forward`]: scatter `ȳ` through the taps into the padded
/// line, then add each padded position back onto its source pixel.
pub fn rows_adjoint<T: Scalar>(
    gy: &[T],
    w: usize,
    taps: &[T],
    map: &[usize],
    scratch: &mut Vec<T>,
    out: &mut [T],
) {
    scratch.clear();
    scratch.resize(map.len(), T::zero());
    for (gr, or) in gy.chunks_exact(w).zip(out.chunks_exact_mut(w)) {
        scratch.fill(T::zero());
        for (k, &tk) in taps.iter().enumerate() {
            axpy(&mut scratch[k..k + w], tk, gr);
        }
        or.fill(T::zero());
        for (&b, &m) in scratch.iter().zip(map) {
            or[m] += b;
        }
    }
}

/// Blur along each column for output rows `row0..row0 + out.len()/w`:
/// `out[p − row0, :] = Σ_k taps[k] · x[map[p + k], :]`, `x` being the whole plane.
/// Whole rows are combined at once so memory is walked contiguously.
pub fn cols_forward<T: Scalar>(
    x: &[T],
    w: usize,
    taps: &[T],
    map: &[usize],
    row0: usize,
    out: &mut [T],
) {
    for (j, or) in out.chunks_exact_mut(w).enumerate() {
        let p = row0 + j;
        sym_sum(or, taps, |k| {
            let src = map[p + k] * w;
            &x[src..src + w]
        });
    }
}

/// For each pixel index r of a line, the padded positions q with `map[q] == r`.
pub fn preimages(map: &[usize], n: usize) -> Vec<Vec<usize>> {
    let mut inv = vec![Vec::new(); n];
    for (q, &m) in map.iter().enumerate() {
        inv[m].push(q);
    }
    inv
}

/// Adjoint of [`cols_forward`] for output rows `row0..`, in gather form so row
/// blocks are independent: the padded row q receives Σ_k taps[k] · ȳ[q − k]
/// (for 0 ≤ q − k < h), and row r collects every padded row that reflects onto it.
pub fn cols_adjoint<T: Scalar>(
    gy: &[T],
    h: usize,
    w: usize,
    taps: &[T],
    inv: &[Vec<usize>],
    row0: usize,
    out: &mut [T],
) {
    for (j, or) in out.chunks_exact_mut(w).enumerate() {
        or.fill(T::zero());
        for &q in &inv[row0 + j] {
            // k ranges over taps with 0 ≤ q − k < h.
            let k_lo = (q + 1).saturating_sub(h);
            let k_hi = q.min(taps.len() - 1);
            for (k, &tk) in taps.iter().enumerate().take(k_hi + 1).skip(k_lo) {
                let src = (q - k) * w;
                axpy(or, tk, &gy[src..src + w]);
            }
        }
    }
}
