//! Nearest ×2 upsampling and its adjoint, the 2×2 block sum.

use crate::tensor::Scalar;
use rayon::prelude::*;

pub fn upsample2x<T: Scalar>(x: &[T], s: &[usize], y: &mut [T]) {
    let (h, w) = (s[2], s[3]);
    y.par_chunks_mut(4 * h * w)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            for i in 0..2 * h {
                let src = &xp[(i / 2) * w..(i / 2 + 1) * w];
                let dst = &mut yp[i * 2 * w..(i + 1) * 2 * w];
                for (j, v) in dst.iter_mut().enumerate() {
                    *v = src[j / 2];
                }
            }
        });
}

pub fn sum_pool2x<T: Scalar>(x: &[T], s: &[usize], y: &mut [T]) {
    let (h, w) = (s[2], s[3]);
    let (oh, ow) = (h / 2, w / 2);
    y.par_chunks_mut(oh * ow)
        .zip(x.par_chunks(h * w))
        .for_each(|(yp, xp)| {
            for i in 0..oh {
                for j in 0..ow {
                    let a = xp[2 * i * w + 2 * j] + xp[2 * i * w + 2 * j + 1];
                    let b = xp[(2 * i + 1) * w + 2 * j] + xp[(2 * i + 1) * w + 2 * j + 1];
                    yp[i * ow + j] = a + b;
                }
            }
        });
}
