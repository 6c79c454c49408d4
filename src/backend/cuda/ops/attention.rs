//! `kernels/attention.cu`: row softmax (forward, backward), the graph's fused attention
//! (`Op::Attention` and its backward, `attn_*`, also behind `KernelBackend::fused_attention`).
//! Also which fused ops the CUDA backend (and its emulator) asks the rewrite passes for.

use super::{i64of, OpArgs};
use crate::backend::cuda::abi::{
    AttnBwdDkdv, AttnBwdDq, AttnFwd, AttnGeo, AttnRowdot, DevMut, DevPtr, Grid, Launcher,
    SoftmaxBwd, SoftmaxFwd,
};
use crate::backend::{BResult, BackendError};
use crate::graph::{AttnDims, AttnInput, AttnLayout, Op};
use crate::tensor::numel;

/// Widest head the `attn_*` kernels take (their tiles are 64 channels wide, zero-padded).
const MAX_WIDTH: usize = 64;
/// The batch is the grid's y extent.
const MAX_BATCH: usize = 65535;

fn fits(n: &AttnDims) -> bool {
    n.d <= MAX_WIDTH && n.dv <= MAX_WIDTH && n.batch <= MAX_BATCH && n.tk > 0
}

/// The fused ops the rewrite passes may make on CUDA: GroupNorm+SiLU (one kernel each way),
/// and attention where the kernels take its shape.
pub fn fuses(op: &Op, inputs: &[&[usize]]) -> bool {
    match op {
        Op::GroupNormSilu { .. } | Op::GroupNormSiluBackward { .. } => true,
        Op::Attention { layout, .. } | Op::AttentionBackward { layout, .. } => {
            inputs.len() >= 3
                && layout
                    .dims(inputs[0], inputs[1], inputs[2])
                    .is_ok_and(|n| fits(&n))
        }
        _ => false,
    }
}

/// Scratch of `Op::AttentionBackward`: per query row its log-sum-exp and Σ dO·O.
pub(super) fn backward_scratch_len(l: AttnLayout, ins: &[&[usize]]) -> usize {
    match l.dims(ins[0], ins[1], ins[2]) {
        Ok(n) => 2 * n.batch * n.tq,
        Err(_) => 0,
    }
}

/// (token stride, channel stride) of a `[T, w]` operand stored channels-major or not.
fn strides(channels_major: bool, tokens: usize, width: usize) -> (i64, i64) {
    let (ts, cs) = if channels_major {
        (1, tokens)
    } else {
        (width, 1)
    };
    (i64of(ts), i64of(cs))
}

/// The sizes and the four operands' strides every `attn_*` kernel takes.
fn geometry(l: AttnLayout, n: &AttnDims) -> AttnGeo {
    let (q_ts, q_cs) = strides(l.q, n.tq, n.d);
    let (k_ts, k_cs) = strides(l.k, n.tk, n.d);
    let (v_ts, v_cs) = strides(l.v, n.tk, n.dv);
    let (o_ts, o_cs) = strides(l.o, n.tq, n.dv);
    AttnGeo {
        l: i64of(n.tq),
        s: i64of(n.tk),
        d: i64of(n.d),
        dv: i64of(n.dv),
        q_ts,
        q_cs,
        k_ts,
        k_cs,
        v_ts,
        v_cs,
        o_ts,
        o_cs,
    }
}

fn dims(l: AttnLayout, a: &OpArgs) -> BResult<AttnDims> {
    let n = l
        .dims(a.s(0), a.s(1), a.s(2))
        .map_err(BackendError::Unsupported)?;
    if !fits(&n) {
        return Err(BackendError::Unsupported(format!(
            "fused attention: head widths {} and {} (≤ {MAX_WIDTH}), batch {} (≤ {MAX_BATCH})",
            n.d, n.dv, n.batch
        )));
    }
    Ok(n)
}

/// One block per `tile` queries (x) and batch entry (y), 256 threads.
fn grid_rows(rows: usize, tile: usize, batch: usize) -> Grid {
    Grid {
        blocks: (rows.div_ceil(tile) as u32, batch as u32, 1),
        threads: 256,
    }
}

fn launch_fwd(
    a: &OpArgs,
    geo: AttnGeo,
    n: &AttnDims,
    out: DevMut<f32>,
    lse: DevMut<f32>,
    scale: f32,
) -> BResult<()> {
    AttnFwd {
        q: a.x(0),
        k: a.x(1),
        v: a.x(2),
        out,
        lse,
        geo,
        scale,
    }
    .launch(a.be, grid_rows(n.tq, 64, n.batch))
}

