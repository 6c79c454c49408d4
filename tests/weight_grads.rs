//! Weight gradients for training: every layer with parameters and every trainable network,
//! with its weights as `Const` nodes, against finite differences in f64
//! (`dynface::check::weight_vjp`).

use dynface::check::weight_cases;
use dynface::check::weight_vjp::check_weights;

#[test]
fn weight_vjps_match_finite_differences() {
    let mut failures = vec![];
    let cases = weight_cases::all();
    assert!(cases.len() >= 14, "every layer with parameters has a case");
    for (k, c) in cases.iter().enumerate() {
        let r =
            check_weights(c, 0x7a1e + k as u64, 64).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        print!("{r}");
        // A NaN error fails too.
        if r.max_rel().is_nan() || r.max_rel() > c.tol {
            failures.push(format!("{r}"));
        }
        if r.weights_checked() == 0 {
            failures.push(format!("{}: no weights checked", c.name));
        }
        for g in &r.grads {
            if g.grad_norm.is_nan() || g.grad_norm <= 0.0 {
                failures.push(format!("{}: gradient wrt {} is zero", c.name, g.name));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Batch norm's two modes agree when the running statistics equal the batch's: training mode
/// returns the batch mean and biased variance (checked against a direct sum here) and
/// normalises with them, eval mode normalises with whatever running statistics it is given.
#[test]
fn batch_norm_train_and_eval_modes_agree_on_batch_statistics() {
    use dynface::backend::cpu::CpuBackend;
    use dynface::exec::eval;
    use dynface::graph::Graph;
    use dynface::tensor::{random, Tensor};
    use std::collections::HashMap;
    let (n, c, hw) = (3, 4, 5);
    let mut rng = random::rng(11);
    let x: Tensor<f64> = random::normal(&mut rng, &[n, c, hw, hw], 2.0);
    let gamma: Tensor<f64> = random::uniform(&mut rng, &[c], 0.5, 1.5);
    let beta: Tensor<f64> = random::normal(&mut rng, &[c], 0.5);
    let mut g = Graph::new();
    let xi = g.input("x", &[n, c, hw, hw]);
    let gi = g.input("gamma", &[c]);
    let bi = g.input("beta", &[c]);
    let bn = g.batch_norm_train(xi, gi, bi, 1e-5).unwrap();
    let none = HashMap::new();
    let ins = [("x", &x), ("gamma", &gamma), ("beta", &beta)];
    let out = eval(
        CpuBackend::<f64>::new(),
        &g,
        &[bn.y, bn.mean, bn.var],
        &ins,
        &none,
    )
    .unwrap();
    let per = hw * hw;
    for ch in 0..c {
        let vals: Vec<f64> = (0..n)
            .flat_map(|b| x.data[(b * c + ch) * per..(b * c + ch + 1) * per].to_vec())
            .collect();
        let m = vals.iter().sum::<f64>() / vals.len() as f64;
        let v = vals.iter().map(|a| (a - m).powi(2)).sum::<f64>() / vals.len() as f64;
        // Measured differences ~1e-16; 1e-12 allows reordered sums.
        assert!((out[1].data[ch] - m).abs() < 1e-12, "mean {ch}");
        assert!((out[2].data[ch] - v).abs() < 1e-12, "var {ch}");
    }
    let mut ge = Graph::new();
    let xe = ge.input("x", &[n, c, hw, hw]);
    let p: Vec<_> = ["gamma", "beta", "mean", "var"]
        .iter()
        .map(|k| ge.input(k, &[c]))
        .collect();
    let ye = ge.batch_norm(xe, p[0], p[1], p[2], p[3], 1e-5).unwrap();
    let ins = [
        ("x", &x),
        ("gamma", &gamma),
        ("beta", &beta),
        ("mean", &out[1]),
        ("var", &out[2]),
    ];
    let ev = eval(CpuBackend::<f64>::new(), &ge, &[ye], &ins, &none).unwrap();
    let d = ev[0].max_abs_diff(&out[0]);
    assert!(d < 1e-12, "train and eval outputs differ by {d}");
    // And they differ when the running statistics are not the batch's.
    let shifted = Tensor::new(vec![c], out[1].data.iter().map(|m| m + 0.5).collect());
    let ins = [
        ("x", &x),
        ("gamma", &gamma),
        ("beta", &beta),
        ("mean", &shifted),
        ("var", &out[2]),
    ];
    let ev2 = eval(CpuBackend::<f64>::new(), &ge, &[ye], &ins, &none).unwrap();
    assert!(ev2[0].max_abs_diff(&out[0]) > 0.1);
}
