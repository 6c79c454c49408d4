//! Kernel-sized cases: the shapes that reach the CUDA kernels' tiling and edge paths, which
//! the finite-difference cases of [`super::cases`] are too small to reach: partial tiles of
//! every shape, channel and pixel counts that are not multiples of 16 / 8, stride 2, groups,
//! depthwise, long reductions (K up to 1152), a 70001-element vector, a whole 3×256² image
//! summed, rows longer than a block, a blur whose radius exceeds the image or whose taps do
//! not fit in shared memory. Each case is ONE op on fresh seeded inputs, forward only (the
//! backward ops are cases of their own), run by the same driver as every other case
//! ([`super::table`]: `tests/cuda_parity.rs`, `tests/tc_bf16.rs`, `dynface kernels check
//! --parity`) against the f64 CPU backend, element by element. [`CONV_SHAPES`] and
//! [`MATMUL_SHAPES`] also feed tc_bf16's bf16-operand model check, so no kernel test keeps a
//! shape list of its own.

use super::cases::{spec, Case, Draw, InputSpec, Tier};
use crate::graph::{BinaryOp, Conv2dParams, Op, ReduceOp, UnaryOp};
use std::sync::Arc;

/// One convolution of the kernel table.
#[derive(Clone, Copy, Debug)]
pub struct ConvShape {
    pub name: &'static str,
    pub x: [usize; 4],
    pub w: [usize; 4],
    pub stride: usize,
    pub pad: usize,
    pub groups: usize,
    pub bias: bool,
}

impl ConvShape {
    pub fn params(&self) -> Conv2dParams {
        Conv2dParams {
            stride: self.stride,
            pad: self.pad,
            groups: self.groups,
        }
    }

    pub fn out_shape(&self) -> [usize; 4] {
        let o = |i: usize, k: usize| (i + 2 * self.pad - k) / self.stride + 1;
        [
            self.x[0],
            self.w[0],
            o(self.x[2], self.w[2]),
            o(self.x[3], self.w[3]),
        ]
    }
}

const fn conv(
    name: &'static str,
    x: [usize; 4],
    w: [usize; 4],
    (stride, pad, groups): (usize, usize, usize),
    bias: bool,
) -> ConvShape {
    ConvShape {
        name,
        x,
        w,
        stride,
        pad,
        groups,
        bias,
    }
}

/// Every convolution shape the kernel tests run (fp32 and bf16, forward, input and weight
/// gradients).
pub const CONV_SHAPES: &[ConvShape] = &[
    conv(
        "3×3 odd sizes",
        [2, 5, 11, 13],
        [7, 5, 3, 3],
        (1, 1, 1),
        true,
    ),
    conv(
        "3×3 stride 2",
        [2, 6, 12, 9],
        [10, 6, 3, 3],
        (2, 1, 1),
        true,
    ),
    conv("3×3 no pad", [1, 4, 9, 8], [3, 4, 3, 3], (1, 0, 1), false),
    conv("groups 4", [2, 8, 10, 10], [12, 2, 3, 3], (1, 1, 4), true),
    conv(
        "depthwise 6 ch",
        [1, 6, 9, 7],
        [6, 1, 3, 3],
        (1, 1, 6),
        false,
    ),
    conv("1×1 16→24", [2, 16, 7, 5], [24, 16, 1, 1], (1, 0, 1), true),
    conv(
        "first layer 3→32",
        [1, 3, 33, 31],
        [32, 3, 3, 3],
        (1, 1, 1),
        true,
    ),
    conv(
        "64→64 at 32²",
        [1, 64, 32, 32],
        [64, 64, 3, 3],
        (1, 1, 1),
        true,
    ),
    conv(
        "128→96 at 24², batch 3",
        [3, 128, 24, 24],
        [96, 128, 3, 3],
        (1, 1, 1),
        true,
    ),
    conv(
        "downsample 64→64 stride 2",
        [2, 64, 16, 16],
        [64, 64, 3, 3],
        (2, 1, 1),
        false,
    ),
    conv("5×5 pad 2", [1, 3, 14, 15], [4, 3, 5, 5], (1, 2, 1), true),
    conv(
        "1×1 40→24 at 9×7",
        [2, 40, 9, 7],
        [24, 40, 1, 1],
        (1, 0, 1),
        true,
    ),
    conv(
        "1×1 stride 2 16→48",
        [1, 16, 10, 9],
        [48, 16, 1, 1],
        (2, 0, 1),
        false,
    ),
    conv(
        "3×3 16→32 at 12×10",
        [2, 16, 12, 10],
        [32, 16, 3, 3],
        (1, 1, 1),
        true,
    ),
    conv(
        "3×3 stride 2 24→40",
        [2, 24, 13, 11],
        [40, 24, 3, 3],
        (2, 1, 1),
        true,
    ),
    conv(
        "3×3 no pad 3→20 (K = 27)",
        [1, 3, 17, 15],
        [20, 3, 3, 3],
        (1, 0, 1),
        false,
    ),
    conv(
        "groups 2 32→48",
        [2, 32, 8, 8],
        [48, 16, 3, 3],
        (1, 1, 2),
        true,
    ),
    conv(
        "depthwise 8 ch",
        [1, 8, 9, 7],
        [8, 1, 3, 3],
        (1, 1, 8),
        false,
    ),
    conv(
        "96→80 at 16² (partial 128-row tile)",
        [2, 96, 16, 16],
        [80, 96, 3, 3],
        (1, 1, 1),
        true,
    ),
    conv(
        "UNet-like 128→128 at 32², batch 2",
        [2, 128, 32, 32],
        [128, 128, 3, 3],
        (1, 1, 1),
        true,
    ),
];

