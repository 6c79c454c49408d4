//! Element-wise ops with numpy broadcasting.

use crate::graph::{BinaryOp, UnaryOp};
use crate::tensor::Scalar;
use rayon::prelude::*;

/// Below this many elements threads cost more than they save.
pub const PAR_MIN: usize = 1 << 15;

fn c<T: Scalar>(v: f64) -> T {
    T::of_f64(v)
}

fn sigmoid<T: Scalar>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

fn erf<T: Scalar>(x: T) -> T {
    T::of_f64(libm::erf(x.as_f64()))
}

#[inline]
fn unary_f<T: Scalar>(u: UnaryOp, x: T) -> T {
    match u {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Square => x * x,
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Gelu => c::<T>(0.5) * x * (T::one() + erf(x * c(std::f64::consts::FRAC_1_SQRT_2))),
        UnaryOp::Elu(a) => {
            if x > T::zero() {
                x
            } else {
                T::of_f32(a) * (x.exp() - T::one())
            }
        }
        UnaryOp::LeakyRelu(s) => {
            if x > T::zero() {
                x
            } else {
                T::of_f32(s) * x
            }
        }
        UnaryOp::Clamp(lo, hi) => x.max(T::of_f32(lo)).min(T::of_f32(hi)),
        UnaryOp::Affine(a, b) => T::of_f32(a) * x + T::of_f32(b),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Sigmoid => sigmoid(x),
    }
}

/// d unary_f / dx at x.
#[inline]
fn unary_df<T: Scalar>(u: UnaryOp, x: T) -> T {
    match u {
        UnaryOp::Neg => -T::one(),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Sqrt => c::<T>(0.5) / x.sqrt(),
        UnaryOp::Square => c::<T>(2.0) * x,
        UnaryOp::Silu => {
            let s = sigmoid(x);
            s * (T::one() + x * (T::one() - s))
        }
        UnaryOp::Gelu => {
            let cdf = c::<T>(0.5) * (T::one() + erf(x * c(std::f64::consts::FRAC_1_SQRT_2)));
            let pdf = (-(x * x) * c(0.5)).exp() * c(1.0 / (2.0 * std::f64::consts::PI).sqrt());
            cdf + x * pdf
        }
        UnaryOp::Elu(a) => {
            if x > T::zero() {
                T::one()
            } else {
                T::of_f32(a) * x.exp()
            }
        }
        UnaryOp::LeakyRelu(s) => {
            if x > T::zero() {
                T::one()
            } else {
                T::of_f32(s)
            }
        }
        UnaryOp::Clamp(lo, hi) => {
            if x > T::of_f32(lo) && x < T::of_f32(hi) {
                T::one()
            } else {
                T::zero()
            }
        }
        UnaryOp::Affine(a, _) => T::of_f32(a),
        UnaryOp::Tanh => {
            let t = x.tanh();
            T::one() - t * t
        }
        UnaryOp::Sigmoid => {
            let s = sigmoid(x);
            s * (T::one() - s)
        }
    }
}

pub fn unary<T: Scalar>(u: UnaryOp, x: &[T], y: &mut [T]) {
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(4096)
            .zip(x.par_chunks(4096))
            .for_each(|(yc, xc)| yc.iter_mut().zip(xc).for_each(|(o, &v)| *o = unary_f(u, v)));
    } else {
        y.iter_mut().zip(x).for_each(|(o, &v)| *o = unary_f(u, v));
    }
}

pub fn unary_backward<T: Scalar>(u: UnaryOp, x: &[T], dy: &[T], dx: &mut [T]) {
    let f = |(o, (&v, &g)): (&mut T, (&T, &T))| *o = g * unary_df(u, v);
    if dx.len() >= PAR_MIN {
        dx.par_chunks_mut(4096)
            .zip(x.par_chunks(4096).zip(dy.par_chunks(4096)))
            .for_each(|(oc, (xc, gc))| oc.iter_mut().zip(xc.iter().zip(gc)).for_each(f));
    } else {
        dx.iter_mut().zip(x.iter().zip(dy)).for_each(f);
    }
}

pub use crate::tensor::broadcast_strides;

/// Offset of the first element of output row `row` (all axes but the last) in an operand.
#[inline]
fn row_offset(mut row: usize, out: &[usize], st: &[usize]) -> usize {
    let mut off = 0;
    for i in (0..out.len().saturating_sub(1)).rev() {
        let d = out[i];
        off += (row % d) * st[i];
        row /= d;
    }
    off
}

#[inline]
fn bin<T: Scalar>(op: BinaryOp, a: T, b: T) -> T {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
    }
}

pub fn binary<T: Scalar>(
    op: BinaryOp,
    a: &[T],
    sa: &[usize],
    b: &[T],
    sb: &[usize],
    y: &mut [T],
    ys: &[usize],
) {
    if sa == ys && sb == ys {
        let f = |(o, (&p, &q)): (&mut T, (&T, &T))| *o = bin(op, p, q);
        if y.len() >= PAR_MIN {
            y.par_chunks_mut(4096)
                .zip(a.par_chunks(4096).zip(b.par_chunks(4096)))
                .for_each(|(oc, (ac, bc))| oc.iter_mut().zip(ac.iter().zip(bc)).for_each(f));
        } else {
            y.iter_mut().zip(a.iter().zip(b)).for_each(f);
        }
        return;
    }
    if ys.is_empty() {
        y[0] = bin(op, a[0], b[0]);
        return;
    }
    let sta = broadcast_strides(sa, ys);
    let stb = broadcast_strides(sb, ys);
    let inner = *ys.last().unwrap();
    let (ia, ib) = (sta[ys.len() - 1], stb[ys.len() - 1]);
    let kernel = |row: usize, out: &mut [T]| {
        let oa = row_offset(row, ys, &sta);
        let ob = row_offset(row, ys, &stb);
        for (j, o) in out.iter_mut().enumerate() {
            *o = bin(op, a[oa + j * ia], b[ob + j * ib]);
        }
    };
    if inner == 0 {
        return;
    }
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(r, o)| kernel(r, o));
    } else {
        y.chunks_mut(inner)
            .enumerate()
            .for_each(|(r, o)| kernel(r, o));
    }
}

pub fn broadcast_to<T: Scalar>(x: &[T], sx: &[usize], y: &mut [T], ys: &[usize]) {
    if ys.is_empty() {
        y[0] = x[0];
        return;
    }
    let st = broadcast_strides(sx, ys);
    let inner = *ys.last().unwrap();
    if inner == 0 {
        return;
    }
    let ix = st[ys.len() - 1];
    let kernel = |row: usize, out: &mut [T]| {
        let o = row_offset(row, ys, &st);
        for (j, v) in out.iter_mut().enumerate() {
            *v = x[o + j * ix];
        }
    };
    if y.len() >= PAR_MIN {
        y.par_chunks_mut(inner)
            .enumerate()
            .for_each(|(r, o)| kernel(r, o));
    } else {
        y.chunks_mut(inner)
            .enumerate()
            .for_each(|(r, o)| kernel(r, o));
    }
}
