//! The CPU reference backend: every op in plain Rust over the arena, generic over the
//! element type so the same code runs in f64 for finite-difference checks. rayon supplies
//! the threads and the `gemm` crate the matrix products.

mod attention;
mod blur;
mod conv;
mod conv_shifted;
mod elementwise;
mod embed;
mod layout;
mod matmul;
mod norm;
mod reduce;
mod resample;
mod scratch;
mod vmath;

pub use conv::{conv2d_backward_input, conv2d_backward_weight, conv2d_forward, ConvAlgo, ConvGeom};
pub use matmul::gemm_into;
pub use scratch::release as release_scratch;

use super::{BResult, Backend, BackendError, Operand, Scratch};
use crate::graph::{Node, Op};
use crate::tensor::{numel, Scalar};
use std::marker::PhantomData;

#[derive(Clone, Debug, Default)]
pub struct CpuBackend<T: Scalar = f32> {
    _t: PhantomData<T>,
}

impl<T: Scalar> CpuBackend<T> {
    pub fn new() -> Self {
        CpuBackend { _t: PhantomData }
    }
}

impl<T: Scalar> Backend for CpuBackend<T> {
    type Elem = T;
    type Arena = Vec<T>;

    fn name(&self) -> String {
        format!("cpu-{}", T::name())
    }

    fn alloc(&self, len: usize) -> BResult<Vec<T>> {
        super::fault::check_alloc((len * std::mem::size_of::<T>()) as u64)?;
        let mut v = Vec::new();
        v.try_reserve_exact(len).map_err(|_| {
            BackendError::OutOfMemory(format!(
                "cannot allocate {} bytes",
                len * std::mem::size_of::<T>()
            ))
        })?;
        v.resize(len, T::zero());
        Ok(v)
    }

