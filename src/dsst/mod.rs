//! The dynamic starting step table (METHOD.md Eq. 11/23): for each blur width σ on the grid
//! 0.1…15.0, the first diffusion step at which a face and its blur are indistinguishable
//! under the forward noise, `t(σ) = min{t : √ᾱ_t·E_x[rms(x − k_σ⊛x)] ≤ τ·√(1−ᾱ_t)}`.

pub mod build;
pub mod calibrate;
pub mod faces;
pub mod table;

pub use build::{mean_blur_residual, table_from_residuals};
pub use calibrate::{calibrate_tau, Calibration};
pub use table::DsstTable;

/// The σ grid: 0.1, 0.2, …, 15.0 (150 values), computed from integers so every value is the
/// nearest double to its decimal.
pub fn sigma_grid() -> Vec<f64> {
    (1..=150).map(|i| i as f64 / 10.0).collect()
}
