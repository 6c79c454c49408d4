//! The engine's op test suite: every op's VJP against finite differences (f64), forwards
//! against independent naive definitions, adjoints by the dot-product test, the memory
//! planner, an end-to-end residual + attention network, shape errors, f32/f64 agreement.
//! One test per op family, so a failure names what broke.

#[path = "support/naive.rs"]
mod naive;

use dynface::backend::cpu::CpuBackend;
use dynface::check::cases::{self, Case, CaseGraph, COTANGENT};
use dynface::check::dot_test::{conv_input_case, dot_test, LinearCase};
use dynface::check::vjp::{self, VjpOptions, TOL};
use dynface::check::CheckError;
use dynface::exec::{eval, Executor};
use dynface::graph::plan::PlanOptions;
use dynface::graph::{autodiff::grad, Conv2dParams, Graph, NodeId, Op, Result as GResult, UnaryOp};
use dynface::tensor::{random, Scalar, Tensor};
use std::collections::{BTreeSet, HashMap};

// ---------------------------------------------------------------------------------------
// Helpers

/// Evaluates `build` on f64 inputs (named as given) on the CPU backend.
fn run(
    inputs: &[(&str, &Tensor<f64>)],
    build: impl FnOnce(&mut Graph, &[NodeId]) -> GResult<NodeId>,
) -> Tensor<f64> {
    let mut g = Graph::new();
    let ids: Vec<NodeId> = inputs.iter().map(|(n, t)| g.input(n, &t.shape)).collect();
    let y = build(&mut g, &ids).expect("graph builds");
    eval(CpuBackend::<f64>::new(), &g, &[y], inputs, &HashMap::new())
        .expect("graph runs")
        .remove(0)
}

/// A case's forward output on its own drawn inputs, with those inputs.
fn run_case(c: &Case) -> (Tensor<f64>, Vec<Tensor<f64>>, Graph) {
    let xs = c.draw_inputs(c.seed());
    let cg = c.forward_graph().expect("case builds");
    let named: Vec<(&str, &Tensor<f64>)> = c
        .inputs
        .iter()
        .zip(&xs)
        .map(|(s, x)| (s.name.as_str(), x))
        .collect();
    let y = eval(
        CpuBackend::<f64>::new(),
        &cg.graph,
        &[cg.output],
        &named,
        &HashMap::new(),
    )
    .expect("case runs")
    .remove(0);
    (y, xs, cg.graph)
}

/// The first node of `g` whose op has the given kind.
fn find_op<'a>(g: &'a Graph, kind: &str) -> &'a Op {
    &g.nodes
        .iter()
        .find(|n| n.op.kind() == kind)
        .unwrap_or_else(|| panic!("no {kind} node"))
        .op
}

fn normal(seed: u64, shape: &[usize]) -> Tensor<f64> {
    random::normal(&mut random::rng(seed), shape, 1.0)
}

/// f64 forwards must match the naive loops to rounding: 1e-12 relative in norm is ~10⁴ ulps
/// of headroom for the different summation orders, while any indexing error is O(1).
fn assert_close(what: &str, got: &Tensor<f64>, want: &Tensor<f64>) {
    assert_eq!(got.shape, want.shape, "{what}: shape");
    let e = got.rel_err(want);
    assert!(
        e <= 1e-12,
        "{what}: rel err {e:.3e} vs naive (max abs diff {:.3e})",
        got.max_abs_diff(want)
    );
}

/// Runs the VJP checker on every differentiable case of `family` and fails listing all
/// cases over tolerance. Returns how many cases were checked.
fn vjp_family(family: &str, opts: &VjpOptions) -> usize {
    let all = cases::family(family);
    assert!(!all.is_empty(), "family {family} has no cases");
    let mut failures = vec![];
    let mut checked = 0;
    for c in all.iter().filter(|c| c.differentiable) {
        match vjp::check_case(c, opts) {
            Ok(r) => {
                print!("{r}");
                if !r.passes(TOL) {
                    failures.push(format!("{r}"));
                }
                // A zero gradient would make the comparison vacuous.
                for i in &r.inputs {
                    if i.grad_norm.is_nan() || i.grad_norm == 0.0 {
                        failures.push(format!("{}: gradient wrt {} is zero", r.case, i.name));
                    }
                }
            }
            Err(e) => failures.push(format!("{family}/{}: {e}", c.name)),
        }
        checked += 1;
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} {family} cases fail (tol {TOL:e}):\n{}",
        failures.len(),
        failures.join("\n")
    );
    checked
}

// ---------------------------------------------------------------------------------------
// VJPs against finite differences, one test per family

macro_rules! vjp_tests {
    ($($test:ident => $family:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                let n = vjp_family($family, &VjpOptions::default());
                assert!(n > 0);
            }
        )*
    };
}

vjp_tests! {
    vjp_unary => "unary",
    vjp_binary => "binary",
    vjp_broadcast => "broadcast",
    vjp_reduce => "reduce",
    vjp_conv2d => "conv2d",
    vjp_conv2d_backward_input => "conv2d_backward",
    vjp_matmul => "matmul",
    vjp_linear => "linear",
    vjp_group_norm => "group_norm",
    vjp_group_norm_silu => "group_norm_silu",
    vjp_layer_norm => "layer_norm",
    vjp_batch_norm => "batch_norm",
    vjp_softmax => "softmax",
    vjp_attention => "attention",
    vjp_scale_shift => "scale_shift",
    vjp_concat_slice_pad => "concat_slice_pad",
    vjp_reshape_permute => "reshape_permute",
    vjp_resample => "resample",
    vjp_pixel_shuffle => "pixel_shuffle",
    vjp_roll => "roll",
    vjp_window => "window",
}

#[test]
fn vjp_blur_or_skip() {
    if let Err(why) = cases::blur_supported() {
        dynface::check::skip::skip(
            "vjp_blur_or_skip",
            dynface::check::skip::SkipReason::Unsupported,
            &format!("the CPU backend does not run the Gaussian blur ({why})"),
        );
        return;
    }
    vjp_family("blur", &VjpOptions::default());
}

#[test]
fn timestep_embedding_has_no_vjp_and_says_so() {
    let c = &cases::family("timestep_embedding")[0];
    assert!(!c.differentiable);
    let err = c
        .grad_graph()
        .err()
        .expect("no VJP through an integer-valued op");
    let msg = err.to_string();
    assert!(msg.contains("timestep_embedding"), "{msg}");
}

