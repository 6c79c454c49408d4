//! The table of op test cases. A case is a small graph built from named inputs, with a rule
//! for drawing each input, so every checker (finite-difference VJPs here, CUDA parity later)
//! runs the same list. Families group cases so that one test per family reports readably.
//!
//! Input values are drawn in f64 and rounded to f32, so the very same inputs feed an f32
//! backend exactly and any difference is the backend's, not the inputs'.

use crate::backend::cpu::run_op;
use crate::backend::BackendError;
use crate::graph::{
    autodiff::grad, AttnLayout, Conv2dParams, Graph, NodeId, Op, Result as GResult, UnaryOp,
};
use crate::tensor::{numel, random, Tensor};
use rand::Rng;
use rand_distr::StandardNormal;
use std::fmt;
use std::sync::Arc;

/// Name of the input holding the output cotangent in [`Case::grad_graph`].
pub const COTANGENT: &str = "cotangent";

/// How an input's values are drawn.
#[derive(Clone, Debug, PartialEq)]
pub enum Draw {
    /// N(0, std²).
    Normal(f64),
    /// Uniform on [lo, hi): positive ranges for sqrt, denominators, variances, sigmas.
    Uniform(f64, f64),
    /// `base` redrawn while within `margin` of a kink, so a finite-difference stencil
    /// never straddles a point where the function is not differentiable.
    Away {
        base: Box<Draw>,
        kinks: Vec<f64>,
        margin: f64,
    },
    /// These values in order (repeated if the tensor is longer): the per-image blur widths
    /// of a kernel case, chosen to reach particular tap-table paths.
    Fixed(Vec<f64>),
}

#[derive(Clone, Debug)]
pub struct InputSpec {
    pub name: String,
    pub shape: Vec<usize>,
    pub draw: Draw,
    /// Whether gradients are checked with respect to this input. False only for inputs of
    /// backward-only ops that have no VJP in that argument (the weight of
    /// `Conv2dBackwardInput`, the sigma of `GaussianBlurAdjoint`).
    pub grad: bool,
}

pub type BuildFn = dyn Fn(&mut Graph, &[NodeId]) -> GResult<NodeId> + Send + Sync;

#[derive(Clone)]
pub struct Case {
    pub family: &'static str,
    pub name: String,
    pub inputs: Vec<InputSpec>,
    /// Builds the output from the input nodes (in `inputs` order).
    pub build: Arc<BuildFn>,
    /// False for ops without a VJP (timestep embedding): forward checks only.
    pub differentiable: bool,
    /// Which list the case belongs to, and so which tolerance table holds it.
    pub tier: Tier,
}

/// The two case lists. Small cases are checked against finite differences (so every input
/// is tiny); kernel-sized cases ([`super::kernel_cases`]) are shapes that reach the CUDA
/// kernels' tiling and edge paths (partial tiles, stride 2, groups, long rows, a blur whose
/// radius exceeds the image), compared between backends only. Longer reductions round more,
/// so each list has its own measured tolerances ([`super::table`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    Small,
    Kernel,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("family", &self.family)
            .field("name", &self.name)
            .field("inputs", &self.inputs)
            .finish()
    }
}

/// A case's graph: the forward part and, for [`Case::grad_graph`], the appended backward.
pub struct CaseGraph {
    pub graph: Graph,
    pub inputs: Vec<NodeId>,
    pub output: NodeId,
    pub cotangent: Option<NodeId>,
    /// One gradient per input with `grad: true`, in input order (see [`CaseGraph::wrt`]).
    pub grads: Vec<NodeId>,
    /// Indices into `inputs` of the inputs in `grads`.
    pub wrt: Vec<usize>,
}

impl Case {
    pub fn forward_graph(&self) -> GResult<CaseGraph> {
        let mut g = Graph::new();
        let inputs: Vec<NodeId> = self
            .inputs
            .iter()
            .map(|s| g.input(&s.name, &s.shape))
            .collect();
        let output = g.scope(&self.name, |g| (self.build)(g, &inputs))?;
        Ok(CaseGraph {
            graph: g,
            inputs,
            output,
            cotangent: None,
            grads: vec![],
            wrt: vec![],
        })
    }

    /// The forward graph plus an input [`COTANGENT`] r and the nodes of the VJP rᵀ·∂f/∂xᵢ
    /// for every differentiable input.
    pub fn grad_graph(&self) -> GResult<CaseGraph> {
        let mut cg = self.forward_graph()?;
        let s = cg.graph.shape(cg.output).to_vec();
        let ct = cg.graph.input(COTANGENT, &s);
        cg.wrt = (0..self.inputs.len())
            .filter(|&i| self.inputs[i].grad)
            .collect();
        let wrt: Vec<NodeId> = cg.wrt.iter().map(|&i| cg.inputs[i]).collect();
        cg.grads = grad(&mut cg.graph, &[(cg.output, ct)], &wrt)?;
        cg.cotangent = Some(ct);
        Ok(cg)
    }

    /// A seed derived from the case name, so every case draws different but fixed values.
    pub fn seed(&self) -> u64 {
        // FNV-1a: stable across runs and platforms (std's hasher is not).
        self.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
        })
    }

    /// One tensor per input, drawn with `seed`, every value representable in f32.
    pub fn draw_inputs(&self, seed: u64) -> Vec<Tensor<f64>> {
        let mut rng = random::rng(seed);
        self.inputs
            .iter()
            .map(|s| draw(&mut rng, &s.shape, &s.draw))
            .collect()
    }
}

