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
    let a = s.alphas_cumprod[k];
    let ap = s.alphas_cumprod_prev[k];
    let sigma = eta * ((1.0 - ap) / (1.0 - a)).sqrt() * (1.0 - a / ap).sqrt();
    let dir = (1.0 - ap - sigma * sigma).max(0.0).sqrt();
    let (ra, rm1) = ((1.0 / a).sqrt(), (1.0 / a - 1.0).sqrt());
    for i in 0..x.len() {
        let eps = (ra * x[i] - x0[i]) / rm1;
        let z = if k == 0 { 0.0 } else { sigma * noise[i] };
        x[i] = ap.sqrt() * x0[i] + dir * eps + z;
    }
}
