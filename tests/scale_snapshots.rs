//! DGSA's scale map as `--dump` reads it back from the sampler's step graph is the scale the
//! step used: each snapshot equals DGSA evaluated alone (its own graph and executor, batch 1)
//! on the same inputs, the step's x̂₀, the guidance image ŷ₁ and t. And reading it back
//! changes nothing: the restored batch is the same bits with and without snapshots.

use dynface::backend::cpu::CpuBackend;
use dynface::exec::Executor;
use dynface::graph::plan::PlanOptions;
use dynface::graph::Graph;
use dynface::models::dgsa;
use dynface::restore::{load_models, write_random_set, Pipeline};
use dynface::tensor::{random, Tensor};

#[test]
fn the_scale_map_read_out_is_dgsa_on_the_step_s_own_inputs() {
    let dir = std::env::temp_dir().join(format!("dynface-snapshots-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    write_random_set("tiny", &dir, 0).unwrap();
    let m = load_models(&dir).unwrap();
    let mut cfg = m.set.sampler.clone();
    cfg.sampler = "ddim8".into();
    let (s, b) = (m.set.image_size, 2);
    let lq: Tensor<f32> = random::uniform(&mut random::rng(41), &[b, 3, s, s], 0.0, 1.0);
    let seeds = [5, 9];
    let restore = |snapshots: bool| {
        let mut p = Pipeline::new(CpuBackend::<f32>::new(), &m, cfg.clone(), true, b).unwrap();
        p.set_scale_snapshots(snapshots);
        p.restore(&lq, &m, &seeds).unwrap()
    };
    let res = restore(true);
    assert_eq!(
        res.restored.data,
        restore(false).restored.data,
        "snapshots must not change the result"
    );

    let maps = &res.sample.scale_maps;
    for i in 0..b {
        let ts: Vec<usize> = maps.iter().filter(|m| m.image == i).map(|m| m.t).collect();
        assert!(
            (1..=3).contains(&ts.len()) && ts.windows(2).all(|w| w[0] > w[1]),
            "image {i}: first, middle, last step, in order: {ts:?}"
        );
    }

    let d = m.set.dgsa.as_ref().expect("the tiny set has DGSA");
    let w = m.dgsa.as_ref().unwrap();
    let mut g = Graph::new();
    let shape = [1, 3, s, s];
    let y = g.input("y", &shape);
    let x0 = g.input("x0", &shape);
    let t = g.input("t", &[1]);
    let out = dgsa::build(&mut g, &d.config, y, x0, t, "").unwrap();
    let mut ex =
        Executor::new(CpuBackend::<f32>::new(), &g, &[out], PlanOptions::default()).unwrap();
    ex.bind_all(|k| w.get(k).cloned()).unwrap();
    let per = 3 * s * s;
    let mut worst = 0.0f64;
    for snap in maps {
        // ŷ₁ in the model's [−1, 1], as the sampler feeds it.
        let yv: Vec<f32> = res.guidance[0].data[snap.image * per..(snap.image + 1) * per]
            .iter()
            .map(|&v| (2.0 * v as f64 - 1.0) as f32)
            .collect();
        ex.set_input("y", &Tensor::new(shape.to_vec(), yv)).unwrap();
        let x0v: Vec<f32> = snap.x0.iter().map(|&v| v as f32).collect();
        ex.set_input("x0", &Tensor::new(shape.to_vec(), x0v))
            .unwrap();
        ex.set_input("t", &Tensor::new(vec![1], vec![snap.t as f32]))
            .unwrap();
        ex.run().unwrap();
        let alone = ex.output(out).unwrap();
        assert_eq!(alone.data.len(), snap.scale.len());
        for (j, (&a, &r)) in alone.data.iter().zip(&snap.scale).enumerate() {
            let e = (a as f64 - r).abs();
            assert!(e.is_finite(), "t={} element {j}: {a} vs {r}", snap.t);
            worst = worst.max(e);
        }
    }
    println!("DGSA alone vs the step graph's S: worst |difference| {worst:e}");
    // Measured 0: the same CPU kernels on the same f32 inputs, batch 1 or 2, give the same
    // bits, so any difference means the read-out is not the scale the step used.
    assert_eq!(worst, 0.0, "worst |difference| {worst:e}");
}
