//! Batched entry points on NCHW slices: blur, its adjoint, and ∂⟨blur(x,σ), g⟩/∂σ.
//!
//! Each image has its own σ, shared by its channels. Per-image kernels and
//! index maps are built once; then each 1-D pass runs over blocks of rows of all
//! planes in parallel (rayon), so even a single 3-channel image keeps many cores
//! busy. Results do not depend on the thread count: every output value is
//! computed by one task in a fixed order.

use super::kernel::Kernel1d;
use super::plane::{cols_adjoint, cols_forward, preimages, rows_adjoint, rows_forward};
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

/// One image's kernel, the reflect maps for its rows and columns, and the
/// column map's preimages (for the adjoint's gather form).
struct Plan<T> {
    k: Kernel1d<T>,
    row_map: Vec<usize>,
    col_map: Vec<usize>,
    col_inv: Vec<Vec<usize>>,
}

fn plans<T: Scalar>(sigma: &[T], h: usize, w: usize) -> Vec<Plan<T>> {
    sigma
        .iter()
        .map(|s| {
            let k = Kernel1d::new(s.as_f64());
            let r = k.radius;
            let col_map = padded_map(h, r);
            let col_inv = preimages(&col_map, h);
            Plan {
                k,
                row_map: padded_map(w, r),
                col_map,
                col_inv,
            }
        })
        .collect()
}

/// Rows per parallel task: large enough to amortise scheduling, small enough
/// to split a 512-row plane across many cores.
const ROW_BLOCK: usize = 16;

/// Runs `f(plane, first_row, rows_out, line_scratch)` over blocks of rows of every
/// [h, w] plane of `out`, in parallel.
fn par_row_blocks<T, F>(out: &mut [T], hw: usize, w: usize, f: F)
where
    T: Scalar,
    F: Fn(usize, usize, &mut [T], &mut Vec<T>) + Sync,
{
    out.par_chunks_mut(hw).enumerate().for_each(|(i, plane)| {
        plane
            .par_chunks_mut(ROW_BLOCK * w)
            .enumerate()
            .for_each_init(Vec::new, |line, (blk, rows)| {
                f(i, blk * ROW_BLOCK, rows, line)
            });
    });
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
    let mut mid = vec![T::zero(); x.len()];
    par_row_blocks(&mut mid, hw, w, |i, r0, rows, line| {
        let p = &plans[i / c];
        let src = &x[i * hw + r0 * w..][..rows.len()];
        rows_forward(src, w, &p.k.g, &p.row_map, line, rows);
    });
    par_row_blocks(out, hw, w, |i, r0, rows, _| {
        let p = &plans[i / c];
        cols_forward(&mid[i * hw..(i + 1) * hw], w, &p.k.g, &p.col_map, r0, rows);
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
    // Forward is C·R, so the adjoint is Rᵀ·Cᵀ: columns first.
    let mut mid = vec![T::zero(); g.len()];
    par_row_blocks(&mut mid, hw, w, |i, r0, rows, _| {
        let p = &plans[i / c];
        cols_adjoint(&g[i * hw..(i + 1) * hw], h, w, &p.k.g, &p.col_inv, r0, rows);
    });
    par_row_blocks(out, hw, w, |i, r0, rows, line| {
        let p = &plans[i / c];
        let src = &mid[i * hw + r0 * w..][..rows.len()];
        rows_adjoint(src, w, &p.k.g, &p.row_map, line, rows);
    });
}

/// `out[b] = ∂⟨blur(x, σ), g⟩/∂σ_b`, summed over the image's channels.
///
/// Uses d(K_h ⊗ K_w)/dσ = dK_h ⊗ K_w + K_h ⊗ dK_w with the analytic dK of
/// [`Kernel1d`]. Dot products are accumulated in f64 per row block and summed in
/// a fixed order, so the result does not depend on the thread count.
pub fn blur_dsigma<T: Scalar>(x: &[T], sigma: &[T], g: &[T], shape: [usize; 4], out: &mut [T]) {
    validated("blur_dsigma", x.len(), sigma, shape);
    check_len("g", g.len(), x.len(), shape);
    check_len("output", out.len(), sigma.len(), shape);
    let [b, c, h, w] = shape;
    let plans = plans(sigma, h, w);
    let hw = h * w;
    // Row passes with K and with dK ...
    let mut mid_k = vec![T::zero(); x.len()];
    let mut mid_dk = vec![T::zero(); x.len()];
    par_row_blocks(&mut mid_k, hw, w, |i, r0, rows, line| {
        let p = &plans[i / c];
        rows_forward(
            &x[i * hw + r0 * w..][..rows.len()],
            w,
            &p.k.g,
            &p.row_map,
            line,
            rows,
        );
    });
    par_row_blocks(&mut mid_dk, hw, w, |i, r0, rows, line| {
        let p = &plans[i / c];
        rows_forward(
            &x[i * hw + r0 * w..][..rows.len()],
            w,
            &p.k.dg,
            &p.row_map,
            line,
            rows,
        );
    });
    // ... then column passes with the other kernel, dotted with g block by block.
    let blocks_per_plane = h.div_ceil(ROW_BLOCK);
    let partial: Vec<f64> = (0..b * c * blocks_per_plane)
        .into_par_iter()
        .map_init(Vec::new, |tmp, t| {
            let (i, blk) = (t / blocks_per_plane, t % blocks_per_plane);
            let p = &plans[i / c];
            let r0 = blk * ROW_BLOCK;
            let n = (h - r0).min(ROW_BLOCK) * w;
            tmp.resize(n, T::zero());
            let plane = i * hw..(i + 1) * hw;
            let gb = &g[i * hw + r0 * w..][..n];
            cols_forward(&mid_k[plane.clone()], w, &p.k.dg, &p.col_map, r0, tmp);
            let mut acc = dot(tmp, gb);
            cols_forward(&mid_dk[plane], w, &p.k.g, &p.col_map, r0, tmp);
            acc += dot(tmp, gb);
            acc
        })
        .collect();
    let per_image = c * blocks_per_plane;
    for (bi, o) in out.iter_mut().enumerate().take(b) {
        *o = T::of_f64(partial[bi * per_image..(bi + 1) * per_image].iter().sum());
    }
}

fn dot<T: Scalar>(a: &[T], b: &[T]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x.as_f64() * y.as_f64()).sum()
}
