//! The blur as a graph op: reverse mode must produce the exact adjoint and ∂/∂σ.
use dynface::backend::cpu::CpuBackend;
use dynface::exec::eval;
use dynface::graph::{autodiff::grad, Graph};
use dynface::tensor::{random, Tensor};
use std::collections::HashMap;

#[test]
fn blur_graph_gradients_match_finite_differences() {
    let shape = [2, 3, 9, 11];
    let mut g = Graph::new();
    let x = g.input("x", &shape);
    let s = g.input("sigma", &[2]);
    let r = g.input("r", &shape);
    let y = g.gaussian_blur(x, s).unwrap();
    let p = g.mul(y, r).unwrap();
    let loss = g.sum_all(p).unwrap();
    let one = g.fill(1.0, &[]);
    let gr = grad(&mut g, &[(loss, one)], &[x, s]).unwrap();
    let mut rng = random::rng(11);
    let xv: Tensor<f64> = random::normal(&mut rng, &shape, 1.0);
    let rv: Tensor<f64> = random::normal(&mut rng, &shape, 1.0);
    // One σ larger than the image (radius 3σ > 11 px), one small.
    let sv = Tensor::new(vec![2], vec![4.3, 0.7]);
    let none = HashMap::new();
    let run = |xv: &Tensor<f64>, sv: &Tensor<f64>| {
        eval(
            CpuBackend::<f64>::new(),
            &g,
            &[loss, gr[0], gr[1]],
            &[("x", xv), ("sigma", sv), ("r", &rv)],
            &none,
        )
        .unwrap()
    };
    let base = run(&xv, &sv);
    let dir: Tensor<f64> = random::normal(&mut rng, &shape, 1.0);
    let eps = 1e-6;
    let shifted = |e: f64| {
        let mut xp = xv.clone();
        xp.data
            .iter_mut()
            .zip(&dir.data)
            .for_each(|(a, d)| *a += e * d);
        run(&xp, &sv)[0].data[0]
    };
    let fd = (shifted(eps) - shifted(-eps)) / (2.0 * eps);
    let an = base[1].dot(&dir);
    assert!(
        (fd - an).abs() < 1e-7 * an.abs().max(1.0),
        "x: fd {fd} vs {an}"
    );
    for b in 0..2 {
        let sig = |e: f64| {
            let mut sp = sv.clone();
            sp.data[b] += e;
            run(&xv, &sp)[0].data[0]
        };
        let fd = (sig(eps) - sig(-eps)) / (2.0 * eps);
        let an = base[2].data[b];
        assert!(
            (fd - an).abs() < 1e-6 * an.abs().max(1.0),
            "sigma[{b}]: fd {fd} vs {an}"
        );
    }
}

#[test]
fn blur_rejects_a_bad_sigma_with_an_error() {
    let mut g = Graph::new();
    let x = g.input("x", &[1, 1, 4, 4]);
    let s = g.input("sigma", &[1]);
    let y = g.gaussian_blur(x, s).unwrap();
    let xv: Tensor<f32> = random::normal(&mut random::rng(1), &[1, 1, 4, 4], 1.0);
    let sv = Tensor::new(vec![1], vec![f32::NAN]);
    let r = eval(
        CpuBackend::<f32>::new(),
        &g,
        &[y],
        &[("x", &xv), ("sigma", &sv)],
        &HashMap::new(),
    );
    let msg = r.unwrap_err().to_string();
    assert!(msg.contains("gaussian_blur"), "{msg}");
}
