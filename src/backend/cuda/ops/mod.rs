//! Launch code of every graph op: which kernel(s), grid and arguments, one file per kernel
//! family of `kernels/` (`conv.rs` ↔ `conv.cu` + `conv_tc.cu`, `gemm.rs` ↔ `gemm.cu` +
//! `gemm_tc.cu`, `tile.rs` ↔ `tile.cuh`'s tile shapes, ...). The semantics are those of
//! `backend::cpu::run_op`. Every launch goes through the typed launchers of [`super::abi`].

mod attention;
mod blur;
pub(crate) mod conv;
mod elementwise;
mod embed;
mod gemm;
mod layout;
mod norm;
mod resample;
mod tile;

pub(crate) use attention::fused_attention;
pub use attention::fuses;
pub(crate) use conv::{bf16_round, mma_probe};
pub(crate) use conv::{conv_bwd_input, conv_bwd_weight, conv_fwd, conv_scratch_len, Direction};
pub(crate) use elementwise::{copy, fill};

use super::abi::{DevMut, DevPtr, Grid, LaunchState, Launcher};
use super::precision::resolve;
use crate::backend::{BResult, BackendError, Operand};
use crate::graph::{Op, Precision};
use crate::tensor::numel;

const THREADS: u32 = 256;
const MAX_BLOCKS: usize = 1 << 20;

/// Grid for a grid-stride loop over n elements.
fn grid1(n: usize) -> Grid {
    Grid {
        blocks: (
            n.div_ceil(THREADS as usize).clamp(1, MAX_BLOCKS) as u32,
            1,
            1,
        ),
        threads: THREADS,
    }
}

/// `blocks` blocks of `threads` threads along x.
fn grid_x(blocks: usize, threads: u32) -> Grid {
    Grid {
        blocks: (blocks as u32, 1, 1),
        threads,
    }
}

fn i64of(v: usize) -> i64 {
    v as i64
}

/// Scratch space of one launch: `len` f32 elements at `at`, contents undefined.
#[derive(Clone, Copy, Debug)]
pub(crate) struct DevScratch {
    pub at: DevMut<f32>,
    pub len: usize,
}

impl DevScratch {
    /// The first `elems` elements; an error when the region planned for the op is smaller
    /// (the op's `scratch_len` and its launches disagree).
    fn take(self, elems: usize) -> BResult<DevMut<f32>> {
        if elems > self.len {
            return Err(BackendError::Device(format!(
                "the op needs {elems} scratch elements, {} were planned",
                self.len
            )));
        }
        Ok(self.at)
    }
}

/// One op's operands as device addresses (`base` is arena element 0).
pub(crate) struct OpArgs<'a> {
    pub be: &'a dyn Launcher,
    base: u64,
    ins: &'a [Operand<'a>],
    out: Operand<'a>,
    scratch: DevScratch,
    /// The node's own precision mark (`None`: the backend's default).
    precision: Option<Precision>,
}

impl<'a> OpArgs<'a> {
    /// The operand precision this node's products run at.
    fn precision(&self) -> BResult<Precision> {
        resolve(self.be.state(), self.precision)
    }
    fn addr(&self, offset: usize) -> u64 {
        self.base + 4 * offset as u64
    }
    /// Input `i`.
    fn x(&self, i: usize) -> DevPtr<f32> {
        DevPtr::at(self.addr(self.ins[i].offset))
    }
    /// Shape of input `i`.
    fn s(&self, i: usize) -> &'a [usize] {
        self.ins[i].shape
    }
    fn y(&self) -> DevMut<f32> {
        DevMut::at(self.addr(self.out.offset))
    }
    fn ys(&self) -> &'a [usize] {
        self.out.shape
    }
    /// Output elements.
    fn n(&self) -> usize {
        numel(self.out.shape)
    }
    /// The op's scratch region (planned by [`scratch_len`]), at least `elems` elements.
    fn scratch(&self, elems: usize) -> BResult<DevMut<f32>> {
        self.scratch.take(elems)
    }
}

