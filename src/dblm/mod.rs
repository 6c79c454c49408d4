//! DBLM, the dynamic blur-level mapping (METHOD.md §2 Eq. 8–10): the restorer RM (SwinIR)
//! and a blur-level estimate σ̂, which together give the Gaussian-blurred guidance images.
//! The guidance σ_i and weights w_i of Eq. 15 live with the sampler's configuration.

pub mod estimate;
pub mod sigma_star;

pub use estimate::{spearman, BlurLevelEstimator};
