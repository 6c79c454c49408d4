//! The reverse-step variance: learned range (from the UNet's extra output channels) or fixed.

use super::Schedule;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VarianceMode {
    /// `log σ² = frac·log β_k + (1−frac)·log β̃_k`, `frac = (v+1)/2`, v from output channels
    /// 3–5 (DifFace's prior). Needs a 6-channel denoiser.
    #[default]
    LearnedRange,
    /// σ² = β̃_k (the posterior variance, clipped at k = 0 as guided-diffusion does).
    FixedSmall,
    /// σ² = β_k (β̃_1 at k = 0).
    FixedLarge,
}

impl VarianceMode {
    pub fn needs_model_channels(self) -> bool {
        matches!(self, VarianceMode::LearnedRange)
    }
}

/// log σ² at chain position `k` for a learned-range output value `v` (nominally in [−1, 1]).
pub fn learned_range_log_variance(s: &Schedule, k: usize, v: f64) -> f64 {
    let frac = (v + 1.0) / 2.0;
    let max_log = s.betas[k].ln();
    let min_log = s.posterior_log_variance_clipped(k);
    frac * max_log + (1.0 - frac) * min_log
}

/// log σ² of a fixed-variance mode (None for the learned range, which needs v).
pub fn fixed_log_variance(s: &Schedule, k: usize, mode: VarianceMode) -> Option<f64> {
    match mode {
        VarianceMode::LearnedRange => None,
        VarianceMode::FixedSmall => Some(s.posterior_log_variance_clipped(k)),
        VarianceMode::FixedLarge => Some(if k == 0 && s.len() > 1 {
            s.posterior_variance(1).ln()
        } else {
            s.betas[k].ln()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::BetaSchedule;

    #[test]
    fn learned_range_interpolates_between_the_fixed_bounds() {
        let s = Schedule::for_spec(&BetaSchedule::linear1000(), "ddim250").unwrap();
        let k = 100;
        let lo = learned_range_log_variance(&s, k, -1.0);
        let hi = learned_range_log_variance(&s, k, 1.0);
        assert!((lo - s.posterior_variance(k).ln()).abs() < 1e-12);
        assert!((hi - s.betas[k].ln()).abs() < 1e-12);
        let mid = learned_range_log_variance(&s, k, 0.0);
        assert!((mid - 0.5 * (lo + hi)).abs() < 1e-12);
        assert!(lo < hi);
    }
}
