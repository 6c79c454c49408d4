//! Launches of the graph's fused attention (`attn_*` in kernels/attention.cu) and which
//! shapes the CUDA backend (and its emulator) fuse: head widths up to 64, the kernels'
//! shared-memory tile. Kept apart from `ops.rs` so each op family's launch code sits alone.

use super::ops::Launcher;
use super::Arg;
use crate::backend::{BResult, BackendError, Operand};
use crate::graph::{AttnDims, AttnInput, AttnLayout, Op};

/// Widest head the kernels take (their tiles are 64 channels wide, zero-padded).
const MAX_WIDTH: usize = 64;
/// The batch is the grid's y extent.
const MAX_BATCH: usize = 65535;

fn fits(n: &AttnDims) -> bool {
    n.d <= MAX_WIDTH && n.dv <= MAX_WIDTH && n.batch <= MAX_BATCH && n.tk > 0
}

/// The fused ops the rewrite passes may make on CUDA: GroupNorm+SiLU (one kernel each way),
/// and attention where the kernels take its shape.
pub fn supports(op: &Op, inputs: &[&[usize]]) -> bool {
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

/// (token stride, channel stride) of a `[T, w]` operand stored channels-major or not.
fn strides(channels_major: bool, tokens: usize, width: usize) -> [Arg; 2] {
    let (ts, cs) = if channels_major {
        (1, tokens)
    } else {
        (width, 1)
    };
    [Arg::I64(ts as i64), Arg::I64(cs as i64)]
}

/// Sizes and the four operands' strides, in the kernels' argument order.
fn geometry(l: AttnLayout, n: &AttnDims) -> Vec<Arg> {
    let mut v = vec![
        Arg::I64(n.tq as i64),
        Arg::I64(n.tk as i64),
        Arg::I64(n.d as i64),
        Arg::I64(n.dv as i64),
    ];
    v.extend(strides(l.q, n.tq, n.d));
    v.extend(strides(l.k, n.tk, n.d));
    v.extend(strides(l.v, n.tk, n.dv));
    v.extend(strides(l.o, n.tq, n.dv));
    v
}

fn dims(l: AttnLayout, ins: &[Operand]) -> BResult<AttnDims> {
    let n = l
        .dims(ins[0].shape, ins[1].shape, ins[2].shape)
        .map_err(BackendError::Unsupported)?;
    if !fits(&n) {
        return Err(BackendError::Unsupported(format!(
            "fused attention: head widths {} and {} (≤ {MAX_WIDTH}), batch {} (≤ {MAX_BATCH})",
            n.d, n.dv, n.batch
        )));
    }
    Ok(n)
}

/// `Op::Attention` (inputs q, k, v) into `out`; `base` is arena element 0's address.
pub(crate) fn forward(
    be: &dyn Launcher,
    base: u64,
    scale: f32,
    l: AttnLayout,
    ins: &[Operand],
    out: Operand,
) -> BResult<()> {
    let n = dims(l, ins)?;
    let at = |o: usize| Arg::Ptr(base + 4 * o as u64);
    let mut args = vec![
        at(ins[0].offset),
        at(ins[1].offset),
        at(ins[2].offset),
        at(out.offset),
        Arg::Ptr(0),
    ];
    args.extend(geometry(l, &n));
    args.push(Arg::F32(scale));
    be.launch(
        "attn_fwd",
        (n.tq.div_ceil(64) as u32, n.batch as u32, 1),
        256,
        args,
    )
}

/// `Op::AttentionBackward` (inputs q, k, v, o, do): the statistics (log-sum-exp per query,
/// Σ dO·O per query) into the workspace, then the one gradient asked for.
pub(crate) fn backward(
    be: &dyn Launcher,
    base: u64,
    scale: f32,
    l: AttnLayout,
    wrt: AttnInput,
    ins: &[Operand],
    out: Operand,
) -> BResult<()> {
    let n = dims(l, ins)?;
    let rows = n.batch * n.tq;
    let ws = be.workspace(2 * 4 * rows)?;
    let (lse, dd) = (ws, ws + 4 * rows as u64);
    let at = |o: usize| Arg::Ptr(base + 4 * o as u64);
    let (q, k, v, o, g) = (
        ins[0].offset,
        ins[1].offset,
        ins[2].offset,
        ins[3].offset,
        ins[4].offset,
    );
    let mut args = vec![at(q), at(k), at(v), Arg::Ptr(0), Arg::Ptr(lse)];
    args.extend(geometry(l, &n));
    args.push(Arg::F32(scale));
    let grid_q = |tile: usize| (n.tq.div_ceil(tile) as u32, n.batch as u32, 1);
    be.launch("attn_fwd", grid_q(64), 256, args)?;
    let [ots, ocs] = strides(l.o, n.tq, n.dv);
    be.launch(
        "attn_rowdot",
        ((rows * 32).div_ceil(256) as u32, 1, 1),
        256,
        vec![
            at(o),
            at(g),
            Arg::Ptr(dd),
            Arg::I64(rows as i64),
            Arg::I64(n.tq as i64),
            Arg::I64(n.dv as i64),
            ots,
            ocs,
        ],
    )?;
    let mut args = vec![
        at(q),
        at(k),
        at(v),
        at(g),
        Arg::Ptr(lse),
        Arg::Ptr(dd),
        at(out.offset),
    ];
    args.extend(geometry(l, &n));
    args.push(Arg::F32(scale));
    match wrt {
        AttnInput::Q => be.launch("attn_bwd_dq", grid_q(32), 256, args),
        AttnInput::K | AttnInput::V => {
            args.push(Arg::I32((wrt == AttnInput::K) as i32));
            let grid = (n.tk.div_ceil(32) as u32, n.batch as u32, 1);
            be.launch("attn_bwd_dkdv", grid, 256, args)
        }
    }
}