/// The table covers every op kind: each appears in some case's forward or backward graph.
#[test]
fn case_table_covers_every_op() {
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    for c in cases::all() {
        assert!(
            names.insert(c.name.clone() + c.family),
            "duplicate case {}",
            c.name
        );
        assert!(
            cases::FAMILIES.contains(&c.family),
            "{} not in FAMILIES",
            c.family
        );
        let cg = if c.differentiable {
            c.grad_graph()
        } else {
            c.forward_graph()
        }
        .unwrap_or_else(|e| panic!("{}: {e}", c.name));
        for n in &cg.graph.nodes {
            assert!(
                cases::covers_every_variant(&n.op),
                "{} unlisted",
                n.op.kind()
            );
            seen.insert(n.op.kind());
        }
    }
    // Constants are leaves of model graphs; the planner test below binds them.
    seen.insert("const");
    let missing: Vec<_> = cases::ALL_OP_KINDS
        .iter()
        .filter(|k| !seen.contains(*k))
        .collect();
    assert!(missing.is_empty(), "ops without a case: {missing:?}");
    for f in cases::FAMILIES {
        assert!(!cases::family(f).is_empty(), "empty family {f}");
    }
}

// ---------------------------------------------------------------------------------------
// Dot-product (adjoint) tests

#[test]
fn dot_test_conv2d_input_adjoint() {
    for (n, (hw, k, stride, pad, groups)) in [
        ((6, 5), 3, 1, 1, 1),
        ((6, 5), 3, 2, 1, 1),
        ((6, 5), 3, 2, 0, 2),
        ((7, 7), 3, 3, 1, 4),
        ((5, 6), 1, 1, 0, 1),
        ((5, 6), 1, 2, 1, 2),
        ((8, 8), 2, 2, 0, 1),
        ((9, 7), 5, 2, 2, 4),
        ((4, 4), 3, 1, 2, 1),
    ]
    .into_iter()
    .enumerate()
    {
        let p = Conv2dParams {
            stride,
            pad,
            groups,
        };
        let case = conv_input_case([2, 4, hw.0, hw.1], 8, k, p, 11 + n as u64);
        let r64 = dot_test(CpuBackend::<f64>::new, &case, 3, 5).expect("runs");
        println!("{r64}");
        assert!(r64.max_rel <= 1e-13, "{r64}");
        // f32: a few ulps of f32 times the accumulation length.
        let r32 = dot_test(CpuBackend::<f32>::new, &case, 2, 6).expect("runs");
        println!("{r32} (f32)");
        assert!(r32.max_rel <= 1e-5, "{r32}");
    }
}

#[test]
fn dot_test_generic_helper_catches_a_wrong_adjoint() {
    // Upsample's adjoint is the 2×2 sum; avg pooling (sum / 4) is not, and must fail.
    let make = |ok: bool| LinearCase {
        name: format!(
            "upsample2x vs {}",
            if ok { "sum_pool2x" } else { "avg_pool2x" }
        ),
        x_shape: vec![1, 2, 3, 4],
        params: vec![],
        forward: Box::new(|g, x, _| g.upsample2x(x)),
        adjoint: Box::new(move |g, y, _| {
            if ok {
                g.push(Op::SumPool2x, &[y])
            } else {
                g.avg_pool2x(y)
            }
        }),
    };
    let good = dot_test(CpuBackend::<f64>::new, &make(true), 3, 1).unwrap();
    assert!(good.max_rel <= 1e-14, "{good}");
    let bad = dot_test(CpuBackend::<f64>::new, &make(false), 3, 1).unwrap();
    assert!(bad.max_rel > 0.1, "{bad}");
}

#[test]
fn dot_test_blur_or_skip() {
    if let Err(why) = cases::blur_supported() {
        dynface::check::skip::skip(
            "dot_test_blur_or_skip",
            dynface::check::skip::SkipReason::Unsupported,
            &format!("the CPU backend does not run the Gaussian blur ({why})"),
        );
        return;
    }
    let cases: [([usize; 4], &[f64]); 2] = [([2, 2, 9, 8], &[0.7, 1.9]), ([1, 1, 5, 16], &[3.0])];
    for (shape, sig) in cases {
        let case = LinearCase {
            name: format!("gaussian_blur {shape:?} sigma {sig:?}"),
            x_shape: shape.to_vec(),
            params: vec![("sigma".into(), Tensor::new(vec![shape[0]], sig.to_vec()))],
            forward: Box::new(|g, x, p| g.gaussian_blur(x, p[0])),
            adjoint: Box::new(|g, y, p| g.push(Op::GaussianBlurAdjoint, &[y, p[0]])),
        };
        let r = dot_test(CpuBackend::<f64>::new, &case, 3, 2).expect("blur runs");
        println!("{r}");
        assert!(r.max_rel <= 1e-13, "{r}");
    }
}

// ---------------------------------------------------------------------------------------
// Forwards against naive definitions

#[test]
fn forward_conv2d() {
    let mut seed = 100;
    for k in [1, 2, 3] {
        for stride in [1, 2, 3] {
            for pad in [0, 1, 2] {
                for groups in [1, 2, 4] {
                    seed += 1;
                    let x = normal(seed, &[2, 4, 7, 6]);
                    let w = normal(seed + 1000, &[4 * groups, 4 / groups, k, k]);
                    let b = normal(seed + 2000, &[4 * groups]);
                    let with_bias = seed % 2 == 0;
                    let ins: Vec<(&str, &Tensor<f64>)> = if with_bias {
                        vec![("x", &x), ("w", &w), ("b", &b)]
                    } else {
                        vec![("x", &x), ("w", &w)]
                    };
                    let y = run(&ins, |g, i| {
                        g.conv2d(i[0], i[1], i.get(2).copied(), stride, pad, groups)
                    });
                    let want = naive::conv2d(&x, &w, with_bias.then_some(&b), stride, pad, groups);
                    assert_close(
                        &format!("conv2d k{k} s{stride} p{pad} g{groups} bias={with_bias}"),
                        &y,
                        &want,
                    );
                }
            }
        }
    }
}

/// Large enough that the CPU backend's im2col splits the output into several bands.
#[test]
fn forward_conv2d_across_column_bands() {
    for stride in [1, 2] {
        let x = normal(1, &[1, 256, 32, 30]);
        let w = normal(2, &[2, 256, 3, 3]);
        let b = normal(3, &[2]);
        let y = run(&[("x", &x), ("w", &w), ("b", &b)], |g, i| {
            g.conv2d(i[0], i[1], Some(i[2]), stride, 1, 1)
        });
        assert_close(
            &format!("banded conv2d s{stride}"),
            &y,
            &naive::conv2d(&x, &w, Some(&b), stride, 1, 1),
        );
    }
}

