//! `kernels/resample.cu`: nearest 2× upsampling and 2×2 sum pooling.

use super::{grid1, i64of, OpArgs};
use crate::backend::cuda::abi::{SumPool2x, Upsample2x};
use crate::backend::BResult;

/// (planes, h, w) of input 0, [N, C, H, W].
fn planes(a: &OpArgs) -> (i64, i64, i64) {
    let s = a.s(0);
    (i64of(s[0] * s[1]), i64of(s[2]), i64of(s[3]))
}

pub(super) fn upsample2x(a: &OpArgs) -> BResult<()> {
    let n = a.n();
    if n == 0 {
        return Ok(());
    }
    let (planes, h, w) = planes(a);
    Upsample2x {
        x: a.x(0),
        y: a.y(),
        planes,
        h,
        w,
    }
    .launch(a.be, grid1(n))
}

pub(super) fn sum_pool2x(a: &OpArgs) -> BResult<()> {
    let n = a.n();
    if n == 0 {
        return Ok(());
    }
    let (planes, h, w) = planes(a);
    SumPool2x {
        x: a.x(0),
        y: a.y(),
        planes,
        h,
        w,
    }
    .launch(a.be, grid1(n))
}
