//! Precision as a node attribute (`Node::precision`, set by `Graph::with_precision`): in one
//! graph a node marked bf16 runs the tensor-core entry point and a node marked fp32 the fp32
//! one, whatever the backend's default; unmarked nodes take the default; backward nodes take
//! their forward node's mark; the CPU backend ignores the marks. Kernel runs use the GPU when
//! there is one, else the CPU emulator of the same kernel sources (a test of the launch code's
//! choice, not of the GPU).

#[path = "support/kernel_device.rs"]
mod kernel_device;

use dynface::backend::cpu::CpuBackend;
use dynface::backend::cuda::KernelBackend;
use dynface::exec::Executor;
use dynface::graph::autodiff::grad;
use dynface::graph::plan::PlanOptions;
use dynface::graph::{Graph, NodeId, Op, Precision};
use dynface::tensor::random::{normal, rng};
use dynface::tensor::Tensor;
use kernel_device::Device;
use std::collections::BTreeMap;
use std::rc::Rc;

const X: [usize; 4] = [2, 5, 9, 9];
const W: [usize; 4] = [6, 5, 3, 3];
const A: [usize; 3] = [3, 17, 24];
const B: [usize; 3] = [3, 24, 13];

/// Two convolutions of one image, the input gradient of each, and two matrix products of one
/// left operand: `marks` gives the mark of conv 0, conv 1, product 0, product 1 (a gradient
/// follows its conv). Outputs in that order: conv 0, conv 1, dx 0, dx 1, product 0, product 1.
fn graph(marks: [Option<Precision>; 4]) -> (Graph, Vec<NodeId>) {
    let mut g = Graph::new();
    let x = g.input("x", &X);
    let w = [g.input("w0", &W), g.input("w1", &W)];
    let ct = [g.input("ct0", &[2, 6, 9, 9]), g.input("ct1", &[2, 6, 9, 9])];
    let a = g.input("a", &A);
    let b = [g.input("b0", &B), g.input("b1", &B)];
    let marked = |g: &mut Graph, m: Option<Precision>, f: &dyn Fn(&mut Graph) -> NodeId| match m {
        Some(p) => g.with_precision(p, |g| f(g)),
        None => f(g),
    };
    let conv: Vec<NodeId> = (0..2)
        .map(|i| {
            marked(&mut g, marks[i], &|g| {
                g.conv2d(x, w[i], None, 1, 1, 1).unwrap()
            })
        })
        .collect();
    // Gradients are taken outside every scope: their mark comes from the forward node alone.
    let dx: Vec<NodeId> = (0..2)
        .map(|i| grad(&mut g, &[(conv[i], ct[i])], &[x]).unwrap()[0])
        .collect();
    let mm: Vec<NodeId> = (0..2)
        .map(|i| {
            marked(&mut g, marks[2 + i], &|g| {
                g.matmul(a, b[i], false, false).unwrap()
            })
        })
        .collect();
    let outs = vec![conv[0], conv[1], dx[0], dx[1], mm[0], mm[1]];
    (g, outs)
}

fn inputs() -> Vec<(&'static str, Tensor<f32>)> {
    let mut r = rng(0x9e37);
    vec![
        ("x", normal(&mut r, &X, 1.0)),
        ("w0", normal(&mut r, &W, 0.3)),
        ("w1", normal(&mut r, &W, 0.3)),
        ("ct0", normal(&mut r, &[2, 6, 9, 9], 1.0)),
        ("ct1", normal(&mut r, &[2, 6, 9, 9], 1.0)),
        ("a", normal(&mut r, &A, 1.0)),
        ("b0", normal(&mut r, &B, 1.0)),
        ("b1", normal(&mut r, &B, 1.0)),
    ]
}

/// The graph's outputs on `be` (the fusion passes off: the graph is what is under test), and
/// the entry points launched while it ran.
fn run<B: dynface::backend::Backend<Elem = f32>>(
    be: B,
    marks: [Option<Precision>; 4],
    launched: impl Fn() -> BTreeMap<&'static str, u64>,
) -> (Vec<Vec<f32>>, BTreeMap<&'static str, u64>) {
    let (g, outs) = graph(marks);
    let opts = PlanOptions {
        fuse: false,
        ..Default::default()
    };
    let mut ex = Executor::new(be, &g, &outs, opts).unwrap();
    for (name, t) in inputs() {
        ex.set_input(name, &t).unwrap();
    }
    let before = launched();
    ex.run().unwrap();
    let mut after = launched();
    for (k, n) in before {
        *after.get_mut(k).unwrap() -= n;
    }
    after.retain(|_, n| *n > 0);
    let values = outs.iter().map(|&o| ex.output(o).unwrap().data).collect();
    (values, after)
}