#[test]
fn forward_matmul() {
    for c in cases::family("matmul") {
        let (y, xs, g) = run_case(&c);
        let Op::MatMul { trans_a, trans_b } = *find_op(&g, "matmul") else {
            unreachable!()
        };
        assert_close(
            &c.name,
            &y,
            &naive::matmul(&xs[0], &xs[1], trans_a, trans_b),
        );
    }
}

#[test]
fn forward_linear_and_attention() {
    let (x, w, b) = (normal(1, &[2, 3, 5]), normal(2, &[4, 5]), normal(3, &[4]));
    let y = run(&[("x", &x), ("w", &w), ("b", &b)], |g, i| {
        g.linear(i[0], i[1], Some(i[2]))
    });
    let xw = naive::matmul(&x, &w, false, true);
    assert_close("linear", &y, &naive::broadcast_op(&xw, &b, |p, q| p + q));

    for c in cases::family("attention") {
        let (y, xs, g) = run_case(&c);
        if let Some(Op::Attention { scale, layout: l }) = g
            .nodes
            .iter()
            .map(|n| &n.op)
            .find(|o| o.kind() == "attention")
        {
            // The fused op: bring each operand to [.., T, d], as the naive loops take it.
            let tok = |x: &Tensor<f64>, t: bool| {
                let r = x.shape.len();
                let mut perm: Vec<usize> = (0..r).collect();
                if t {
                    perm.swap(r - 2, r - 1);
                }
                naive::permute(x, &perm)
            };
            let (q, k, v) = (tok(&xs[0], l.q), tok(&xs[1], l.k), tok(&xs[2], l.v));
            let want = tok(&naive::attention(&q, &k, &v, *scale as f64, None), l.o);
            let e = y.rel_err(&want);
            // Measured 2026-12-03: ≤ 2e-16 (f64 rounding; the scale is exact in f32 here
            // or rounded alike).
            assert!(e <= 1e-12, "{}: rel err {e:.3e}", c.name);
            continue;
        }
        // Scales as declared in the case table.
        let scale = if c.name.starts_with("self") {
            1.0 / 3f32.sqrt() as f64
        } else {
            0.5
        };
        let want = naive::attention(&xs[0], &xs[1], &xs[2], scale, xs.get(3));
        let e = y.rel_err(&want);
        // The scale is an f32 op parameter: 1/√3 differs from f64 by ≤ 2⁻²⁴ relative.
        assert!(e <= 1e-7, "{}: rel err {e:.3e}", c.name);
    }
}

#[test]
fn forward_norms() {
    for c in cases::family("group_norm") {
        let (y, xs, g) = run_case(&c);
        let Op::GroupNorm { groups, eps } = *find_op(&g, "group_norm") else {
            unreachable!()
        };
        let want = naive::group_norm(&xs[0], &xs[1], &xs[2], groups, eps as f64);
        assert_close(&c.name, &y, &want);
    }
    for c in cases::family("group_norm_silu") {
        let (y, xs, g) = run_case(&c);
        let Op::GroupNormSilu {
            groups,
            eps,
            scale_shift,
        } = *find_op(&g, "group_norm_silu")
        else {
            unreachable!()
        };
        let film = scale_shift.then(|| (&xs[3], &xs[4]));
        let want = naive::group_norm_silu(&xs[0], &xs[1], &xs[2], film, groups, eps as f64);
        assert_close(&c.name, &y, &want);
    }
    for c in cases::family("layer_norm") {
        let (y, xs, _) = run_case(&c);
        let want = naive::layer_norm(&xs[0], &xs[1], &xs[2], 1e-5f32 as f64);
        assert_close(&c.name, &y, &want);
    }
    for c in cases::family("batch_norm") {
        let (y, xs, _) = run_case(&c);
        let mut want = xs[0].clone();
        let hw = 16;
        for (k, v) in want.data.iter_mut().enumerate() {
            let ch = (k / hw) % 3;
            let inv = xs[1].data[ch] / (xs[4].data[ch] + 1e-5f32 as f64).sqrt();
            *v = (*v - xs[3].data[ch]) * inv + xs[2].data[ch];
        }
        assert_close(&c.name, &y, &want);
    }
    for c in cases::family("scale_shift") {
        let (y, xs, _) = run_case(&c);
        let mut want = xs[0].clone();
        for (k, v) in want.data.iter_mut().enumerate() {
            let bc = k / 16; // (batch, channel) of a [2,3,4,4] element
            *v = *v * (1.0 + xs[1].data[bc]) + xs[2].data[bc];
        }
        assert_close(&c.name, &y, &want);
    }
}

/// The fused op's gradients (fused dx kernel, composed parameter gradients) equal reverse mode
/// through the unfused ops (group norm, scale-shift, SiLU) to rounding, for every input.
#[test]
fn group_norm_silu_gradients_match_the_unfused_ops() {
    for c in cases::family("group_norm_silu") {
        let xs = c.draw_inputs(c.seed());
        let ss = xs.len() == 5;
        let (groups, eps) = match *find_op(&c.forward_graph().unwrap().graph, "group_norm_silu") {
            Op::GroupNormSilu { groups, eps, .. } => (groups, eps),
            _ => unreachable!(),
        };
        let ct = normal(c.seed() ^ 7, &xs[0].shape);
        let grads = |fused: bool| -> Vec<Tensor<f64>> {
            let mut g = Graph::new();
            let ids: Vec<NodeId> = c
                .inputs
                .iter()
                .map(|s| g.input(&s.name, &s.shape))
                .collect();
            let y = if fused {
                let film = ss.then(|| (ids[3], ids[4]));
                g.group_norm_silu(ids[0], ids[1], ids[2], film, groups, eps)
            } else {
                let h = g.group_norm(ids[0], ids[1], ids[2], groups, eps).unwrap();
                let h = if ss {
                    let xs0 = &xs[0].shape;
                    let mut bc = xs0.clone();
                    bc[2..].iter_mut().for_each(|d| *d = 1);
                    let s = g.reshape(ids[3], &bc).unwrap();
                    let t = g.reshape(ids[4], &bc).unwrap();
                    let s = g.affine(s, 1.0, 1.0).unwrap();
                    let m = g.mul(h, s).unwrap();
                    g.add(m, t).unwrap()
                } else {
                    h
                };
                g.silu(h)
            }
            .unwrap();
            let ctn = g.input(COTANGENT, &xs[0].shape);
            let d = grad(&mut g, &[(y, ctn)], &ids).unwrap();
            let fused_ops = g
                .nodes
                .iter()
                .filter(|n| n.op.kind() == "group_norm_silu_backward")
                .count();
            assert_eq!(fused_ops, fused as usize, "{}: fused dx op", c.name);
            let mut named: Vec<(&str, &Tensor<f64>)> = c
                .inputs
                .iter()
                .zip(&xs)
                .map(|(s, x)| (s.name.as_str(), x))
                .collect();
            named.push((COTANGENT, &ct));
            eval(CpuBackend::<f64>::new(), &g, &d, &named, &HashMap::new()).unwrap()
        };
        let (f, u) = (grads(true), grads(false));
        for (k, (a, b)) in f.iter().zip(&u).enumerate() {
            assert!(b.norm() > 0.0, "{}: zero gradient wrt input {k}", c.name);
            assert_close(&format!("{} d/d{}", c.name, c.inputs[k].name), a, b);
        }
    }
}

