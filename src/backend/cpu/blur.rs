//! Graph-op wrappers of the Gaussian blur numerics in `crate::blur`. σ comes from graph
//! values at run time, so it is validated here and a bad σ becomes an error, not a panic.

use crate::backend::{BResult, BackendError};
use crate::blur::{blur_adjoint, blur_dsigma, blur_forward, validate};
use crate::tensor::Scalar;

fn shape4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

fn check<T: Scalar>(len: usize, sigma: &[T], s: &[usize]) -> BResult<()> {
    validate(len, sigma, shape4(s))
        .map_err(|e| BackendError::Unsupported(format!("gaussian blur: {e}")))
}

pub fn forward<T: Scalar>(x: &[T], sigma: &[T], s: &[usize], y: &mut [T]) -> BResult<()> {
    check(x.len(), sigma, s)?;
    blur_forward(x, sigma, shape4(s), y);
    Ok(())
}

pub fn adjoint<T: Scalar>(g: &[T], sigma: &[T], s: &[usize], y: &mut [T]) -> BResult<()> {
    check(g.len(), sigma, s)?;
    blur_adjoint(g, sigma, shape4(s), y);
    Ok(())
}

pub fn dsigma<T: Scalar>(x: &[T], sigma: &[T], g: &[T], s: &[usize], y: &mut [T]) -> BResult<()> {
    check(x.len(), sigma, s)?;
    blur_dsigma(x, sigma, g, shape4(s), y);
    Ok(())
}
