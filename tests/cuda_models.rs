//! Model-level CUDA parity: a tiny UNet's forward and input gradient against the PyTorch
//! golden (float64 reference), and one guided sampler step (UNet → x̂₀ → blur → weighted
//! norms → gradients w.r.t. x_t and σ) on the GPU against the f64 CPU backend. Without a usable
//! GPU each test prints "skipped: <reason>": the kernel emulator is too slow for whole
//! networks, and the per-op emulator checks are in cuda_parity.rs.

use dynface::backend::cpu::CpuBackend;
use dynface::backend::cuda::CudaBackend;
use dynface::exec::Executor;
use dynface::graph::plan::PlanOptions;
use dynface::models::unet::model::UNetGraph;
use dynface::models::unet::weights::load_safetensors;
use dynface::models::unet::{build_unet, UNetConfig};
use dynface::sampler::{Sampler, SamplerConfig};
use dynface::tensor::{random, Tensor};
use std::path::Path;
use std::rc::Rc;

fn gpu(test: &str) -> Option<Rc<CudaBackend>> {
    match CudaBackend::new() {
        Ok(b) => {
            println!("{test}: on {}", b.info());
            Some(Rc::new(b))
        }
        Err(why) => {
            dynface::check::skip::skip(test, dynface::check::skip::SkipReason::NoGpu, &why);
            None
        }
    }
}

type Tensors = std::collections::HashMap<String, Tensor<f32>>;

fn fixture(name: &str) -> (UNetConfig, Tensors, Tensors) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/unet")
        .join(name);
    let cfg = UNetConfig::from_file(&dir.join("config.json")).unwrap();
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let wfile = meta["weights_file"]
        .as_str()
        .unwrap_or("weights.safetensors");
    (
        cfg,
        load_safetensors(&dir.join(wfile)).unwrap(),
        load_safetensors(&dir.join("io.safetensors")).unwrap(),
    )
}

/// fp32 accumulation over a whole network (≈ 20 layers of up to ~10⁴-term sums): the same
/// bound the CPU f32 golden test uses.
const TOL_NET: f64 = 1e-4;

#[test]
fn tiny_unet_forward_and_input_gradient_match_pytorch_on_the_gpu() {
    let Some(be) = gpu("tiny_unet") else { return };
    for name in [
        "sdk_legacy_heads_ss",
        "sdk_new_headch_updown",
        "difface_perlevel",
    ] {
        let (cfg, w, io) = fixture(name);
        let x = &io["x"];
        let ug = UNetGraph::new(&cfg, x.shape[0], x.shape[2], x.shape[3], true).unwrap();
        let mut ex =
            Executor::new(be.clone(), &ug.graph, &ug.outputs(), PlanOptions::default()).unwrap();
        ex.bind_all(|k| w.get(k).cloned()).unwrap();
        ex.set_input("x", x).unwrap();
        ex.set_input("t", &io["t"]).unwrap();
        ex.set_input("cotangent", &io["cotangent"]).unwrap();
        ex.run().unwrap();
        let out = ex.output(ug.out).unwrap();
        let gx = ex.output(ug.grad_x.unwrap()).unwrap();
        let (eo, eg) = (out.rel_err(&io["out"]), gx.rel_err(&io["grad_x"]));
        println!("{name}: out rel err {eo:.2e}, grad_x rel err {eg:.2e} (tol {TOL_NET:e})");
        assert!(eo < TOL_NET && eg < TOL_NET, "{name}: {eo} {eg}");
    }
}