/// Draws a tensor by `d`, every value rounded to f32.
pub fn draw(rng: &mut rand_chacha::ChaCha8Rng, shape: &[usize], d: &Draw) -> Tensor<f64> {
    if let Draw::Fixed(v) = d {
        let data = (0..numel(shape)).map(|i| v[i % v.len()] as f32 as f64);
        return Tensor::new(shape.to_vec(), data.collect());
    }
    let data = (0..numel(shape))
        .map(|_| one(rng, d) as f32 as f64)
        .collect();
    Tensor::new(shape.to_vec(), data)
}

fn one(rng: &mut rand_chacha::ChaCha8Rng, d: &Draw) -> f64 {
    match d {
        Draw::Normal(std) => std * rng.sample::<f64, _>(StandardNormal),
        Draw::Uniform(lo, hi) => rng.gen_range(*lo..*hi),
        Draw::Away {
            base,
            kinks,
            margin,
        } => loop {
            let v = one(rng, base);
            if kinks.iter().all(|k| (v - k).abs() >= *margin) {
                break v;
            }
        },
        Draw::Fixed(v) => v[rng.gen_range(0..v.len())],
    }
}

pub(crate) fn spec(name: &str, shape: &[usize], draw: Draw) -> InputSpec {
    InputSpec {
        name: name.to_string(),
        shape: shape.to_vec(),
        draw,
        grad: true,
    }
}
/// Standard normal input.
fn n(name: &str, shape: &[usize]) -> InputSpec {
    spec(name, shape, Draw::Normal(1.0))
}
/// Normal input with a given spread (weights scaled by fan-in).
fn ns(name: &str, shape: &[usize], std: f64) -> InputSpec {
    spec(name, shape, Draw::Normal(std))
}
/// Positive input in [0.5, 2): denominators, square roots, variances.
fn pos(name: &str, shape: &[usize]) -> InputSpec {
    spec(name, shape, Draw::Uniform(0.5, 2.0))
}
/// Normal input kept 0.05 away from the given kinks.
fn away(name: &str, shape: &[usize], kinks: &[f64]) -> InputSpec {
    spec(
        name,
        shape,
        Draw::Away {
            base: Box::new(Draw::Normal(1.0)),
            kinks: kinks.to_vec(),
            margin: 0.05,
        },
    )
}
fn no_grad(mut s: InputSpec) -> InputSpec {
    s.grad = false;
    s
}

fn case(
    family: &'static str,
    name: impl Into<String>,
    inputs: Vec<InputSpec>,
    build: impl Fn(&mut Graph, &[NodeId]) -> GResult<NodeId> + Send + Sync + 'static,
) -> Case {
    Case {
        family,
        name: name.into(),
        inputs,
        build: Arc::new(build),
        differentiable: true,
        tier: Tier::Small,
    }
}

/// Every family, in the order tests report them.
pub const FAMILIES: &[&str] = &[
    "unary",
    "binary",
    "broadcast",
    "reduce",
    "conv2d",
    "conv2d_backward",
    "matmul",
    "linear",
    "group_norm",
    "group_norm_silu",
    "layer_norm",
    "batch_norm",
    "softmax",
    "attention",
    "scale_shift",
    "concat_slice_pad",
    "reshape_permute",
    "resample",
    "pixel_shuffle",
    "roll",
    "window",
    "timestep_embedding",
    "blur",
    "network",
    "large",
];

/// All cases of all families.
pub fn all() -> Vec<Case> {
    let mut v = vec![];
    v.extend(unary());
    v.extend(binary());
    v.extend(broadcast());
    v.extend(reduce());
    v.extend(conv2d());
    v.extend(conv2d_backward());
    v.extend(matmul());
    v.extend(linear());
    v.extend(norms());
    v.extend(softmax_attention());
    v.extend(layout());
    v.extend(resample());
    v.extend(timestep());
    v.extend(blur());
    v.extend(network());
    v.extend(large());
    v
}

/// The cases of one family.
pub fn family(name: &str) -> Vec<Case> {
    all().into_iter().filter(|c| c.family == name).collect()
}

fn unary() -> Vec<Case> {
    let sh = [3, 4, 5];
    let ops: Vec<(UnaryOp, InputSpec)> = vec![
        (UnaryOp::Neg, n("x", &sh)),
        (UnaryOp::Exp, n("x", &sh)),
        (UnaryOp::Sqrt, pos("x", &sh)),
        (UnaryOp::Square, n("x", &sh)),
        (UnaryOp::Silu, ns("x", &sh, 3.0)),
        (UnaryOp::Gelu, ns("x", &sh, 3.0)),
        (UnaryOp::Elu(1.0), away("x", &sh, &[0.0])),
        (UnaryOp::Elu(0.3), away("x", &sh, &[0.0])),
        (UnaryOp::LeakyRelu(0.2), away("x", &sh, &[0.0])),
        (UnaryOp::Clamp(-0.5, 0.7), away("x", &sh, &[-0.5, 0.7])),
        (UnaryOp::Affine(1.5, -0.3), n("x", &sh)),
        (UnaryOp::Tanh, ns("x", &sh, 2.0)),
        (UnaryOp::Sigmoid, ns("x", &sh, 3.0)),
    ];
    ops.into_iter()
        .map(|(u, x)| {
            case("unary", format!("{u:?}"), vec![x], move |g, i| {
                g.unary(u, i[0])
            })
        })
        .collect()
}

