//! Per-graph scratch: each node's temporary memory (here split-K partial sums and a blur's
//! intermediate image) is a region of its own executor's arena, so graphs recorded by two
//! executors on one backend never share or lose memory. Runs on the kernel emulator with its
//! graph capture (launches recorded with their argument values, replayed later, as CUDA graphs
//! are), so it needs no GPU.

use dynface::backend::cuda::emu::EmuBackend;
use dynface::check::skip::{skip, SkipReason};
use dynface::exec::Executor;
use dynface::graph::plan::PlanOptions;
use dynface::graph::{Conv2dParams, Graph, NodeId, Op};
use dynface::tensor::random::{normal, rng};
use dynface::tensor::Tensor;
use std::rc::Rc;

/// A weight gradient over `hw`² pixels (split over K: its scratch grows with `hw`) followed
/// by a blur of that gradient seen as [C_out, C_in, 3, 3] images.
fn graph(hw: usize) -> (Graph, NodeId) {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 2, hw, hw]);
    let dy = g.input("dy", &[1, 2, hw, hw]);
    let sigma = g.input("sigma", &[2]);
    let p = Conv2dParams {
        stride: 1,
        pad: 1,
        groups: 1,
    };
    let dw = g
        .push(
            Op::Conv2dBackwardWeight {
                p,
                w_shape: [2, 2, 3, 3],
            },
            &[x, dy],
        )
        .unwrap();
    let out = g.push(Op::GaussianBlur, &[dw, sigma]).unwrap();
    (g, out)
}

fn inputs(hw: usize, seed: u64) -> Vec<(&'static str, Tensor<f32>)> {
    let mut r = rng(seed);
    vec![
        ("x", normal(&mut r, &[1, 2, hw, hw], 1.0)),
        ("dy", normal(&mut r, &[1, 2, hw, hw], 1.0)),
        ("sigma", Tensor::new(vec![2], vec![0.7, 1.3])),
    ]
}

fn set(ex: &mut Executor<Rc<EmuBackend>>, ins: &[(&str, Tensor<f32>)]) {
    for (name, t) in ins {
        ex.set_input(name, t).unwrap();
    }
}

/// The graph of size `hw` run alone, on a backend of its own, with inputs of `seed`.
fn alone(hw: usize, seed: u64) -> Vec<f32> {
    let be = Rc::new(EmuBackend::build().unwrap());
    let (g, out) = graph(hw);
    let mut ex = Executor::new(be, &g, &[out], PlanOptions::default()).unwrap();
    set(&mut ex, &inputs(hw, seed));
    ex.run().unwrap();
    ex.output(out).unwrap().data
}

#[test]
fn two_recorded_graphs_on_one_backend_each_use_their_own_scratch() {
    let be = match EmuBackend::build() {
        Ok(e) => Rc::new(e.with_capture()),
        Err(why) => {
            skip("per-graph scratch", SkipReason::NoCompiler, &why);
            return;
        }
    };
    // The small graph records first; the large one needs more scratch afterwards (what made
    // the old shared workspace grow, i.e. move, under the small graph's recording).
    let (small, large) = (32, 64);
    let (gs, os) = graph(small);
    let (gl, ol) = graph(large);
    let mut exs = Executor::new(be.clone(), &gs, &[os], PlanOptions::default()).unwrap();
    let mut exl = Executor::new(be.clone(), &gl, &[ol], PlanOptions::default()).unwrap();
    let scratch = |ex: &Executor<Rc<EmuBackend>>| -> Vec<usize> {
        ex.plan().scratch.iter().flatten().map(|r| r.len).collect()
    };
    // Split-K partials (4 and 16 splits of 36 outputs) and the blur's [2, 2, 3, 3] image.
    assert_eq!(scratch(&exs), vec![4 * 36, 36]);
    assert_eq!(scratch(&exl), vec![16 * 36, 36]);

    set(&mut exs, &inputs(small, 1));
    exs.capture().unwrap();
    set(&mut exl, &inputs(large, 2));
    exl.capture().unwrap();
    for round in 0..4u64 {
        let (ss, sl) = (10 + round, 20 + round);
        set(&mut exs, &inputs(small, ss));
        set(&mut exl, &inputs(large, sl));
        // Alternate which graph replays first.
        if round % 2 == 0 {
            exs.replay().unwrap();
            exl.replay().unwrap();
        } else {
            exl.replay().unwrap();
            exs.replay().unwrap();
        }
        // Same kernels, same launches, same order of every sum: the same bits as alone.
        assert_eq!(
            exs.output(os).unwrap().data,
            alone(small, ss),
            "round {round}"
        );
        assert_eq!(
            exl.output(ol).unwrap().data,
            alone(large, sl),
            "round {round}"
        );
    }
}
