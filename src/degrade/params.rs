//! What Eq. 16 draws per image, and how each stage is configured (drawn from a
//! range, fixed, or off).

use rand::Rng;
use serde::Serialize;

/// How one stage's parameter is chosen.
// Deserialize: the training configs (`train se`, `train dgsa`) carry a degradation.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
pub enum Choice {
    /// Uniform in [lo, hi].
    Range(f64, f64),
    /// Always this value.
    Fixed(f64),
    /// Stage skipped.
    Off,
}

/// The configuration of the whole pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DegradeConfig {
    pub seed: u64,
    /// Blur width σ (pixels). `Off` or a value ≤ 0 skips the blur.
    pub sigma: Choice,
    /// Resize factor r: down by r, then back up. `Off` or r = 1 skips both resizes.
    pub scale: Choice,
    /// Gaussian noise std δ on the 0–255 scale. `Off` or 0 skips it.
    pub noise: Choice,
    /// JPEG quality q, rounded to an integer in 1..=100. `Off` skips JPEG.
    pub jpeg: Choice,
    /// Rotated anisotropic kernels: σ_x from `sigma`, σ_y from the same choice
    /// drawn independently, θ ~ U[−π, π).
    pub aniso: bool,
}

impl Default for DegradeConfig {
    /// The ranges of METHOD.md Eq. 16.
    fn default() -> Self {
        DegradeConfig {
            seed: 0,
            sigma: Choice::Range(0.1, 15.0),
            scale: Choice::Range(0.8, 32.0),
            noise: Choice::Range(0.0, 20.0),
            jpeg: Choice::Range(30.0, 100.0),
            aniso: false,
        }
    }
}

/// One image's drawn parameters (as recorded in degrade.json).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DegradeParams {
    /// σ (isotropic) or σ_x (anisotropic); None when the blur is off.
    pub sigma: Option<f64>,
    pub sigma_y: Option<f64>,
    pub theta: Option<f64>,
    /// None when the resize is off.
    pub scale: Option<f64>,
    /// None when there is no noise.
    pub noise: Option<f64>,
    pub jpeg_quality: Option<u8>,
}

impl DegradeConfig {
    /// Draws one image's parameters. Every draw is taken from the stream in a fixed
    /// order whether or not its stage is on, so fixing one stage leaves the draws
    /// of the others unchanged. Uniforms are scaled by hand so that lo == hi is
    /// allowed (`gen_range` would panic on an empty range).
    pub fn draw<R: Rng>(&self, rng: &mut R) -> DegradeParams {
        let u: [f64; 6] = std::array::from_fn(|_| rng.gen::<f64>());
        let pick = |c: Choice, u: f64| match c {
            Choice::Range(lo, hi) => Some(lo + (hi - lo) * u),
            Choice::Fixed(v) => Some(v),
            Choice::Off => None,
        };
        let sigma = pick(self.sigma, u[0]).filter(|&s| s > 0.0);
        let scale = pick(self.scale, u[1]).filter(|&r| r != 1.0);
        let noise = pick(self.noise, u[2]).filter(|&d| d > 0.0);
        let jpeg_quality = pick(self.jpeg, u[3]).map(|q| q.round().clamp(1.0, 100.0) as u8);
        let (sigma_y, theta) = match (self.aniso, sigma) {
            (true, Some(_)) => (
                pick(self.sigma, u[4]).map(|s| s.max(0.1)),
                Some(std::f64::consts::PI * (2.0 * u[5] - 1.0)),
            ),
            _ => (None, None),
        };
        DegradeParams {
            sigma,
            sigma_y,
            theta,
            scale,
            noise,
            jpeg_quality,
        }
    }
}

impl DegradeConfig {
    /// Rejects ranges and values no image could be degraded with.
    pub fn validate(&self) -> Result<(), String> {
        let check =
            |name: &str, c: Choice, min: f64, max: f64, min_open: bool| -> Result<(), String> {
                let ok =
                    |v: f64| v.is_finite() && v <= max && if min_open { v > min } else { v >= min };
                match c {
                    Choice::Range(lo, hi) if !(ok(lo) && ok(hi) && lo <= hi) => Err(format!(
                        "{name} range {lo},{hi} must satisfy {min} {} lo ≤ hi ≤ {max}",
                        if min_open { "<" } else { "≤" }
                    )),
                    Choice::Fixed(v) if !ok(v) => Err(format!(
                        "{name} {v} out of {}{min}, {max}]",
                        if min_open { "(" } else { "[" }
                    )),
                    _ => Ok(()),
                }
            };
        check("sigma", self.sigma, 0.0, 100.0, false)?;
        check("scale", self.scale, 0.0, 1024.0, true)?;
        check("noise", self.noise, 0.0, 255.0, false)?;
        check("jpeg", self.jpeg, 1.0, 100.0, false)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random::rng;

    #[test]
    fn defaults_draw_inside_the_paper_ranges() {
        let cfg = DegradeConfig::default();
        let mut r = rng(9);
        for _ in 0..200 {
            let p = cfg.draw(&mut r);
            let s = p.sigma.unwrap();
            assert!((0.1..=15.0).contains(&s));
            let sc = p.scale.unwrap();
            assert!((0.8..=32.0).contains(&sc));
            assert!(p.noise.is_none_or(|d| (0.0..=20.0).contains(&d)));
            assert!((30..=100).contains(&p.jpeg_quality.unwrap()));
            assert!(p.sigma_y.is_none() && p.theta.is_none());
        }
    }

    #[test]
    fn fixing_one_stage_keeps_the_other_draws() {
        let a = DegradeConfig::default();
        let b = DegradeConfig {
            sigma: Choice::Fixed(3.0),
            jpeg: Choice::Off,
            ..a.clone()
        };
        let (pa, pb) = (a.draw(&mut rng(4)), b.draw(&mut rng(4)));
        assert_eq!(pb.sigma, Some(3.0));
        assert_eq!(pb.jpeg_quality, None);
        assert_eq!(pa.scale, pb.scale);
        assert_eq!(pa.noise, pb.noise);
    }

    #[test]
    fn off_values_switch_stages_off() {
        let c = DegradeConfig {
            sigma: Choice::Fixed(0.0),
            scale: Choice::Fixed(1.0),
            noise: Choice::Fixed(0.0),
            jpeg: Choice::Off,
            ..Default::default()
        };
        let p = c.draw(&mut rng(1));
        assert_eq!(
            p,
            DegradeParams {
                sigma: None,
                sigma_y: None,
                theta: None,
                scale: None,
                noise: None,
                jpeg_quality: None
            }
        );
    }

    #[test]
    fn validation_names_the_bad_stage() {
        let c = DegradeConfig {
            scale: Choice::Fixed(0.0),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("scale"));
        let c = DegradeConfig {
            jpeg: Choice::Range(50.0, 40.0),
            ..Default::default()
        };
        assert!(c.validate().unwrap_err().contains("jpeg"));
        assert!(DegradeConfig::default().validate().is_ok());
    }
}