/// Elements of scratch `op` needs with inputs of shapes `ins` and output shape `out` (split-K
/// partial sums, norm statistics, the intermediate image of separable blurs); the planner
/// gives each node a region of that size in its own arena.
pub(crate) fn scratch_len(cfg: &LaunchState, op: &Op, ins: &[&[usize]], out: &[usize]) -> usize {
    let n = numel(out);
    match op {
        Op::Conv2d(p) => conv::fwd_scratch_len(cfg, ins, p, n),
        Op::Conv2dBackwardInput { p, in_hw } => conv::bwd_input_scratch_len(cfg, ins, p, *in_hw, n),
        Op::Conv2dBackwardWeight { p, w_shape } => {
            conv::bwd_weight_scratch_len(cfg, ins, p, w_shape, n)
        }
        Op::GroupNormBackwardGamma { groups, .. } => norm::group_stats_len(ins[0], *groups),
        Op::LayerNormBackwardGamma { .. } => norm::row_stats_len(ins[0]),
        Op::GaussianBlur | Op::GaussianBlurAdjoint => n,
        Op::GaussianBlurDSigma => blur::dsigma_scratch_len(ins[0]),
        Op::AttentionBackward { layout, .. } => attention::backward_scratch_len(*layout, ins),
        _ => 0,
    }
}

/// Launches `op` at `precision` (the node's mark; `None`: the backend's default); `base` is
/// the device address of arena element 0.
pub(crate) fn exec(
    be: &dyn Launcher,
    base: u64,
    op: &Op,
    precision: Option<Precision>,
    ins: &[Operand],
    out: Operand,
    scratch: DevScratch,
) -> BResult<()> {
    let a = &OpArgs {
        be,
        base,
        ins,
        out,
        scratch,
        precision,
    };
    match op {
        Op::Input { .. } | Op::Const { .. } | Op::Fill { .. } | Op::Reshape { .. } => Err(
            BackendError::Unsupported(format!("{} is not executed", op.kind())),
        ),
        Op::Unary(u) => elementwise::unary(a, *u),
        Op::UnaryBackward(u) => elementwise::unary_backward(a, *u),
        Op::Binary(b) => elementwise::binary(a, *b),
        Op::SumTo { .. } => elementwise::sum_to(a),
        Op::Reduce { op, axes, .. } => elementwise::reduce_op(a, *op, axes),
        Op::BroadcastTo { .. } => layout::broadcast_to(a),
        Op::Concat { axis } => layout::concat(a, *axis),
        Op::Slice { axis, start, .. } => layout::slice(a, *axis, *start),
        Op::Pad { axis, start, .. } => layout::pad(a, *axis, *start),
        Op::Permute { perm } => layout::permute(a, perm),
        Op::Roll { shifts } => layout::roll(a, shifts),
        Op::PixelShuffle { r } => layout::pixel_shuffle(a, *r),
        Op::PixelUnshuffle { r } => layout::pixel_unshuffle(a, *r),
        Op::Conv2d(p) => conv::conv2d(a, p),
        Op::Conv2dBackwardInput { p, in_hw } => conv::conv2d_backward_input(a, p, *in_hw),
        Op::Conv2dBackwardWeight { p, w_shape } => conv::conv2d_backward_weight(a, p, w_shape),
        Op::MatMul { trans_a, trans_b } => gemm::matmul(a, *trans_a, *trans_b),
        Op::GroupNorm { groups, eps } => norm::group_norm(a, *groups, *eps, false),
        Op::GroupNormBackward { groups, eps } => norm::group_norm(a, *groups, *eps, true),
        Op::GroupNormBackwardGamma { groups, eps } => {
            norm::group_norm_backward_gamma(a, *groups, *eps)
        }
        Op::GroupNormSilu {
            groups,
            eps,
            scale_shift,
        } => norm::group_norm_silu(a, *groups, *eps, *scale_shift, false),
        Op::GroupNormSiluBackward {
            groups,
            eps,
            scale_shift,
        } => norm::group_norm_silu(a, *groups, *eps, *scale_shift, true),
        Op::LayerNorm { eps } => norm::layer_norm(a, *eps, false),
        Op::LayerNormBackward { eps } => norm::layer_norm(a, *eps, true),
        Op::LayerNormBackwardGamma { eps } => norm::layer_norm_backward_gamma(a, *eps),
        Op::Attention { scale, layout } => attention::attention(a, *scale, *layout),
        Op::AttentionBackward { scale, layout, wrt } => {
            attention::attention_backward(a, *scale, *layout, *wrt)
        }
        Op::Softmax => attention::softmax(a),
        Op::SoftmaxBackward => attention::softmax_backward(a),
        Op::Upsample2x => resample::upsample2x(a),
        Op::SumPool2x => resample::sum_pool2x(a),
        Op::TimestepEmbedding { dim, max_period } => {
            embed::timestep_embedding(a, *dim, *max_period)
        }
        Op::GaussianBlur => blur::blur(a),
        Op::GaussianBlurAdjoint => blur::blur_adjoint(a),
        Op::GaussianBlurDSigma => blur::blur_dsigma(a),
    }
}
