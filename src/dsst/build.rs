//! E_x[rms(x − k_σ⊛x)] over a face set, and the table it gives for a tolerance τ.

use super::table::DsstTable;
use crate::backend::Backend;
use crate::diffusion::Schedule;
use crate::exec::Executor;
use crate::graph::plan::PlanOptions;
use crate::graph::Graph;
use crate::tensor::{Scalar, Tensor};
use anyhow::{bail, Result};

/// For each σ, the mean over images of rms(x − k_σ⊛x), with `faces` `[N,3,H,W]` in [−1, 1].
/// Runs the graph's Gaussian blur op, so it measures exactly the blur the sampler applies.
pub fn mean_blur_residual<B: Backend>(
    backend: B,
    faces: &Tensor<B::Elem>,
    sigmas: &[f64],
) -> Result<Vec<f64>> {
    if faces.shape.len() != 4 || faces.shape[0] == 0 {
        bail!(
            "faces must be a non-empty [N,C,H,W] batch, got {:?}",
            faces.shape
        );
    }
    let n = faces.shape[0];
    let mut g = Graph::new();
    let x = g.input("x", &faces.shape);
    let s = g.input("sigma", &[n]);
    let blurred = g.gaussian_blur(x, s)?;
    let diff = g.sub(x, blurred)?;
    let sq = g.square(diff)?;
    let ms = g.mean(sq, &[1, 2, 3], false)?;
    let rms = g.sqrt(ms)?;
    let mut ex = Executor::new(backend, &g, &[rms], PlanOptions::default())?;
    let mut out = Vec::with_capacity(sigmas.len());
    for &sigma in sigmas {
        ex.set_input("x", faces)?;
        ex.set_input(
            "sigma",
            &Tensor::new(vec![n], vec![B::Elem::of_f64(sigma); n]),
        )?;
        ex.run()?;
        let r = ex.output(rms)?;
        out.push(r.data.iter().map(|v| v.as_f64()).sum::<f64>() / n as f64);
    }
    Ok(out)
}

/// `t(σ) = min{t : √ᾱ_t·d(σ) ≤ τ·√(1−ᾱ_t)}` on an un-respaced schedule (the last step when no
/// step satisfies it), then made non-decreasing in σ (a running maximum): a blurrier guide
/// must never start later in the reverse process than a sharper one.
pub fn table_from_residuals(
    residual: &[f64],
    sigmas: &[f64],
    schedule: &Schedule,
    schedule_name: &str,
    tau: f64,
) -> Result<DsstTable> {
    if residual.len() != sigmas.len() {
        bail!("{} residuals for {} σ values", residual.len(), sigmas.len());
    }
    if !(tau.is_finite() && tau > 0.0) {
        bail!("tau = {tau} must be finite and > 0");
    }
    let last = schedule.len() - 1;
    let mut t = Vec::with_capacity(sigmas.len());
    let mut floor = 0;
    for &d in residual {
        let first = (0..schedule.len())
            .find(|&k| {
                let a = schedule.alphas_cumprod[k];
                a.sqrt() * d <= tau * (1.0 - a).sqrt()
            })
            .unwrap_or(last);
        floor = floor.max(first);
        t.push(floor);
    }
    let table = DsstTable {
        tau,
        schedule: schedule_name.to_string(),
        sigma: sigmas.to_vec(),
        t,
        residual: residual.to_vec(),
    };
    table.validate()?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diffusion::BetaSchedule;

    #[test]
    fn steps_follow_the_threshold_and_never_decrease() {
        let s = Schedule::new(&BetaSchedule::linear1000()).unwrap();
        let sig = [0.1, 0.2, 0.3, 0.4];
        // A dip in the residual (0.3) must not lower the step.
        let d = [0.0, 0.05, 0.04, 0.2];
        let t = table_from_residuals(&d, &sig, &s, "linear1000", 0.01).unwrap();
        assert_eq!(t.t[0], 0);
        assert!(t.t.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(t.t[2], t.t[1]);
        for (k, &d) in [t.t[1], t.t[3]].iter().zip(&[0.05, 0.2]) {
            let ok = |k: usize| {
                let a = s.alphas_cumprod[k];
                a.sqrt() * d <= 0.01 * (1.0 - a).sqrt()
            };
            assert!(
                ok(*k) && !ok(*k - 1),
                "t = {k} is not the first step for d = {d}"
            );
        }
    }
}
