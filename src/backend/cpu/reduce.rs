//! Sums and means over axes. Accumulation is in f64 so f32 reductions over whole images
//! (the guidance loss) do not drift with the summation order.

use crate::graph::ReduceOp;
use crate::tensor::{strides, Scalar};
use rayon::prelude::*;

pub fn reduce<T: Scalar>(op: ReduceOp, x: &[T], sx: &[usize], axes: &[usize], y: &mut [T]) {
    let st = strides(sx);
    let kept: Vec<usize> = (0..sx.len()).filter(|a| !axes.contains(a)).collect();
    let red: Vec<usize> = (0..sx.len()).filter(|a| axes.contains(a)).collect();
    let count: usize = red.iter().map(|&a| sx[a]).product();
    let scale = match op {
        ReduceOp::Sum => 1.0,
        ReduceOp::Mean => 1.0 / count.max(1) as f64,
    };
    // Innermost reduced axis contiguous and last: a tight inner loop.
    let kernel = |o: usize| -> T {
        let mut rem = o;
        let mut base = 0;
        for &a in kept.iter().rev() {
            base += (rem % sx[a]) * st[a];
            rem /= sx[a];
        }
        let mut acc = 0.0f64;
        if red.is_empty() {
            return T::of_f64(x[base].as_f64() * scale);
        }
        let last = *red.last().unwrap();
        let (n_last, s_last) = (sx[last], st[last]);
        let outer: usize = count / n_last.max(1);
        let mut idx = vec![0usize; red.len() - 1];
        for _ in 0..outer {
            let mut off = base;
            for (k, &a) in red[..red.len() - 1].iter().enumerate() {
                off += idx[k] * st[a];
            }
            for j in 0..n_last {
                acc += x[off + j * s_last].as_f64();
            }
            for k in (0..idx.len()).rev() {
                idx[k] += 1;
                if idx[k] < sx[red[k]] {
                    break;
                }
                idx[k] = 0;
            }
        }
        T::of_f64(acc * scale)
    };
    if y.len() > 1 && x.len() >= super::elementwise::PAR_MIN {
        y.par_iter_mut()
            .enumerate()
            .for_each(|(o, v)| *v = kernel(o));
    } else if y.len() == 1 && x.len() >= super::elementwise::PAR_MIN && red.len() == sx.len() {
        // A full reduction: split over the leading axis so both cores work.
        // Partial sums are combined in a fixed order so results never depend on scheduling.
        let parts: Vec<f64> = x
            .par_chunks(8192)
            .map(|c| c.iter().map(|v| v.as_f64()).sum::<f64>())
            .collect();
        let total: f64 = parts.iter().sum();
        y[0] = T::of_f64(total * scale);
    } else {
        y.iter_mut().enumerate().for_each(|(o, v)| *v = kernel(o));
    }
}

/// Sums `x` (shape `sx`) down to `ys`, which broadcasts to `sx`.
pub fn sum_to<T: Scalar>(x: &[T], sx: &[usize], y: &mut [T], ys: &[usize]) {
    let lead = sx.len() - ys.len();
    let axes: Vec<usize> = (0..sx.len())
        .filter(|&a| a < lead || (ys[a - lead] == 1 && sx[a] != 1))
        .collect();
    reduce(ReduceOp::Sum, x, sx, &axes, y);
}
