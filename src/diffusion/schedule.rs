//! β schedules and the derived f64 tables of one (possibly respaced) chain.

use super::{DiffusionError, Result};
use serde::{Deserialize, Serialize};

/// Longest original chain accepted (real models use 1000–4000 steps); a config asking for
/// more would only make the tables exhaust memory.
pub const MAX_STEPS: usize = 100_000;

/// How β_t is laid out over the original chain.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BetaSchedule {
    /// β linear from `start` to `end` (DifFace / guided-diffusion: 1e-4 … 0.02 at 1000 steps).
    Linear { steps: usize, start: f64, end: f64 },
    /// Nichol & Dhariwal's cosine ᾱ, β capped at 0.999.
    Cosine { steps: usize },
}

impl Default for BetaSchedule {
    fn default() -> Self {
        BetaSchedule::linear1000()
    }
}

impl BetaSchedule {
    /// The schedule of DifFace's FFHQ-512 prior.
    pub fn linear1000() -> Self {
        BetaSchedule::Linear {
            steps: 1000,
            start: 1e-4,
            end: 0.02,
        }
    }

    /// A short name used in files that record which schedule a table belongs to.
    pub fn name(&self) -> String {
        match *self {
            BetaSchedule::Linear { steps, start, end } if start == 1e-4 && end == 0.02 => {
                format!("linear{steps}")
            }
            BetaSchedule::Linear { steps, start, end } => format!("linear{steps}_{start}_{end}"),
            BetaSchedule::Cosine { steps } => format!("cosine{steps}"),
        }
    }

    pub fn betas(&self) -> Result<Vec<f64>> {
        let steps = match *self {
            BetaSchedule::Linear { steps, .. } | BetaSchedule::Cosine { steps } => steps,
        };
        if steps > MAX_STEPS {
            return Err(DiffusionError::Schedule(format!(
                "{steps} diffusion steps; at most {MAX_STEPS} are supported"
            )));
        }
        match *self {
            BetaSchedule::Linear { steps, start, end } => {
                if steps < 2 || !(0.0 < start && start <= end && end < 1.0) {
                    return Err(DiffusionError::Schedule(format!(
                        "linear schedule needs ≥ 2 steps and 0 < start ≤ end < 1, got {steps} steps, {start}..{end}"
                    )));
                }
                let n = steps as f64 - 1.0;
                Ok((0..steps)
                    .map(|i| start + (end - start) * i as f64 / n)
                    .collect())
            }
            BetaSchedule::Cosine { steps } => {
                if steps < 2 {
                    return Err(DiffusionError::Schedule(format!(
                        "cosine schedule needs ≥ 2 steps, got {steps}"
                    )));
                }
                let f = |t: f64| {
                    let a = (t + 0.008) / 1.008 * std::f64::consts::FRAC_PI_2;
                    a.cos().powi(2)
                };
                let n = steps as f64;
                Ok((0..steps)
                    .map(|i| (1.0 - f((i + 1) as f64 / n) / f(i as f64 / n)).min(0.999))
                    .collect())
            }
        }
    }
}

/// The tables of one chain. For a respaced chain `timesteps[k]` is the original step index the
/// model is called with at chain position `k`, and `betas[k] = 1 − ᾱ_{τ_k}/ᾱ_{τ_{k−1}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub betas: Vec<f64>,
    pub alphas_cumprod: Vec<f64>,
    /// ᾱ of the previous chain position (1 before the first).
    pub alphas_cumprod_prev: Vec<f64>,
    pub timesteps: Vec<usize>,
    /// Length of the original chain the timesteps index into.
    pub original_steps: usize,
}

impl Schedule {
    pub fn from_betas(betas: Vec<f64>) -> Result<Self> {
        let n = betas.len();
        Self::build(betas, (0..n).collect(), n)
    }

    pub fn new(kind: &BetaSchedule) -> Result<Self> {
        Self::from_betas(kind.betas()?)
    }

    fn build(betas: Vec<f64>, timesteps: Vec<usize>, original_steps: usize) -> Result<Self> {
        if let Some((i, b)) = betas
            .iter()
            .enumerate()
            .find(|(_, b)| !(**b > 0.0 && **b <= 1.0))
        {
            return Err(DiffusionError::Schedule(format!(
                "β[{i}] = {b} is outside (0, 1]"
            )));
        }
        let mut alphas_cumprod = Vec::with_capacity(betas.len());
        let mut acc = 1.0;
        for b in &betas {
            acc *= 1.0 - b;
            alphas_cumprod.push(acc);
        }
        let mut alphas_cumprod_prev = vec![1.0];
        alphas_cumprod_prev.extend_from_slice(&alphas_cumprod[..alphas_cumprod.len() - 1]);
        Ok(Schedule {
            betas,
            alphas_cumprod,
            alphas_cumprod_prev,
            timesteps,
            original_steps,
        })
    }

    pub fn len(&self) -> usize {
        self.betas.len()
    }

    pub fn is_empty(&self) -> bool {
        self.betas.is_empty()
    }