fn binary() -> Vec<Case> {
    use crate::graph::BinaryOp::*;
    // (a shape, b shape): same, b broadcast, a broadcast, both broadcast, scalar.
    let pairs: [(&[usize], &[usize]); 5] = [
        (&[2, 3, 4], &[2, 3, 4]),
        (&[2, 3, 4], &[4]),
        (&[3, 1], &[2, 3, 4]),
        (&[3, 1], &[1, 4]),
        (&[2, 3, 4], &[]),
    ];
    let mut v = vec![];
    for op in [Add, Sub, Mul, Div] {
        for (sa, sb) in pairs {
            let b = if op == Div { pos("b", sb) } else { n("b", sb) };
            v.push(case(
                "binary",
                format!("{op:?} {sa:?} {sb:?}"),
                vec![n("a", sa), b],
                move |g, i| g.binary(op, i[0], i[1]),
            ));
        }
    }
    v.push(case(
        "binary",
        "x + fill(0.5)",
        vec![n("x", &[3, 4])],
        |g, i| {
            let f = g.fill(0.5, &[4]);
            g.add(i[0], f)
        },
    ));
    // One input read twice: the two cotangent contributions must add up.
    v.push(case(
        "binary",
        "x*x+x/y",
        vec![n("x", &[3, 4]), pos("y", &[4])],
        |g, i| {
            let sq = g.mul(i[0], i[0])?;
            let q = g.div(i[0], i[1])?;
            g.add(sq, q)
        },
    ));
    v
}

fn broadcast() -> Vec<Case> {
    let mut v = vec![];
    let sum_to: [(&[usize], &[usize]); 4] = [
        (&[2, 3, 4], &[3, 1]),
        (&[2, 3, 4], &[4]),
        (&[2, 3, 4], &[1, 3, 4]),
        (&[2, 3, 4], &[]),
    ];
    for (from, to) in sum_to {
        v.push(case(
            "broadcast",
            format!("sum_to {from:?}->{to:?}"),
            vec![n("x", from)],
            move |g, i| g.sum_to(i[0], to),
        ));
    }
    let bcast: [(&[usize], &[usize]); 3] =
        [(&[3, 1], &[2, 3, 4]), (&[4], &[2, 3, 4]), (&[], &[2, 3])];
    for (from, to) in bcast {
        v.push(case(
            "broadcast",
            format!("broadcast_to {from:?}->{to:?}"),
            vec![n("x", from)],
            move |g, i| g.broadcast_to(i[0], to),
        ));
    }
    v
}

fn reduce() -> Vec<Case> {
    let sh = [2, 3, 4];
    let mut v = vec![];
    let specs: [(&str, &[usize], bool); 5] = [
        ("sum", &[1], false),
        ("sum", &[0, 2], true),
        ("mean", &[2], true),
        ("mean", &[0, 1], false),
        ("mean", &[0, 1, 2], false),
    ];
    for (op, axes, keep) in specs {
        v.push(case(
            "reduce",
            format!("{op} {axes:?} keepdim={keep}"),
            vec![n("x", &sh)],
            move |g, i| {
                if op == "sum" {
                    g.sum(i[0], axes, keep)
                } else {
                    g.mean(i[0], axes, keep)
                }
            },
        ));
    }
    v.push(case("reduce", "sum_all", vec![n("x", &sh)], |g, i| {
        g.sum_all(i[0])
    }));
    v.push(case("reduce", "l2_norm [1]", vec![n("x", &sh)], |g, i| {
        g.l2_norm(i[0], &[1], false)
    }));
    v.push(case(
        "reduce",
        "l2_norm all keepdim",
        vec![n("x", &sh)],
        |g, i| g.l2_norm(i[0], &[0, 1, 2], true),
    ));
    v
}

fn conv2d() -> Vec<Case> {
    let mut v = vec![];
    // H = 6 with stride 2 and kernel 3 leaves the last row unread: the adjoint must give it
    // zero gradient. W = 5 differs from H so transposed axes would show.
    let c = 4;
    for k in [1, 3] {
        for stride in [1, 2] {
            for pad in [0, 1] {
                for groups in [1usize, 2, 4] {
                    for bias in [false, true] {
                        let o = [3, 6, 8][groups.trailing_zeros() as usize];
                        let fan_in = (c / groups * k * k) as f64;
                        let mut ins = vec![
                            n("x", &[2, c, 6, 5]),
                            ns("w", &[o, c / groups, k, k], 1.0 / fan_in.sqrt()),
                        ];
                        if bias {
                            ins.push(n("b", &[o]));
                        }
                        v.push(case(
                            "conv2d",
                            format!("k{k} s{stride} p{pad} g{groups} bias={bias}"),
                            ins,
                            move |g, i| {
                                g.conv2d(i[0], i[1], i.get(2).copied(), stride, pad, groups)
                            },
                        ));
                    }
                }
            }
        }
    }
    // Tiny: small enough for per-element finite differences of every input.
    v.push(case(
        "conv2d",
        "tiny k3 s2 p1 g2 bias",
        vec![n("x", &[1, 2, 4, 3]), n("w", &[2, 1, 3, 3]), n("b", &[2])],
        |g, i| g.conv2d(i[0], i[1], Some(i[2]), 2, 1, 2),
    ));
    v.push(case(
        "conv2d",
        "k2 s2 p0 (patchify)",
        vec![n("x", &[1, 3, 4, 4]), n("w", &[4, 3, 2, 2])],
        |g, i| g.conv2d(i[0], i[1], None, 2, 0, 1),
    ));
    v
}