/// Sampling asks for dx only: then the backward of the fused op is the one fused kernel,
/// with no group norm, SiLU derivative or scale-shift nodes recomputed beside it.
#[test]
fn group_norm_silu_input_gradient_is_one_op() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 8, 4, 4]);
    let ga = g.input("gamma", &[8]);
    let be = g.input("beta", &[8]);
    let s = g.input("scale", &[2, 8]);
    let t = g.input("shift", &[2, 8]);
    let y = g.group_norm_silu(x, ga, be, Some((s, t)), 4, 1e-5).unwrap();
    let ct = g.input(COTANGENT, &[2, 8, 4, 4]);
    let n_fwd = g.len();
    grad(&mut g, &[(y, ct)], &[x]).unwrap();
    let kinds: Vec<&str> = g.nodes[n_fwd..].iter().map(|n| n.op.kind()).collect();
    assert_eq!(kinds, ["group_norm_silu_backward"]);
}

#[test]
fn forward_softmax() {
    for c in cases::family("softmax") {
        let (y, xs, _) = run_case(&c);
        assert_close(&c.name, &y, &naive::softmax(&xs[0]));
    }
    // Large logits: the max is subtracted, so nothing overflows.
    let x = Tensor::new(vec![1, 3], vec![1000.0, 1001.0, 999.0]);
    let y = run(&[("x", &x)], |g, i| g.softmax(i[0]));
    let want = naive::softmax(&Tensor::new(vec![1, 3], vec![1.0, 2.0, 0.0]));
    assert_close("softmax of large logits", &y, &want);
}

#[test]
fn forward_unary_values() {
    // GELU(x) = x·Φ(x); reference values from x/2·(1 + erf(x/√2)) in double precision.
    let known = [
        (1.0, 0.8413447460685429),
        (-1.0, -0.15865525393145707),
        (2.0, 1.9544997361036416),
        (0.5, 0.34573123063700656),
        (-3.0, -0.00404969409489031),
        (0.0, 0.0),
    ];
    let x = Tensor::new(vec![known.len()], known.iter().map(|k| k.0).collect());
    let y = run(&[("x", &x)], |g, i| g.gelu(i[0]));
    for (k, (xv, want)) in known.iter().enumerate() {
        assert!(
            (y.data[k] - want).abs() <= 1e-15 * want.abs().max(1e-3),
            "GELU({xv}) = {}, want {want}",
            y.data[k]
        );
    }
    // The others from their definitions.
    let x = normal(9, &[50]);
    type Def = (UnaryOp, fn(f64) -> f64);
    let defs: Vec<Def> = vec![
        (UnaryOp::Silu, |v| v / (1.0 + (-v).exp())),
        (UnaryOp::Sigmoid, |v| 1.0 / (1.0 + (-v).exp())),
        (UnaryOp::Tanh, f64::tanh),
        (UnaryOp::Exp, f64::exp),
        (UnaryOp::Neg, |v| -v),
        (UnaryOp::Square, |v| v * v),
        (UnaryOp::Elu(0.5), |v| {
            if v > 0.0 {
                v
            } else {
                0.5 * (v.exp() - 1.0)
            }
        }),
        (
            UnaryOp::LeakyRelu(0.25),
            |v| if v > 0.0 { v } else { 0.25 * v },
        ),
        (UnaryOp::Clamp(-0.5, 0.75), |v| v.clamp(-0.5, 0.75)),
        (UnaryOp::Affine(1.5, -0.25), |v| 1.5 * v - 0.25),
    ];
    for (u, f) in defs {
        let y = run(&[("x", &x)], |g, i| g.unary(u, i[0]));
        let want = Tensor::new(x.shape.clone(), x.data.iter().map(|&v| f(v)).collect());
        assert_close(&format!("{u:?}"), &y, &want);
    }
    let xp = Tensor::new(vec![3], vec![0.25, 2.0, 9.0]);
    let y = run(&[("x", &xp)], |g, i| g.sqrt(i[0]));
    assert_close(
        "sqrt",
        &y,
        &Tensor::new(vec![3], vec![0.5, 2f64.sqrt(), 3.0]),
    );
}