/// `Op::Attention` (inputs q, k, v): softmax(scale·q·kᵀ)·v without the score matrix.
pub(super) fn attention(a: &OpArgs, scale: f32, l: AttnLayout) -> BResult<()> {
    let n = dims(l, a)?;
    launch_fwd(a, geometry(l, &n), &n, a.y(), DevMut::at(0), scale)
}

/// `Op::AttentionBackward` (inputs q, k, v, o, do): the statistics (log-sum-exp per query,
/// Σ dO·O per query) into the node's scratch, then the one gradient asked for. The forward
/// is recomputed for the log-sum-exp; its output goes nowhere (null `out`).
pub(super) fn attention_backward(
    a: &OpArgs,
    scale: f32,
    l: AttnLayout,
    wrt: AttnInput,
) -> BResult<()> {
    let n = dims(l, a)?;
    let geo = geometry(l, &n);
    let rows = n.batch * n.tq;
    let ws = a.scratch(2 * rows)?;
    let (lse, rowdot) = (ws, ws.offset(rows));
    launch_fwd(a, geo, &n, DevMut::at(0), lse, scale)?;
    AttnRowdot {
        o: a.x(3),
        g: a.x(4),
        rowdot,
        rows: i64of(rows),
        geo,
    }
    .launch(a.be, super::grid_x((rows * 32).div_ceil(256), 256))?;
    match wrt {
        AttnInput::Q => AttnBwdDq {
            q: a.x(0),
            k: a.x(1),
            v: a.x(2),
            g: a.x(4),
            lse: lse.input(),
            rowdot: rowdot.input(),
            dq: a.y(),
            geo,
            scale,
        }
        .launch(a.be, grid_rows(n.tq, 32, n.batch)),
        AttnInput::K | AttnInput::V => AttnBwdDkdv {
            q: a.x(0),
            k: a.x(1),
            v: a.x(2),
            g: a.x(4),
            lse: lse.input(),
            rowdot: rowdot.input(),
            dst: a.y(),
            geo,
            scale,
            want_k: (wrt == AttnInput::K) as i32,
        }
        .launch(a.be, grid_rows(n.tk, 32, n.batch)),
    }
}

/// (rows, row length) of input 0, and the grid of one warp per row.
fn rows(a: &OpArgs) -> (usize, usize, Grid) {
    let d = *a.s(0).last().unwrap();
    let rows = numel(a.s(0)) / d.max(1);
    (rows, d, super::grid_x(rows.div_ceil(8), 256))
}

pub(super) fn softmax(a: &OpArgs) -> BResult<()> {
    let (r, d, grid) = rows(a);
    SoftmaxFwd {
        x: a.x(0),
        y: a.y(),
        rows: i64of(r),
        d: i64of(d),
    }
    .launch(a.be, grid)
}

pub(super) fn softmax_backward(a: &OpArgs) -> BResult<()> {
    let (r, d, grid) = rows(a);
    SoftmaxBwd {
        y: a.x(0),
        dy: a.x(1),
        dx: a.y(),
        rows: i64of(r),
        d: i64of(d),
    }
    .launch(a.be, grid)
}

/// `KernelBackend::fused_attention`: out = softmax(scale·q·kᵀ)·v for q [b, l, 64], k and v
/// [b, s, 64], all token-major, through the graph op's kernel (`attn_fwd`).
#[allow(clippy::too_many_arguments)]
pub(crate) fn fused_attention(
    be: &dyn Launcher,
    q: DevPtr<f32>,
    k: DevPtr<f32>,
    v: DevPtr<f32>,
    out: DevMut<f32>,
    (b, l, s): (usize, usize, usize),
    scale: f32,
) -> BResult<()> {
    let n = AttnDims {
        batch: b,
        tq: l,
        tk: s,
        d: MAX_WIDTH,
        dv: MAX_WIDTH,
    };
    if !fits(&n) {
        return Err(BackendError::Unsupported(format!(
            "fused attention over {b} batches (≤ {MAX_BATCH}) and {s} keys (≥ 1)"
        )));
    }
    let token_major = AttnLayout {
        q: false,
        k: false,
        v: false,
        o: false,
    };
    AttnFwd {
        q,
        k,
        v,
        out,
        lse: DevMut::at(0),
        geo: geometry(token_major, &n),
        scale,
    }
    .launch(be, grid_rows(l, 64, b))
}
