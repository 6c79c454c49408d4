//! The ordinary reverse steps (Eq. 6) on host values in f64, one sample at a time.

use crate::diffusion::variance::{fixed_log_variance, learned_range_log_variance};
use crate::diffusion::{Schedule, VarianceMode};

/// DDPM posterior step at chain position `k`: `x ← c₀·x̂₀ + c_t·x + σ·z` (no noise at k = 0).
/// `v` holds the learned-range channels (same length as `x`) when the mode needs them.
pub fn ddpm(
    s: &Schedule,
    k: usize,
    mode: VarianceMode,
    x: &mut [f64],
    x0: &[f64],
    v: Option<&[f64]>,
    noise: &[f64],
) {
    let (c0, ct) = s.posterior_mean_coefs(k);
    let fixed = fixed_log_variance(s, k, mode);
    for i in 0..x.len() {
        let mean = c0 * x0[i] + ct * x[i];
        let std = if k == 0 {
            0.0
        } else {
            let logvar = match (fixed, v) {
                (Some(l), _) => l,
                (None, Some(v)) => learned_range_log_variance(s, k, v[i]),
                (None, None) => unreachable!("learned variance without model channels"),
            };
            (0.5 * logvar).exp()
        };
        x[i] = mean + std * noise[i];
    }
}

/// DDIM step with stochasticity η (guided-diffusion's form): ε is recomputed from the
/// (clipped) x̂₀ so that the step is consistent with the clipping.
pub fn ddim(s: &Schedule, k: usize, eta: f64, x: &mut [f64], x0: &[f64], noise: &[f64]) {
    let c = DdimCoefs::new(s, k, eta);
    for i in 0..x.len() {
        let eps = (c.recip_sqrt_a * x[i] - x0[i]) / c.recipm1_sqrt_a;
        let z = if k == 0 { 0.0 } else { c.sigma * noise[i] };
        x[i] = c.sqrt_a_prev * x0[i] + c.dir * eps + z;
    }
}

/// The scalars of one DDIM step, shared by the host step above and the device step's inputs
/// (`sampler::graph`), so both compute with the very same f64 values.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DdimCoefs {
    /// 1/√ᾱ_k and √(1/ᾱ_k − 1): ε = (x/√ᾱ − x̂₀)/√(1/ᾱ − 1).
    pub recip_sqrt_a: f64,
    pub recipm1_sqrt_a: f64,
    /// √ᾱ_{k−1}.
    pub sqrt_a_prev: f64,
    /// √(1 − ᾱ_{k−1} − σ²), the weight of ε.
    pub dir: f64,
    /// σ = η·√((1−ᾱ_{k−1})/(1−ᾱ_k))·√(1 − ᾱ_k/ᾱ_{k−1}), the weight of the noise.
    pub sigma: f64,
}

impl DdimCoefs {
    pub fn new(s: &Schedule, k: usize, eta: f64) -> Self {
        let a = s.alphas_cumprod[k];
        let ap = s.alphas_cumprod_prev[k];
        let sigma = eta * ((1.0 - ap) / (1.0 - a)).sqrt() * (1.0 - a / ap).sqrt();
        DdimCoefs {
            recip_sqrt_a: (1.0 / a).sqrt(),
            recipm1_sqrt_a: (1.0 / a - 1.0).sqrt(),
            sqrt_a_prev: ap.sqrt(),
            dir: (1.0 - ap - sigma * sigma).max(0.0).sqrt(),
            sigma,
        }
    }
}

/// The noise standard deviation of a fixed-variance DDPM step (0 at k = 0), or `None` for
/// the learned range, whose std depends on the model's v channels per pixel.
pub fn ddpm_fixed_std(s: &Schedule, k: usize, mode: VarianceMode) -> Option<f64> {
    let l = fixed_log_variance(s, k, mode)?;
    Some(if k == 0 { 0.0 } else { (0.5 * l).exp() })
}

/// (log β_k, log β̃_k clipped): the bounds the learned range interpolates between.
pub fn learned_range_bounds(s: &Schedule, k: usize) -> (f64, f64) {
    (s.betas[k].ln(), s.posterior_log_variance_clipped(k))
}
