//! The training-free blur-level estimate, this project's own addition for when no trained
//! standard estimator (SE) exists: σ̂ is the smallest σ on the grid at which the restorer's
//! output and the degraded input agree once both are blurred by k_σ. Below σ̂ the restorer
//! adds detail the input does not support; from σ̂ on, the two tell the same story, so σ̂
//! measures how much of RM(y) the input actually vouches for — the role σ* plays in Eq. 19
//! with the (unknown) ground truth replaced by the input.

use super::sigma_star::{default_grid, sigma_star, Distance, SigmaStarError};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlurLevelEstimator {
    /// Candidate σ, searched in order (0.1 … 15.0 by default).
    pub grid: Vec<f32>,
    /// Agreement threshold on the distance between the blurred images on [0, 1].
    pub tolerance: f32,
    pub distance: Distance,
}

impl Default for BlurLevelEstimator {
    fn default() -> Self {
        BlurLevelEstimator {
            grid: default_grid(),
            // Chosen by the measurement in tests/dblm_estimator.rs (README, BENCHMARKS.md).
            tolerance: 0.04,
            distance: Distance::Mae,
        }
    }
}

impl BlurLevelEstimator {
    /// σ̂ for one `[C, H, W]` image pair on [0, 1]: `restored` = RM(y), `degraded` = y.
    pub fn estimate(
        &self,
        restored: &[f32],
        degraded: &[f32],
        shape: [usize; 3],
    ) -> Result<f32, SigmaStarError> {
        sigma_star(
            restored,
            degraded,
            shape,
            &self.grid,
            self.tolerance,
            self.distance,
        )
    }
}

/// Spearman rank correlation (average ranks for ties).
pub fn spearman(a: &[f64], b: &[f64]) -> f64 {
    fn ranks(v: &[f64]) -> Vec<f64> {
        let mut idx: Vec<usize> = (0..v.len()).collect();
        idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
        let mut r = vec![0.0; v.len()];
        let mut i = 0;
        while i < idx.len() {
            let mut j = i;
            while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
                j += 1;
            }
            let avg = (i + j) as f64 / 2.0 + 1.0;
            for k in i..=j {
                r[idx[k]] = avg;
            }
            i = j + 1;
        }
        r
    }
    let (ra, rb) = (ranks(a), ranks(b));
    let n = a.len() as f64;
    let (ma, mb) = (ra.iter().sum::<f64>() / n, rb.iter().sum::<f64>() / n);
    let cov: f64 = ra.iter().zip(&rb).map(|(x, y)| (x - ma) * (y - mb)).sum();
    let va: f64 = ra.iter().map(|x| (x - ma).powi(2)).sum();
    let vb: f64 = rb.iter().map(|y| (y - mb).powi(2)).sum();
    cov / (va * vb).sqrt()
}

#[cfg(test)]
mod tests {
    use super::spearman;

    #[test]
    fn spearman_of_monotone_and_reversed_orders() {
        let a = [1.0, 2.0, 3.0, 4.0, 10.0];
        assert!((spearman(&a, &[0.1, 0.5, 0.7, 2.0, 2.1]) - 1.0).abs() < 1e-12);
        assert!((spearman(&a, &[5.0, 4.0, 3.0, 2.0, 1.0]) + 1.0).abs() < 1e-12);
        // Ties get average ranks: ρ of [1,2,2,3] with itself is 1.
        let t = [1.0, 2.0, 2.0, 3.0];
        assert!((spearman(&t, &t) - 1.0).abs() < 1e-12);
    }
}
