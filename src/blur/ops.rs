//! Batched entry points on NCHW slices: blur, its adjoint, and ∂⟨blur(x,σ), g⟩/∂σ.
//!
//! Each image has its own σ, shared by its channels. Work is spread over
//! (image, channel) planes with rayon; per-image kernels and index maps are built
//! once before the parallel part.

use super::kernel::Kernel1d;
use super::plane::{cols_adjoint, cols_forward, rows_adjoint, rows_forward, Scratch};
use super::reflect::padded_map;
use crate::tensor::Scalar;
use rayon::prelude::*;

/// Why a blur call's arguments are unusable.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum BlurError {
    #[error("blur: {what} has {got} values, shape {shape:?} needs {want}")]
    Length {
        what: &'static str,
        got: usize,
        want: usize,
        shape: [usize; 4],
    },
    #[error("blur: image height and width must be positive, shape is {0:?}")]
    EmptyPlane([usize; 4]),
    #[error("blur: sigma[{index}] = {value} (must be finite and > 0)")]
    BadSigma { index: usize, value: f64 },
}

/// Checks an NCHW input of `len` values and its per-image σ.
pub fn validate<T: Scalar>(len: usize, sigma: &[T], shape: [usize; 4]) -> Result<(), BlurError> {
    let [b, c, h, w] = shape;
    if h == 0 || w == 0 {
        return Err(BlurError::EmptyPlane(shape));
    }
    let want = b * c * h * w;
    if len != want {
        return Err(BlurError::Length {
            what: "input",
            got: len,
            want,
            shape,
        });
    }
    if sigma.len() != b {
        return Err(BlurError::Length {
            what: "sigma",
            got: sigma.len(),
            want: b,
            shape,
        });
    }
    for (index, s) in sigma.iter().enumerate() {
        let value = s.as_f64();
        if !(value.is_finite() && value > 0.0) {
            return Err(BlurError::BadSigma { index, value });
        }
    }
    Ok(())
}

fn check_len(what: &'static str, got: usize, want: usize, shape: [usize; 4]) {
    if got != want {
        panic!(
            "{}",
            BlurError::Length {
                what,
                got,
                want,
                shape
            }
        );
    }
}

fn validated<T: Scalar>(op: &str, len: usize, sigma: &[T], shape: [usize; 4]) {
    if let Err(e) = validate(len, sigma, shape) {
        panic!("{op}: {e}");
    }
}

/// One image's kernel and the reflect maps for its rows and columns.
struct Plan<T> {
    k: Kernel1d<T>,
    row_map: Vec<usize>,
    col_map: Vec<usize>,
}

fn plans<T: Scalar>(sigma: &[T], h: usize, w: usize) -> Vec<Plan<T>> {
    sigma
        .iter()
        .map(|s| {
            let k = Kernel1d::new(s.as_f64());
            let r = k.radius;
            Plan {
                k,
                row_map: padded_map(w, r),
                col_map: padded_map(h, r),
            }
        })
        .collect()
}

/// `out = k_σ ⊛ x` per image (rows then columns, reflect borders).
///
/// Panics with a [`BlurError`] message when lengths or σ are invalid; call
/// [`validate`] first for input from outside the program.
pub fn blur_forward<T: Scalar>(x: &[T], sigma: &[T], shape: [usize; 4], out: &mut [T]) {
    validated("blur_forward", x.len(), sigma, shape);
    check_len("output", out.len(), x.len(), shape);
    let [_, c, h, w] = shape;
    let plans = plans(sigma, h, w);
    let hw = h * w;
    out.par_chunks_mut(hw)
        .zip(x.par_chunks(hw))
        .enumerate()
        .for_each_init(Scratch::default, |s, (i, (o, xp))| {
            let p = &plans[i / c];
            s.plane.resize(hw, T::zero());
            rows_forward(xp, w, &p.k.g, &p.row_map, &mut s.line, &mut s.plane);
            cols_forward(&s.plane, h, w, &p.k.g, &p.col_map, o);
        });
}

/// `out = blurᵀ(g, σ)`, the exact adjoint of [`blur_forward`]:
/// ⟨blur(x, σ), g⟩ = ⟨x, blurᵀ(g, σ)⟩.
pub fn blur_adjoint<T: Scalar>(g: &[T], sigma: &[T], shape: [usize; 4], out: &mut [T]) {
    validated("blur_adjoint", g.len(), sigma, shape);
    check_len("output", out.len(), g.len(), shape);
    let [_, c, h, w] = shape;
    let plans = plans(sigma, h, w);
    let hw = h * w;
    out.par_chunks_mut(hw)
        .zip(g.par_chunks(hw))
        .enumerate()
        .for_each_init(
            || (Scratch::default(), Vec::new()),
            |(s, mid), (i, (o, gp))| {
                let p = &plans[i / c];
                // Forward is C·R, so the adjoint is Rᵀ·Cᵀ: columns first.
                mid.resize(hw, T::zero());
                cols_adjoint(gp, h, w, &p.k.g, &p.col_map, &mut s.plane, mid);
                rows_adjoint(mid, w, &p.k.g, &p.row_map, &mut s.line, o);
            },
        );
}

/// `out[b] = ∂⟨blur(x, σ), g⟩/∂σ_b`, summed over the image's channels.
///
/// Uses d(K_h ⊗ K_w)/dσ = dK_h ⊗ K_w + K_h ⊗ dK_w with the analytic dK of
/// [`Kernel1d`]. Plane dot products are accumulated in f64.
pub fn blur_dsigma<T: Scalar>(x: &[T], sigma: &[T], g: &[T], shape: [usize; 4], out: &mut [T]) {
    validated("blur_dsigma", x.len(), sigma, shape);
    check_len("g", g.len(), x.len(), shape);
    check_len("output", out.len(), sigma.len(), shape);
    let [b, c, h, w] = shape;
    let plans = plans(sigma, h, w);
    let hw = h * w;
    if hw == 0 {
        return;
    }
    let per_plane: Vec<f64> = x
        .par_chunks(hw)
        .zip(g.par_chunks(hw))
        .enumerate()
        .map_init(
            || (Scratch::default(), Vec::new(), Vec::new()),
            |(s, rg, tmp), (i, (xp, gp))| {
                let p = &plans[i / c];
                rg.resize(hw, T::zero());
                tmp.resize(hw, T::zero());
                // Row pass with K then column pass with dK ...
                rows_forward(xp, w, &p.k.g, &p.row_map, &mut s.line, rg);
                cols_forward(rg, h, w, &p.k.dg, &p.col_map, tmp);
                let mut acc = dot(tmp, gp);
                // ... plus row pass with dK then column pass with K.
                rows_forward(xp, w, &p.k.dg, &p.row_map, &mut s.line, rg);
                cols_forward(rg, h, w, &p.k.g, &p.col_map, tmp);
                acc += dot(tmp, gp);
                acc
            },
        )
        .collect();
    for (bi, o) in out.iter_mut().enumerate().take(b) {
        *o = T::of_f64(per_plane[bi * c..(bi + 1) * c].iter().sum());
    }
}

fn dot<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.as_f64() * y.as_f64()).sum()
}
