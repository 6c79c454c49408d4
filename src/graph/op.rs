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

/// How each operand of a fused attention is stored: `false` = tokens-major `[.., T, d]`,
/// `true` = channels-major `[.., d, T]` (the UNet's 1×1-conv layout). The kernels read
/// through strides, so no layout needs a permute copy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttnLayout {
    pub q: bool,
    pub k: bool,
    pub v: bool,
    pub o: bool,
}

/// The sizes of one fused attention: `batch` products (the batch axes flattened), `tq`
/// queries, `tk` keys, head width `d` (q and k) and `dv` (v and the output).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnDims {
    pub batch: usize,
    pub tq: usize,
    pub tk: usize,
    pub d: usize,
    pub dv: usize,
}

impl AttnLayout {
    /// Checks q, k, v shapes against the layout: same batch axes, rank ≥ 2, keys of k and v
    /// equal, head widths of q and k equal.
    pub fn dims(&self, q: &[usize], k: &[usize], v: &[usize]) -> Result<AttnDims, String> {
        if q.len() < 2 || k.len() != q.len() || v.len() != q.len() {
            return Err(format!(
                "attention needs q, k, v of one rank ≥ 2, got {q:?}, {k:?}, {v:?}"
            ));
        }
        let r = q.len();
        if q[..r - 2] != k[..r - 2] || q[..r - 2] != v[..r - 2] {
            return Err(format!(
                "attention batch axes differ: q {q:?}, k {k:?}, v {v:?}"
            ));
        }
        // (tokens, width) of a stored operand.
        let tw = |s: &[usize], t: bool| {
            if t {
                (s[r - 1], s[r - 2])
            } else {
                (s[r - 2], s[r - 1])
            }
        };
        let (tq, d) = tw(q, self.q);
        let (tk, dk) = tw(k, self.k);
        let (tv, dv) = tw(v, self.v);
        if d != dk || tk != tv || tk == 0 {
            return Err(format!(
                "attention q {q:?}, k {k:?}, v {v:?} (layout {self:?}): head widths or key counts differ, or no keys"
            ));
        }
        Ok(AttnDims {
            batch: q[..r - 2].iter().product(),
            tq,
            tk,
            d,
            dv,
        })
    }

    /// Multiply-adds of the forward (`wrt` None) or of one backward op, which recomputes
    /// the scores (and the statistics pass, one more score product).
    pub fn macs(n: &AttnDims, wrt: Option<AttnInput>) -> u64 {
        let pairs = (n.batch * n.tq * n.tk) as u64;
        let (d, dv) = (n.d as u64, n.dv as u64);
        pairs
            * match wrt {
                None => d + dv,
                Some(AttnInput::V) => 2 * d + dv,
                Some(_) => 3 * d + dv,
            }
    }

    /// Shape of the output for q of shape `q` and value width `dv`.
    pub fn out_shape(&self, q: &[usize], dims: &AttnDims) -> Vec<usize> {
        let mut s = q[..q.len() - 2].to_vec();
        if self.o {
            s.extend([dims.dv, dims.tq]);
        } else {
            s.extend([dims.tq, dims.dv]);
        }
        s
    }
}

/// Which input an [`Op::AttentionBackward`] differentiates with respect to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AttnInput {
    Q,
    K,
    V,
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

    /// Fused attention o = softmax(scale·q·kᵀ)·v over the token axes, inputs (q, k, v) laid
    /// out as `layout` says; batch axes equal (no broadcasting). Never builds the score
    /// matrix of a whole head. Made by `graph::rewrite` from the op-by-op composite.
    Attention {
        scale: f32,
        layout: AttnLayout,
    },
    /// inputs (q, k, v, o, do) → the gradient of the input `wrt` of `Attention`, in its
    /// layout. Recomputes the scores from q and k (FlashAttention's backward), so the
    /// forward keeps only its output.
    AttentionBackward {
        scale: f32,
        layout: AttnLayout,
        wrt: AttnInput,
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
            Op::Attention { .. } => "attention",
            Op::AttentionBackward { .. } => "attention_backward",
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
