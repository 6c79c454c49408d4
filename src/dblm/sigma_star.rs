//! The training label σ* of METHOD.md Eq. 9/19:
//! σ* = min { σ ∈ grid : d(k_σ ⊛ RM(y), k_σ ⊛ x) ≤ ε }, by brute force over the grid.
//!
//! The blur is linear, so k_σ ⊛ a − k_σ ⊛ b = k_σ ⊛ (a − b): one blur of the
//! difference per grid point, in f32 with `crate::blur::blur_forward`.

use crate::blur::blur_forward;

/// The distance d between the two blurred images (on [0, 1] images).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Distance {
    /// Mean absolute error (the default of METHOD.md).
    #[default]
    Mae,
    /// Mean squared error.
    Mse,
    /// Root mean squared error.
    Rmse,
}

impl Distance {
    fn of_difference(self, d: &[f32]) -> f64 {
        let n = d.len() as f64;
        match self {
            Distance::Mae => d.iter().map(|v| v.abs() as f64).sum::<f64>() / n,
            Distance::Mse => d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n,
            Distance::Rmse => (d.iter().map(|v| (*v as f64).powi(2)).sum::<f64>() / n).sqrt(),
        }
    }
}

/// The grid 0.1, 0.2, …, 15.0 (each value computed as k/10, not by repeated
/// addition, so it holds exactly the decimals it names to f32 rounding).
pub fn default_grid() -> Vec<f32> {
    (1..=150).map(|k| (k as f64 / 10.0) as f32).collect()
}

/// METHOD.md's ε.
pub const DEFAULT_EPS: f32 = 0.01;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SigmaStarError {
    #[error(
        "sigma_star: restored has {restored} values, gt has {gt}, shape {shape:?} needs {want}"
    )]
    Length {
        restored: usize,
        gt: usize,
        want: usize,
        shape: [usize; 3],
    },
    #[error("sigma_star: the σ grid is empty")]
    EmptyGrid,
    #[error("sigma_star: image shape {0:?} is empty")]
    EmptyImage([usize; 3]),
    #[error("sigma_star: grid value {0} is not a positive finite σ")]
    BadSigma(f32),
}