fn conv2d_backward() -> Vec<Case> {
    // Conv2dBackwardInput as a forward op: its VJP in dy is a convolution. It has no VJP in
    // the weight (second order), so the weight is held fixed.
    let mut v = vec![];
    for (stride, pad, groups) in [(1, 1, 1), (2, 1, 2), (2, 0, 1)] {
        let p = Conv2dParams {
            stride,
            pad,
            groups,
        };
        let in_hw = (6, 5);
        let (c, o, k) = (4, 4, 3);
        let oh = (in_hw.0 + 2 * pad - k) / stride + 1;
        let ow = (in_hw.1 + 2 * pad - k) / stride + 1;
        v.push(case(
            "conv2d_backward",
            format!("backward_input s{stride} p{pad} g{groups}"),
            vec![
                n("dy", &[2, o, oh, ow]),
                no_grad(n("w", &[o, c / groups, k, k])),
            ],
            move |g, i| g.push(Op::Conv2dBackwardInput { p, in_hw }, &[i[0], i[1]]),
        ));
    }
    v
}

fn matmul() -> Vec<Case> {
    let (m, k, nn) = (3, 4, 5);
    let mut v = vec![];
    for ta in [false, true] {
        for tb in [false, true] {
            let a_mat = if ta { vec![k, m] } else { vec![m, k] };
            let b_mat = if tb { vec![nn, k] } else { vec![k, nn] };
            let with = |batch: &[usize], mat: &[usize]| [batch, mat].concat();
            let layouts: [(&str, Vec<usize>, Vec<usize>); 4] = [
                ("2d", a_mat.clone(), b_mat.clone()),
                ("batched", with(&[2], &a_mat), with(&[2], &b_mat)),
                ("broadcast batch", with(&[2, 1], &a_mat), with(&[3], &b_mat)),
                ("2d·batched", a_mat.clone(), with(&[2], &b_mat)),
            ];
            for (what, sa, sb) in layouts {
                v.push(case(
                    "matmul",
                    format!("ta={ta} tb={tb} {what} {sa:?}·{sb:?}"),
                    vec![n("a", &sa), n("b", &sb)],
                    move |g, i| g.matmul(i[0], i[1], ta, tb),
                ));
            }
        }
    }
    v
}

fn linear() -> Vec<Case> {
    vec![
        case(
            "linear",
            "rank3 with bias",
            vec![n("x", &[2, 3, 5]), n("w", &[4, 5]), n("b", &[4])],
            |g, i| g.linear(i[0], i[1], Some(i[2])),
        ),
        case(
            "linear",
            "rank2 no bias",
            vec![n("x", &[3, 5]), n("w", &[4, 5])],
            |g, i| g.linear(i[0], i[1], None),
        ),
    ]
}

fn norms() -> Vec<Case> {
    let mut v = vec![];
    for (xs, groups) in [
        (vec![2, 4, 3, 3], 2),
        (vec![2, 4, 3, 3], 4),
        (vec![2, 4, 3, 3], 1),
        (vec![2, 6, 5], 3),
    ] {
        let c = xs[1];
        v.push(case(
            "group_norm",
            format!("{xs:?} groups {groups}"),
            vec![ns("x", &xs, 2.0), n("gamma", &[c]), n("beta", &[c])],
            move |g, i| g.group_norm(i[0], i[1], i[2], groups, 1e-5),
        ));
    }
    v.extend(group_norm_silu());
    for xs in [vec![3, 4, 6], vec![5, 8]] {
        let d = *xs.last().unwrap();
        v.push(case(
            "layer_norm",
            format!("{xs:?}"),
            vec![ns("x", &xs, 2.0), n("gamma", &[d]), n("beta", &[d])],
            |g, i| g.layer_norm(i[0], i[1], i[2], 1e-5),
        ));
    }
    v.push(case(
        "batch_norm",
        "[2,3,4,4]",
        vec![
            n("x", &[2, 3, 4, 4]),
            n("gamma", &[3]),
            n("beta", &[3]),
            n("mean", &[3]),
            pos("var", &[3]),
        ],
        |g, i| g.batch_norm(i[0], i[1], i[2], i[3], i[4], 1e-5),
    ));
    v
}

/// The fused group norm → scale-shift → SiLU, with and without the scale-shift, on 4-D and
/// 3-D inputs; its grad graph holds the fused dx op and the composed parameter gradients.
fn group_norm_silu() -> Vec<Case> {
    let mut v = vec![];
    for (xs, groups, ss) in [
        (vec![2, 4, 3, 3], 2, false),
        (vec![2, 4, 3, 3], 2, true),
        (vec![3, 8, 2, 5], 4, true),
        (vec![2, 6, 5], 3, true),
        (vec![2, 6, 5], 1, false),
    ] {
        let (b, c) = (xs[0], xs[1]);
        let mut ins = vec![ns("x", &xs, 2.0), n("gamma", &[c]), n("beta", &[c])];
        if ss {
            ins.push(ns("scale", &[b, c], 0.5));
            ins.push(n("shift", &[b, c]));
        }
        let name = format!(
            "{xs:?} groups {groups}{}",
            if ss { " scale-shift" } else { "" }
        );
        v.push(case("group_norm_silu", name, ins, move |g, i| {
            let film = ss.then(|| (i[3], i[4]));
            g.group_norm_silu(i[0], i[1], i[2], film, groups, 1e-5)
        }));
    }
    v
}

