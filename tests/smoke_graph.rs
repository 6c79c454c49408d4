use dynface::backend::cpu::CpuBackend;
use dynface::exec::eval;
use dynface::graph::{autodiff::grad, Graph};
use dynface::tensor::{random, Tensor};
use std::collections::HashMap;

#[test]
fn conv_gn_silu_gradient_matches_finite_difference() {
    let mut g = Graph::new();
    let x = g.input("x", &[2, 4, 6, 6]);
    let w = g.constant("w", &[8, 4, 3, 3]);
    let b = g.constant("b", &[8]);
    let ga = g.constant("ga", &[8]);
    let be = g.constant("be", &[8]);
    let h = g.conv2d(x, w, Some(b), 1, 1, 1).unwrap();
    let h = g.group_norm(h, ga, be, 4, 1e-5).unwrap();
    let h = g.silu(h).unwrap();
    let loss = g.sum_all(h).unwrap();
    let one = g.fill(1.0, &[]);
    let gx = grad(&mut g, &[(loss, one)], &[x]).unwrap()[0];
    let mut rng = random::rng(7);
    let mut consts: HashMap<String, Tensor<f32>> = HashMap::new();
    for (n, s) in g.constants() {
        consts.insert(n, random::normal(&mut rng, &s, 0.5));
    }
    let xv: Tensor<f64> = random::normal(&mut rng, &[2, 4, 6, 6], 1.0);
    let out = eval(
        CpuBackend::<f64>::new(),
        &g,
        &[loss, gx],
        &[("x", &xv)],
        &consts,
    )
    .unwrap();
    let gradv = &out[1];
    let v: Tensor<f64> = random::normal(&mut rng, &[2, 4, 6, 6], 1.0);
    let eps = 1e-5;
    let f = |s: f64| {
        let mut xp = xv.clone();
        xp.data
            .iter_mut()
            .zip(&v.data)
            .for_each(|(a, b)| *a += s * b);
        eval(
            CpuBackend::<f64>::new(),
            &g,
            &[loss],
            &[("x", &xp)],
            &consts,
        )
        .unwrap()[0]
            .data[0]
    };
    let fd = (f(eps) - f(-eps)) / (2.0 * eps);
    let an = gradv.dot(&v);
    assert!(
        (fd - an).abs() <= 1e-7 * an.abs().max(1.0),
        "fd {fd} analytic {an}"
    );
}
