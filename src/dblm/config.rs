//! The DBLM's guidance settings (METHOD.md Eq. 15 and its choice σ_i = σ̂·(N−i+1)/N): how many
//! guidance images N and the range every σ_i is kept in, σ̂ included. `models.json` holds them
//! in its `guidance` section; older sets kept them in `sampler` and still load (see
//! `restore::models::ModelSet::from_json_str`).

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GuidanceConfig {
    /// Number of guidance images N (0: unguided sampling from noise).
    pub num_guidance: usize,
    /// σ̂ and every σ_i are clamped to this range, before sampling and after each refinement
    /// step (Eq. 7).
    pub sigma_min: f64,
    pub sigma_max: f64,
}

impl Default for GuidanceConfig {
    fn default() -> Self {
        GuidanceConfig {
            num_guidance: 3,
            sigma_min: 0.1,
            sigma_max: 15.0,
        }
    }
}

impl GuidanceConfig {
    /// The keys of this section, as older `sampler` sections spelled them too.
    pub const KEYS: [&'static str; 3] = ["num_guidance", "sigma_min", "sigma_max"];

    pub fn validate(&self) -> Result<(), String> {
        if !(self.sigma_min > 0.0 && self.sigma_min <= self.sigma_max) {
            return Err(format!(
                "sigma range [{}, {}] must satisfy 0 < min ≤ max",
                self.sigma_min, self.sigma_max
            ));
        }
        Ok(())
    }

    /// σ_i of a batch, `[i][b]`, from each image's σ̂ ([`super::batch_sigmas`]).
    pub fn sigmas(&self, sigma_hat: &[f64]) -> Vec<Vec<f64>> {
        super::batch_sigmas(sigma_hat, self.num_guidance, self.sigma_min, self.sigma_max)
    }
}
