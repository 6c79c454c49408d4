//! Matrix products through the `gemm` crate (blocked, SIMD, rayon-parallel).

use super::elementwise::broadcast_strides;
use crate::tensor::{numel, Scalar};
use gemm::Parallelism;
use rayon::prelude::*;

/// Matrix products smaller than this run single-threaded inside gemm.
const PAR_FLOPS: usize = 1 << 18;

/// `c = a·b` (or `c += a·b`), row/column strides given in elements for each matrix.
/// # Safety-free wrapper
/// The slices bound every access; strides must describe matrices inside them.
#[allow(clippy::too_many_arguments)]
pub fn gemm_into<T: Scalar>(
    m: usize,
    n: usize,
    k: usize,
    a: &[T],
    a_rs: usize,
    a_cs: usize,
    b: &[T],
    b_rs: usize,
    b_cs: usize,
    c: &mut [T],
    c_rs: usize,
    c_cs: usize,
    accumulate: bool,
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    let span = |rows: usize, cols: usize, rs: usize, cs: usize| {
        (rows.max(1) - 1) * rs + (cols.max(1) - 1) * cs + 1
    };
    assert!(span(m, k, a_rs, a_cs) <= a.len() || k == 0);
    assert!(span(k, n, b_rs, b_cs) <= b.len() || k == 0);
    assert!(span(m, n, c_rs, c_cs) <= c.len());
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    c[i * c_rs + j * c_cs] = T::zero();
                }
            }
        }
        return;
    }
    let par = if threads > 1 && m * n * k >= PAR_FLOPS {
        Parallelism::Rayon(threads)
    } else {
        Parallelism::None
    };
    // SAFETY: the asserts above keep every strided access inside the slices; `c` is
    // exclusively borrowed. gemm computes dst := alpha·dst + beta·lhs·rhs.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            c_cs as isize,
            c_rs as isize,
            accumulate,
            a.as_ptr(),
            a_cs as isize,
            a_rs as isize,
            b.as_ptr(),
            b_cs as isize,
            b_rs as isize,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

struct SendPtr<T>(*mut T);
unsafe impl<T> Send for SendPtr<T> {}
unsafe impl<T> Sync for SendPtr<T> {}

#[allow(clippy::too_many_arguments)]
pub fn batched<T: Scalar>(
    a: &[T],
    sa: &[usize],
    ta: bool,
    b: &[T],
    sb: &[usize],
    tb: bool,
    y: &mut [T],
    ys: &[usize],
) {
    let r = ys.len();
    let (m, n) = (ys[r - 2], ys[r - 1]);
    let (ar, ac) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (br, bc) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    let k = if ta { ar } else { ac };
    // Strides of op(A) and op(B) as (row, col).
    let (a_rs, a_cs) = if ta { (1, ac) } else { (ac, 1) };
    let (b_rs, b_cs) = if tb { (1, bc) } else { (bc, 1) };
    let batch_shape = &ys[..r - 2];
    let nb = numel(batch_shape);
    let a_mat = ar * ac;
    let b_mat = br * bc;
    let sta = broadcast_strides(&sa[..sa.len() - 2], batch_shape);
    let stb = broadcast_strides(&sb[..sb.len() - 2], batch_shape);
    let offsets = |bi: usize| {
        let (mut oa, mut ob, mut rem) = (0, 0, bi);
        for i in (0..batch_shape.len()).rev() {
            let idx = rem % batch_shape[i];
            rem /= batch_shape[i];
            oa += idx * sta[i];
            ob += idx * stb[i];
        }
        (oa * a_mat, ob * b_mat)
    };
    let threads = rayon::current_num_threads();
    let per = m * n * k;
    if nb >= threads && per < (1 << 22) {
        // Many small products (attention heads, windows): one per task.
        let yp = SendPtr(y.as_mut_ptr());
        (0..nb).into_par_iter().for_each(|bi| {
            let (oa, ob) = offsets(bi);
            let yp = &yp;
            // SAFETY: each batch writes its own disjoint m·n block of y.
            let c = unsafe { std::slice::from_raw_parts_mut(yp.0.add(bi * m * n), m * n) };
            gemm_into(
                m,
                n,
                k,
                &a[oa..oa + a_mat],
                a_rs,
                a_cs,
                &b[ob..ob + b_mat],
                b_rs,
                b_cs,
                c,
                n,
                1,
                false,
                1,
            );
        });
    } else {
        for bi in 0..nb {
            let (oa, ob) = offsets(bi);
            let c = &mut y[bi * m * n..(bi + 1) * m * n];
            gemm_into(
                m,
                n,
                k,
                &a[oa..oa + a_mat],
                a_rs,
                a_cs,
                &b[ob..ob + b_mat],
                b_rs,
                b_cs,
                c,
                n,
                1,
                false,
                threads,
            );
        }
    }
}