fn softmax_attention() -> Vec<Case> {
    let mut v = vec![
        case("softmax", "[3,5]", vec![n("x", &[3, 5])], |g, i| {
            g.softmax(i[0])
        }),
        case(
            "softmax",
            "[2,2,7] wide",
            vec![ns("x", &[2, 2, 7], 3.0)],
            |g, i| g.softmax(i[0]),
        ),
    ];
    v.push(case(
        "attention",
        "self [2,4,3]",
        vec![n("q", &[2, 4, 3]), n("k", &[2, 4, 3]), n("v", &[2, 4, 3])],
        |g, i| g.attention(i[0], i[1], i[2], 1.0 / 3f32.sqrt(), None),
    ));
    v.push(case(
        "attention",
        "heads [2,2,5,4] with bias [5,5]",
        vec![
            n("q", &[2, 2, 5, 4]),
            n("k", &[2, 2, 5, 4]),
            n("v", &[2, 2, 5, 4]),
            n("bias", &[5, 5]),
        ],
        |g, i| g.attention(i[0], i[1], i[2], 0.5, Some(i[3])),
    ));
    v.push(case(
        "attention",
        "cross q[2,3,4] kv[2,6,4] bias per head [1,2,1,6]",
        vec![
            n("q", &[2, 2, 3, 4]),
            n("k", &[2, 2, 6, 4]),
            n("v", &[2, 2, 6, 4]),
            n("bias", &[1, 2, 1, 6]),
        ],
        |g, i| g.attention(i[0], i[1], i[2], 0.5, Some(i[3])),
    ));
    // The fused op itself, each operand in either layout (false: [.., T, d], true:
    // [.., d, T]); the 64-wide cases cross the CUDA kernels' 64-query and 32-key tiles.
    let lay = |q, k, v, o| AttnLayout { q, k, v, o };
    let stored = |t: bool, tok: usize, w: usize, b: &[usize]| {
        let mut s = b.to_vec();
        s.extend(if t { [w, tok] } else { [tok, w] });
        s
    };
    for (name, l, b, tq, tk, d, dv) in [
        (
            "tokens-major",
            lay(false, false, false, false),
            vec![2],
            5,
            7,
            4,
            3,
        ),
        (
            "channels-major",
            lay(true, true, true, true),
            vec![3],
            6,
            6,
            4,
            4,
        ),
        (
            "mixed layouts",
            lay(true, false, true, false),
            vec![2, 2],
            3,
            5,
            2,
            3,
        ),
        (
            "64-wide",
            lay(false, false, false, false),
            vec![2],
            70,
            40,
            64,
            64,
        ),
        (
            "64-wide channels-major",
            lay(true, true, true, true),
            vec![1],
            33,
            65,
            64,
            64,
        ),
    ] {
        let ins = vec![
            n("q", &stored(l.q, tq, d, &b)),
            n("k", &stored(l.k, tk, d, &b)),
            n("v", &stored(l.v, tk, dv, &b)),
        ];
        let scale = 1.0 / (d as f32).sqrt();
        v.push(case(
            "attention",
            format!("fused {name} q{tq} k{tk} d{d} dv{dv} batch {b:?}"),
            ins,
            move |g, i| g.fused_attention(i[0], i[1], i[2], scale, l),
        ));
    }
    v.push(case(
        "scale_shift",
        "[2,3,4,4]",
        vec![
            n("x", &[2, 3, 4, 4]),
            n("scale", &[2, 3]),
            n("shift", &[2, 3]),
        ],
        |g, i| g.scale_shift(i[0], i[1], i[2]),
    ));
    v
}