#[test]
fn forward_binary_broadcast_and_reduce() {
    for c in cases::family("binary") {
        if c.inputs.len() != 2 || c.inputs[0].name != "a" {
            continue;
        }
        let (y, xs, g) = run_case(&c);
        let Op::Binary(op) = *find_op(&g, "binary") else {
            unreachable!()
        };
        let f = move |p: f64, q: f64| match op {
            dynface::graph::BinaryOp::Add => p + q,
            dynface::graph::BinaryOp::Sub => p - q,
            dynface::graph::BinaryOp::Mul => p * q,
            dynface::graph::BinaryOp::Div => p / q,
        };
        assert_close(&c.name, &y, &naive::broadcast_op(&xs[0], &xs[1], f));
    }
    for c in cases::family("reduce") {
        let (y, xs, g) = run_case(&c);
        let x = &xs[0];
        let want = if c.name.starts_with("l2_norm") {
            let (axes, keep) = if c.name.contains("all") {
                (vec![0, 1, 2], true)
            } else {
                (vec![1], false)
            };
            let sq = Tensor::new(x.shape.clone(), x.data.iter().map(|v| v * v).collect());
            let s = naive::reduce(&sq, &axes, keep, false);
            Tensor::new(s.shape.clone(), s.data.iter().map(|v| v.sqrt()).collect())
        } else if c.name == "sum_all" {
            naive::reduce(x, &[0, 1, 2], false, false)
        } else {
            let Op::Reduce { op, axes, keepdim } = find_op(&g, "reduce").clone() else {
                unreachable!()
            };
            let mean = op == dynface::graph::ReduceOp::Mean;
            naive::reduce(x, &axes, keepdim, mean)
        };
        assert_close(&c.name, &y, &want);
    }
    for c in cases::family("broadcast") {
        let (y, xs, g) = run_case(&c);
        let want = match find_op(
            &g,
            if c.name.starts_with("sum_to") {
                "sum_to"
            } else {
                "broadcast_to"
            },
        ) {
            Op::SumTo { shape } => {
                // Σ over the axes where the target is 1 or missing.
                let lead = xs[0].shape.len() - shape.len();
                let axes: Vec<usize> = (0..xs[0].shape.len())
                    .filter(|&a| a < lead || shape[a - lead] == 1)
                    .collect();
                naive::reduce(&xs[0], &axes, true, false).reshape(shape)
            }
            Op::BroadcastTo { shape } => {
                naive::broadcast_op(&xs[0], &Tensor::zeros(shape), |p, _| p)
            }
            _ => unreachable!(),
        };
        assert_close(&c.name, &y, &want);
    }
}

#[test]
fn forward_layout_ops() {
    let x = normal(1, &[2, 3, 4]);
    let (a, b) = (normal(2, &[2, 1, 4]), normal(3, &[2, 2, 4]));
    let y = run(&[("x", &x), ("a", &a), ("b", &b)], |g, i| g.concat(i, 1));
    assert_close("concat", &y, &naive::concat(&[&x, &a, &b], 1));
    let y = run(&[("x", &x)], |g, i| g.slice(i[0], 2, 1, 2));
    let want = Tensor::new(
        vec![2, 3, 2],
        (0..12).map(|r| x.data[(r / 2) * 4 + 1 + r % 2]).collect(),
    );
    assert_close("slice", &y, &want);
    let y = run(&[("x", &x)], |g, i| {
        g.push(
            Op::Pad {
                axis: 2,
                start: 1,
                full: 6,
            },
            &[i[0]],
        )
    });
    let z = Tensor::zeros(&[2, 3, 1]);
    assert_close("pad", &y, &naive::concat(&[&z, &x, &z], 2));
    for perm in [[2, 0, 1], [1, 0, 2], [0, 2, 1]] {
        let y = run(&[("x", &x)], |g, i| g.permute(i[0], &perm));
        assert_close(&format!("permute {perm:?}"), &y, &naive::permute(&x, &perm));
    }
}

#[test]
fn forward_pixel_shuffle() {
    for c in cases::family("pixel_shuffle") {
        let (y, xs, g) = run_case(&c);
        let want = match *find_op(
            &g,
            if c.name.starts_with("un") {
                "pixel_unshuffle"
            } else {
                "pixel_shuffle"
            },
        ) {
            Op::PixelShuffle { r } => naive::pixel_shuffle(&xs[0], r),
            Op::PixelUnshuffle { r } => naive::pixel_unshuffle(&xs[0], r),
            _ => unreachable!(),
        };
        assert_close(&c.name, &y, &want);
    }
    // A hand-checkable instance of PyTorch's definition: channel c·r²+i·r+j of pixel (h,w)
    // lands at (h·r+i, w·r+j). Input channel k holds the value k.
    let x = Tensor::new(vec![1, 4, 1, 1], vec![0.0, 1.0, 2.0, 3.0]);
    let y = run(&[("x", &x)], |g, i| g.pixel_shuffle(i[0], 2));
    assert_eq!(y.shape, vec![1, 1, 2, 2]);
    assert_eq!(y.data, vec![0.0, 1.0, 2.0, 3.0]);
}

#[test]
fn forward_roll() {
    for c in cases::family("roll") {
        let (y, xs, g) = run_case(&c);
        let Op::Roll { shifts } = find_op(&g, "roll").clone() else {
            unreachable!()
        };
        assert_close(&c.name, &y, &naive::roll(&xs[0], &shifts));
    }
    // torch.roll(torch.arange(5), 2) = [3, 4, 0, 1, 2]
    let x = Tensor::new(vec![5], vec![0.0, 1.0, 2.0, 3.0, 4.0]);
    let y = run(&[("x", &x)], |g, i| g.roll(i[0], &[(0, 2)]));
    assert_eq!(y.data, vec![3.0, 4.0, 0.0, 1.0, 2.0]);
}

#[test]
fn forward_resample() {
    let x = normal(4, &[2, 3, 3, 4]);
    let y = run(&[("x", &x)], |g, i| g.upsample2x(i[0]));
    assert_close("upsample2x", &y, &naive::upsample2x(&x));
    let x = normal(5, &[2, 3, 4, 6]);
    let y = run(&[("x", &x)], |g, i| g.avg_pool2x(i[0]));
    assert_close("avg_pool2x", &y, &naive::avg_pool2x(&x));
    let y = run(&[("x", &x)], |g, i| g.global_avg_pool(i[0]));
    assert_close(
        "global_avg_pool",
        &y,
        &naive::reduce(&x, &[2, 3], false, true),
    );
}

#[test]
fn forward_window_partition_and_reverse() {
    let x = normal(6, &[2, 4, 6, 3]);
    let y = run(&[("x", &x)], |g, i| g.window_partition(i[0], 2));
    assert_close("window_partition", &y, &naive::window_partition(&x, 2));
    let back = run(&[("x", &x)], |g, i| {
        let w = g.window_partition(i[0], 2)?;
        g.window_reverse(w, 2, 4, 6)
    });
    assert_eq!(back, x, "window_reverse ∘ window_partition is the identity");
}

#[test]
fn forward_timestep_embedding() {
    let c = &cases::family("timestep_embedding")[0];
    let (y, xs, _) = run_case(c);
    let want = naive::timestep_embedding(&xs[0], 8);
    // The engine computes the frequencies in f32 as PyTorch does, so t·f carries an error
    // of at most t·f·2⁻²² (two f32 roundings); cos and sin are 1-Lipschitz.
    let half = 4;
    for b in 0..3 {
        for i in 0..8 {
            let f = (-(10000f64).ln() * (i % half) as f64 / half as f64).exp();
            let bound = xs[0].data[b] * f * 2f64.powi(-22) + 1e-14;
            let d = (y.data[b * 8 + i] - want.data[b * 8 + i]).abs();
            assert!(
                d <= bound,
                "t={} i={i}: off by {d:e} > {bound:e}",
                xs[0].data[b]
            );
        }
    }
    // Cos first: t = 0 gives [1,…,1, 0,…,0].
    let t0 = Tensor::new(vec![1], vec![0.0]);
    let y0 = run(&[("t", &t0)], |g, i| g.timestep_embedding(i[0], 6));
    assert_eq!(y0.data, vec![1.0, 1.0, 1.0, 0.0, 0.0, 0.0]);
}

