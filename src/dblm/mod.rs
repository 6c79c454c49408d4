//! DBLM, the dynamic blur-level mapping (METHOD.md §2 Eq. 8–10): the restorer RM (SwinIR)
//! and a blur-level estimate σ̂, which together give the Gaussian-blurred guidance images.

pub mod estimate;
pub mod guidance;

pub use estimate::{spearman, BlurLevelEstimator};
pub use guidance::{guidance_sigmas, guidance_weights};