/// Convolutions whose every axis crosses 128, so that each tile shape (64×64, 64×128,
/// 128×128) has full and partial tiles in both directions: the forced-variant table
/// ([`super::variants`]) runs these through every tile and split-K count; the case table
/// runs them with the launch heuristics' own choice.
pub const VARIANT_CONV_SHAPES: &[ConvShape] = &[
    // fwd 130 rows × 132 pixels, weight gradient 130 × 216: both cross 128 in both axes.
    conv(
        "3×3 24→130 ch, 12×11",
        [1, 24, 12, 11],
        [130, 24, 3, 3],
        (1, 1, 1),
        true,
    ),
    // input gradient with 136 rows (channels) per group; 1×1, K = 8.
    conv(
        "1×1 136→8 ch, 6×5",
        [1, 136, 6, 5],
        [8, 136, 1, 1],
        (1, 0, 1),
        true,
    ),
    // groups and stride 2: 66-row input gradient, 594-column weight gradient.
    conv(
        "3×3 stride 2 groups 2, 132→20 ch, batch 2",
        [2, 132, 7, 9],
        [20, 66, 3, 3],
        (2, 1, 2),
        true,
    ),
];

/// One matrix product of the kernel table: A and B shapes, transposes.
#[derive(Clone, Copy, Debug)]
pub struct MatShape {
    pub a: &'static [usize],
    pub b: &'static [usize],
    pub trans_a: bool,
    pub trans_b: bool,
}

impl MatShape {
    /// The reduction length.
    pub fn k(&self) -> usize {
        let r = self.a.len();
        if self.trans_a {
            self.a[r - 2]
        } else {
            self.a[r - 1]
        }
    }

    pub fn name(&self) -> String {
        let t = |on: bool| if on { "ᵀ" } else { "" };
        format!(
            "{:?}{} · {:?}{}",
            self.a,
            t(self.trans_a),
            self.b,
            t(self.trans_b)
        )
    }
}

const fn mat(a: &'static [usize], b: &'static [usize], trans_a: bool, trans_b: bool) -> MatShape {
    MatShape {
        a,
        b,
        trans_a,
        trans_b,
    }
}

/// Every matrix-product shape the kernel tests run: all four transpose combinations, batch
/// axes broadcast either way, odd sizes, tiles of every shape, attention-like q·kᵀ and ·v.
pub const MATMUL_SHAPES: &[MatShape] = &[
    mat(&[5, 7], &[7, 9], false, false),
    mat(&[7, 5], &[7, 9], true, false),
    mat(&[5, 7], &[9, 7], false, true),
    mat(&[7, 5], &[9, 7], true, true),
    mat(&[37, 45], &[45, 29], false, false),
    mat(&[45, 37], &[45, 29], true, false),
    mat(&[37, 45], &[29, 45], false, true),
    mat(&[45, 37], &[29, 45], true, true),
    mat(&[2, 3, 17, 33], &[33, 19], false, false),
    mat(&[4, 1, 8, 16], &[1, 3, 8, 16], false, true),
    mat(&[300, 200], &[200, 150], false, false),
    mat(&[150, 200], &[200, 140], false, false),
    mat(&[2, 257, 130], &[2, 257, 66], true, false),
    // 64×128 tiles when they fill the device.
    mat(&[3, 40, 72], &[72, 100], false, false),
    mat(&[8, 64, 64], &[8, 64, 64], false, true),
    // Attention over 12² tokens: q·kᵀ, then ·v.
    mat(&[2, 144, 64], &[2, 144, 64], false, true),
    mat(&[2, 144, 144], &[2, 144, 64], false, false),
];