/// σ* for one [C, H, W] image pair on [0, 1]. `grid` is searched in the order
/// given (ascending for the Eq. 19 minimum). When no grid value meets ε, the last
/// grid value is returned: RM recovers nothing the coarsest blur keeps.
pub fn sigma_star(
    restored: &[f32],
    gt: &[f32],
    shape: [usize; 3],
    grid: &[f32],
    eps: f32,
    distance: Distance,
) -> Result<f32, SigmaStarError> {
    let [c, h, w] = shape;
    let want = c * h * w;
    if restored.len() != want || gt.len() != want {
        return Err(SigmaStarError::Length {
            restored: restored.len(),
            gt: gt.len(),
            want,
            shape,
        });
    }
    let last = *grid.last().ok_or(SigmaStarError::EmptyGrid)?;
    if h == 0 || w == 0 || c == 0 {
        return Err(SigmaStarError::EmptyImage(shape));
    }
    if let Some(&bad) = grid.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
        return Err(SigmaStarError::BadSigma(bad));
    }
    let diff: Vec<f32> = restored.iter().zip(gt).map(|(a, b)| a - b).collect();
    let mut blurred = vec![0.0f32; want];
    let full = [1, c, h, w];
    for &s in grid {
        blur_forward(&diff, &[s], full, &mut blurred);
        if distance.of_difference(&blurred) <= eps as f64 {
            return Ok(s);
        }
    }
    Ok(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::random::{rng, uniform};

    /// A smooth random image on [0, 1] with fine texture: sum of random
    /// low-frequency waves plus blurred noise.
    fn smooth_image(seed: u64, c: usize, h: usize, w: usize) -> Vec<f32> {
        let mut r = rng(seed);
        let noise = uniform::<f32>(&mut r, &[1, c, h, w], 0.0, 1.0).data;
        let mut tex = vec![0.0f32; noise.len()];
        blur_forward(&noise, &[0.7f32], [1, c, h, w], &mut tex);
        let p = uniform::<f32>(&mut r, &[12], 0.0, 1.0).data;
        let mut out = Vec::with_capacity(noise.len());
        for ci in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let (fy, fx) = (y as f32 / h as f32, x as f32 / w as f32);
                    let wave = (6.0 * p[ci] * fx
                        + 9.0 * p[ci + 3] * fy
                        + std::f32::consts::TAU * p[ci + 6])
                        .sin()
                        * (4.0 * p[ci + 9] * fy).cos();
                    let v = 0.5 + 0.25 * wave + 1.5 * (tex[(ci * h + y) * w + x] - 0.5);
                    out.push(v.clamp(0.0, 1.0));
                }
            }
        }
        out
    }

    #[test]
    fn identical_images_give_the_smallest_sigma() {
        let x = smooth_image(1, 3, 32, 32);
        let s = sigma_star(
            &x,
            &x,
            [3, 32, 32],
            &default_grid(),
            DEFAULT_EPS,
            Distance::Mae,
        )
        .unwrap();
        assert_eq!(s, 0.1);
    }

    #[test]
    fn sigma_star_grows_with_the_blur_of_the_restoration() {
        let shape = [3, 48, 48];
        for seed in [2, 3] {
            let gt = smooth_image(seed, 3, 48, 48);
            let mut prev = 0.0f32;
            let mut seen = Vec::new();
            for s in [0.5f32, 1.0, 2.0, 4.0, 8.0] {
                let mut restored = vec![0.0f32; gt.len()];
                blur_forward(&gt, &[s], [1, 3, 48, 48], &mut restored);
                let star = sigma_star(
                    &restored,
                    &gt,
                    shape,
                    &default_grid(),
                    DEFAULT_EPS,
                    Distance::Mae,
                )
                .unwrap();
                seen.push(star);
                assert!(
                    star >= prev,
                    "seed {seed}: σ* not monotone in the blur: {seen:?}"
                );
                prev = star;
            }
            eprintln!("seed {seed}: blur 0.5,1,2,4,8 -> σ* {seen:?}");
            assert!(seen[4] > seen[0], "seed {seed}: σ* flat: {seen:?}");
        }
    }

    #[test]
    fn found_sigma_is_the_first_that_meets_eps() {
        let shape = [3, 40, 40];
        let gt = smooth_image(4, 3, 40, 40);
        let mut restored = vec![0.0f32; gt.len()];
        blur_forward(&gt, &[3.0f32], [1, 3, 40, 40], &mut restored);
        let grid = default_grid();
        for d in [Distance::Mae, Distance::Mse, Distance::Rmse] {
            let eps = if d == Distance::Mse { 1e-4 } else { 0.01 };
            let star = sigma_star(&restored, &gt, shape, &grid, eps, d).unwrap();
            let dist = |s: f32| {
                let diff: Vec<f32> = restored.iter().zip(&gt).map(|(a, b)| a - b).collect();
                let mut out = vec![0.0f32; diff.len()];
                blur_forward(&diff, &[s], [1, 3, 40, 40], &mut out);
                d.of_difference(&out)
            };
            let i = grid.iter().position(|&g| g == star).unwrap();
            assert!(dist(star) <= eps as f64, "{d:?}");
            if i > 0 {
                assert!(
                    dist(grid[i - 1]) > eps as f64,
                    "{d:?}: σ* {star} is not the first"
                );
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = vec![0.5f32; 12];
        assert!(matches!(
            sigma_star(
                &x,
                &x[..11],
                [3, 2, 2],
                &default_grid(),
                0.01,
                Distance::Mae
            ),
            Err(SigmaStarError::Length { .. })
        ));
        assert_eq!(
            sigma_star(&x, &x, [3, 2, 2], &[], 0.01, Distance::Mae),
            Err(SigmaStarError::EmptyGrid)
        );
        assert!(matches!(
            sigma_star(&x, &x, [3, 2, 2], &[1.0, -1.0], 0.01, Distance::Mae),
            Err(SigmaStarError::BadSigma(_))
        ));
    }

    #[test]
    fn default_grid_is_the_paper_grid() {
        let g = default_grid();
        assert_eq!((g.len(), g[0], g[149]), (150, 0.1, 15.0));
    }
}
