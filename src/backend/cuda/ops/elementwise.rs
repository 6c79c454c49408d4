//! `kernels/elementwise.cu`: unary and binary ops, fills, copies, sums over axes.

use super::layout::strided;
use super::{grid1, grid_x, i64of, OpArgs, MAX_BLOCKS, THREADS};
use crate::backend::cuda::abi::{
    BinaryBcast, BinaryCode, BinarySame, CopyValues, DevMut, DevPtr, FillValue, Launcher, Reduce,
    ReduceKernel, Strided, UnaryBwd, UnaryCode, UnaryFwd,
};
use crate::backend::BResult;
use crate::graph::{BinaryOp, ReduceOp, UnaryOp};
use crate::tensor::{broadcast_strides, numel, strides};

/// The kernels' code and parameters of a unary op.
fn unary_code(u: UnaryOp) -> (UnaryCode, f32, f32) {
    use UnaryCode as C;
    match u {
        UnaryOp::Neg => (C::Neg, 0.0, 0.0),
        UnaryOp::Exp => (C::Exp, 0.0, 0.0),
        UnaryOp::Sqrt => (C::Sqrt, 0.0, 0.0),
        UnaryOp::Square => (C::Square, 0.0, 0.0),
        UnaryOp::Silu => (C::Silu, 0.0, 0.0),
        UnaryOp::Gelu => (C::Gelu, 0.0, 0.0),
        UnaryOp::Elu(a) => (C::Elu, a, 0.0),
        UnaryOp::LeakyRelu(a) => (C::Leaky, a, 0.0),
        UnaryOp::Clamp(lo, hi) => (C::Clamp, lo, hi),
        UnaryOp::Affine(a, b) => (C::Affine, a, b),
        UnaryOp::Tanh => (C::Tanh, 0.0, 0.0),
        UnaryOp::Sigmoid => (C::Sigmoid, 0.0, 0.0),
    }
}

fn binary_code(b: BinaryOp) -> BinaryCode {
    match b {
        BinaryOp::Add => BinaryCode::Add,
        BinaryOp::Sub => BinaryCode::Sub,
        BinaryOp::Mul => BinaryCode::Mul,
        BinaryOp::Div => BinaryCode::Div,
    }
}

pub(super) fn unary(a: &OpArgs, u: UnaryOp) -> BResult<()> {
    let (op, pa, pb) = unary_code(u);
    let n = a.n();
    if n == 0 {
        return Ok(());
    }
    UnaryFwd {
        x: a.x(0),
        y: a.y(),
        n: i64of(n),
        op,
        a: pa,
        b: pb,
    }
    .launch(a.be, grid1(n))
}

pub(super) fn unary_backward(a: &OpArgs, u: UnaryOp) -> BResult<()> {
    let (op, pa, pb) = unary_code(u);
    let n = a.n();
    if n == 0 {
        return Ok(());
    }
    UnaryBwd {
        x: a.x(0),
        dy: a.x(1),
        dx: a.y(),
        n: i64of(n),
        op,
        a: pa,
        b: pb,
    }
    .launch(a.be, grid1(n))
}

pub(super) fn binary(a: &OpArgs, b: BinaryOp) -> BResult<()> {
    let (n, ys) = (a.n(), a.ys());
    if n == 0 {
        return Ok(());
    }
    let op = binary_code(b);
    if a.s(0) == ys && a.s(1) == ys {
        BinarySame {
            a: a.x(0),
            b: a.x(1),
            y: a.y(),
            n: i64of(n),
            op,
        }
        .launch(a.be, grid1(n))
    } else {
        let s = strided(
            ys,
            &broadcast_strides(a.s(0), ys),
            &broadcast_strides(a.s(1), ys),
        )?;
        BinaryBcast {
            a: a.x(0),
            b: a.x(1),
            y: a.y(),
            n: i64of(n),
            op,
            s,
        }
        .launch(a.be, grid1(n))
    }
}

pub(crate) fn fill(be: &dyn Launcher, y: DevMut<f32>, len: usize, v: f32) -> BResult<()> {
    if len == 0 {
        return Ok(());
    }
    FillValue {
        y,
        n: i64of(len),
        v,
    }
    .launch(be, grid1(len))
}

/// y[0..len] = x[0..len] between two disjoint device regions (the sampler's state feedback).
pub(crate) fn copy(be: &dyn Launcher, x: DevPtr<f32>, y: DevMut<f32>, len: usize) -> BResult<()> {
    if len == 0 {
        return Ok(());
    }
    CopyValues {
        x,
        y,
        n: i64of(len),
    }
    .launch(be, grid1(len))
}

pub(super) fn sum_to(a: &OpArgs) -> BResult<()> {
    let (sx, ys) = (a.s(0), a.ys());
    let lead = sx.len() - ys.len();
    let axes: Vec<usize> = (0..sx.len())
        .filter(|&ax| ax < lead || (ys[ax - lead] == 1 && sx[ax] != 1))
        .collect();
    reduce(a, &axes, false)
}

pub(super) fn reduce_op(a: &OpArgs, op: ReduceOp, axes: &[usize]) -> BResult<()> {
    reduce(a, axes, matches!(op, ReduceOp::Mean))
}

/// Sum (the mean when `mean`) of input 0 over `axes` into the output (kept axes in order).
fn reduce(a: &OpArgs, axes: &[usize], mean: bool) -> BResult<()> {
    let sx = a.s(0);
    let st = strides(sx);
    let (kept, red): (Vec<usize>, Vec<usize>) = (0..sx.len()).partition(|ax| !axes.contains(ax));
    let dims_of = |axes: &[usize]| -> (Vec<usize>, Vec<usize>) {
        axes.iter().map(|&ax| (sx[ax], st[ax])).unzip()
    };
    let (kd, ks) = dims_of(&kept);
    let (rd, rs) = dims_of(&red);
    let nout = numel(&kd);
    let count = numel(&rd);
    let scale = if mean { 1.0 / count.max(1) as f64 } else { 1.0 };
    if nout == 0 {
        return Ok(());
    }
    let zeros = [0usize; crate::backend::cuda::abi::MAXR];
    let kept: Strided = strided(&kd, &ks, &zeros[..kd.len()])?;
    let red: Strided = strided(&rd, &rs, &zeros[..rd.len()])?;
    let args = Reduce {
        x: a.x(0),
        y: a.y(),
        nout: i64of(nout),
        kept,
        red,
        count: i64of(count),
        scale,
    };
    // One block per output for long sums or few outputs, else one thread per output.
    if count >= 256 || nout < 2048 {
        let grid = grid_x(nout.min(MAX_BLOCKS), THREADS);
        args.launch(a.be, ReduceKernel::reduce_block, grid)
    } else {
        args.launch(a.be, ReduceKernel::reduce_thread, grid1(nout))
    }
}