fn n(name: &str, shape: &[usize]) -> InputSpec {
    spec(name, shape, Draw::Normal(1.0))
}

/// Values around 3 spread by 2: normalisation statistics must not lose the variance to
/// cancellation.
fn offset(name: &str, shape: &[usize]) -> InputSpec {
    spec(name, shape, Draw::Uniform(-0.5, 6.5))
}

/// 130 × 135 outputs (two 128-tiles each way, partial), K = 40, all four transposes, for
/// the forced-variant table as [`VARIANT_CONV_SHAPES`].
pub const VARIANT_MATMUL_SHAPES: &[MatShape] = &[
    mat(&[2, 130, 40], &[40, 135], false, false),
    mat(&[2, 130, 40], &[135, 40], false, true),
    mat(&[2, 40, 130], &[40, 135], true, false),
    mat(&[2, 40, 130], &[135, 40], true, true),
];

/// One op on its inputs, forward only.
fn op_case(family: &'static str, name: String, op: Op, inputs: Vec<InputSpec>) -> Case {
    Case {
        family,
        name,
        inputs,
        build: Arc::new(move |g, i| g.push(op.clone(), i)),
        differentiable: false,
        tier: Tier::Kernel,
    }
}

/// Every kernel-sized case, in family order.
pub fn all() -> Vec<Case> {
    let mut v = vec![];
    v.extend(unary());
    v.extend(binary());
    v.extend(broadcast_reduce());
    v.extend(convolutions());
    v.extend(products());
    v.extend(norms());
    v.extend(layout());
    v.extend(blur());
    v
}

fn unary() -> Vec<Case> {
    let ops = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Sqrt,
        UnaryOp::Square,
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::Elu(1.0),
        UnaryOp::LeakyRelu(0.2),
        UnaryOp::Clamp(-0.5, 0.7),
        UnaryOp::Affine(1.5, -0.3),
        UnaryOp::Tanh,
        UnaryOp::Sigmoid,
    ];
    let mut v = vec![];
    for u in ops {
        // One block-sized shape and one long vector (many blocks, a partial last one).
        for shape in [&[3, 37, 5][..], &[70001]] {
            let x = if u == UnaryOp::Sqrt {
                spec("x", shape, Draw::Uniform(0.1, 3.0))
            } else {
                n("x", shape)
            };
            let name = format!("{u:?} {shape:?}");
            v.push(op_case(
                "unary",
                name.clone(),
                Op::Unary(u),
                vec![x.clone()],
            ));
            v.push(op_case(
                "unary",
                format!("backward {name}"),
                Op::UnaryBackward(u),
                vec![x, n("dy", shape)],
            ));
        }
    }
    v
}

fn binary() -> Vec<Case> {
    let shapes: [(&[usize], &[usize]); 6] = [
        (&[4, 5, 6], &[4, 5, 6]),
        (&[4, 1, 6], &[5, 1]),
        (&[], &[2, 3]),
        (&[2, 3, 1, 7], &[1]),
        (&[1, 9], &[8, 1]),
        (&[2, 64, 33, 17], &[1, 64, 1, 1]),
    ];
    let mut v = vec![];
    for op in [BinaryOp::Add, BinaryOp::Sub, BinaryOp::Mul, BinaryOp::Div] {
        for (sa, sb) in shapes {
            let b = if op == BinaryOp::Div {
                spec("b", sb, Draw::Uniform(0.5, 3.0))
            } else {
                n("b", sb)
            };
            v.push(op_case(
                "binary",
                format!("{op:?} {sa:?} {sb:?}"),
                Op::Binary(op),
                vec![n("a", sa), b],
            ));
        }
    }
    v
}

