//! Synthetic degradation of METHOD.md Eq. 16 / 18 for training data and test sets:
//! blur (41×41 Gaussian), bilinear ↓r, Gaussian noise, JPEG, bilinear ↑r.

pub mod kernel2d;
pub mod load;
pub mod npy;
pub mod params;
pub mod pipeline;
pub mod resize;
pub mod seed;

pub use params::{Choice, DegradeConfig, DegradeParams};
pub use pipeline::degrade_image;