// ---------------------------------------------------------------------------------------
// Whole networks

/// The residual + attention network with constant weights (as models bind them), a scalar
/// loss ⟨out, r⟩ and gradients with respect to the input and every weight.
fn network_graph() -> (Graph, NodeId, Vec<NodeId>, HashMap<String, Tensor<f32>>) {
    let mut g = Graph::new();
    let x = g.input("x", &cases::NET_SHAPE);
    let mut consts = vec![];
    let out = cases::res_attn_block(&mut g, x, 2, &mut |g, name, shape| {
        let id = g.constant(name, shape);
        consts.push(id);
        id
    })
    .unwrap();
    let r = g.input(COTANGENT, &cases::NET_SHAPE);
    let mut wrt = vec![x];
    wrt.extend(&consts);
    let grads = grad(&mut g, &[(out, r)], &wrt).unwrap();
    let mut rng = random::rng(77);
    let mut values = HashMap::new();
    for (name, shape, d) in cases::res_attn_params(cases::NET_SHAPE[1]) {
        values.insert(name, cases::draw(&mut rng, &shape, &d).cast::<f32>());
    }
    (g, out, grads, values)
}

fn run_net<B: dynface::backend::Backend>(
    ex: &mut Executor<B>,
    x: &Tensor<f64>,
    r: &Tensor<f64>,
    outs: &[NodeId],
) -> Vec<Tensor<B::Elem>> {
    ex.set_input("x", &x.cast()).unwrap();
    ex.set_input(COTANGENT, &r.cast()).unwrap();
    ex.run().unwrap();
    outs.iter().map(|&o| ex.output(o).unwrap()).collect()
}

#[test]
fn planner_reuse_is_bit_identical_and_smaller() {
    let (g, out, grads, consts) = network_graph();
    let mut outs = vec![out];
    outs.extend(&grads);
    let make = |reuse| {
        let mut ex = Executor::new(
            CpuBackend::<f32>::new(),
            &g,
            &outs,
            PlanOptions {
                reuse,
                ..Default::default()
            },
        )
        .unwrap();
        ex.bind_all(|n| consts.get(n).cloned()).unwrap();
        ex
    };
    let (mut with, mut without) = (make(true), make(false));
    let x = normal(1, &cases::NET_SHAPE);
    let r = normal(2, &cases::NET_SHAPE);
    let a = run_net(&mut with, &x, &r, &outs);
    let b = run_net(&mut without, &x, &r, &outs);
    for (k, (p, q)) in a.iter().zip(&b).enumerate() {
        assert!(p.data == q.data, "output {k} differs with memory reuse");
        assert!(p.norm() > 0.0, "output {k} is zero");
    }
    let (pw, po) = (with.peak_bytes(), without.peak_bytes());
    println!("arena peak: {pw} bytes with reuse, {po} without");
    assert!(pw < po, "reuse does not lower the peak: {pw} vs {po}");

    // Re-running a planned executor on new inputs must not depend on stale arena contents.
    let x2 = normal(3, &cases::NET_SHAPE);
    let again = run_net(&mut with, &x2, &r, &outs);
    let fresh = run_net(&mut make(true), &x2, &r, &outs);
    for (k, (p, q)) in again.iter().zip(&fresh).enumerate() {
        assert!(p.data == q.data, "output {k} depends on the previous run");
    }
}

/// Memory reuse must not change any bit of any case's output or gradients.
#[test]
fn planner_reuse_is_bit_identical_on_every_case() {
    use dynface::check::parity::eval_case_with;
    let mut checked = 0;
    for c in cases::all() {
        let run = |reuse| {
            eval_case_with(
                CpuBackend::<f32>::new(),
                &c,
                c.seed(),
                PlanOptions {
                    reuse,
                    ..Default::default()
                },
            )
        };
        let with = match run(true) {
            Ok(v) => v,
            Err(CheckError::Unsupported(m)) => {
                dynface::check::skip::skip(
                    &format!("{}/{}", c.family, c.name),
                    dynface::check::skip::SkipReason::Unsupported,
                    &m,
                );
                continue;
            }
            Err(e) => panic!("{}: {e}", c.name),
        };
        let without = run(false).unwrap();
        for (k, (a, b)) in with.values.iter().zip(&without.values).enumerate() {
            assert!(
                a.data == b.data,
                "{}/{}: {} differs with memory reuse",
                c.family,
                c.name,
                with.names[k]
            );
        }
        checked += 1;
    }
    assert!(checked > 100, "only {checked} cases ran");
}

#[test]
fn network_gradients_match_finite_differences() {
    // Every parameter and the input, the input element by element (256 elements).
    let opts = VjpOptions {
        full_fd_max: 256,
        ..VjpOptions::default()
    };
    let n = vjp_family("network", &opts);
    assert_eq!(n, 1);
}

#[test]
fn network_f32_matches_f64() {
    let c = &cases::family("network")[0];
    let cg: CaseGraph = c.grad_graph().unwrap();
    let xs = c.draw_inputs(c.seed());
    let r = normal(4, &cases::NET_SHAPE);
    let mut outs = vec![cg.output];
    outs.extend(&cg.grads);
    fn go<T: Scalar>(
        cg: &CaseGraph,
        c: &Case,
        xs: &[Tensor<f64>],
        r: &Tensor<f64>,
        outs: &[NodeId],
    ) -> Vec<Tensor<f64>> {
        let mut ex = Executor::new(
            CpuBackend::<T>::new(),
            &cg.graph,
            outs,
            PlanOptions::default(),
        )
        .unwrap();
        for (s, x) in c.inputs.iter().zip(xs) {
            ex.set_input(&s.name, &x.cast()).unwrap();
        }
        ex.set_input(COTANGENT, &r.cast()).unwrap();
        ex.run().unwrap();
        outs.iter().map(|&o| ex.output(o).unwrap().cast()).collect()
    }
    let lo = go::<f32>(&cg, c, &xs, &r, &outs);
    let hi = go::<f64>(&cg, c, &xs, &r, &outs);
    let names: Vec<String> = std::iter::once("output".to_string())
        .chain(cg.wrt.iter().map(|&k| format!("d/d{}", c.inputs[k].name)))
        .collect();
    for ((a, b), name) in lo.iter().zip(&hi).zip(&names) {
        let e = a.rel_err(b);
        println!("{name}: f32 vs f64 rel err {e:.2e}");
        assert!(e < 1e-5, "{name}: f32 vs f64 rel err {e:.3e}");
        assert!(b.norm() > 0.0);
    }
}

