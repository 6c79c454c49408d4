//! The Gaussian blur operator of METHOD.md §3 (Eq. 5, 7, 8, 19): a separable,
//! normalised Gaussian with reflect borders, its exact adjoint, and its
//! derivative with respect to σ. Generic over f32 / f64, NCHW, one σ per image.

pub mod kernel;
mod ops;
mod plane;
pub mod reflect;

pub use kernel::{radius, Kernel1d};
pub use ops::{blur_adjoint, blur_dsigma, blur_forward, validate, BlurError};

#[cfg(test)]
mod tests;
