//! Sampler settings (METHOD.md Eq. 5, 7, 13, 15 and §4), with the project's defaults.

use super::{Result, SamplerError};
use crate::diffusion::{BetaSchedule, VarianceMode};
use serde::{Deserialize, Serialize};

/// DDIM stochasticity.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Eta {
    Fixed(f64),
    /// η = σ̂/10 per sample, σ̂ the initial width of the first guidance (the authors' README).
    SigmaHatOver10,
}

/// Where the per-step update (reverse step, guidance step, σ refinement) is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpdateOn {
    /// On the host in f64, reading x̂₀, ∇ and ∂σ back every step: the reference path, and the
    /// one that supports host-side scale maps.
    Host,
    /// In the step graph on the backend: x_t and σ_i stay there for the whole run; per step
    /// only the noise and a few [B] scalars go up and the loss and σ_i come back.
    #[default]
    Device,
}

/// Which reverse step a sampler spec names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    Ddpm,
    Ddim,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplerConfig {
    /// Original schedule of the prior.
    pub schedule: BetaSchedule,
    /// "ddimN" (DDIM on guided-diffusion's ddim spacing) or "N" / "N1,N2,…" (DDPM).
    pub sampler: String,
    /// Guidance strength ζ (Eq. 5) on the plain, unsquared norm.
    pub zeta: f64,
    /// σ refinement rate ζ_σ (Eq. 7); 0 turns refinement off.
    pub zeta_sigma: f64,
    /// σ_i are clamped to this range after each refinement step. Not configuration of the
    /// sampler: these and `num_guidance` are the DBLM's (`dblm::GuidanceConfig`, the
    /// `guidance` section of `models.json`), copied in by whoever builds the sampler
    /// (`restore::models::ModelSet::sampler_config`), so they are not read or written here.
    #[serde(skip, default = "default_sigma_min")]
    pub sigma_min: f64,
    #[serde(skip, default = "default_sigma_max")]
    pub sigma_max: f64,
    pub eta: Eta,
    pub variance: VarianceMode,
    /// Number of guidance images N (0: unguided sampling from noise); see `sigma_min`.
    #[serde(skip, default = "default_num_guidance")]
    pub num_guidance: usize,
    /// Weights w_i; `None` takes the paper's Table 7 defaults for N.
    pub weights: Option<Vec<f64>>,
    /// Clip x̂₀ to [−1, 1] (Eq. 3).
    pub clip_x0: bool,
    /// Take the guidance gradient with respect to x̂₀ instead of x_t (no backpropagation
    /// through the denoiser; cheaper, not the paper's method).
    pub fast_guidance: bool,
    /// Where the update is computed (device by default; host is the reference).
    pub update_on: UpdateOn,
    /// With the device update on a backend that can record graphs (CUDA), record the step
    /// once and replay it every later step.
    pub capture: bool,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            schedule: BetaSchedule::linear1000(),
            sampler: "ddim250".into(),
            zeta: 0.3,
            zeta_sigma: 0.05,
            sigma_min: 0.1,
            sigma_max: 15.0,
            eta: Eta::Fixed(0.5),
            variance: VarianceMode::LearnedRange,
            num_guidance: 3,
            weights: None,
            clip_x0: true,
            fast_guidance: false,
            update_on: UpdateOn::Device,
            capture: true,
        }
    }
}

// The DBLM's defaults (`dblm::GuidanceConfig::default`; the sampler layer may not name it).
fn default_sigma_min() -> f64 {
    0.1
}
fn default_sigma_max() -> f64 {
    15.0
}
fn default_num_guidance() -> usize {
    3
}

/// The paper's weights for N guidance images (Table 7).
pub fn default_weights(n: usize) -> Option<Vec<f64>> {
    match n {
        0 => Some(vec![]),
        1 => Some(vec![1.0]),
        2 => Some(vec![0.8, 0.2]),
        3 => Some(vec![0.7, 0.2, 0.1]),
        4 => Some(vec![0.7, 0.1, 0.1, 0.1]),
        _ => None,
    }
}

impl SamplerConfig {
    pub fn step_kind(&self) -> StepKind {
        if self.sampler.trim().starts_with("ddim") {
            StepKind::Ddim
        } else {
            StepKind::Ddpm
        }
    }

    pub fn weights(&self) -> Result<Vec<f64>> {
        let w = match &self.weights {
            Some(w) => w.clone(),
            None => default_weights(self.num_guidance).ok_or_else(|| {
                SamplerError::Config(format!(
                    "no default weights for {} guidance images: set `weights`",
                    self.num_guidance
                ))
            })?,
        };
        if w.len() != self.num_guidance {
            return Err(SamplerError::Config(format!(
                "`weights` has {} values for {} guidance images",
                w.len(),
                self.num_guidance
            )));
        }
        if let Some(bad) = w.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
            return Err(SamplerError::Config(format!(
                "guidance weight {bad} must be finite and ≥ 0"
            )));
        }
        Ok(w)
    }

    pub fn validate(&self) -> Result<()> {
        self.weights()?;
        let bad = |m: String| Err(SamplerError::Config(m));
        if !(self.zeta.is_finite() && self.zeta >= 0.0) {
            return bad(format!("zeta {} must be finite and ≥ 0", self.zeta));
        }
        if !(self.zeta_sigma.is_finite() && self.zeta_sigma >= 0.0) {
            return bad(format!(
                "zeta_sigma {} must be finite and ≥ 0",
                self.zeta_sigma
            ));
        }
        if !(self.sigma_min > 0.0 && self.sigma_min <= self.sigma_max) {
            return bad(format!(
                "sigma range [{}, {}] must satisfy 0 < min ≤ max",
                self.sigma_min, self.sigma_max
            ));
        }
        if let Eta::Fixed(e) = self.eta {
            if !(e.is_finite() && e >= 0.0) {
                return bad(format!("eta {e} must be finite and ≥ 0"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_method_md() {
        let c = SamplerConfig::default();
        assert_eq!(c.weights().unwrap(), vec![0.7, 0.2, 0.1]);
        assert_eq!(c.step_kind(), StepKind::Ddim);
        c.validate().unwrap();
    }

    #[test]
    fn config_round_trips_and_rejects_unknown_keys() {
        let c = SamplerConfig {
            eta: Eta::SigmaHatOver10,
            weights: Some(vec![0.6, 0.3, 0.1]),
            ..Default::default()
        };
        let j = serde_json::to_string(&c).unwrap();
        let back: SamplerConfig = serde_json::from_str(&j).unwrap();
        assert_eq!(back, c);
        let partial: SamplerConfig = serde_json::from_str(r#"{"zeta": 0.5}"#).unwrap();
        assert_eq!(partial.zeta, 0.5);
        assert_eq!(partial.num_guidance, 3);
        assert!(serde_json::from_str::<SamplerConfig>(r#"{"zeta_typo": 1}"#).is_err());
        let five = SamplerConfig {
            num_guidance: 5,
            ..Default::default()
        };
        assert!(five.weights().is_err());
    }
}
