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

/// Reusable scratch buffers for one worker thread.
#[derive(Default)]
pub struct Scratch<T> {
    pub line: Vec<T>,
    pub plane: Vec<T>,
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
        or.fill(T::zero());
        for (k, &tk) in taps.iter().enumerate() {
            axpy(or, tk, &scratch[k..k + w]);
        }
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

/// Blur along each column: `out[p, :] = Σ_k taps[k] · x[map[p + k], :]`.
/// Whole rows are combined at once so memory is walked contiguously.
pub fn cols_forward<T: Scalar>(
    x: &[T],
    h: usize,
    w: usize,
    taps: &[T],
    map: &[usize],
    out: &mut [T],
) {
    for (p, or) in out.chunks_exact_mut(w).enumerate().take(h) {
        or.fill(T::zero());
        for (k, &tk) in taps.iter().enumerate() {
            let src = map[p + k] * w;
            axpy(or, tk, &x[src..src + w]);
        }
    }
}

/// Adjoint of [`cols_forward`], using a padded plane of (h + 2R) rows.
pub fn cols_adjoint<T: Scalar>(
    gy: &[T],
    h: usize,
    w: usize,
    taps: &[T],
    map: &[usize],
    scratch: &mut Vec<T>,
    out: &mut [T],
) {
    scratch.clear();
    scratch.resize(map.len() * w, T::zero());
    for (p, gr) in gy.chunks_exact(w).enumerate().take(h) {
        for (k, &tk) in taps.iter().enumerate() {
            let dst = (p + k) * w;
            axpy(&mut scratch[dst..dst + w], tk, gr);
        }
    }
    out.fill(T::zero());
    for (q, &m) in map.iter().enumerate() {
        let (src, dst) = (q * w, m * w);
        let (o, s) = (&mut out[dst..dst + w], &scratch[src..src + w]);
        for (a, &b) in o.iter_mut().zip(s) {
            *a += b;
        }
    }
}