#[test]
fn one_guided_sampler_step_matches_the_cpu() {
    let Some(be) = gpu("guided_step") else { return };
    let (cfg, w, _) = fixture("sdk_legacy_heads_ss");
    let s = cfg.image_size;
    let shape = [2, 3, s, s];
    let scfg = SamplerConfig {
        sampler: "ddim50".into(),
        ..SamplerConfig::default()
    };
    let denoise = |g: &mut dynface::graph::Graph, inp: &dynface::sampler::DenoiserInputs| {
        build_unet(g, &cfg, inp.x, inp.t)
    };
    let mut cpu = Sampler::new(
        CpuBackend::<f64>::new(),
        scfg.clone(),
        shape,
        denoise,
        |k| w.get(k).cloned(),
    )
    .unwrap();
    let mut gpu = Sampler::new(be, scfg, shape, denoise, |k| w.get(k).cloned()).unwrap();
    let mut rng = random::rng(21);
    let x: Tensor<f64> = random::normal(&mut rng, &shape, 1.0);
    let guidance: Vec<Tensor<f64>> = (0..3)
        .map(|_| random::uniform(&mut rng, &shape, 0.0, 1.0))
        .collect();
    let sigma = vec![vec![4.3, 2.2], vec![2.9, 1.4], vec![1.4, 0.7]];
    let weight = vec![vec![0.7, 0.7], vec![0.2, 0.2], vec![0.1, 0.0]];
    let k = 40;
    let a = cpu.evaluate(&x, k, &guidance, &sigma, &weight).unwrap();
    let b = gpu.evaluate(&x, k, &guidance, &sigma, &weight).unwrap();
    let checks = [
        ("model output", a.model_out.rel_err(&b.model_out)),
        ("x̂₀", b.x0.rel_err(&a.x0)),
        (
            "∂loss/∂x_t",
            b.grad.as_ref().unwrap().rel_err(a.grad.as_ref().unwrap()),
        ),
    ];
    for (what, e) in checks {
        println!("guided step at chain position {k}: {what} rel err {e:.2e}");
        assert!(e < TOL_NET, "{what}: {e}");
    }
    let (la, lb) = (a.loss.unwrap(), b.loss.unwrap());
    println!("loss cpu {la:.8} gpu {lb:.8}");
    assert!(((la - lb) / la).abs() < TOL_NET);
    for i in 0..3 {
        let e = b.dsigma[i].rel_err(&a.dsigma[i]);
        println!("∂norm_{i}/∂σ_{i} rel err {e:.2e}");
        assert!(e < TOL_NET, "dsigma {i}: {e}");
    }
}

/// A whole guided run (σ refinement, two images joining at different steps) with the
/// sampler's update in the step graph on the GPU, recorded once as a CUDA graph and replayed,
/// against the host update on the GPU and the f64 CPU reference; prints ms per step of both
/// GPU paths (the tiny UNet: this is about the update's overhead, not the UNet's speed).
#[test]
fn guided_sampling_with_the_device_step_matches_the_host_step_on_the_gpu() {
    use dynface::sampler::{Guidance, UnitScale, UpdateOn};
    let Some(be) = gpu("device_step") else { return };
    let (cfg, w, _) = fixture("sdk_legacy_heads_ss");
    let s = cfg.image_size;
    let shape = [2, 3, s, s];
    let mk = |u: UpdateOn| SamplerConfig {
        sampler: "ddim50".into(),
        num_guidance: 2,
        weights: Some(vec![0.7, 0.3]),
        update_on: u,
        ..SamplerConfig::default()
    };
    let denoise = |g: &mut dynface::graph::Graph, inp: &dynface::sampler::DenoiserInputs| {
        build_unet(g, &cfg, inp.x, inp.t)
    };
    let mut rng = random::rng(31);
    let gd = Guidance {
        images: (0..2)
            .map(|_| random::uniform(&mut rng, &shape, 0.0, 1.0))
            .collect(),
        sigma: vec![vec![3.2, 1.7], vec![1.6, 0.9]],
        start: vec![vec![640, 480], vec![500, 300]],
    };
    let reference = Sampler::new(
        CpuBackend::<f64>::new(),
        mk(UpdateOn::Host),
        shape,
        denoise,
        |k| w.get(k).cloned(),
    )
    .unwrap()
    .sample(&gd, &mut UnitScale, 4)
    .unwrap();
    let mut outs = vec![];
    for u in [UpdateOn::Host, UpdateOn::Device] {
        let mut sm =
            Sampler::new(be.clone(), mk(u), shape, denoise, |k| w.get(k).cloned()).unwrap();
        sm.sample(&gd, &mut UnitScale, 4).unwrap(); // warm-up: kernels, workspace, recording
        let t0 = std::time::Instant::now();
        let out = sm.sample(&gd, &mut UnitScale, 4).unwrap();
        let ms = t0.elapsed().as_secs_f64() * 1e3 / out.trace.len() as f64;
        let e = out.x.rel_err(&reference.x);
        let es = Tensor::new(vec![4], out.sigma.concat())
            .rel_err(&Tensor::new(vec![4], reference.sigma.concat()));
        println!(
            "{u:?} step on the GPU: {ms:.2} ms/step, x rel err {e:.2e}, σ rel err {es:.2e} vs f64 CPU \
             (capture: {:?})",
            sm.capture_status()
        );
        if u == UpdateOn::Device {
            assert_eq!(sm.capture_status(), Ok(()), "the device step is replayed");
        }
        assert!(e < 1e-3 && es < 1e-3, "{u:?}: {e} {es}");
        outs.push(out);
    }
    let e = outs[1].x.rel_err(&outs[0].x);
    println!("device vs host step on the GPU: x rel err {e:.2e}");
    assert!(e < 1e-3);
}
