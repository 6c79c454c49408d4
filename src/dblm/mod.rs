//! DBLM, the dynamic blur-level mapping (METHOD.md §1–2, Eq. 8–10, 15, 19): the restorer RM
//! (SwinIR) and a blur-level estimate σ̂ (the standard estimator SE = SDE ∘ TM, or the
//! training-free estimate built on σ* when no SE is trained), which give the widths σ_i and
//! the Gaussian-blurred guidance images ŷ_i = k_{σ_i} ⊛ RM(y) the sampler is guided by.

pub mod config;
pub mod estimate;
pub mod guidance;
pub mod networks;
pub mod sigma_star;

pub use config::GuidanceConfig;
pub use estimate::{spearman, BlurLevelEstimator};
pub use guidance::{batch_sigmas, guidance_sigmas, GuidanceBlur};
pub use networks::{Dblm, DblmOutput, StandardEstimator};
