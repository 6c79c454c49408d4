//! Graph-op wrappers of the Gaussian blur numerics.

use crate::backend::{BResult, BackendError};
use crate::tensor::Scalar;

pub fn forward<T: Scalar>(_x: &[T], _sigma: &[T], _s: &[usize], _y: &mut [T]) -> BResult<()> {
    Err(BackendError::Unsupported(
        "gaussian blur: numerics not merged yet".into(),
    ))
}
pub fn adjoint<T: Scalar>(_g: &[T], _sigma: &[T], _s: &[usize], _y: &mut [T]) -> BResult<()> {
    Err(BackendError::Unsupported(
        "gaussian blur: numerics not merged yet".into(),
    ))
}
pub fn dsigma<T: Scalar>(
    _x: &[T],
    _sigma: &[T],
    _g: &[T],
    _s: &[usize],
    _y: &mut [T],
) -> BResult<()> {
    Err(BackendError::Unsupported(
        "gaussian blur: numerics not merged yet".into(),
    ))
}