fn broadcast_reduce() -> Vec<Case> {
    let mut v = vec![op_case(
        "broadcast",
        "broadcast_to [3,1,5]→[2,3,4,5]".into(),
        Op::BroadcastTo {
            shape: vec![2, 3, 4, 5],
        },
        vec![n("x", &[3, 1, 5])],
    )];
    for to in [vec![3, 1, 5], vec![5], vec![1, 1, 1, 1], vec![2, 3, 4, 5]] {
        v.push(op_case(
            "broadcast",
            format!("sum_to [2,3,4,5]→{to:?}"),
            Op::SumTo { shape: to },
            vec![n("x", &[2, 3, 4, 5])],
        ));
    }
    v.push(op_case(
        "broadcast",
        "sum_to [8,64,32,32]→[1,64,1,1] (bias gradient)".into(),
        Op::SumTo {
            shape: vec![1, 64, 1, 1],
        },
        vec![n("x", &[8, 64, 32, 32])],
    ));
    for (axes, keepdim) in [
        (vec![1, 3], false),
        (vec![0], true),
        (vec![0, 1, 2, 3], false),
        (vec![3], false),
        (vec![], false),
    ] {
        for op in [ReduceOp::Sum, ReduceOp::Mean] {
            v.push(op_case(
                "reduce",
                format!("{op:?} axes {axes:?} keepdim {keepdim}"),
                Op::Reduce {
                    op,
                    axes: axes.clone(),
                    keepdim,
                },
                vec![n("x", &[2, 3, 7, 9])],
            ));
        }
    }
    v.push(op_case(
        "reduce",
        "Sum over a whole 3×256² image".into(),
        Op::Reduce {
            op: ReduceOp::Sum,
            axes: vec![0, 1, 2, 3],
            keepdim: false,
        },
        vec![n("x", &[1, 3, 256, 256])],
    ));
    v
}

fn convolutions() -> Vec<Case> {
    let mut v = vec![];
    for s in CONV_SHAPES.iter().chain(VARIANT_CONV_SHAPES) {
        let p = s.params();
        let fan_in = (s.w[1] * s.w[2] * s.w[3]) as f64;
        let w = spec("w", &s.w, Draw::Normal(1.0 / fan_in.sqrt()));
        let mut ins = vec![n("x", &s.x), w.clone()];
        if s.bias {
            ins.push(n("b", &[s.w[0]]));
        }
        v.push(op_case("conv2d", s.name.into(), Op::Conv2d(p), ins));
        let dy = n("dy", &s.out_shape());
        v.push(op_case(
            "conv2d_backward",
            format!("input gradient {}", s.name),
            Op::Conv2dBackwardInput {
                p,
                in_hw: (s.x[2], s.x[3]),
            },
            vec![dy.clone(), w],
        ));
        v.push(op_case(
            "conv2d_backward",
            format!("weight gradient {}", s.name),
            Op::Conv2dBackwardWeight { p, w_shape: s.w },
            vec![n("x", &s.x), dy],
        ));
    }
    v
}

fn products() -> Vec<Case> {
    MATMUL_SHAPES
        .iter()
        .chain(VARIANT_MATMUL_SHAPES)
        .map(|m| {
            op_case(
                "matmul",
                m.name(),
                Op::MatMul {
                    trans_a: m.trans_a,
                    trans_b: m.trans_b,
                },
                vec![n("a", m.a), n("b", m.b)],
            )
        })
        .collect()
}