fn layout() -> Vec<Case> {
    let f = "concat_slice_pad";
    let mut v = vec![
        case(
            f,
            "concat axis 1",
            vec![n("a", &[2, 3, 4]), n("b", &[2, 1, 4]), n("c", &[2, 2, 4])],
            |g, i| g.concat(i, 1),
        ),
        case(
            f,
            "concat axis 0",
            vec![n("a", &[1, 3]), n("b", &[2, 3])],
            |g, i| g.concat(i, 0),
        ),
        case(
            f,
            "concat last axis",
            vec![n("a", &[2, 3, 2]), n("b", &[2, 3, 3])],
            |g, i| g.concat(i, 2),
        ),
        case(
            f,
            "concat same input twice",
            vec![n("a", &[2, 3])],
            |g, i| g.concat(&[i[0], i[0]], 1),
        ),
        case(
            f,
            "split [1,2,3] then concat reordered",
            vec![n("x", &[2, 6, 3])],
            |g, i| {
                let p = g.split(i[0], 1, &[1, 2, 3])?;
                g.concat(&[p[2], p[0], p[1]], 1)
            },
        ),
        case(f, "slice axis 1", vec![n("x", &[4, 5])], |g, i| {
            g.slice(i[0], 1, 1, 3)
        }),
        case(f, "pad axis 1", vec![n("x", &[2, 3])], |g, i| {
            g.push(
                Op::Pad {
                    axis: 1,
                    start: 2,
                    full: 7,
                },
                &[i[0]],
            )
        }),
        case(f, "pad axis 0", vec![n("x", &[2, 3, 2])], |g, i| {
            g.push(
                Op::Pad {
                    axis: 0,
                    start: 1,
                    full: 4,
                },
                &[i[0]],
            )
        }),
    ];
    let f = "reshape_permute";
    v.extend([
        case(f, "permute [2,0,1]", vec![n("x", &[2, 3, 4])], |g, i| {
            g.permute(i[0], &[2, 0, 1])
        }),
        case(
            f,
            "permute NCHW->NHWC",
            vec![n("x", &[2, 3, 4, 5])],
            |g, i| g.permute(i[0], &[0, 2, 3, 1]),
        ),
        case(
            f,
            "reshape then permute",
            vec![n("x", &[2, 3, 4])],
            |g, i| {
                let r = g.reshape(i[0], &[6, 4])?;
                g.permute(r, &[1, 0])
            },
        ),
        // A reshape of a computed value aliases it: the planner must keep it alive.
        case(
            f,
            "reshape of a computed value",
            vec![n("x", &[2, 3, 4]), n("y", &[4, 6])],
            |g, i| {
                let s = g.square(i[0])?;
                let r = g.reshape(s, &[4, 6])?;
                g.mul(r, i[1])
            },
        ),
    ]);
    let f = "pixel_shuffle";
    v.extend([
        case(f, "shuffle r2", vec![n("x", &[2, 8, 3, 2])], |g, i| {
            g.pixel_shuffle(i[0], 2)
        }),
        case(f, "shuffle r3", vec![n("x", &[1, 9, 2, 2])], |g, i| {
            g.pixel_shuffle(i[0], 3)
        }),
        case(f, "unshuffle r2", vec![n("x", &[2, 2, 4, 6])], |g, i| {
            g.pixel_unshuffle(i[0], 2)
        }),
    ]);
    let f = "roll";
    let rolls: [&[(usize, isize)]; 4] = [
        &[(2, 2), (3, -1)],
        &[(1, 7)],
        &[(2, -6), (2, 1)],
        &[(0, 1), (3, 0)],
    ];
    for shifts in rolls {
        v.push(case(
            f,
            format!("roll {shifts:?}"),
            vec![n("x", &[2, 3, 5, 4])],
            move |g, i| g.roll(i[0], shifts),
        ));
    }
    let f = "window";
    v.extend([
        case(f, "partition w2", vec![n("x", &[2, 4, 6, 3])], |g, i| {
            g.window_partition(i[0], 2)
        }),
        case(f, "reverse w2", vec![n("x", &[12, 4, 3])], |g, i| {
            g.window_reverse(i[0], 2, 4, 6)
        }),
        case(
            f,
            "shifted window round trip",
            vec![n("x", &[1, 4, 4, 2]), n("s", &[4, 4, 2])],
            |g, i| {
                let r = g.roll(i[0], &[(1, -1), (2, -1)])?;
                let w = g.window_partition(r, 2)?;
                let w = g.square(w)?;
                let back = g.window_reverse(w, 2, 4, 4)?;
                let back = g.roll(back, &[(1, 1), (2, 1)])?;
                g.mul(back, i[1])
            },
        ),
    ]);
    v
}

fn resample() -> Vec<Case> {
    let f = "resample";
    vec![
        case(f, "upsample2x", vec![n("x", &[2, 3, 3, 4])], |g, i| {
            g.upsample2x(i[0])
        }),
        case(f, "sum_pool2x", vec![n("x", &[2, 3, 4, 6])], |g, i| {
            g.push(Op::SumPool2x, &[i[0]])
        }),
        case(f, "avg_pool2x", vec![n("x", &[2, 3, 4, 6])], |g, i| {
            g.avg_pool2x(i[0])
        }),
        case(f, "global_avg_pool", vec![n("x", &[2, 3, 4, 5])], |g, i| {
            g.global_avg_pool(i[0])
        }),
    ]
}

fn timestep() -> Vec<Case> {
    let mut c = case(
        "timestep_embedding",
        "t[3] dim 8",
        vec![spec("t", &[3], Draw::Uniform(0.0, 1000.0))],
        |g, i| g.timestep_embedding(i[0], 8),
    );
    c.differentiable = false;
    vec![c]
}

fn blur() -> Vec<Case> {
    // The support radius is ceil(3σ) (METHOD.md): the blur jumps where 3σ crosses an
    // integer, so σ keeps away from k/3.
    let sigma = || {
        let draw = Draw::Away {
            base: Box::new(Draw::Uniform(0.6, 2.0)),
            kinks: (2..=6).map(|k| k as f64 / 3.0).collect(),
            margin: 0.05,
        };
        spec("sigma", &[2], draw)
    };
    vec![
        case(
            "blur",
            "gaussian_blur x and sigma",
            vec![n("x", &[2, 2, 6, 7]), sigma()],
            |g, i| g.gaussian_blur(i[0], i[1]),
        ),
        case(
            "blur",
            "gaussian_blur_adjoint",
            vec![n("g", &[2, 2, 6, 7]), no_grad(sigma())],
            |g, i| g.push(Op::GaussianBlurAdjoint, &[i[0], i[1]]),
        ),
    ]
}

/// Whether the CPU backend runs the Gaussian blur; `Err` carries the backend's reason.
pub fn blur_supported() -> Result<(), String> {
    let x = [0.5f64; 2 * 3 * 4];
    let mut y = [0.0f64; 2 * 3 * 4];
    match run_op(
        &Op::GaussianBlur,
        &[&x, &[1.0]],
        &[&[1, 2, 3, 4], &[1]],
        &mut y,
        &[1, 2, 3, 4],
    ) {
        Ok(()) => Ok(()),
        Err(BackendError::Unsupported(m)) => Err(m),
        Err(e) => Err(e.to_string()),
    }
}

/// Channels, spatial size and batch of [`res_attn_block`] in the `network` case.
pub const NET_SHAPE: [usize; 4] = [2, 8, 4, 4];

