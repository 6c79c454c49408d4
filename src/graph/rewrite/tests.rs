//! The passes fire on the patterns as models and autodiff build them, in every operand
//! layout, and nowhere else: not where an intermediate value has another reader, not where
//! the backend declines. Fused and op-by-op plans are compared on the f64 CPU backend.

use super::{fuse, Fused};
use crate::backend::cpu::CpuBackend;
use crate::exec::Executor;
use crate::graph::autodiff::grad;
use crate::graph::plan::PlanOptions;
use crate::graph::{Graph, NodeId, Op};
use crate::tensor::{random, Tensor};

fn yes(_: &Op, _: &[&[usize]]) -> bool {
    true
}

/// Live op kinds of `g` for `outs` after fusing a copy.
fn fused_kinds(g: &Graph, outs: &[NodeId]) -> (Fused, Vec<&'static str>) {
    let mut g = g.clone();
    let f = fuse(&mut g, outs, &yes);
    let plan = crate::graph::plan::plan(&g, outs, PlanOptions::default());
    let kinds = plan.order.iter().map(|i| g.node(*i).op.kind()).collect();
    (f, kinds)
}

/// Runs `outs` fused and op by op on CPU f64 with seeded inputs; returns the largest
/// element-wise difference relative to the largest magnitude of each output.
fn fused_vs_plain(g: &Graph, outs: &[NodeId], seed: u64) -> f64 {
    let mut rng = random::rng(seed);
    let inputs: Vec<(String, Tensor<f64>)> = g
        .inputs()
        .into_iter()
        .map(|(name, id)| (name, random::normal(&mut rng, g.shape(id), 1.0)))
        .collect();
    let run = |fuse: bool| {
        let opts = PlanOptions {
            fuse,
            ..Default::default()
        };
        let mut ex = Executor::new(CpuBackend::<f64>::new(), g, outs, opts).unwrap();
        for (n, t) in &inputs {
            ex.set_input(n, t).unwrap();
        }
        ex.run().unwrap();
        outs.iter()
            .map(|&o| ex.output(o).unwrap())
            .collect::<Vec<_>>()
    };
    let (a, b) = (run(true), run(false));
    a.iter()
        .zip(&b)
        .map(|(x, y)| {
            let scale = y.data.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            let d = x
                .data
                .iter()
                .zip(&y.data)
                .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
            d / scale.max(1e-300)
        })
        .fold(0.0, f64::max)
}

/// GN → FiLM → SiLU as `Graph::scale_shift` builds it, and its VJP w.r.t. x.
fn norm_film_silu(film: bool, extra_reader: bool) -> (Graph, Vec<NodeId>) {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 4, 3, 3]);
    let ga = g.input("gamma", &[4]);
    let be = g.input("beta", &[4]);
    let u = g.group_norm(x, ga, be, 2, 1e-5).unwrap();
    let h = if film {
        let s = g.input("scale", &[2, 4]);
        let t = g.input("shift", &[2, 4]);
        g.scale_shift(u, s, t).unwrap()
    } else {
        u
    };
    let mut y = g.silu(h).unwrap();
    if extra_reader {
        // The normalised value is read twice: fusing would recompute it.
        y = g.add(y, u).unwrap();
    }
    let ct = g.input("ct", &[2, 4, 3, 3]);
    let dx = grad(&mut g, &[(y, ct)], &[x]).unwrap()[0];
    (g, vec![y, dx])
}

#[test]
fn group_norm_film_silu_and_its_gradient_become_the_fused_ops() {
    for film in [true, false] {
        let (g, outs) = norm_film_silu(film, false);
        let (f, kinds) = fused_kinds(&g, &outs);
        assert_eq!(f.group_norm_silu, 1, "film {film}");
        assert_eq!(f.group_norm_silu_backward, 1, "film {film}");
        for k in [
            "group_norm",
            "group_norm_backward",
            "unary",
            "unary_backward",
        ] {
            assert!(!kinds.contains(&k), "film {film}: {k} left in {kinds:?}");
        }
        // Measured: ≤ 3e-16 (f64, other summation order).
        let e = fused_vs_plain(&g, &outs, 7);
        assert!(e < 1e-14, "film {film}: fused vs op by op {e:.2e}");
    }
}

