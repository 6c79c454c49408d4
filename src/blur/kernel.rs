//! The 1-D normalised Gaussian kernel of METHOD.md §3 and its σ-derivative.
//!
//! Weights are computed in f64 and rounded once to `T`, so the f32 kernel is as
//! close to the exact one as f32 allows and sums to 1 to f32 rounding.

use crate::tensor::Scalar;

/// Radius R = ceil(3σ), at least 1.
///
/// R is piecewise constant in σ: the operator jumps (by a weight of about e^{-4.5}
/// relative to the centre, renormalised) where 3σ crosses an integer. The analytic
/// σ-derivative is that of the current piece, as it must be for a fixed support.
pub fn radius(sigma: f64) -> usize {
    let r = (3.0 * sigma).ceil();
    if r.is_finite() && r >= 1.0 {
        r as usize
    } else {
        1
    }
}

/// Taps g_σ(i) for i = −R..=R and dg_σ(i)/dσ, both of length 2R+1.
#[derive(Clone, Debug)]
pub struct Kernel1d<T> {
    pub radius: usize,
    pub g: Vec<T>,
    pub dg: Vec<T>,
}

impl<T: Scalar> Kernel1d<T> {
    /// σ must be finite and positive (callers validate; see `ops::validate`).
    pub fn new(sigma: f64) -> Self {
        let r = radius(sigma);
        let inv2s2 = 1.0 / (2.0 * sigma * sigma);
        let w: Vec<f64> = (-(r as i64)..=r as i64)
            .map(|i| (-((i * i) as f64) * inv2s2).exp())
            .collect();
        let s: f64 = w.iter().sum();
        let g: Vec<f64> = w.iter().map(|v| v / s).collect();
        // d/dσ of w_i / S with dw_i/dσ = w_i i²/σ³ gives
        // g_i (i²/σ³ − Σ_j g_j j²/σ³): the second term is the normalisation's share.
        let s3 = sigma * sigma * sigma;
        let mean_i2: f64 = g
            .iter()
            .enumerate()
            .map(|(k, gk)| {
                let i = k as f64 - r as f64;
                gk * i * i
            })
            .sum();
        let dg = g
            .iter()
            .enumerate()
            .map(|(k, gk)| {
                let i = k as f64 - r as f64;
                T::of_f64(gk * (i * i - mean_i2) / s3)
            })
            .collect();
        Kernel1d {
            radius: r,
            g: g.into_iter().map(T::of_f64).collect(),
            dg,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radius_rule() {
        assert_eq!(radius(0.1), 1);
        assert_eq!(radius(0.34), 2);
        assert_eq!(radius(1.0), 3);
        assert_eq!(radius(15.0), 45);
    }

    #[test]
    fn taps_sum_to_one_and_derivative_sums_to_zero() {
        for &s in &[0.1, 0.7, 2.3, 9.9, 15.0] {
            let k = Kernel1d::<f64>::new(s);
            let sum: f64 = k.g.iter().sum();
            let dsum: f64 = k.dg.iter().sum();
            assert!((sum - 1.0).abs() < 1e-14, "σ={s}: Σg = {sum}");
            // The normalised kernel sums to 1 for every σ, so its derivative sums to 0.
            assert!(dsum.abs() < 1e-12, "σ={s}: Σdg = {dsum}");
            // Symmetric about the centre.
            let n = k.g.len();
            for i in 0..n {
                assert_eq!(k.g[i], k.g[n - 1 - i]);
            }
        }
    }

    #[test]
    fn derivative_matches_central_difference() {
        // σ chosen away from the radius jumps at multiples of 1/3.
        for &s in &[0.45, 1.2, 4.05, 12.1] {
            let k = Kernel1d::<f64>::new(s);
            let h = 1e-6;
            let kp = Kernel1d::<f64>::new(s + h);
            let km = Kernel1d::<f64>::new(s - h);
            assert_eq!(kp.radius, k.radius);
            assert_eq!(km.radius, k.radius);
            for i in 0..k.g.len() {
                let fd = (kp.g[i] - km.g[i]) / (2.0 * h);
                assert!(
                    (fd - k.dg[i]).abs() < 1e-8 * (1.0 + k.dg[i].abs()),
                    "σ={s} tap {i}: fd {fd} vs analytic {}",
                    k.dg[i]
                );
            }
        }
    }
}