/// Names, shapes and init std of the parameters of [`res_attn_block`] with `c` channels.
pub fn res_attn_params(c: usize) -> Vec<(String, Vec<usize>, Draw)> {
    let conv_std = 1.0 / ((c * 9) as f64).sqrt();
    let lin_std = 1.0 / (c as f64).sqrt();
    let gamma = Draw::Uniform(0.5, 1.5);
    let small = Draw::Normal(0.1);
    vec![
        ("conv1.w".into(), vec![c, c, 3, 3], Draw::Normal(conv_std)),
        ("conv1.b".into(), vec![c], small.clone()),
        ("gn1.gamma".into(), vec![c], gamma.clone()),
        ("gn1.beta".into(), vec![c], small.clone()),
        ("conv2.w".into(), vec![c, c, 3, 3], Draw::Normal(conv_std)),
        ("conv2.b".into(), vec![c], small.clone()),
        ("gn2.gamma".into(), vec![c], gamma),
        ("gn2.beta".into(), vec![c], small.clone()),
        ("qkv.w".into(), vec![3 * c, c], Draw::Normal(lin_std)),
        ("qkv.b".into(), vec![3 * c], small.clone()),
        ("proj.w".into(), vec![c, c], Draw::Normal(lin_std)),
        ("proj.b".into(), vec![c], small),
    ]
}

/// A residual conv block followed by residual multi-head self-attention over the spatial
/// tokens, the shape of a diffusion U-Net level:
/// h = x + conv2(silu(gn1(conv1(x)))); out = h + proj(attn(qkv(gn2(h)))).
/// `p(g, name, shape)` supplies each parameter node (a constant or an input).
pub fn res_attn_block(
    g: &mut Graph,
    x: NodeId,
    heads: usize,
    p: &mut dyn FnMut(&mut Graph, &str, &[usize]) -> NodeId,
) -> GResult<NodeId> {
    let s = g.shape(x).to_vec();
    let (b, c, hh, ww) = (s[0], s[1], s[2], s[3]);
    let t = hh * ww;
    let d = c / heads;
    let params = res_attn_params(c);
    let mut w = |g: &mut Graph, k: usize| p(g, &params[k].0, &params[k].1);
    let h = g.scope("res", |g| -> GResult<NodeId> {
        let (w1, b1, ga1, be1) = (w(g, 0), w(g, 1), w(g, 2), w(g, 3));
        let (w2, b2) = (w(g, 4), w(g, 5));
        let h = g.conv2d(x, w1, Some(b1), 1, 1, 1)?;
        let h = g.group_norm(h, ga1, be1, 4, 1e-5)?;
        let h = g.silu(h)?;
        let h = g.conv2d(h, w2, Some(b2), 1, 1, 1)?;
        g.add(x, h)
    })?;
    g.scope("attn", |g| {
        let (ga2, be2, wq, bq, wp, bp) = (w(g, 6), w(g, 7), w(g, 8), w(g, 9), w(g, 10), w(g, 11));
        let n = g.group_norm(h, ga2, be2, 4, 1e-5)?;
        let n = g.reshape(n, &[b, c, t])?;
        let tok = g.permute(n, &[0, 2, 1])?;
        let qkv = g.linear(tok, wq, Some(bq))?;
        let parts = g.split(qkv, 2, &[c, c, c])?;
        let heads_of = |g: &mut Graph, z: NodeId| -> GResult<NodeId> {
            let z = g.reshape(z, &[b, t, heads, d])?;
            g.permute(z, &[0, 2, 1, 3])
        };
        let q = heads_of(g, parts[0])?;
        let k = heads_of(g, parts[1])?;
        let v = heads_of(g, parts[2])?;
        let a = g.attention(q, k, v, 1.0 / (d as f32).sqrt(), None)?;
        let a = g.permute(a, &[0, 2, 1, 3])?;
        let a = g.reshape(a, &[b, t, c])?;
        let a = g.linear(a, wp, Some(bp))?;
        let a = g.permute(a, &[0, 2, 1])?;
        let a = g.reshape(a, &[b, c, hh, ww])?;
        g.add(h, a)
    })
}

fn network() -> Vec<Case> {
    let mut ins = vec![n("x", &NET_SHAPE)];
    for (name, shape, d) in res_attn_params(NET_SHAPE[1]) {
        ins.push(spec(&name, &shape, d));
    }
    vec![case("network", "res+attn block", ins, |g, i| {
        let names = res_attn_params(NET_SHAPE[1]);
        // Parameter k is case input k + 1 (input 0 is x).
        let mut p = |_: &mut Graph, name: &str, _: &[usize]| {
            let k = names.iter().position(|q| q.0 == name).expect("declared");
            i[k + 1]
        };
        res_attn_block(g, i[0], 2, &mut p)
    })]
}