// ---------------------------------------------------------------------------------------
// Shape errors: a clear error naming the node, the op and both shapes; never a panic.

fn expect_err(what: &str, r: GResult<NodeId>, needles: &[&str]) {
    let msg = match r {
        Ok(id) => panic!("{what}: built node {id} instead of failing"),
        Err(e) => e.to_string(),
    };
    println!("{what}: {msg}");
    for n in needles {
        assert!(msg.contains(n), "{what}: message lacks {n:?}: {msg}");
    }
}

#[test]
fn shape_errors_name_node_op_and_shapes() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 3, 8, 8]);
    let w = g.input("w", &[4, 5, 3, 3]);
    let r = g.scope("enc", |g| g.conv2d(x, w, None, 1, 1, 1));
    expect_err(
        "conv channels",
        r,
        &[
            "node 2",
            "enc.conv2d",
            "op conv2d",
            "[1, 3, 8, 8]",
            "[4, 5, 3, 3]",
        ],
    );
    let wbig = g.input("wbig", &[4, 3, 11, 11]);
    expect_err(
        "conv kernel too large",
        g.conv2d(x, wbig, None, 1, 0, 1),
        &["op conv2d", "[1, 3, 8, 8]", "[4, 3, 11, 11]"],
    );
    let w2 = g.input("w2", &[4, 3, 3, 3]);
    expect_err(
        "conv groups",
        g.conv2d(x, w2, None, 1, 1, 2),
        &["op conv2d", "groups 2", "[1, 3, 8, 8]", "[4, 3, 3, 3]"],
    );
    let ga = g.input("gn_gamma", &[3]);
    let be = g.input("gn_beta", &[3]);
    let sc = g.input("gn_scale", &[1, 4]);
    let sh = g.input("gn_shift", &[1, 3]);
    expect_err(
        "group norm silu scale",
        g.group_norm_silu(x, ga, be, Some((sc, sh)), 3, 1e-5),
        &["op group_norm_silu", "scale [1, 4] must be [1, 3]"],
    );
    expect_err(
        "group norm silu groups",
        g.group_norm_silu(x, ga, be, None, 2, 1e-5),
        &[
            "op group_norm_silu",
            "2 groups do not divide",
            "[1, 3, 8, 8]",
        ],
    );
    let b = g.input("b", &[5]);
    expect_err(
        "conv bias",
        g.conv2d(x, w2, Some(b), 1, 1, 1),
        &["op conv2d", "[5]", "[4, 3, 3, 3]"],
    );

    let a = g.input("a", &[2, 3, 4]);
    let m = g.input("m", &[5, 6]);
    expect_err(
        "matmul inner",
        g.matmul(a, m, false, false),
        &["op matmul", "[2, 3, 4]", "[5, 6]"],
    );
    let bm = g.input("bm", &[3, 4, 6]);
    expect_err(
        "matmul batch",
        g.matmul(a, bm, false, false),
        &["op matmul", "[2, 3, 4]", "[3, 4, 6]"],
    );
    let c = g.input("c", &[2, 5, 5]);
    let id = g.len();
    expect_err(
        "concat",
        g.concat(&[a, c], 1),
        &[&format!("node {id}"), "op concat", "[2, 3, 4]", "[2, 5, 5]"],
    );
    let lw = g.input("lw", &[4, 6]);
    expect_err("linear", g.linear(a, lw, None), &["op matmul", "[4, 6]"]);
    let v = g.input("v", &[4, 3]);
    expect_err("add", g.add(a, v), &["op binary", "[2, 3, 4]", "[4, 3]"]);
    let gm = g.input("gamma", &[3]);
    let xs = g.input("xs", &[2, 6, 4, 4]);
    expect_err(
        "group norm gamma",
        g.group_norm(xs, gm, gm, 3, 1e-5),
        &["op group_norm", "[2, 6, 4, 4]", "[3]"],
    );
}

#[test]
fn composite_shape_errors_do_not_panic() {
    // Composites read their arguments' shapes before any primitive op checks them; each
    // of these used to index out of bounds or divide by zero.
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3, 4, 4]);
    let s1 = g.input("s1", &[3]);
    let x3 = g.input("x3", &[4, 4, 3]);
    let x4 = g.input("x4", &[1, 4, 6, 3]);
    let w2 = g.input("w2", &[2, 3]);
    let w3 = g.input("w3", &[5, 4, 3]);
    let sc = g.input("scalar", &[]);
    type Build = Box<dyn Fn(&mut Graph) -> GResult<NodeId>>;
    let attempts: Vec<(&str, Build, Vec<&str>)> = vec![
        (
            "scale_shift with a [C] scale",
            Box::new(move |g| g.scale_shift(x, s1, s1)),
            vec!["op scale_shift", "[2, 3, 4, 4]", "[3]"],
        ),
        (
            "window_partition of a rank-3 map",
            Box::new(move |g| g.window_partition(x3, 2)),
            vec!["op window_partition", "[4, 4, 3]"],
        ),
        (
            "window_partition, window not dividing",
            Box::new(move |g| g.window_partition(x4, 4)),
            vec!["op window_partition", "[1, 4, 6, 3]"],
        ),
        (
            "window_partition, window 0",
            Box::new(move |g| g.window_partition(x4, 0)),
            vec!["op window_partition", "[1, 4, 6, 3]"],
        ),
        (
            "window_reverse of a rank-2 tensor",
            Box::new(move |g| g.window_reverse(w2, 2, 4, 4)),
            vec!["op window_reverse", "[2, 3]"],
        ),
        (
            "window_reverse, window larger than the map",
            Box::new(move |g| g.window_reverse(w3, 4, 2, 2)),
            vec!["op window_reverse", "[5, 4, 3]"],
        ),
        (
            "batch_norm with scalar statistics",
            Box::new(move |g| g.batch_norm(x, sc, sc, sc, sc, 1e-5)),
            vec!["op batch_norm", "[2, 3, 4, 4]", "[]"],
        ),
        (
            "linear of scalars",
            Box::new(move |g| g.linear(sc, sc, None)),
            vec!["[]"],
        ),
        (
            "conv2d_backward_input with stride 0",
            Box::new(move |g| {
                let p = Conv2dParams {
                    stride: 0,
                    pad: 0,
                    groups: 1,
                };
                g.push(Op::Conv2dBackwardInput { p, in_hw: (4, 4) }, &[x, x])
            }),
            vec!["op conv2d_backward_input", "stride 0"],
        ),
    ];
    for (what, build, needles) in attempts {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| build(&mut g)));
        let r = r.unwrap_or_else(|_| panic!("{what}: panicked instead of returning Err"));
        expect_err(what, r, &needles);
    }
}