fn on_kernels(default: Precision, marks: [Option<Precision>; 4]) -> Option<Run> {
    let dev = kernel_device::device("precision marks", default)?;
    Some(match dev {
        Device::Cuda(b) => on(Rc::new(*b), marks),
        Device::Emu(e) => on(Rc::new(e), marks),
    })
}

type Run = (Vec<Vec<f32>>, BTreeMap<&'static str, u64>);

fn on<K: KernelBackend>(be: Rc<K>, marks: [Option<Precision>; 4]) -> Run {
    run(be.clone(), marks, || be.launched())
}

/// Launches of entry points whose name starts with `stem`, split (tensor-core, fp32).
fn count(log: &BTreeMap<&'static str, u64>, stem: &str) -> (u64, u64) {
    let mut tc_fp = (0, 0);
    for (k, n) in log.iter().filter(|(k, _)| k.starts_with(stem)) {
        if k.contains("_tc_") {
            tc_fp.0 += n;
        } else {
            tc_fp.1 += n;
        }
    }
    tc_fp
}

fn assert_same_bits(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: {g} vs {w}");
    }
}

const BF: Option<Precision> = Some(Precision::Bf16);
const FP: Option<Precision> = Some(Precision::Fp32);

#[test]
fn each_node_runs_at_its_own_precision_and_matches_the_uniform_runs_node_by_node() {
    // The uniform references: no marks, the backend's default decides.
    let Some((all_bf16, log_bf16)) = on_kernels(Precision::Bf16, [None; 4]) else {
        return; // kernel_device::device recorded the skip
    };
    let (all_fp32, log_fp32) = on_kernels(Precision::Fp32, [None; 4]).unwrap();
    assert_eq!(count(&log_bf16, "conv_fwd"), (2, 0), "{log_bf16:?}");
    assert_eq!(count(&log_fp32, "conv_fwd"), (0, 2), "{log_fp32:?}");
    // bf16 operands must change the results, or the comparisons below would prove nothing.
    for k in [0, 2, 4] {
        assert!(
            all_bf16[k].iter().zip(&all_fp32[k]).any(|(a, b)| a != b),
            "output {k}: bf16 and fp32 runs agree bit for bit"
        );
    }
    // Mixed: conv 0, its gradient and product 0 bf16, the others fp32, once with every node
    // marked on an fp32 backend, once with the bf16 nodes unmarked on a bf16 backend.
    for (default, marks) in [
        (Precision::Fp32, [BF, FP, BF, FP]),
        (Precision::Bf16, [None, FP, None, FP]),
    ] {
        let (mixed, log) = on_kernels(default, marks).unwrap();
        let ctx = format!("default {default}, marks {marks:?}");
        assert_eq!(count(&log, "conv_fwd"), (1, 1), "{ctx}: {log:?}");
        assert_eq!(count(&log, "conv_bwd_input"), (1, 1), "{ctx}: {log:?}");
        assert_eq!(count(&log, "gemm"), (1, 1), "{ctx}: {log:?}");
        let names = ["conv 0", "conv 1", "dx 0", "dx 1", "product 0", "product 1"];
        for (k, name) in names.iter().enumerate() {
            let want = if k % 2 == 0 {
                &all_bf16[k]
            } else {
                &all_fp32[k]
            };
            assert_same_bits(&format!("{ctx}: {name}"), &mixed[k], want);
        }
    }
}

#[test]
fn backward_nodes_take_the_forward_mark_and_inner_scopes_win() {
    let (g, outs) = graph([BF, FP, None, FP]);
    let conv_bwd: Vec<Option<Precision>> = g
        .nodes
        .iter()
        .filter(|n| matches!(n.op, Op::Conv2dBackwardInput { .. }))
        .map(|n| n.precision)
        .collect();
    assert_eq!(conv_bwd, vec![BF, FP]);
    assert_eq!(g.node(outs[4]).precision, None);
    assert_eq!(g.node(outs[5]).precision, FP);

    let mut g = Graph::new();
    let x = g.input("x", &[4]);
    let (outer, inner, after) = g.with_precision(Precision::Bf16, |g| {
        let outer = g.silu(x).unwrap();
        let inner = g.with_precision(Precision::Fp32, |g| g.silu(outer).unwrap());
        (outer, inner, g.silu(inner).unwrap())
    });
    let outside = g.silu(after).unwrap();
    let p = |id: NodeId| g.node(id).precision;
    assert_eq!(
        [p(x), p(outer), p(inner), p(after), p(outside)],
        [None, BF, FP, BF, None]
    );
}

#[test]
fn the_cpu_backend_ignores_the_marks() {
    let none = || BTreeMap::new();
    let (plain, _) = run(CpuBackend::<f32>::new(), [None; 4], none);
    let (marked, _) = run(CpuBackend::<f32>::new(), [BF, FP, BF, FP], none);
    for (k, (m, p)) in marked.iter().zip(&plain).enumerate() {
        assert_same_bits(&format!("output {k}"), m, p);
    }
}
