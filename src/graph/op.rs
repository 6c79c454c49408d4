//! The operation set of the graph. Every op has one output. Ops that exist only to express
//! a vector-Jacobian product (`*Backward*`, `SumTo`, `Pad`) are ordinary ops, so a backward
//! graph is executed, planned and (on CUDA) captured exactly like a forward graph.

use serde::{Deserialize, Serialize};

/// Element-wise functions of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub enum UnaryOp {
    Neg,
    Exp,
    Sqrt,
    Square,
    Silu,
    /// Exact GELU, x·Φ(x).
    Gelu,
    Elu(f32),
    LeakyRelu(f32),
    Clamp(f32, f32),
    /// a·x + b
    Affine(f32, f32),
    Tanh,
    Sigmoid,
}

/// Element-wise functions of two tensors, numpy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Mean,
}

/// 2-D convolution geometry (NCHW input, OIHW weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conv2dParams {
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A per-run value set by the caller (image, timestep, cotangent).
    Input {
        name: String,
    },
    /// A weight bound once at load time.
    Const {
        name: String,
    },
    /// A tensor filled with one value (zero gradients, ones).
    Fill {
        value: f32,
    },

    Unary(UnaryOp),
    /// inputs (x, dy) → dx for `Unary(op)` at x.
    UnaryBackward(UnaryOp),
    Binary(BinaryOp),
    /// Sum a broadcast tensor back down to `shape` (the VJP of broadcasting).
    SumTo {
        shape: Vec<usize>,
    },
    BroadcastTo {
        shape: Vec<usize>,
    },
    Reduce {
        op: ReduceOp,
        axes: Vec<usize>,
        keepdim: bool,
    },

    /// inputs (x [N,C,H,W], w [O,C/g,kh,kw], optional bias [O]).
    Conv2d(Conv2dParams),
    /// inputs (dy, w) → dx of shape `[N,C,H,W]` with `in_hw` = (H, W).
    Conv2dBackwardInput {
        p: Conv2dParams,
        in_hw: (usize, usize),
    },
    /// inputs (x, dy) → dw of shape `w_shape`.
    Conv2dBackwardWeight {
        p: Conv2dParams,
        w_shape: [usize; 4],
    },

    /// Batched matrix product of the last two axes; batch axes broadcast.
    MatMul {
        trans_a: bool,
        trans_b: bool,
    },

    /// inputs (x [N,C,...], gamma [C], beta [C]).
    GroupNorm {
        groups: usize,
        eps: f32,
    },
    /// inputs (x, gamma, dy) → dx.
    GroupNormBackward {
        groups: usize,
        eps: f32,
    },
    /// inputs (x, dy) → per-channel [C] Σ dy·x̂ (the gamma gradient).
    GroupNormBackwardGamma {
        groups: usize,
        eps: f32,
    },
    /// Fused group norm → optional FiLM scale-shift → SiLU, one kernel and one write:
    /// inputs (x [B,C,...], gamma [C], beta [C]) and, with `scale_shift`, (scale [B,C],
    /// shift [B,C]); y = silu((x̂·γ + β)·(1 + scale) + shift).
    GroupNormSilu {
        groups: usize,
        eps: f32,
        scale_shift: bool,
    },
    /// inputs (x, gamma, beta, [scale, shift], dy) → dx of `GroupNormSilu`. Recomputes x̂
    /// from x, so the forward keeps nothing but its output.
    GroupNormSiluBackward {
        groups: usize,
        eps: f32,
        scale_shift: bool,
    },
    /// Normalises the last axis; inputs (x, gamma, beta).
    LayerNorm {
        eps: f32,
    },
    /// inputs (x, gamma, dy) → dx.
    LayerNormBackward {
        eps: f32,
    },
    /// inputs (x, dy) → [D] Σ dy·x̂.
    LayerNormBackwardGamma {
        eps: f32,
    },

    /// Softmax over the last axis.
    Softmax,
    /// inputs (y, dy) → dx where y = softmax(x).
    SoftmaxBackward,

    Concat {
        axis: usize,
    },
    Slice {
        axis: usize,
        start: usize,
        len: usize,
    },
    /// Zero-pads along `axis` to `full` so the input lands at `start` (the VJP of Slice).
    Pad {
        axis: usize,
        start: usize,
        full: usize,
    },
    Reshape {
        shape: Vec<usize>,
    },
    Permute {
        perm: Vec<usize>,
    },

    /// Nearest-neighbour ×2 upsampling of NCHW.
    Upsample2x,
    /// Sum over 2×2 blocks (VJP of Upsample2x; ×¼ gives average pooling).
    SumPool2x,
    PixelShuffle {
        r: usize,
    },
    PixelUnshuffle {
        r: usize,
    },
    /// Cyclic shift (torch.roll) along each `(axis, shift)`.
    Roll {
        shifts: Vec<(usize, isize)>,
    },

    /// t [B] → [B, dim]: `[cos(t·f), sin(t·f)]`, f_i = exp(−ln(max_period)·i/half).
    TimestepEmbedding {
        dim: usize,
        max_period: f32,
    },

    /// inputs (x [B,C,H,W], sigma [B]): normalised separable Gaussian, reflect boundary.
    GaussianBlur,
    /// inputs (g, sigma) → blurᵀ(g).
    GaussianBlurAdjoint,
    /// inputs (x, sigma, g) → [B] ∂⟨blur(x,σ), g⟩/∂σ.
    GaussianBlurDSigma,
}

impl Op {
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Const { .. } => "const",
            Op::Fill { .. } => "fill",
            Op::Unary(_) => "unary",
            Op::UnaryBackward(_) => "unary_backward",
            Op::Binary(_) => "binary",
            Op::SumTo { .. } => "sum_to",
            Op::BroadcastTo { .. } => "broadcast_to",
            Op::Reduce { .. } => "reduce",
            Op::Conv2d(_) => "conv2d",
            Op::Conv2dBackwardInput { .. } => "conv2d_backward_input",
            Op::Conv2dBackwardWeight { .. } => "conv2d_backward_weight",
            Op::MatMul { .. } => "matmul",
            Op::GroupNorm { .. } => "group_norm",
            Op::GroupNormBackward { .. } => "group_norm_backward",
            Op::GroupNormBackwardGamma { .. } => "group_norm_backward_gamma",
            Op::GroupNormSilu { .. } => "group_norm_silu",
            Op::GroupNormSiluBackward { .. } => "group_norm_silu_backward",
            Op::LayerNorm { .. } => "layer_norm",
            Op::LayerNormBackward { .. } => "layer_norm_backward",
            Op::LayerNormBackwardGamma { .. } => "layer_norm_backward_gamma",
            Op::Softmax => "softmax",
            Op::SoftmaxBackward => "softmax_backward",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Pad { .. } => "pad",
            Op::Reshape { .. } => "reshape",
            Op::Permute { .. } => "permute",
            Op::Upsample2x => "upsample2x",
            Op::SumPool2x => "sum_pool2x",
            Op::PixelShuffle { .. } => "pixel_shuffle",
            Op::PixelUnshuffle { .. } => "pixel_unshuffle",
            Op::Roll { .. } => "roll",
            Op::TimestepEmbedding { .. } => "timestep_embedding",
            Op::GaussianBlur => "gaussian_blur",
            Op::GaussianBlurAdjoint => "gaussian_blur_adjoint",
            Op::GaussianBlurDSigma => "gaussian_blur_dsigma",
        }
    }

    /// Ops whose output is a pure re-labelling of the input's memory.
    pub fn is_view(&self) -> bool {
        matches!(self, Op::Reshape { .. })
    }
}
