//! Element-wise comparison of a result with its reference, as llm.c checks its kernels:
//! every element must satisfy |a − b| ≤ atol·s + rtol·|b|, where b is the reference and s the
//! reference's RMS (so `atol` is relative to the tensor's own scale and one tolerance serves
//! a bias gradient summed over 10⁵ terms and a unit-scale activation alike). The verdict
//! names the worst element (largest |a − b| / bound) with its index; the norm-wise figure
//! ‖a − b‖ / ‖b‖ is reported next to it, but a norm can hide a few wrong elements, so it is
//! never the verdict.

use std::fmt;

/// Tolerance of one comparison: |a − b| ≤ atol·rms(ref) + rtol·|ref|.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tol {
    pub atol: f64,
    pub rtol: f64,
}

impl Tol {
    /// atol = rtol = `t`.
    pub const fn both(t: f64) -> Tol {
        Tol { atol: t, rtol: t }
    }
}

impl fmt::Display for Tol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.atol == self.rtol {
            write!(f, "tol {:.0e}", self.atol)
        } else {
            write!(f, "atol {:.0e} rtol {:.0e}", self.atol, self.rtol)
        }
    }
}

/// The outcome of [`compare`].
#[derive(Clone, Debug)]
pub struct Comparison {
    pub shape: Vec<usize>,
    /// Flat index of the element with the largest |a − b| / bound.
    pub worst: usize,
    pub worst_got: f64,
    pub worst_want: f64,
    /// max over elements of |a − b| / bound (≤ 1 passes).
    pub worst_ratio: f64,
    /// max over elements of |a − b| / (rms(ref) + |ref|): the tolerance-free figure that a
    /// `Tol::both(t)` must exceed, i.e. the measured error to set tolerances from.
    pub measured: f64,
    /// ‖a − b‖ / ‖b‖.
    pub norm_rel: f64,
    /// First element that is NaN or infinite in the result but finite in the reference
    /// (an unwritten element of a NaN-poisoned arena shows here).
    pub non_finite: Option<usize>,
    /// Shapes differ (nothing else is meaningful then).
    pub shape_mismatch: Option<(Vec<usize>, Vec<usize>)>,
    pub tol: Tol,
}

impl Comparison {
    pub fn passed(&self) -> bool {
        self.shape_mismatch.is_none() && self.non_finite.is_none() && self.worst_ratio <= 1.0
    }
}

/// `flat` as a multi-index of `shape`, e.g. `[1, 3, 0, 7]`.
pub fn multi_index(flat: usize, shape: &[usize]) -> Vec<usize> {
    let mut idx = vec![0; shape.len()];
    let mut rest = flat;
    for (i, &d) in shape.iter().enumerate().rev() {
        if d > 0 {
            idx[i] = rest % d;
            rest /= d;
        }
    }
    idx
}

impl fmt::Display for Comparison {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((a, b)) = &self.shape_mismatch {
            return write!(f, "shape {a:?}, reference {b:?}");
        }
        if let Some(i) = self.non_finite {
            return write!(
                f,
                "non-finite element {:?} (unwritten or invalid), reference {:e}",
                multi_index(i, &self.shape),
                self.worst_want
            );
        }
        write!(
            f,
            "worst {:?} got {:.6e} want {:.6e} (|Δ|/bound {:.2}, err {:.2e}), norm-wise {:.2e} ({})",
            multi_index(self.worst, &self.shape),
            self.worst_got,
            self.worst_want,
            self.worst_ratio,
            self.measured,
            self.norm_rel,
            self.tol
        )
    }
}

/// Compares `got` with the reference `want` (same shape) element by element under `tol`.
pub fn compare(got: &[f64], want: &[f64], shape: &[usize], tol: Tol) -> Comparison {
    let mut c = Comparison {
        shape: shape.to_vec(),
        worst: 0,
        worst_got: got.first().copied().unwrap_or(0.0),
        worst_want: want.first().copied().unwrap_or(0.0),
        worst_ratio: 0.0,
        measured: 0.0,
        norm_rel: 0.0,
        non_finite: None,
        shape_mismatch: None,
        tol,
    };
    if got.len() != want.len() {
        c.shape_mismatch = Some((vec![got.len()], vec![want.len()]));
        return c;
    }
    let n = want.len().max(1) as f64;
    let ref_sq: f64 = want.iter().map(|b| b * b).sum();
    let rms = (ref_sq / n).sqrt();
    let mut diff_sq = 0.0;
    for (i, (&a, &b)) in got.iter().zip(want).enumerate() {
        if !a.is_finite() && b.is_finite() {
            c.non_finite = Some(i);
            c.worst_got = a;
            c.worst_want = b;
            return c;
        }
        let d = (a - b).abs();
        diff_sq += d * d;
        let bound = tol.atol * rms + tol.rtol * b.abs();
        // A zero bound (exact comparison of an all-zero reference) fails on any difference.
        let ratio = if d == 0.0 {
            0.0
        } else if bound > 0.0 {
            d / bound
        } else {
            f64::INFINITY
        };
        let scale = rms + b.abs();
        if scale > 0.0 {
            c.measured = c.measured.max(d / scale);
        } else if d > 0.0 {
            c.measured = f64::INFINITY;
        }
        if ratio > c.worst_ratio {
            c.worst_ratio = ratio;
            c.worst = i;
            c.worst_got = a;
            c.worst_want = b;
        }
    }
    c.norm_rel = if ref_sq > 0.0 {
        (diff_sq / ref_sq).sqrt()
    } else {
        diff_sq.sqrt()
    };
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random;

    #[test]
    fn one_wrong_element_fails_element_wise_and_is_named_while_the_norm_passes() {
        let shape = [4, 8, 32, 32];
        let want: crate::tensor::Tensor<f64> = random::normal(&mut random::rng(7), &shape, 1.0);
        // An fp32-like rounding of every element: passes at 1e-6.
        let mut got: Vec<f64> = want.data.iter().map(|&v| v as f32 as f64).collect();
        let ok = compare(&got, &want.data, &shape, Tol::both(1e-6));
        assert!(ok.passed(), "{ok}");
        assert!(ok.measured < 1e-7, "{ok}");
        // One element off by 1 % of the scale: 32768 elements hide it from the norm.
        let i = 4321;
        got[i] += 0.01;
        let bad = compare(&got, &want.data, &shape, Tol::both(1e-6));
        assert!(!bad.passed());
        assert_eq!(bad.worst, i);
        assert_eq!(multi_index(i, &shape), vec![0, 4, 7, 1]);
        assert!(bad.norm_rel < 1e-4, "{bad}");
        assert!(bad.to_string().contains("[0, 4, 7, 1]"), "{bad}");
    }

    #[test]
    fn nan_shape_and_zero_bound_are_failures() {
        let want = [1.0, 2.0, 3.0];
        let c = compare(&[1.0, f64::NAN, 3.0], &want, &[3], Tol::both(1.0));
        assert!(!c.passed());
        assert_eq!(c.non_finite, Some(1));
        assert!(!compare(&[1.0], &want, &[3], Tol::both(1.0)).passed());
        let z = compare(&[0.0, 1e-30], &[0.0, 0.0], &[2], Tol::both(1e-3));
        assert!(!z.passed(), "{z}");
        assert!(compare(&[0.0, 0.0], &[0.0, 0.0], &[2], Tol::both(0.0)).passed());
    }
}