/// Tensors above the CPU backend's thresholds for threading (2¹⁵ elements, 2¹⁸
/// multiply-adds) and for splitting a convolution into column bands, so the parallel code
/// paths are checked as well as the serial ones the small cases take.
fn large() -> Vec<Case> {
    let f = "large";
    let big = [2, 16, 32, 64];
    vec![
        case(
            f,
            "mul broadcast [2,16,32,64]*[16,1,64]",
            vec![n("a", &big), n("b", &[16, 1, 64])],
            |g, i| g.mul(i[0], i[1]),
        ),
        case(
            f,
            "div same shape",
            vec![n("a", &big), pos("b", &big)],
            |g, i| g.div(i[0], i[1]),
        ),
        case(f, "gelu", vec![ns("x", &big, 2.0)], |g, i| g.gelu(i[0])),
        case(f, "sum axes [0,2]", vec![n("x", &big)], |g, i| {
            g.sum(i[0], &[0, 2], false)
        }),
        case(f, "mean all", vec![n("x", &big)], |g, i| {
            g.mean(i[0], &[0, 1, 2, 3], false)
        }),
        case(f, "sum_to [16,1,64]", vec![n("x", &big)], |g, i| {
            g.sum_to(i[0], &[16, 1, 64])
        }),
        case(
            f,
            "softmax [64,1024]",
            vec![ns("x", &[64, 1024], 2.0)],
            |g, i| g.softmax(i[0]),
        ),
        case(f, "permute [0,2,3,1]", vec![n("x", &big)], |g, i| {
            g.permute(i[0], &[0, 2, 3, 1])
        }),
        case(f, "roll", vec![n("x", &big)], |g, i| {
            g.roll(i[0], &[(2, 5), (3, -9)])
        }),
        case(
            f,
            "group_norm [2,32,32,32] groups 8",
            vec![
                n("x", &[2, 32, 32, 32]),
                n("gamma", &[32]),
                n("beta", &[32]),
            ],
            |g, i| g.group_norm(i[0], i[1], i[2], 8, 1e-5),
        ),
        case(
            f,
            "group_norm_silu [2,32,32,32] groups 8 scale-shift",
            vec![
                n("x", &[2, 32, 32, 32]),
                n("gamma", &[32]),
                n("beta", &[32]),
                ns("scale", &[2, 32], 0.5),
                n("shift", &[2, 32]),
            ],
            |g, i| g.group_norm_silu(i[0], i[1], i[2], Some((i[3], i[4])), 8, 1e-5),
        ),
        case(
            f,
            "layer_norm [256,256]",
            vec![n("x", &[256, 256]), n("gamma", &[256]), n("beta", &[256])],
            |g, i| g.layer_norm(i[0], i[1], i[2], 1e-5),
        ),
        case(
            f,
            "matmul threaded [130,70]·[70,40]",
            vec![n("a", &[130, 70]), n("b", &[70, 40])],
            |g, i| g.matmul(i[0], i[1], false, false),
        ),
        case(
            f,
            "matmul many heads [64,32,32]ᵀ",
            vec![n("a", &[64, 32, 32]), n("b", &[64, 32, 32])],
            |g, i| g.matmul(i[0], i[1], true, false),
        ),
        case(
            f,
            "conv2d 256ch two column bands",
            vec![
                n("x", &[2, 256, 32, 32]),
                ns("w", &[2, 256, 3, 3], 1.0 / 48.0),
                n("b", &[2]),
            ],
            |g, i| g.conv2d(i[0], i[1], Some(i[2]), 1, 1, 1),
        ),
        case(
            f,
            "conv2d 1x1 threaded gemm",
            vec![n("x", &[1, 64, 32, 32]), ns("w", &[32, 64, 1, 1], 0.125)],
            |g, i| g.conv2d(i[0], i[1], None, 1, 0, 1),
        ),
    ]
}

/// Every op kind of [`Op`]. [`covers_every_variant`] fails to compile when a variant is
/// added, pointing here: list the new kind and give it a case.
pub const ALL_OP_KINDS: &[&str] = &[
    "input",
    "const",
    "fill",
    "unary",
    "unary_backward",
    "binary",
    "sum_to",
    "broadcast_to",
    "reduce",
    "conv2d",
    "conv2d_backward_input",
    "conv2d_backward_weight",
    "matmul",
    "group_norm",
    "group_norm_backward",
    "group_norm_backward_gamma",
    "group_norm_silu",
    "group_norm_silu_backward",
    "layer_norm",
    "layer_norm_backward",
    "layer_norm_backward_gamma",
    "attention",
    "attention_backward",
    "softmax",
    "softmax_backward",
    "concat",
    "slice",
    "pad",
    "reshape",
    "permute",
    "upsample2x",
    "sum_pool2x",
    "pixel_shuffle",
    "pixel_unshuffle",
    "roll",
    "timestep_embedding",
    "gaussian_blur",
    "gaussian_blur_adjoint",
    "gaussian_blur_dsigma",
];

/// Exhaustive on purpose (no wildcard arm): see [`ALL_OP_KINDS`].
pub fn covers_every_variant(op: &Op) -> bool {
    match op {
        Op::Input { .. }
        | Op::Const { .. }
        | Op::Fill { .. }
        | Op::Unary(_)
        | Op::UnaryBackward(_)
        | Op::Binary(_)
        | Op::SumTo { .. }
        | Op::BroadcastTo { .. }
        | Op::Reduce { .. }
        | Op::Conv2d(_)
        | Op::Conv2dBackwardInput { .. }
        | Op::Conv2dBackwardWeight { .. }
        | Op::MatMul { .. }
        | Op::GroupNorm { .. }
        | Op::GroupNormBackward { .. }
        | Op::GroupNormBackwardGamma { .. }
        | Op::GroupNormSilu { .. }
        | Op::GroupNormSiluBackward { .. }
        | Op::LayerNorm { .. }
        | Op::LayerNormBackward { .. }
        | Op::LayerNormBackwardGamma { .. }
        | Op::Attention { .. }
        | Op::AttentionBackward { .. }
        | Op::Softmax
        | Op::SoftmaxBackward
        | Op::Concat { .. }
        | Op::Slice { .. }
        | Op::Pad { .. }
        | Op::Reshape { .. }
        | Op::Permute { .. }
        | Op::Upsample2x
        | Op::SumPool2x
        | Op::PixelShuffle { .. }
        | Op::PixelUnshuffle { .. }
        | Op::Roll { .. }
        | Op::TimestepEmbedding { .. }
        | Op::GaussianBlur
        | Op::GaussianBlurAdjoint
        | Op::GaussianBlurDSigma => ALL_OP_KINDS.contains(&op.kind()),
    }
}