fn norms() -> Vec<Case> {
    let mut v = vec![];
    // Spatial sizes below and above a block, one and several channels per group.
    for (shape, groups) in [
        (&[2, 8, 5, 7][..], 4),
        (&[1, 64, 32, 32], 32),
        (&[3, 6, 11], 3),
    ] {
        let (ch, eps) = (shape[1], 1e-5);
        let tag = format!("{shape:?} g{groups}");
        v.push(op_case(
            "group_norm",
            tag.clone(),
            Op::GroupNorm { groups, eps },
            vec![offset("x", shape), n("gamma", &[ch]), n("beta", &[ch])],
        ));
        v.push(op_case(
            "group_norm",
            format!("backward {tag}"),
            Op::GroupNormBackward { groups, eps },
            vec![offset("x", shape), n("gamma", &[ch]), n("dy", shape)],
        ));
        v.push(op_case(
            "group_norm",
            format!("backward gamma {tag}"),
            Op::GroupNormBackwardGamma { groups, eps },
            vec![offset("x", shape), n("dy", shape)],
        ));
    }
    for shape in [&[3, 7, 33][..], &[2, 1024, 64], &[5, 1]] {
        let (d, eps) = (*shape.last().unwrap(), 1e-6);
        v.push(op_case(
            "layer_norm",
            format!("{shape:?}"),
            Op::LayerNorm { eps },
            vec![n("x", shape), n("gamma", &[d]), n("beta", &[d])],
        ));
        v.push(op_case(
            "layer_norm",
            format!("backward {shape:?}"),
            Op::LayerNormBackward { eps },
            vec![n("x", shape), n("gamma", &[d]), n("dy", shape)],
        ));
        v.push(op_case(
            "layer_norm",
            format!("backward gamma {shape:?}"),
            Op::LayerNormBackwardGamma { eps },
            vec![n("x", shape), n("dy", shape)],
        ));
    }
    for shape in [&[3, 5, 17][..], &[2, 1000], &[4, 64, 64], &[6, 1]] {
        v.push(op_case(
            "softmax",
            format!("{shape:?}"),
            Op::Softmax,
            vec![spec("x", shape, Draw::Normal(3.0))],
        ));
        // The backward at a real softmax output y (rows summing to one), computed in the
        // same graph: both backends then see their own y, within the forward's tolerance.
        v.push(Case {
            build: Arc::new(|g, i| {
                let y = g.push(Op::Softmax, &[i[0]])?;
                g.push(Op::SoftmaxBackward, &[y, i[1]])
            }),
            ..op_case(
                "softmax",
                format!("backward {shape:?}"),
                Op::SoftmaxBackward,
                vec![spec("x", shape, Draw::Normal(3.0)), n("dy", shape)],
            )
        });
    }
    // The fused group norm → scale-shift → SiLU and its input gradient.
    for (shape, groups, scale_shift) in [
        (&[2, 8, 5, 7][..], 4, true),
        (&[2, 8, 5, 7], 4, false),
        (&[1, 64, 32, 32], 32, true),
        (&[2, 6, 3, 3], 6, true),
        (&[3, 6, 11], 1, false),
    ] {
        let (b, ch, eps) = (shape[0], shape[1], 1e-5);
        let mut ins = vec![offset("x", shape), n("gamma", &[ch]), n("beta", &[ch])];
        if scale_shift {
            ins.push(spec("scale", &[b, ch], Draw::Normal(0.5)));
            ins.push(n("shift", &[b, ch]));
        }
        let tag = format!(
            "{shape:?} g{groups}{}",
            if scale_shift { " ss" } else { "" }
        );
        v.push(op_case(
            "group_norm_silu",
            tag.clone(),
            Op::GroupNormSilu {
                groups,
                eps,
                scale_shift,
            },
            ins.clone(),
        ));
        ins.push(n("dy", shape));
        v.push(op_case(
            "group_norm_silu",
            format!("backward {tag}"),
            Op::GroupNormSiluBackward {
                groups,
                eps,
                scale_shift,
            },
            ins,
        ));
    }
    v
}

