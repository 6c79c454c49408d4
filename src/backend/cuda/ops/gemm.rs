//! `kernels/gemm.cu` (fp32) and `kernels/gemm_tc.cu` (bf16 tensor cores): batched matrix
//! products with broadcast batch axes.

use super::layout::strided;
use super::tile::tile_for;
use super::{i64of, OpArgs, THREADS};
use crate::backend::cuda::abi::{select, Gemm, GemmKernel, Grid, KernelFamily};
use crate::backend::cuda::Precision;
use crate::backend::BResult;
use crate::tensor::{broadcast_strides, numel};

pub(super) fn matmul(a: &OpArgs, ta: bool, tb: bool) -> BResult<()> {
    let (sa, sb, ys) = (a.s(0), a.s(1), a.ys());
    let r = ys.len();
    let (m, n) = (ys[r - 2], ys[r - 1]);
    let (ar, ac) = (sa[sa.len() - 2], sa[sa.len() - 1]);
    let (br, bc) = (sb[sb.len() - 2], sb[sb.len() - 1]);
    let k = if ta { ar } else { ac };
    let (a_rs, a_cs) = if ta { (1, ac) } else { (ac, 1) };
    let (b_rs, b_cs) = if tb { (1, bc) } else { (bc, 1) };
    let batch_shape = &ys[..r - 2];
    let nb = numel(batch_shape);
    if nb == 0 || m == 0 || n == 0 {
        return Ok(());
    }
    let batch_strides = |s: &[usize], mat: usize| -> Vec<usize> {
        broadcast_strides(&s[..s.len() - 2], batch_shape)
            .iter()
            .map(|v| v * mat)
            .collect()
    };
    let batch = strided(
        batch_shape,
        &batch_strides(sa, ar * ac),
        &batch_strides(sb, br * bc),
    )?;
    let t = tile_for(a.be.state(), m, n, nb);
    let on_tc = a.precision()? == Precision::Bf16;
    let operands = (a_cs == 1, b_cs == 1);
    let kernel = select(
        |k: GemmKernel| {
            k.tile() == Some(t) && k.tensor_cores() == on_tc && k.operands_n() == Some(operands)
        },
        || format!("a {t:?} product (tensor cores: {on_tc}, n-operands {operands:?})"),
    )?;
    let grid = Grid {
        blocks: (
            n.div_ceil(t.1) as u32,
            m.div_ceil(t.0) as u32,
            nb.min(65535) as u32,
        ),
        threads: THREADS,
    };
    Gemm {
        a: a.x(0),
        b: a.x(1),
        c: a.y(),
        m: i64of(m),
        n: i64of(n),
        k: i64of(k),
        a_rs: i64of(a_rs),
        a_cs: i64of(a_cs),
        b_rs: i64of(b_rs),
        b_cs: i64of(b_cs),
        nbatch: i64of(nb),
        batch,
    }
    .launch(a.be, kernel, grid)
}