#[test]
fn grad_and_executor_binding_errors() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3]);
    let y = g.square(x).unwrap();
    let bad = g.input("ct", &[3, 2]);
    let e = grad(&mut g, &[(y, bad)], &[x]).unwrap_err().to_string();
    assert!(e.contains("[3, 2]") && e.contains("[2, 3]"), "{e}");
    let mut ex = Executor::new(CpuBackend::<f64>::new(), &g, &[y], PlanOptions::default()).unwrap();
    let e = ex
        .set_input("x", &Tensor::zeros(&[3, 3]))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("input x") && e.contains("[2, 3]") && e.contains("[3, 3]"),
        "{e}"
    );
    let e = ex.run().unwrap_err().to_string();
    assert!(e.contains("input x"), "running with an unset input: {e}");
    assert!(matches!(
        vjp::check_case(
            &cases::family("timestep_embedding")[0],
            &VjpOptions::default()
        ),
        Err(CheckError::Graph(_))
    ));
}

// ---------------------------------------------------------------------------------------
// Large tensors (threaded CPU paths) and f32 against f64 on every case

#[test]
fn vjp_large_tensors() {
    vjp_family("large", &VjpOptions::default());
}

#[test]
fn forward_large_tensors() {
    for c in cases::family("large") {
        let (y, xs, g) = run_case(&c);
        let want = match c.name.split_whitespace().next().unwrap() {
            "mul" => naive::broadcast_op(&xs[0], &xs[1], |p, q| p * q),
            "div" => naive::broadcast_op(&xs[0], &xs[1], |p, q| p / q),
            "sum" => naive::reduce(&xs[0], &[0, 2], false, false),
            "mean" => naive::reduce(&xs[0], &[0, 1, 2, 3], false, true),
            "sum_to" => naive::reduce(&xs[0], &[0, 2], true, false).reshape(&[16, 1, 64]),
            "softmax" => naive::softmax(&xs[0]),
            "permute" => naive::permute(&xs[0], &[0, 2, 3, 1]),
            "roll" => naive::roll(&xs[0], &[(2, 5), (3, -9)]),
            "group_norm" => naive::group_norm(&xs[0], &xs[1], &xs[2], 8, 1e-5f32 as f64),
            "group_norm_silu" => {
                let film = Some((&xs[3], &xs[4]));
                naive::group_norm_silu(&xs[0], &xs[1], &xs[2], film, 8, 1e-5f32 as f64)
            }
            "layer_norm" => naive::layer_norm(&xs[0], &xs[1], &xs[2], 1e-5f32 as f64),
            "matmul" => {
                let Op::MatMul { trans_a, trans_b } = *find_op(&g, "matmul") else {
                    unreachable!()
                };
                naive::matmul(&xs[0], &xs[1], trans_a, trans_b)
            }
            "conv2d" => {
                let pad = if c.name.contains("1x1") { 0 } else { 1 };
                naive::conv2d(&xs[0], &xs[1], xs.get(2), 1, pad, 1)
            }
            "gelu" => naive::gelu(&xs[0]),
            other => panic!("no reference for large case {other}"),
        };
        assert_close(&c.name, &y, &want);
    }
}

/// The op case table on the CPU f32 backend against f64, element by element, under the
/// fp32 tolerances of `check::table` (the large family included).
#[test]
fn f32_matches_f64_on_every_case() {
    use dynface::check::table::{measured_by_family, run_case_table, Arith};
    let run = run_case_table(
        std::rc::Rc::new(CpuBackend::<f32>::new()),
        Arith::Fp32,
        None,
        true,
    );
    for m in measured_by_family(&run) {
        println!("cpu f32: {m}");
    }
    for u in &run.unsupported {
        println!("NOT RUN (unsupported): {u}");
    }
    let failures = run.failures();
    println!(
        "cpu f32: {} values compared, {} failures",
        run.rows.len(),
        failures.len()
    );
    assert!(
        run.rows.len() > 100,
        "only {} values compared",
        run.rows.len()
    );
    assert!(failures.is_empty(), "f32 vs f64:\n{}", failures.join("\n"));
}

#[test]
fn primitive_misuse_returns_errors() {
    // Each of these once built a graph that panicked (at build or at run time) or, for the
    // repeated reduce axis, gave a mean a gradient divided by the axis size twice.
    let mut g = Graph::new();
    let x = g.input("x", &[2, 3]);
    let v = g.input("v", &[3]);
    let sc = g.input("scalar", &[]);
    let leaf = g.push(Op::Input { name: "y".into() }, &[]);
    expect_err("leaf through push", leaf, &["op input", "leaves are added"]);
    expect_err("softmax of a scalar", g.softmax(sc), &["op softmax", "[]"]);
    expect_err(
        "softmax backward of scalars",
        g.push(Op::SoftmaxBackward, &[sc, sc]),
        &["op softmax_backward"],
    );
    expect_err(
        "group norm gamma gradient of a vector",
        g.push(
            Op::GroupNormBackwardGamma {
                groups: 1,
                eps: 1e-5,
            },
            &[v, v],
        ),
        &["op group_norm_backward_gamma", "[3]"],
    );
    expect_err(
        "mean over a repeated axis",
        g.mean(x, &[1, 1], false),
        &["op reduce", "[1, 1]", "[2, 3]"],
    );
    let far = NodeId(g.len() + 5);
    let y = g.square(x).unwrap();
    let one = g.fill(1.0, &[2, 3]);
    let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        grad(&mut g, &[(y, one)], &[far])
    }));
    let e = r
        .expect("grad with an unknown node panicked")
        .unwrap_err()
        .to_string();
    assert!(e.contains(&far.to_string()), "{e}");
}