fn layout() -> Vec<Case> {
    let one = |family, name: &str, op, shape: &[usize]| {
        op_case(family, name.to_string(), op, vec![n("x", shape)])
    };
    let mut v = vec![
        op_case(
            "concat_slice_pad",
            "concat axis 1 of three".into(),
            Op::Concat { axis: 1 },
            vec![n("a", &[2, 3, 4]), n("b", &[2, 5, 4]), n("c", &[2, 1, 4])],
        ),
        op_case(
            "concat_slice_pad",
            "concat axis 0".into(),
            Op::Concat { axis: 0 },
            vec![n("a", &[2, 3, 4]), n("b", &[3, 3, 4])],
        ),
        op_case(
            "concat_slice_pad",
            "concat last axis".into(),
            Op::Concat { axis: 2 },
            vec![n("a", &[2, 3, 4]), n("b", &[2, 3, 1])],
        ),
    ];
    let slice = |axis, start, len| Op::Slice { axis, start, len };
    let pad = |axis, start, full| Op::Pad { axis, start, full };
    v.push(one(
        "concat_slice_pad",
        "slice axis 1 [2..5)",
        slice(1, 2, 3),
        &[2, 7, 5],
    ));
    v.push(one(
        "concat_slice_pad",
        "slice axis 2 [4..5)",
        slice(2, 4, 1),
        &[2, 7, 5],
    ));
    v.push(one(
        "concat_slice_pad",
        "pad axis 2 to 9 at 1",
        pad(2, 1, 9),
        &[2, 3, 5],
    ));
    v.push(one(
        "concat_slice_pad",
        "pad axis 0 to 4 at 3",
        pad(0, 3, 4),
        &[1, 3, 5],
    ));
    let permute = |perm: &[usize]| Op::Permute {
        perm: perm.to_vec(),
    };
    v.push(one(
        "reshape_permute",
        "permute [0,2,3,1]",
        permute(&[0, 2, 3, 1]),
        &[2, 3, 4, 5],
    ));
    v.push(one(
        "reshape_permute",
        "permute [2,0,1]",
        permute(&[2, 0, 1]),
        &[3, 1, 4],
    ));
    let roll = |shifts: &[(usize, isize)]| Op::Roll {
        shifts: shifts.to_vec(),
    };
    v.push(one(
        "roll",
        "(2,+2),(3,−3)",
        roll(&[(2, 2), (3, -3)]),
        &[2, 3, 5, 7],
    ));
    v.push(one(
        "roll",
        "(1,+5) shift > size, twice on one axis",
        roll(&[(1, 5), (1, 1)]),
        &[2, 3, 4],
    ));
    v.push(one(
        "pixel_shuffle",
        "r2",
        Op::PixelShuffle { r: 2 },
        &[2, 12, 3, 5],
    ));
    v.push(one(
        "pixel_shuffle",
        "unshuffle r2",
        Op::PixelUnshuffle { r: 2 },
        &[2, 3, 6, 10],
    ));
    v.push(one(
        "pixel_shuffle",
        "r3",
        Op::PixelShuffle { r: 3 },
        &[1, 18, 2, 3],
    ));
    v.push(one("resample", "upsample2x", Op::Upsample2x, &[2, 3, 5, 7]));
    v.push(one("resample", "sum_pool2x", Op::SumPool2x, &[2, 3, 6, 8]));
    for dim in [32, 6, 128] {
        v.push(op_case(
            "timestep_embedding",
            format!("dim {dim}"),
            Op::TimestepEmbedding {
                dim,
                max_period: 10000.0,
            },
            vec![spec("t", &[4], Draw::Fixed(vec![0.0, 17.0, 999.0, 500.5]))],
        ));
    }
    v
}

fn blur() -> Vec<Case> {
    let cases: [(&str, [usize; 4], &[f64]); 6] = [
        ("odd sizes", [2, 3, 20, 23], &[0.7, 2.3]),
        ("image smaller than radius", [2, 2, 5, 4], &[3.0, 0.4]),
        ("one-pixel rows", [1, 1, 6, 1], &[1.0]),
        ("σ 8 on 40²", [1, 1, 40, 40], &[8.0]),
        ("σ 15 on 64×48, 3 channels", [1, 3, 64, 48], &[15.0]),
        (
            "σ 200: taps beyond shared memory",
            [2, 1, 4, 5],
            &[200.0, 0.1],
        ),
    ];
    let mut v = vec![];
    for (name, shape, sigma) in cases {
        let s = spec("sigma", &[shape[0]], Draw::Fixed(sigma.to_vec()));
        let tag = format!("{name} {shape:?} σ {sigma:?}");
        v.push(op_case(
            "blur",
            format!("forward {tag}"),
            Op::GaussianBlur,
            vec![n("x", &shape), s.clone()],
        ));
        v.push(op_case(
            "blur",
            format!("adjoint {tag}"),
            Op::GaussianBlurAdjoint,
            vec![n("g", &shape), s.clone()],
        ));
        // σ = 200 folds 1201 taps onto 5 pixels: its ∂/∂σ has its own tolerance (table.rs).
        let family = if sigma[0] > 100.0 {
            "blur_folded"
        } else {
            "blur"
        };
        v.push(op_case(
            family,
            format!("dsigma {tag}"),
            Op::GaussianBlurDSigma,
            vec![n("x", &shape), s, n("g", &shape)],
        ));
    }
    v
}

/// The families of the kernel-sized cases (each needs a tolerance in
/// [`super::table::KERNEL_FP32_TOLERANCES`]).
pub fn families() -> Vec<&'static str> {
    let mut f: Vec<&'static str> = vec![];
    for c in all() {
        if !f.contains(&c.family) {
            f.push(c.family);
        }
    }
    f
}