#[test]
fn group_norm_silu_is_not_fused_when_the_norm_has_another_reader() {
    let (g, outs) = norm_film_silu(true, true);
    let (f, kinds) = fused_kinds(&g, &outs);
    assert_eq!(f, Fused::default(), "{kinds:?}");
    assert!(kinds.contains(&"group_norm") && kinds.contains(&"group_norm_backward"));
    assert_eq!(fused_vs_plain(&g, &outs, 8), 0.0, "nothing changed");
}

#[test]
fn nothing_is_fused_where_the_backend_declines() {
    let (mut g, outs) = norm_film_silu(true, false);
    let before: Vec<Op> = g.nodes.iter().map(|n| n.op.clone()).collect();
    assert_eq!(fuse(&mut g, &outs, &|_, _| false), Fused::default());
    let after: Vec<Op> = g.nodes.iter().map(|n| n.op.clone()).collect();
    assert_eq!(before, after);
}

/// softmax(scale·q·kᵀ)·v in the tokens-major form of `Graph::attention` (`t = false`) or
/// the UNet's channels-major form (q, k, v, o stored `[bh, d, T]`), with the gradients of
/// `wrt` (indices into q, k, v).
fn attention(t: bool, wrt: &[usize], p_is_output: bool) -> (Graph, Vec<NodeId>) {
    let (bh, tq, tk, d) = (3, 5, 7, 4);
    let mut g = Graph::new();
    let sh = |tok: usize| if t { [bh, d, tok] } else { [bh, tok, d] };
    let q = g.input("q", &sh(tq));
    let k = g.input("k", &sh(tk));
    let v = g.input("v", &sh(tk));
    let s = g.matmul(q, k, t, !t).unwrap();
    let a = g.scale(s, 0.5).unwrap();
    let p = g.softmax(a).unwrap();
    let o = if t {
        g.matmul(v, p, false, true).unwrap()
    } else {
        g.matmul(p, v, false, false).unwrap()
    };
    let ct = g.input("ct", g.shape(o).to_vec().as_slice());
    let ids = [q, k, v];
    let w: Vec<NodeId> = wrt.iter().map(|&i| ids[i]).collect();
    let mut outs = vec![o];
    outs.extend(grad(&mut g, &[(o, ct)], &w).unwrap());
    if p_is_output {
        outs.push(p);
    }
    (g, outs)
}

#[test]
fn attention_and_its_gradients_become_the_fused_ops_in_both_layouts() {
    for t in [false, true] {
        for wrt in [&[0, 1, 2][..], &[0], &[1], &[2], &[0, 2]] {
            let (g, outs) = attention(t, wrt, false);
            let (f, kinds) = fused_kinds(&g, &outs);
            let tag = format!("channels-major {t}, wrt {wrt:?}");
            assert_eq!(f.attention, 1, "{tag}: {kinds:?}");
            assert_eq!(f.attention_backward, wrt.len(), "{tag}: {kinds:?}");
            for k in ["matmul", "softmax", "softmax_backward", "unary"] {
                assert!(!kinds.contains(&k), "{tag}: {k} left in {kinds:?}");
            }
            // Measured: ≤ 4e-16.
            let e = fused_vs_plain(&g, &outs, 9);
            assert!(e < 1e-14, "{tag}: fused vs op by op {e:.2e}");
        }
    }
}

#[test]
fn attention_is_not_fused_forward_when_the_probabilities_are_read_elsewhere() {
    for t in [false, true] {
        let (g, outs) = attention(t, &[0, 1, 2], true);
        let (f, kinds) = fused_kinds(&g, &outs);
        assert_eq!(f.attention, 0, "{kinds:?}");
        assert!(kinds.contains(&"softmax"));
        let e = fused_vs_plain(&g, &outs, 10);
        assert!(e < 1e-14, "fused backward only: {e:.2e}");
    }
}

#[test]
fn attention_with_a_bias_is_not_attention_to_the_pass() {
    let mut g = Graph::new();
    let q = g.input("q", &[2, 5, 4]);
    let k = g.input("k", &[2, 5, 4]);
    let v = g.input("v", &[2, 5, 4]);
    let b = g.input("bias", &[5, 5]);
    let o = g.attention(q, k, v, 0.5, Some(b)).unwrap();
    let (f, _) = fused_kinds(&g, &[o]);
    assert_eq!(f, Fused::default());
}