    fn write(&self, arena: &mut Vec<T>, offset: usize, data: &[T]) -> BResult<()> {
        arena[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }

    fn read(&self, arena: &Vec<T>, offset: usize, len: usize) -> BResult<Vec<T>> {
        Ok(arena[offset..offset + len].to_vec())
    }

    fn fill(&self, arena: &mut Vec<T>, offset: usize, len: usize, value: f32) -> BResult<()> {
        arena[offset..offset + len].fill(T::of_f32(value));
        Ok(())
    }

    fn copy(&self, arena: &mut Vec<T>, src: usize, dst: usize, len: usize) -> BResult<()> {
        super::check_copy(arena.len(), src, dst, len)?;
        arena.copy_within(src..src + len, dst);
        Ok(())
    }

    /// The fused ops the rewrite passes may make. GroupNorm → [FiLM] → SiLU, both ways: one
    /// pass over the activation instead of three, the build every UNet used before the
    /// fusion became a pass (so outputs keep their bits). The attention forward: its blocked
    /// form computes the composite's very products and softmax (same bits) without the T×T
    /// scores per head. One FFHQ-512 block at 1024 tokens, f32, test profile, 2 shared cores
    /// (`cargo test --test unet_structure -- --ignored --nocapture`, 2026-12-03): forward
    /// median 55.5 → 44.1 ms, arena 42 → 8 MB. Not its backward: recomputing the scores in
    /// each of the three gradient ops costs more than it saves here (forward + grad median
    /// 133 → 236 ms), so graphs with an attention gradient stay op by op on the CPU (the
    /// forward pass then does not fire either: the op-by-op backward reads the softmax).
    fn supports(&self, op: &Op, _inputs: &[&[usize]]) -> bool {
        matches!(
            op,
            Op::GroupNormSilu { .. } | Op::GroupNormSiluBackward { .. } | Op::Attention { .. }
        )
    }

    fn exec(
        &self,
        arena: &mut Vec<T>,
        node: &Node,
        inputs: &[Operand],
        out: Operand,
        _scratch: Scratch,
    ) -> BResult<()> {
        let base = arena.as_mut_ptr();
        let total = arena.len();
        let out_len = numel(out.shape);
        assert!(
            out.offset + out_len <= total,
            "output region outside the arena"
        );
        // SAFETY: the planner gives a value a region that no live value overlaps, and an
        // op's output is allocated while its inputs are still live, so the output slice
        // is disjoint from every input slice. Inputs may alias each other (read-only).
        let ins: Vec<&[T]> = inputs
            .iter()
            .map(|o| {
                let n = numel(o.shape);
                assert!(o.offset + n <= total, "input region outside the arena");
                debug_assert!(
                    o.offset + n <= out.offset
                        || out.offset + out_len <= o.offset
                        || n == 0
                        || out_len == 0
                );
                unsafe { std::slice::from_raw_parts(base.add(o.offset), n) }
            })
            .collect();
        let y = unsafe { std::slice::from_raw_parts_mut(base.add(out.offset), out_len) };
        let shapes: Vec<&[usize]> = inputs.iter().map(|o| o.shape).collect();
        run_op(&node.op, &ins, &shapes, y, out.shape)
    }
}

/// Computes one op on host slices: the CPU reference every other backend is checked against.
pub fn run_op<T: Scalar>(
    op: &Op,
    x: &[&[T]],
    s: &[&[usize]],
    y: &mut [T],
    ys: &[usize],
) -> BResult<()> {
    match op {
        Op::Input { .. } | Op::Const { .. } | Op::Fill { .. } | Op::Reshape { .. } => {
            return Err(BackendError::Unsupported(format!(
                "{} is not executed",
                op.kind()
            )))
        }
        Op::Unary(u) => elementwise::unary(*u, x[0], y),
        Op::UnaryBackward(u) => elementwise::unary_backward(*u, x[0], x[1], y),
        Op::Binary(b) => elementwise::binary(*b, x[0], s[0], x[1], s[1], y, ys),
        Op::BroadcastTo { .. } => elementwise::broadcast_to(x[0], s[0], y, ys),
        Op::SumTo { .. } => reduce::sum_to(x[0], s[0], y, ys),
        Op::Reduce { op, axes, .. } => reduce::reduce(*op, x[0], s[0], axes, y),
        Op::Conv2d(p) => {
            let g = ConvGeom::new(s[0], s[1], p);
            conv2d_forward(&g, x[0], x[1], x.get(2).copied(), y);
        }
        Op::Conv2dBackwardInput { p, in_hw } => {
            let xs = [s[0][0], s[1][1] * p.groups, in_hw.0, in_hw.1];
            let g = ConvGeom::new(&xs, s[1], p);
            conv2d_backward_input(&g, x[0], x[1], y);
        }
        Op::Conv2dBackwardWeight { p, w_shape } => {
            let g = ConvGeom::new(s[0], w_shape, p);
            conv2d_backward_weight(&g, x[0], x[1], y);
        }
        Op::MatMul { trans_a, trans_b } => {
            matmul::batched(x[0], s[0], *trans_a, x[1], s[1], *trans_b, y, ys)
        }
        Op::GroupNorm { groups, eps } => norm::group_norm(x[0], s[0], x[1], x[2], *groups, *eps, y),
        Op::GroupNormBackward { groups, eps } => {
            norm::group_norm_backward(x[0], s[0], x[1], x[2], *groups, *eps, y)
        }
        Op::GroupNormBackwardGamma { groups, eps } => {
            norm::group_norm_backward_gamma(x[0], s[0], x[1], *groups, *eps, y)
        }
        Op::GroupNormSilu {
            groups,
            eps,
            scale_shift,
        } => {
            let ss = scale_shift.then(|| (x[3], x[4]));
            norm::group_norm_silu(x[0], s[0], x[1], x[2], ss, *groups, *eps, y)
        }
        Op::GroupNormSiluBackward {
            groups,
            eps,
            scale_shift,
        } => {
            let ss = scale_shift.then(|| (x[3], x[4]));
            let dy = x[if *scale_shift { 5 } else { 3 }];
            norm::group_norm_silu_backward(x[0], s[0], x[1], x[2], ss, dy, *groups, *eps, y)
        }
        Op::LayerNorm { eps } => norm::layer_norm(x[0], s[0], x[1], x[2], *eps, y),
        Op::LayerNormBackward { eps } => norm::layer_norm_backward(x[0], s[0], x[1], x[2], *eps, y),
        Op::LayerNormBackwardGamma { eps } => {
            norm::layer_norm_backward_gamma(x[0], s[0], x[1], *eps, y)
        }
        Op::Attention { scale, layout } => attention::forward(*layout, x, s, *scale, y)?,
        Op::AttentionBackward { scale, layout, wrt } => {
            attention::backward(*layout, *wrt, x, s, *scale, y)?
        }
        Op::Softmax => norm::softmax(x[0], s[0], y),
        Op::SoftmaxBackward => norm::softmax_backward(x[0], x[1], s[0], y),
        Op::Concat { axis } => layout::concat(x, s, *axis, y, ys),
        Op::Slice { axis, start, .. } => layout::slice(x[0], s[0], *axis, *start, y, ys),
        Op::Pad { axis, start, .. } => layout::pad(x[0], s[0], *axis, *start, y, ys),
        Op::Permute { perm } => layout::permute(x[0], s[0], perm, y),
        Op::Roll { shifts } => layout::roll(x[0], s[0], shifts, y),
        Op::PixelShuffle { r } => layout::pixel_shuffle(x[0], s[0], *r, y),
        Op::PixelUnshuffle { r } => layout::pixel_unshuffle(x[0], s[0], *r, y),
        Op::Upsample2x => resample::upsample2x(x[0], s[0], y),
        Op::SumPool2x => resample::sum_pool2x(x[0], s[0], y),
        Op::TimestepEmbedding { dim, max_period } => {
            embed::timestep_embedding(x[0], *dim, *max_period, y)
        }
        Op::GaussianBlur => blur::forward(x[0], x[1], s[0], y)?,
        Op::GaussianBlurAdjoint => blur::adjoint(x[0], x[1], s[0], y)?,
        Op::GaussianBlurDSigma => blur::dsigma(x[0], x[1], x[2], s[0], y)?,
    }
    Ok(())
}