    /// A shorter chain keeping the original steps `keep` (sorted, distinct, in range). Only
    /// valid on an un-respaced chain, whose positions are the original steps.
    pub fn respaced(&self, keep: &[usize]) -> Result<Self> {
        if self.original_steps != self.len() {
            return Err(DiffusionError::Schedule(
                "respacing an already respaced chain".into(),
            ));
        }
        if keep.is_empty() || keep.windows(2).any(|w| w[0] >= w[1]) {
            return Err(DiffusionError::Schedule(
                "kept steps must be non-empty, sorted and distinct".into(),
            ));
        }
        if let Some(&bad) = keep.iter().find(|&&t| t >= self.len()) {
            return Err(DiffusionError::Schedule(format!(
                "kept step {bad} is beyond the {}-step chain",
                self.len()
            )));
        }
        let mut last = 1.0;
        let mut betas = Vec::with_capacity(keep.len());
        for &t in keep {
            let a = self.alphas_cumprod[t];
            betas.push(1.0 - a / last);
            last = a;
        }
        Self::build(betas, keep.to_vec(), self.len())
    }

    /// The chain named by a sampler spec: `"ddimN"` or `"N"` / `"N1,N2,…"` (see
    /// [`super::space_timesteps`]), on the original schedule `kind`.
    pub fn for_spec(kind: &BetaSchedule, spec: &str) -> Result<Self> {
        let base = Self::new(kind)?;
        let keep = super::space_timesteps(base.len(), spec)?;
        base.respaced(&keep)
    }

    /// Posterior q(x_{k−1} | x_k, x₀) variance β̃_k.
    pub fn posterior_variance(&self, k: usize) -> f64 {
        self.betas[k] * (1.0 - self.alphas_cumprod_prev[k]) / (1.0 - self.alphas_cumprod[k])
    }

    /// log β̃_k with β̃_0 (= 0) replaced by β̃_1, as guided-diffusion clips it.
    pub fn posterior_log_variance_clipped(&self, k: usize) -> f64 {
        let k = if k == 0 && self.len() > 1 { 1 } else { k };
        self.posterior_variance(k).ln()
    }

    /// Coefficients (c₀, c_t) of the posterior mean c₀·x̂₀ + c_t·x_k.
    pub fn posterior_mean_coefs(&self, k: usize) -> (f64, f64) {
        let (b, a, ap) = (
            self.betas[k],
            self.alphas_cumprod[k],
            self.alphas_cumprod_prev[k],
        );
        (
            b * ap.sqrt() / (1.0 - a),
            (1.0 - ap) * (1.0 - b).sqrt() / (1.0 - a),
        )
    }

    /// The chain position whose original step is the largest not above `t` (None if `t` is
    /// below the first kept step).
    pub fn position_at_or_below(&self, t: usize) -> Option<usize> {
        match self.timesteps.binary_search(&t) {
            Ok(k) => Some(k),
            Err(0) => None,
            Err(k) => Some(k - 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_endpoints_and_monotone_alpha_bar() {
        let s = Schedule::new(&BetaSchedule::linear1000()).unwrap();
        assert_eq!(s.len(), 1000);
        assert!((s.betas[0] - 1e-4).abs() < 1e-18 && (s.betas[999] - 0.02).abs() < 1e-15);
        assert!(s.alphas_cumprod.windows(2).all(|w| w[1] < w[0]));
    }

    #[test]
    fn absurd_step_counts_are_refused_before_allocating() {
        for kind in [
            BetaSchedule::Linear {
                steps: 1 << 40,
                start: 1e-4,
                end: 0.02,
            },
            BetaSchedule::Cosine { steps: usize::MAX },
        ] {
            let e = Schedule::new(&kind).unwrap_err().to_string();
            assert!(e.contains("at most 100000"), "{e}");
        }
        assert_eq!(
            Schedule::new(&BetaSchedule::Cosine { steps: MAX_STEPS })
                .unwrap()
                .len(),
            MAX_STEPS
        );
    }

    #[test]
    fn cosine_is_a_valid_schedule() {
        let s = Schedule::new(&BetaSchedule::Cosine { steps: 1000 }).unwrap();
        assert!(s.betas.iter().all(|&b| b > 0.0 && b <= 0.999));
        assert!(s.alphas_cumprod[0] > 0.9999 && s.alphas_cumprod[999] < 1e-4);
    }

    #[test]
    fn respacing_keeps_alpha_bar_of_kept_steps() {
        let base = Schedule::new(&BetaSchedule::linear1000()).unwrap();
        let r = Schedule::for_spec(&BetaSchedule::linear1000(), "ddim250").unwrap();
        for (k, &t) in r.timesteps.iter().enumerate() {
            assert!((r.alphas_cumprod[k] - base.alphas_cumprod[t]).abs() < 1e-14);
        }
        assert_eq!(r.position_at_or_below(401), Some(100));
        assert_eq!(r.position_at_or_below(400), Some(100));
        assert_eq!(r.position_at_or_below(2000), Some(249));
    }

    #[test]
    fn bad_schedules_are_errors() {
        let bad = BetaSchedule::Linear {
            steps: 10,
            start: 0.5,
            end: 0.1,
        };
        assert!(Schedule::new(&bad).is_err());
        let base = Schedule::new(&BetaSchedule::linear1000()).unwrap();
        assert!(base.respaced(&[5, 3]).is_err());
        assert!(base.respaced(&[1000]).is_err());
    }
}
